"""Words of each file, for keyword search: one tokenizer and one scoring formula (BM25), in resound's code.

A file's words are those of its name (split at `_ - .` and spaces, at camelCase and at digits), of its
folders (relative to the corpus root) and of its tags (title ... description, comment, notes:
indexer/media/tags.py). They are stored as (file, term, count) rows in `file_terms`, written in the same
transaction as the file's own rows and removed with it (ON DELETE CASCADE), so the keyword index is never
out of step with the catalog, whatever kills a build, a watcher or a compaction: `indexer verify` checks it
against the files' paths and tags anyway.

The database only finds the candidate files (an index on `term`, the same on SQLite and Postgres); the
ranking is computed here, so that keyword and hybrid results are the same whichever engine holds the
catalog. What a user types is split by the same tokenizer and never reaches the database as syntax:
hyphens, quotes, AND/OR/NOT and parentheses are just characters between words.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_TERM_CHARS = 64  # longer runs (hashes, base64 in a tag) are not words anyone types
MAX_QUERY_TERMS = 32
# BM25 (Robertson and Zaragoza 2009), the constants Lucene and Elasticsearch default to.
BM25_K1 = 1.2
BM25_B = 0.75

# Runs of letters or of digits; camelCase splits before an upper-case letter that follows a lower-case one,
# and an upper-case run before its last letter when a lower-case one follows (HTTPServer -> HTTP Server).
_RUNS = re.compile(r"[^\W\d_]+|\d+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# Runs of the scripts written without spaces between words (Han, kana with the iteration and length
# marks, Hangul syllables and jamo): split out of a letter run and cut into character pairs (_bigrams).
_CJK = re.compile("([\u1100-\u11ff\u3005\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                  "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]+)")
# Words too common in names and descriptions to tell files apart.
STOPWORDS = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "of", "on", "or", "the", "to", "with"])


def _stem(word: str) -> str:
    """A light English stemmer (plural and -ing/-ed endings), so that "barking dogs" meets "DOG_Bark"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes", "sses")):
                continue  # "tones" -> "tone" by the "s" rule
            stem = word[: len(word) - len(suffix)] + keep
            if suffix in ("ing", "ed") and len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]  # "running" -> "run", "clapped" -> "clap"
            return stem
    return word


def _bigrams(run: str, unigrams: bool) -> list[str]:
    """A run of CJK characters as overlapping pairs of characters, as Lucene's CJK bigram filter does: a
    word inside the run is found by its own pairs. With `unigrams` (a document's terms) each character
    too, so that a one-character word (犬, dog) is found; a lone character is always itself."""
    pairs = [run[i:i + 2] for i in range(len(run) - 1)]
    return list(run) + pairs if unigrams or len(run) == 1 else pairs


def tokens(text: str, query: bool = False) -> list[str]:
    """The terms of a text, in order: words split at punctuation, camelCase and digits, case-folded,
    accents removed, lightly stemmed; stop words and over-long runs left out. Runs of Chinese, Japanese
    or Korean characters, written without spaces between words, become pairs of characters, and in a
    document (not a `query`, whose pairs say more) single characters too."""
    return list(_tokens(text, query))


# Folder names, tag values and words repeat across an archive's files: `indexer verify` tokenizes every
# file's name, folders and tags again, 166k files at 10M windows (bench/catalog_scale.py).
@lru_cache(maxsize=65536)
def _tokens(text: str, query: bool = False) -> tuple[str, ...]:
    out = []
    for part in re.split(r"[^\w]+|_", unicodedata.normalize("NFKC", text)):
        for piece in _CAMEL.split(part):
            for run in _RUNS.findall(piece):
                if run.isascii():  # no CJK character in it: the common case, without the split
                    term = _term(run)
                    if term is not None:
                        out.append(term)
                    continue
                for script_run in _CJK.split(run):
                    if not script_run:
                        continue
                    if _CJK.fullmatch(script_run):
                        # NFKC only: NFKD would strip a kana's voicing mark.
                        out.extend(_bigrams(script_run, unigrams=not query))
                        continue
                    term = _term(script_run)
                    if term is not None:
                        out.append(term)
    return tuple(out)


@lru_cache(maxsize=65536)
def _term(run: str) -> str | None:
    """The term of a run of letters or digits (None: a stop word or an over-long run)."""
    if run.isascii():
        word = run.lower()  # what casefold and NFKD give an ASCII run, without their per-character work
    else:
        word = "".join(c for c in unicodedata.normalize("NFKD", run.casefold()) if not unicodedata.combining(c))
    if word.isdigit():
        word = word.lstrip("0") or "0"  # take 03 is take 3
    if word and word not in STOPWORDS and len(word) <= MAX_TERM_CHARS:
        return _stem(word)
    return None


def document_terms(path: str, tags: Mapping[str, str]) -> Counter[str]:
    """The terms of a file: its name (without the extension), its folders, its tags; with their counts."""
    # String splits, not PurePosixPath (a third of `indexer verify`'s keyword check at 166k files): empty and
    # "." parts, which PurePosixPath drops, hold no terms.
    folders, _, name = path.rpartition("/")
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name
    text = [stem, *folders.split("/"), *tags.values()]
    return Counter(t for piece in text for t in _tokens(piece))


def query_terms(text: str) -> list[str]:
    """The distinct terms of what a user typed, in order (at most MAX_QUERY_TERMS)."""
    return list(dict.fromkeys(tokens(text, query=True)))[:MAX_QUERY_TERMS]


# -- writing ----------------------------------------------------------------------------------------
def term_rows(file_id: int, path: str, tags: Mapping[str, str] | None) -> list[dict[str, object]]:
    """`file_terms` rows of one file."""
    return [{"file_id": file_id, "term": term, "tf": n} for term, n in document_terms(path, tags or {}).items()]


def stage_terms(session, files: Iterable[tuple[int, str, Mapping[str, str] | None]],  # type: ignore[no-untyped-def]
                new: bool = False) -> None:
    """Stage the terms of (file id, corpus-relative path, tags) in `session`, replacing any the files had
    (`new`: files just added, which have none)."""
    from sqlalchemy import delete, insert

    from db.schema import FileTermRow

    files = list(files)
    ids = [file_id for file_id, _, _ in files]
    for start in range(0, 0 if new else len(ids), 500):
        session.execute(delete(FileTermRow).where(FileTermRow.file_id.in_(ids[start:start + 500])))
    rows = [row for file_id, path, tags in files for row in term_rows(file_id, path, tags)]
    if rows:
        session.execute(insert(FileTermRow), rows)


# -- ranking ----------------------------------------------------------------------------------------
Rows = Callable[[str, Sequence[object]], list[tuple]]  # (SQL with ? placeholders, parameters) -> rows


@dataclass(frozen=True)
class KeywordHit:
    """A file that holds query terms: its BM25 score and the query terms it holds (in query order)."""

    file_id: int
    score: float
    matched: tuple[str, ...]


def catalog_statistics(rows: Rows) -> tuple[int, float]:
    """(files, sum of all term counts): BM25's collection statistics. Read from the provenance row, where
    each catalog commit writes them (CatalogWriter.commit), instead of summing file_terms whole per query;
    summed here for a catalog no commit has written them in yet."""
    stored = rows("SELECT keyword_files, keyword_terms FROM index_info WHERE id = 1", [])
    if stored and stored[0][0] is not None and stored[0][1] is not None:
        return int(stored[0][0]), float(stored[0][1])
    return collection_statistics(rows)


def collection_statistics(rows: Rows) -> tuple[int, float]:
    """(files, sum of all term counts), counted."""
    return (int(rows("SELECT COUNT(*) FROM files", [])[0][0]),
            float(rows("SELECT COALESCE(SUM(tf), 0) FROM file_terms", [])[0][0]))


def rank_keywords(rows: Rows, terms: Sequence[str], among: set[int] | None = None) -> list[KeywordHit]:
    """Files holding any of `terms`, best BM25 first (ties by file id), among `among` (None: all files).

    Statistics (document frequency, lengths, their mean) are those of the whole catalog, whatever `among`
    admits, so a filter narrows the list without reordering it.
    """
    if not terms:
        return []
    marks = ",".join("?" * len(terms))
    if among is None:
        # Each posting with its file's length, in one statement (a primary-key range per file), rather than
        # a query per 500 files: 9,000 matching files at 10M windows (bench/catalog_scale.py).
        postings = rows("SELECT t.file_id, t.term, t.tf, (SELECT SUM(l.tf) FROM file_terms l WHERE l.file_id = t.file_id) "
                        f"FROM file_terms t WHERE t.term IN ({marks})", list(terms))
    else:  # lengths of the files the filter admits only (below): few, where the postings may be many
        postings = [(*row, None) for row in rows(f"SELECT file_id, term, tf FROM file_terms WHERE term IN ({marks})",
                                                 list(terms))]
    if not postings:
        return []
    n_files, total = catalog_statistics(rows)
    average = max(total / max(n_files, 1), 1e-9)
    n_files = max(n_files, 1)
    df = Counter(term for _, term, _, _ in postings)
    by_file: dict[int, dict[str, int]] = {}
    lengths: dict[int, float] = {}
    for file_id, term, tf, length in postings:
        if among is None or file_id in among:
            by_file.setdefault(int(file_id), {})[term] = int(tf)
            if length is not None:
                lengths[int(file_id)] = float(length)
    ids = sorted(set(by_file) - set(lengths))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        lengths.update({int(f): float(n) for f, n in rows(
            f"SELECT file_id, SUM(tf) FROM file_terms WHERE file_id IN ({','.join('?' * len(chunk))}) GROUP BY file_id",
            chunk)})
    hits = []
    for file_id, found in by_file.items():
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths.get(file_id, average) / average)
        score = sum(math.log(1 + (n_files - df[t] + 0.5) / (df[t] + 0.5)) * tf * (BM25_K1 + 1) / (tf + norm)
                    for t, tf in found.items())
        hits.append(KeywordHit(file_id, score, tuple(t for t in terms if t in found)))
    return sorted(hits, key=lambda h: (-h.score, h.file_id))


def fuse(rankings: Sequence[Sequence[int]], k: int = 60,
         scores: Sequence[Sequence[float] | None] | None = None) -> list[tuple[int, float]]:
    """Reciprocal rank fusion (Cormack, Clarke and Buettcher 2009) of best-first id lists: each id scores
    the sum of 1 / (k + rank) over the lists that hold it; best first, ties by first appearance.

    `scores[i]`, where given, are list i's scores (best first): ids with equal scores share the rank of the
    first of them (competition ranking), so a tie in one list leaves their order to the other lists. A
    library whose files all say "organ" in their names must not have the sound's ranking of them
    reshuffled by the order the tie happened to come in.
    """
    fused: dict[int, float] = {}
    for i, ranking in enumerate(rankings):
        list_scores = scores[i] if scores is not None else None
        rank = 0
        for position, item in enumerate(ranking, 1):
            if list_scores is None or position == 1 or list_scores[position - 1] != list_scores[position - 2]:
                rank = position
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(dict.fromkeys(i for r in rankings for i in r))}
    return sorted(fused.items(), key=lambda kv: (-kv[1], order[kv[0]]))


# -- consistency ------------------------------------------------------------------------------------
def inconsistent_files(session, block: int = 20_000) -> list[int]:  # type: ignore[no-untyped-def]
    """Ids of files whose stored terms differ from those of their path and tags (`indexer verify`), and of
    terms stored for files that do not exist.

    Files are read `block` at a time in id order, with the tags and terms of their id range (both tables'
    keys start with the file id): memory stays bounded at any catalog size, and Core rows, not ORM objects,
    keep 166k files (10M windows) to seconds.
    """
    from sqlalchemy import text

    connection = session.connection()
    bad: list[int] = []
    last = 0
    while True:
        files = connection.execute(text("SELECT id, path FROM files WHERE id > :last ORDER BY id LIMIT :n"),
                                   {"last": last, "n": block}).all()
        high = files[-1][0] if files else None
        bounds = {"low": last, "high": high} if files else {"low": last}
        within = "file_id > :low" + (" AND file_id <= :high" if files else "")
        tags: dict[int, dict[str, str]] = {}
        for file_id, key, value in connection.execute(text(f"SELECT file_id, key, value FROM file_tags WHERE {within}"),
                                                      bounds):
            tags.setdefault(file_id, {})[key] = value
        stored: dict[int, dict[str, int]] = {}
        for file_id, term, tf in connection.execute(text(f"SELECT file_id, term, tf FROM file_terms WHERE {within}"),
                                                    bounds):
            stored.setdefault(file_id, {})[term] = tf
        bad.extend(file_id for file_id, path in files
                   if stored.pop(file_id, {}) != document_terms(path, tags.get(file_id, {})))
        bad.extend(stored)  # what is left in `stored` belongs to no file
        if not files:
            return sorted(bad)
        last = high


def repair_terms(session, file_ids: Sequence[int]) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the terms of `file_ids` from their paths and tags (terms of files that are gone: dropped)."""
    from sqlalchemy import delete, select

    from db.schema import FileRow, FileTagRow, FileTermRow

    ids = list(file_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        tags: dict[int, dict[str, str]] = {}
        for file_id, key, value in session.execute(select(FileTagRow.file_id, FileTagRow.key, FileTagRow.value)
                                                   .where(FileTagRow.file_id.in_(chunk))):
            tags.setdefault(file_id, {})[key] = value
        files = list(session.execute(select(FileRow.id, FileRow.path).where(FileRow.id.in_(chunk))))
        session.execute(delete(FileTermRow).where(FileTermRow.file_id.in_(chunk)))
        stage_terms(session, [(file_id, path, tags.get(file_id)) for file_id, path in files], new=True)
