"""Catalog at archive scale: what a search, a filter, `indexer info` and `indexer verify` pay in the catalog
of N segments (10M by default: ~28,000 hours of ten-second windows), SQLite and Postgres.

The catalog is filled by bulk SQL, not through the embedder: files in a few thousand folders of two corpora
(60 windows each, as bench/scale.py's files), container tags on 30% of them, the keyword index
(db/fulltext.py's own terms), 1% of the file ids gone (files removed since), a removed watch batch's ids in
`vector_deletions`, sealed files in `vector_files` and a few hundred failures, as imports and watches leave
them. It is filled at revision 0004 (before this bench's indexes), migrated to head (the migration's own time
is printed: it runs on every existing catalog when resound is upgraded) and measured. For before/after, run
an earlier commit's bench on the filled, unmigrated catalog first (`--reuse --json before.json`), then this
one with `--reuse --compare before.json`. Each figure is the p50 / p95 of repeated calls of the code the
commands run:

- lookup of a query's 10 hits: `Index.segments` (SqliteReader.segments for SQLite, Catalog.segments for
  Postgres) for random ids, the first touch of their pages; then the same ids again with their tags
  (`Engine.tagged`), warm;
- filters as users type them, through `Catalog.matching_segment_ids` (the sorted ids the FAISS side's
  selector or exact plan takes), the 1%-selectivity one among them;
- `indexer info` (counts, provenance) and `info --failed`;
- `indexer verify`'s catalog side (indexer.verify.catalog_checks: ids both ways, files without segments,
  keyword index consistency; the FAISS side is bench/scale.py's);
- keyword ranking (db/fulltext.rank_keywords over file_terms) for typed queries, alone and within a filter.

Plans (--plans): EXPLAIN QUERY PLAN (SQLite) / EXPLAIN (Postgres) of each statement, with full scans of the
big tables flagged. Run (the machine is shared: nice):

    nice -n 10 python bench/catalog_scale.py --n 10000000 --work /tmp/catalog-scale \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/catalog_scale
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.catalog import Catalog
from db.filters import SearchFilter, segment_query
from db.fulltext import query_terms, rank_keywords, term_rows
from db.migrate import current_revision, head_revision, upgrade
from db.session import make_engine, sqlite_url
from db.sqlite_reader import SqliteReader, file_tags_of
from search.hybrid import keyword_rows

WINDOWS = 60
FOLDERS = 3000  # 100 top-level folders of 30 sub-folders: each top-level folder holds 1% of the files
BEFORE = "0004_vector_files"
ROOTS = ("/archive/library", "/archive/broadcast")
DOMAINS = ("Animals", "Ambience", "Doors", "Foley", "Weather", "Vehicles", "Impacts", "Machines", "Water", "Crowds",
           "Household", "Industrial", "Nature", "Sports", "Transport", "Weapons", "Electronics", "Music", "Voices",
           "Office")
SUBJECTS = ("Dogs", "Cats", "Birds", "Horses", "Rain", "Thunder", "Wind", "Creek", "Waves", "Fire", "Traffic", "Trains",
            "Aircraft", "Boats", "Engines", "Footsteps", "Cloth", "Paper", "Glass", "Metal", "Wood", "Stone",
            "Crowd", "Applause", "Laughter", "Children", "Market", "Restaurant", "Kitchen", "Bathroom", "Office",
            "Factory", "Construction", "Drills", "Saws", "Hammers", "Keyboards", "Phones", "Alarms", "Bells",
            "Clocks", "Doors", "Drawers", "Switches", "Cars", "Motorbikes", "Bicycles", "Helicopters", "Guns",
            "Explosions", "Whooshes", "Hits", "Scrapes", "Squeaks", "Buzzes", "Hums", "Drones", "Tones", "Pads",
            "Stingers")
ADJECTIVES = ("Bark", "Growl", "Distant", "Close", "Heavy", "Light", "Fast", "Slow", "Long", "Short", "Loud", "Soft",
              "Metallic", "Wooden", "Wet", "Dry", "Deep", "High", "Low", "Rumble", "Crackle", "Splash", "Creak",
              "Slam", "Knock", "Pass", "Idle", "Start", "Stop", "Loop", "Single", "Multiple", "Busy", "Quiet",
              "Indoor", "Outdoor", "Night", "Morning", "Evening", "Windy")
MICS = ("Close", "Distant", "MS", "XY", "Contact", "Hydrophone")
GENRES = ("Ambient", "Foley", "Hard FX", "Nature", "Urban", "Industrial", "Cinematic", "Documentary", "Sports", "News",
          "Drama", "Comedy", "Horror", "SciFi", "Fantasy", "Western", "Musical", "Interview", "Archive", "Reportage")
STAMP = datetime(2026, 12, 1, tzinfo=UTC)


# -- the synthetic archive -------------------------------------------------------------------------
def folder_of(p: int, files: int) -> tuple[int, int, str]:
    """(corpus id, top-level folder number, folder path relative to the corpus root) of the p-th file: folders
    hold consecutive files, as a build walking a tree gives them consecutive ids."""
    folder = p * FOLDERS // files
    top, sub = divmod(folder, FOLDERS // 100)
    corpus = 2 if top >= 80 else 1  # the broadcast archive: the last 20 top-level folders
    return corpus, top, f"{DOMAINS[top % 20]}_Vol{top // 20 + 1:02d}/{SUBJECTS[(top + sub) % len(SUBJECTS)]}"


def file_rows(n: int) -> Iterator[dict[str, object]]:
    """The files of an N-segment archive: ids from 1 with every 100th id gone (a removed file)."""
    files = -(-n // WINDOWS)
    file_id = 0
    for p in range(files):
        file_id += 1
        if file_id % 100 == 37:
            file_id += 1
        corpus, _, folder = folder_of(p, files)
        subject = folder.rsplit("/", 1)[1].rstrip("s").upper()
        ext = "wav" if p % 100 < 90 else "flac" if p % 100 < 97 else "mp4"
        name = f"{subject}_{ADJECTIVES[p % len(ADJECTIVES)]}_{MICS[p % len(MICS)]}_{p:07d}.{ext}"
        tags = None
        if p % 10 < 3:
            tags = {"title": name.rsplit(".", 1)[0].replace("_", " ").title(), "artist": f"Recordist {p % 500:03d}",
                    "genre": GENRES[(p // 10) % len(GENRES)],
                    "description": f"{ADJECTIVES[(p // 3) % len(ADJECTIVES)].lower()} {subject.lower()} recorded "
                                   f"{MICS[(p // 7) % len(MICS)].lower()}"}
        yield {"id": file_id, "corpus_id": corpus, "path": f"{folder}/{name}", "path_bytes": None,
               "content_hash": f"{file_id:064x}", "size": 600 * 48000 * 4, "mtime": 1.5e9 + p * 1000.0,
               "duration": 600.0 - (p % 50) * 0.1, "source_rate": 48000, "channels": 2, "indexed_at": STAMP,
               "tags": tags}


FILE_COLUMNS = ("id", "corpus_id", "path", "path_bytes", "content_hash", "size", "mtime", "duration", "source_rate",
                "channels", "indexed_at")


class Filler:
    """Bulk rows into one catalog: sqlite3 executemany, or Postgres COPY."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.kind = self.engine.dialect.name
        if self.kind == "sqlite":
            self.connection = sqlite3.connect(self.engine.url.database)
            self.connection.execute("PRAGMA synchronous=OFF")
        else:
            self.raw = self.engine.raw_connection()
            self.connection = self.raw.driver_connection
            # The fill writes consistent rows in bulk; FK triggers per row would only slow it down.
            self.connection.execute("SET session_replication_role = replica")

    def rows(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
        quoted = ", ".join(f'"{c}"' for c in columns)
        if self.kind == "sqlite":
            self.connection.executemany(f"INSERT INTO {table} ({quoted}) VALUES ({', '.join('?' * len(columns))})",
                                        (tuple(v.isoformat(" ") if isinstance(v, datetime) else v for v in r) for r in rows))
        else:
            with self.connection.cursor() as cursor, cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)

    def sql(self, statement: str) -> None:
        self.connection.execute(statement)

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        if self.kind == "sqlite":
            self.connection.close()
        else:
            self.raw.close()
        self.engine.dispose()


def fill(url: str, n: int) -> dict[str, int]:
    """A catalog at revision BEFORE holding the archive of `n` segments; returns its row counts."""
    engine = make_engine(url)
    upgrade(engine, BEFORE)
    engine.dispose()
    f = Filler(url)
    info = {"id": 1, "schema_version": 3, "model_id": "bench/synthetic", "family": "synthetic", "checkpoint": "none",
            "checkpoint_sha256": "0" * 64, "dim": 512, "metric": "inner_product", "sample_rate": 48000,
            "window_seconds": 10.0, "hop_seconds": 10.0, "preprocessing": "{}", "faiss_factory": "IVF16384,Flat",
            "search_params": '{"nprobe": 16}', "versions": "{}", "generation": 120, "created_at": STAMP,
            "updated_at": STAMP}
    f.rows("index_info", tuple(info), [tuple(info.values())])
    f.rows("corpora", ("id", "root", "added_at"), [(i + 1, root, STAMP) for i, root in enumerate(ROOTS)])
    files, tags, terms, failures = [], [], [], []
    for row in file_rows(n):
        files.append(tuple(row[c] for c in FILE_COLUMNS))
        if row["tags"]:
            tags.extend((row["id"], k, v, v.casefold()) for k, v in row["tags"].items())
        terms.extend((t["file_id"], t["term"], t["tf"]) for t in term_rows(row["id"], row["path"], row["tags"]))
        if row["id"] % 200 == 5:
            folder = str(row["path"]).rsplit("/", 1)[0]
            failures.append((len(failures) + 1, row["corpus_id"], f"{folder}/BROKEN_{row['id']:07d}.wav",
                             f"{row['id']:064x}", "decode: invalid data found when processing input", STAMP))
    f.rows("files", FILE_COLUMNS, files)
    f.rows("file_tags", ("file_id", "key", "value", "folded"), tags)
    f.rows("file_terms", ("file_id", "term", "tf"), terms)
    f.rows("failures", ("id", "corpus_id", "path", "content_hash", "reason", "failed_at"), failures)
    # Every file's 60 windows, generated by the database itself (segment id = (file id - 1) * 60 + window + 1).
    modality = "CASE WHEN f.path LIKE '%.mp4' THEN 'audio+visual' ELSE 'audio' END"
    if f.kind == "sqlite":
        f.sql("WITH RECURSIVE w(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM w WHERE n < 59) "
              'INSERT INTO segments (id, file_id, start, "end", modalities) '
              f"SELECT (f.id - 1) * 60 + w.n + 1, f.id, w.n * 10.0, w.n * 10.0 + 10.0, {modality} "
              "FROM files f CROSS JOIN w")
    else:
        f.sql('INSERT INTO segments (id, file_id, start, "end", modalities) '
              f"SELECT (f.id - 1) * 60 + w + 1, f.id, w * 10.0, w * 10.0 + 10.0, {modality} "
              "FROM files f CROSS JOIN generate_series(0, 59) AS w ORDER BY f.id, w")
        for table in ("files", "segments", "failures", "corpora"):
            f.sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    # Sealed vector files as size-tiered merges leave them, and the last removed watch batch's ids (the 167
    # files whose id % 100 == 37 below 16,700: their windows are still in a sealed file).
    vector_files = [(f"segments.{g}.{i}.faiss", "segments", 1_250_000, 2, g) for i, g in enumerate(range(100, 108))]
    vector_files += [(f"segments.{g}.faiss", "segments", 20_000, 0, g) for g in range(110, 118)]
    vector_files += [("files.118.0.faiss", "files", len(files), 2, 118)]
    f.rows("vector_files", ("name", "store", "vectors", "level", "generation"), vector_files)
    gone = [i for i in range(37, 16_700, 100)]
    f.rows("vector_deletions", ("file", "vector_id"),
           [("segments.100.0.faiss", (i - 1) * WINDOWS + w + 1) for i in gone for w in range(WINDOWS)])
    f.commit()
    if f.kind != "sqlite":
        # What autovacuum does to a freshly loaded table (statistics, visibility map for index-only scans).
        f.connection.autocommit = True
        f.sql("VACUUM ANALYZE")
    f.close()
    return {"files": len(files), "tags": len(tags), "terms": len(terms), "failures": len(failures)}


# -- measuring --------------------------------------------------------------------------------------
def open_unmigrated(url: str) -> Catalog:
    """A Catalog on `url` that leaves its revision alone (Catalog() would migrate it to head on open)."""
    from sqlalchemy.orm import sessionmaker

    catalog = Catalog.__new__(Catalog)
    catalog.url = url
    catalog.engine = make_engine(url)
    catalog._sessions = sessionmaker(catalog.engine, expire_on_commit=False)
    return catalog


def timed(call: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(p50 ms, p95 ms, last result) of `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = call()
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times)), float(np.percentile(times, 95)), result


def filters(n: int) -> list[tuple[str, SearchFilter]]:
    """The filters users type, on this archive (selectivity in the name where it is known)."""
    files = -(-n // WINDOWS)
    _, _, leaf = folder_of(files // 3, files)
    top = leaf.split("/")[0]
    return [
        (f"--under {ROOTS[0]}/{top} (1%)", SearchFilter.parse(under=f"{ROOTS[0]}/{top}")),
        (f"--under {top} (relative, 1%)", SearchFilter(under_relative=top)),
        (f"--under {ROOTS[0]}/{leaf} (0.03%)", SearchFilter.parse(under=f"{ROOTS[0]}/{leaf}")),
        (f"--glob '{top}/*' (1%)", SearchFilter(glob=f"{top}/*")),
        ("--glob '*DOG_Bark*'", SearchFilter(glob="*DOG_Bark*")),
        ("--ext flac (7%)", SearchFilter(extensions=("flac",))),
        ("--tag genre=ambient (1.5%)", SearchFilter(tags=(("genre", "ambient"),))),
        ("--where duration >= 599.5 (10%)", SearchFilter(min_duration=599.5)),
        ("--has visual (3%)", SearchFilter(modality="visual")),
        (f"--under {top} --tag genre=ambient", SearchFilter(under_relative=top, tags=(("genre", "ambient"),))),
        ("--modified-after (1%)", SearchFilter(modified_after=1.5e9 + files * 990.0)),
    ]


KEYWORD_QUERIES = ("dog bark", "distant thunder rumble", "close", "recordist 042")


def filter_sql(catalog: Catalog, where: SearchFilter) -> str:
    with catalog.engine.connect() as connection:
        corpora = dict(connection.exec_driver_sql("SELECT id, root FROM corpora").all())
        return str(segment_query(where, corpora).compile(dialect=connection.dialect,
                                                         compile_kwargs={"literal_binds": True}))


def plan(catalog: Catalog, sql: str) -> list[str]:
    """The query plan's lines (EXPLAIN QUERY PLAN / EXPLAIN)."""
    with catalog.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            return [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        return [row[0].strip() for row in connection.exec_driver_sql("EXPLAIN " + sql)]  # % already doubled


BIG = ("segments", "files", "file_terms", "file_tags")


def full_scans(lines: list[str]) -> list[str]:
    """The big tables a plan reads whole (a scan of the partial index of picture windows reads only those)."""
    found = []
    for line in lines:
        if "ix_segments_visual" in line:
            continue
        words = line.replace("(", " ").split()
        for table in BIG:
            if (line.startswith("SCAN ") and len(words) > 1 and words[1] == table) or (
                    ("Seq Scan on " + table + " ") in line + " "):
                found.append(table)
    return sorted(set(found))


def measure(url: str, n: int, label: str, repeats: int, show_plans: bool) -> dict[str, list[float]]:
    """Every figure of one catalog at its current revision; prints them and returns {name: [p50, p95]}."""
    from indexer.verify import catalog_checks

    catalog = open_unmigrated(url)
    kind = catalog.engine.dialect.name
    sqlite_path = catalog.engine.url.database if kind == "sqlite" else None
    reader = SqliteReader(sqlite_path) if sqlite_path else None
    index = SimpleNamespace(reader=reader, catalog=catalog)  # what search.hybrid.keyword_rows reads
    revision = current_revision(catalog.engine)
    print(f"\n== {kind} {label}: revision {revision} ==")
    out: dict[str, list[float]] = {}

    def report(name: str, p50: float, p95: float, extra: str = "", sql: str | None = None) -> None:
        out[name] = [round(p50, 3), round(p95, 3)]
        scans = ""
        if sql is not None:
            lines = plan(catalog, sql)
            scanned = full_scans(lines)
            scans = f"  [full scan: {', '.join(scanned)}]" if scanned else ""
            if show_plans:
                extra += "\n      " + "\n      ".join(lines)
        print(f"  {name:<52} p50 {p50:9.2f} ms  p95 {p95:9.2f} ms{scans}  {extra}", flush=True)

    with catalog.engine.connect() as connection:
        every = "%" if kind == "sqlite" else "%%"
        existing = np.array([r[0] for r in connection.exec_driver_sql(
            f"SELECT id FROM segments WHERE id {every} 997 = 1")], dtype=np.int64)
    rng = np.random.default_rng(0)
    lookups = [rng.choice(existing, 10, replace=False).tolist() for _ in range(repeats * 30)]
    segments_of = (lambda ids: reader.segments(ids)) if reader else catalog.segments
    tags_of = (lambda ids: file_tags_of(reader, ids)) if reader else catalog.file_tags
    it = iter(lookups)
    p50, p95, _ = timed(lambda: segments_of(next(it)), len(lookups))
    ids = ",".join(map(str, lookups[0]))
    report("hits: 10 segments by id (Index.segments)", p50, p95, sql=(
        'SELECT s.id, s.file_id, s.start, s."end", s.modalities, f.path, f.path_bytes, c.root FROM segments s '
        f"JOIN files f ON s.file_id = f.id JOIN corpora c ON f.corpus_id = c.id WHERE s.id IN ({ids})"))
    it = iter(lookups)
    p50, p95, _ = timed(lambda: tags_of(sorted({r.file_id for r in segments_of(next(it)).values()})), len(lookups))
    report("the same hits again, with their tags (warm pages)", p50, p95)

    for name, where in filters(n):
        p50, p95, ids = timed(lambda where=where: catalog.matching_segment_ids(where), repeats)
        report(f"filter {name}", p50, p95, f"{len(ids):,} ids", sql=filter_sql(catalog, where))

    p50, p95, counts = timed(catalog.counts, repeats)
    report("info: counts (indexer info)", p50, p95, json.dumps(counts), sql="SELECT count(*) FROM files")
    p50, p95, failed = timed(catalog.failures, repeats)
    report("info --failed: failures", p50, p95, f"{len(failed)} failures")
    p50, p95, _ = timed(catalog.info, repeats)
    report("info: provenance row", p50, p95)

    rows = keyword_rows(index)  # type: ignore[arg-type]
    for text in KEYWORD_QUERIES:
        p50, p95, hits = timed(lambda text=text: rank_keywords(rows, query_terms(text)), repeats)
        report(f"keywords '{text}'", p50, p95, f"{len(hits):,} files")
    where = filters(n)[0][1]
    if hasattr(catalog, "matching_file_ids"):  # the Engine's way since 0005; file ids of the segment ids before
        p50, p95, among = timed(lambda: set(catalog.matching_file_ids(where).tolist()), repeats)
    else:
        from search.more_like_this import file_ids_of_segments

        admitted = catalog.matching_segment_ids(where)
        p50, p95, among = timed(lambda: set(file_ids_of_segments(catalog, admitted).tolist()), repeats)
    report("keywords within a 1% filter: its file ids", p50, p95, f"{len(among):,} files")
    p50, p95, _ = timed(lambda: rank_keywords(rows, query_terms("dog bark"), among), repeats)
    report("keywords 'dog bark' within the 1% filter", p50, p95)

    p50, p95, checks = timed(lambda: catalog_checks(catalog), max(1, repeats // 5))
    report("verify: catalog side (catalog_checks)", p50, p95, checks.summary())
    catalog.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="segments (default 10M)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/catalog-scale"), help="where the SQLite file goes")
    parser.add_argument("--postgres", default=None, help="a Postgres URL of an empty database to fill (or reuse)")
    parser.add_argument("--no-sqlite", action="store_true", help="Postgres only")
    parser.add_argument("--reuse", action="store_true", help="measure the catalogs already there (no fill)")
    parser.add_argument("--fill-only", action="store_true", help="fill the catalogs and stop (measure with --reuse)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--plans", action="store_true", help="print each statement's query plan")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--compare", type=Path, default=None,
                        help="the --json of an earlier run (another commit, the catalog before migrating): print both")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    urls = [] if args.no_sqlite else [sqlite_url(args.work / "catalog.sqlite")]
    urls += [args.postgres] if args.postgres else []
    print(f"{args.n:,} segments; load average {os.getloadavg()[0]:.1f}; head revision {head_revision()}")
    results: dict[str, dict[str, object]] = {}
    for url in urls:
        kind = "sqlite" if url.startswith("sqlite") else "postgres"
        engine = make_engine(url)
        at = current_revision(engine)
        engine.dispose()
        if not args.reuse or at is None:
            if kind == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    (args.work / f"catalog.sqlite{suffix}").unlink(missing_ok=True)
            elif at is not None:
                raise SystemExit(f"{url}: not empty (revision {at}); give an empty database or --reuse")
            t = time.perf_counter()
            counts = fill(url, args.n)
            print(f"{kind}: filled {args.n:,} segments, {counts} in {time.perf_counter() - t:.0f} s "
                  f"(load {os.getloadavg()[0]:.1f})")
        if args.fill_only:
            continue
        result: dict[str, object] = {}
        engine = make_engine(url)
        at = current_revision(engine)
        if at != head_revision():
            t = time.perf_counter()
            upgrade(engine)
            result["migration_s"] = round(time.perf_counter() - t, 1)
            print(f"\n{kind}: migration {at} -> {current_revision(engine)} of the {args.n:,}-segment catalog took "
                  f"{result['migration_s']} s (load {os.getloadavg()[0]:.1f})", flush=True)
        engine.dispose()
        result["after"] = measure(url, args.n, "after", args.repeats, args.plans)
        if kind == "sqlite":
            result["file_bytes"] = (args.work / "catalog.sqlite").stat().st_size
        results[kind] = result
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    before_runs = json.loads(args.compare.read_text()) if args.compare else {}
    for kind, result in results.items():
        before = (before_runs.get(kind) or {}).get("after")
        if before:
            print(f"\n{kind}: p50 ms, {args.compare} -> this run (migration {result.get('migration_s', '-')} s)")
            for name, (p50, _) in result["after"].items():  # type: ignore[union-attr]
                old = before.get(name, [float("nan")])[0]
                print(f"  {name:<60} {old:9.2f} -> {p50:9.2f}" + (f"  ({old / p50:.1f}x)" if p50 > 0 else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
