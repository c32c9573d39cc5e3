"""`indexer`: build and inspect indexes. Thin: parse options, call the library, print."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from indexer.encoders import AUTO_MODEL, DEFAULT_MODEL, MODELS
from indexer.encoders.precision import PRECISIONS
from indexer.exit_status import EXIT_FAILURE, EXIT_PARTIAL, one_line, quiet_stdout, translate
from indexer.limits import DEFAULT_MAX_FILE_SECONDS


def default_index() -> str:
    return os.environ.get("RESOUND_INDEX", "resound_index")


def index_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--index",
        "index_path",
        type=click.Path(file_okay=False, path_type=Path),
        default=default_index,
        show_default="$RESOUND_INDEX or ./resound_index",
        help="Index directory.",
    )(f)


def db_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--db", "db_url", default=None, envvar="RESOUND_DB", help="Catalog database URL (default: SQLite in the index)."
    )(f)


class FiniteRange(click.FloatRange):
    """click.FloatRange that refuses nan and infinities too (which compare false with any bound, and would
    pass one): a usage error naming the option."""

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class ByteSize(click.ParamType):
    """A memory size such as 1.5GiB, 800M or 2G (K/M/G/T in 1024s), as bytes; a usage error otherwise."""

    name = "size"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        from indexer.store import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


MAX_MEMORY_HELP = ("Memory the searched index may take (e.g. 1.5GiB, 800M): `--index-type auto` picks the most exact "
                   "type that fits (IVF flat, SQ8, PQ re-ranked from disk) and records why. Default: a quarter of RAM.")


class LibraryDefault(click.Option):
    """An option left None on the command line, whose help shows the library's default value.

    `default_of` names it as "module:Name" (a constant) or "module:Class.field" (a dataclass field's
    default); it is read only when help is printed, so the command line does not import the module.
    """

    def __init__(self, *args: Any, default_of: str, **kwargs: Any):
        self.default_of = default_of
        super().__init__(*args, default=None, **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        import dataclasses
        import importlib

        module, _, name = self.default_of.partition(":")
        owner, _, field = name.partition(".")
        value = getattr(importlib.import_module(module), owner)
        if field:
            value = next(f.default for f in dataclasses.fields(value) if f.name == field)
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
        # Shown as the value itself; the command line still passes None (the library applies its default).
        self.default, self.show_default = value, True
        try:
            return super().get_help_record(ctx)
        finally:
            self.default = None


class ResoundGroup(click.Group):
    """Turns the library's domain errors into one-line click errors, and anything unexpected into one line
    naming the file its traceback went to (indexer/exit_status.py)."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # the reader went away (`| head`): nothing more can be said to it
            quiet_stdout()
            raise click.exceptions.Exit(EXIT_FAILURE) from None
        except Exception as e:
            command = " ".join([ctx.command_path, *map(str, sys.argv[1:])])
            raise translate(e, command) from e


@click.group(cls=ResoundGroup)
def main() -> None:
    """Index folders of audio and video for semantic search."""


def print_model_hint(hint: str | None) -> None:
    """The one line `--model auto` has for the user when it fell back to the starter model."""
    if hint:
        click.echo(f"note: {hint}", err=True)


@main.command(short_help="Index the media files under CORPUS.")
@click.argument("corpus", type=click.Path(path_type=Path))
@index_option
@click.option("--model", default=AUTO_MODEL, show_default=True,
              help=f"Model name ({', '.join(MODELS)}), checkpoint path, or auto: an existing index's own model, "
                   f"else the best LAION-CLAP checkpoint already on disk, else {DEFAULT_MODEL} (never downloads).")
@click.option("--vision-model", default=None,
              help="CLIP model for video frames (ARCH/TAG, e.g. ViT-B-32/laion2b_s34b_b79k, or ARCH:/path): audio-visual index.")
@click.option("--audio-weight", default=1.0, show_default=True, type=FiniteRange(min=0), help="Audio part's weight (audio-visual).")
@click.option("--visual-weight", default=1.0, show_default=True, type=FiniteRange(min=0), help="Visual part's weight (audio-visual).")
@click.option("--frames", "frames_per_window", default=1, show_default=True, type=click.IntRange(1),
              help="Frames per window: 1 is the middle frame, k averages k evenly spaced frames.")
@click.option("--index-type", default="auto", show_default=True,
              help="FAISS factory string (IDMap2,Flat / IVF4096,Flat / IVF4096,SQ8 / OPQ64,IVF4096,PQ64 / "
                   "IDMap2,HNSW32,Flat), or auto: exact below 100k windows, beyond the most exact IVF type that fits --max-memory.")
@click.option("--target-recall", default=0.95, show_default=True, type=FiniteRange(0, 1),
              help="recall@10 against exact search that nprobe/efSearch are tuned to.")
@click.option("--max-memory", type=ByteSize(), default=None, help=MAX_MEMORY_HELP)
@click.option("--batch-size", default=None, type=click.IntRange(1),
              help="Windows per forward pass (default: the model's fastest, measured; 8 for the starter on CPU).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Inference precision; auto: bf16 (fp16) on GPUs, bf16 on CPUs with native bf16 where the model's "
                   "bf16 vectors keep cosine >= 0.999 to fp32, else fp32.")
@click.option("--hop", "hop_seconds", type=FiniteRange(min=0.01), default=None, help="Seconds between window starts (default: the window length).")
@click.option("--device", default="auto", show_default=True,
              help="cpu, cuda, cuda:N or auto (a GPU if there is one): where the model runs and FAISS trains.")
@click.option("--checkpoint-seconds", default=300.0, show_default=True, type=FiniteRange(min=0),
              help="Commit finished files at least this often (0: after every file).")
@click.option("--max-file-seconds", default=DEFAULT_MAX_FILE_SECONDS, show_default=True, type=FiniteRange(min=0.1),
              help="A file whose audio goes on longer fails as too long (decoding stops there, whatever its header says).")
@db_option
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Decode and embed on a Ray cluster: `auto` (the running one), an address, or none (a local one). "
                   "Corpus and index must be on storage every node sees.")
@click.option("--ray-actors", default=1, show_default=True, type=click.IntRange(1), help="Encoder actors (--ray).")
@click.option("--ray-gpus-per-actor", type=FiniteRange(min=0), default=None,
              help="GPUs per encoder actor (--ray; default: 1 where the cluster has GPUs, else 0).")
@click.option("--ray-block-files", default=16, show_default=True, type=click.IntRange(1),
              help="Files per block, one shard each (--ray): a block's decoded audio is in memory at once.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--verbose", is_flag=True, help="Also print each decoder's own message for files that failed.")
def build(corpus: Path, index_path: Path, model: str, vision_model: str | None, audio_weight: float,
          visual_weight: float, frames_per_window: int, index_type: str, target_recall: float, max_memory: int | None,
          batch_size: int | None,
          precision: str,
          hop_seconds: float | None, device: str, checkpoint_seconds: float, max_file_seconds: float, db_url: str | None,
          ray_address: str | None, ray_actors: int, ray_gpus_per_actor: float | None, ray_block_files: int,
          quiet: bool, verbose: bool) -> None:
    """Index the media files under CORPUS (re-runs skip unchanged files)."""
    from tqdm import tqdm

    from indexer.build import BuildOptions, build_index

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="file", desc="indexing", file=sys.stderr)
        bar.update(done - bar.n)

    from indexer.build import check_index_type, choose_build_model

    check_index_type(index_type, None)  # a typo costs a second, not an embedded corpus
    choice = choose_build_model(index_path, model, db_url)
    options = BuildOptions(model=choice.model, vision_model=vision_model, audio_weight=audio_weight, visual_weight=visual_weight,
                           frames_per_window=frames_per_window, batch_size=batch_size, precision=precision,
                           hop_seconds=hop_seconds,
                           device=device, db_url=db_url, index_type=index_type, target_recall=target_recall,
                           max_memory=max_memory, checkpoint_seconds=checkpoint_seconds, max_file_seconds=max_file_seconds)
    try:
        if ray_address is None:
            report = build_index(corpus, index_path, options, progress=progress)
        else:
            from indexer.distributed import RayOptions, build_index_on_ray

            ray_options = RayOptions(address=None if ray_address == "local" else ray_address, actors=ray_actors,
                                     gpus_per_actor=ray_gpus_per_actor, block_files=ray_block_files)
            report = build_index_on_ray(corpus, index_path, options, ray_options, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    # Files that failed before and are unchanged are not tried again, but they still fail: the summary
    # counts them, as the exit status (3) does.
    still = f" ({report.still_failed} still failing, not retried)" if report.still_failed else ""
    click.echo(
        f"{report.index}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.failed)} failed{still} "
        f"({report.segments_added} segments added, {report.segments_removed} removed) in {report.seconds:.1f} s"
    )
    if ray_address is not None and (report.blocks_embedded or report.files_reused):
        click.echo(f"ray: {report.blocks_embedded} blocks embedded ({report.windows_embedded} windows) in "
                   f"{report.embed_seconds:.1f} s; {report.files_reused} files from shards of an interrupted run")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    _note_recall_short_of_target(index_path, db_url)
    print_model_hint(choice.hint)
    for failure in report.failed:
        detail = f" [{failure.detail}]" if verbose and failure.detail and failure.detail != failure.reason else ""
        click.echo(one_line(f"failed: {failure.path}: {failure.reason}{detail}"), err=True)
    if report.still_failed:
        click.echo(f"{report.still_failed} unchanged files failed before and were not retried "
                   f"(indexer info --failed)", err=True)
    if report.failed or report.still_failed:
        sys.exit(EXIT_PARTIAL)  # files that still fail keep the run partial, retried or not


@main.command(short_help="Keep an index in step with a growing folder.")
@click.argument("corpus", type=click.Path(path_type=Path))
@index_option
@click.option("--model", default=None, help=f"Model of a new index (default {AUTO_MODEL}); an existing index keeps its own.")
@click.option("--hop", "hop_seconds", type=FiniteRange(min=0.01), default=None, help="Seconds between window starts (new index).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@db_option
@click.option("--poll", is_flag=True, help="Look for changes by walking the corpus every --interval (file systems "
                                           "without change events: NFS, SMB, FUSE) instead of file events.")
@click.option("--interval", default=1.0, show_default=True, type=FiniteRange(min=0.05),
              help="Seconds between looks for settled changes (and between walks with --poll).")
@click.option("--settle", "settle_seconds", default=2.0, show_default=True, type=FiniteRange(min=0),
              help="Seconds a file's size and mtime must hold before it is read (files being written wait).")
@click.option("--quiet", is_flag=True, help="No line per generation.")
def watch(corpus: Path, index_path: Path, model: str | None, hop_seconds: float | None, device: str, db_url: str | None,
          poll: bool, interval: float, settle_seconds: float, quiet: bool) -> None:
    """Keep the index in step with CORPUS while running: new, changed, moved and deleted files are applied
    in small generations that a running `search serve` picks up. Stop with Ctrl-C (or SIGTERM)."""
    import signal
    import threading
    from dataclasses import replace

    from indexer.watch import CorpusWatcher, WatchOptions

    def show(report) -> None:  # type: ignore[no-untyped-def]
        if quiet or not report.changed:
            return
        click.echo(f"{report.added} added, {report.updated} updated, {report.moved} moved, {report.removed} removed, "
                   f"{len(report.failed)} failed ({report.segments_added} segments added, "
                   f"{report.segments_removed} removed)", err=True)
        for failure in report.failed:
            click.echo(one_line(f"failed: {failure.path}: {failure.reason}"), err=True)

    from indexer.build import BuildOptions, choose_build_model
    from indexer.index import Index

    choice = choose_build_model(index_path, model or AUTO_MODEL, db_url)
    print_model_hint(choice.hint)
    build_options = BuildOptions(model=choice.model, hop_seconds=hop_seconds, device=device, db_url=db_url)
    if model is None and (index_path / "manifest.json").is_file():
        existing = Index(index_path, db_url=db_url)
        try:
            provenance = existing.provenance()
        finally:
            existing.close()
        if provenance is not None:  # the index's own model, windows and mixing
            build_options = replace(BuildOptions.from_provenance(provenance, db_url), device=device)
    options = WatchOptions(build=build_options, poll=poll, interval=interval, settle_seconds=settle_seconds)
    stop = threading.Event()
    # A signal only asks the loop to stop: a generation being applied is finished first.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    watcher = CorpusWatcher(corpus, index_path, options, on_generation=show)
    try:
        report = watcher.start()
        click.echo(f"{watcher.index.path}: caught up with {watcher.corpus} ({report.added} added, {report.updated} "
                   f"updated, {report.moved} moved, {report.removed} removed, {report.unchanged} unchanged); watching "
                   f"{'by polling' if poll else 'for file events'}", err=True)
        watcher.run(stop)
    finally:
        watcher.close()
    click.echo("stopped", err=True)


@main.command(short_help="Check that vectors and catalog rows match.")
@index_option
@db_option
@click.option("--repair", is_flag=True, help="Drop vectors and rows that do not map, then re-index the files affected; "
                                           "clear leftover temporary files and failure rows of files that are gone.")
@click.option("--drop-unreachable", is_flag=True,
              help="With --repair: drop files whose vectors are lost and whose media is out of reach here "
                   "(without it the repair refuses and changes nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify(index_path: Path, db_url: str | None, repair: bool, drop_unreachable: bool, as_json: bool) -> None:
    """Check that every vector maps to exactly one catalog row and back, and provenance agrees."""
    from indexer.verify import repair_index, verify_index

    if drop_unreachable and not repair:
        raise click.UsageError("--drop-unreachable goes with --repair")
    report = repair_index(index_path, db_url, drop_unreachable=drop_unreachable) if repair \
        else verify_index(index_path, db_url)
    if as_json:
        click.echo(json.dumps({"index": str(report.index), "generation": report.generation, "ok": report.ok,
                               "counts": report.counts, "problems": report.problems,
                               "stale_files": report.stale_files, "temporary_files": report.temporary_files,
                               "unreachable_media": report.unreachable_media,
                               "vanished_failures": [str(Path(f.corpus_root) / f.path) for f in report.vanished_failures]},
                              indent=2))
    else:
        click.echo(f"{report.index}: generation {report.generation}, "
                   + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.counts.items()))
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        if report.stale_files:
            click.echo(f"stale files: {', '.join(report.stale_files)}")
        if report.temporary_files:
            click.echo(f"leftover temporary files: {', '.join(report.temporary_files)}")
        if report.unreachable_media:
            click.echo(f"{len(report.unreachable_media)} indexed files out of reach here (kept and searchable), "
                       f"e.g. {report.unreachable_media[0]}")
        for failure in report.vanished_failures:
            click.echo(one_line(f"failure row of a file that is gone: {Path(failure.corpus_root) / failure.path}"))
        if not report.ok:
            missing = len(report.files_missing_vectors)
            click.echo((f"repaired: {missing} files whose vectors were missing were embedded again"
                        + (" or, out of reach here, dropped" if drop_unreachable else "") if missing else "repaired")
                       if repair else "inconsistent: run `indexer verify --repair`")
        elif report.leftovers:
            click.echo("consistent; leftovers cleared" if repair
                       else "consistent; `indexer verify --repair` clears the leftovers above")
        else:
            click.echo("consistent")
    if not report.ok and not repair:
        sys.exit(1)


@main.command(short_help="Retrain and retune the segment index.")
@index_option
@db_option
@click.option("--index-type", default=None, help="FAISS factory string, or auto (by size). Default: the type the "
              "index was given at build or import time, else auto within the budget it was given.")
@click.option("--target-recall", default=0.95, show_default=True, type=FiniteRange(0, 1),
              help="recall@10 against exact search that nprobe/efSearch are tuned to.")
@click.option("--max-memory", type=ByteSize(), default=None, help=MAX_MEMORY_HELP)
def compact(index_path: Path, db_url: str | None, index_type: str | None, target_recall: float,
            max_memory: int | None) -> None:
    """Rewrite the segment index: retrain it on the current vectors and retune its search parameters."""
    from indexer.compact import compact_index

    report = compact_index(index_path, index_type, target_recall, db_url, max_memory=max_memory)
    click.echo(f"{index_path}: {report.vectors} vectors, {report.before} -> {report.after}, "
               f"search parameters {report.search_params}")
    _note_recall_short_of_target(index_path, db_url)


@main.command("import", short_help="Add precomputed vectors (parquet/npz exports) to an index.")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@db_option
@click.option("--map-prefix", multiple=True, metavar="OLD=NEW",
              help="Rewrite file paths that start with OLD to start with NEW (repeatable).")
@click.option("--index-type", default="auto", show_default=True, help="FAISS factory string, or auto (by size).")
@click.option("--target-recall", default=0.95, show_default=True, type=click.FloatRange(0, 1),
              help="recall@10 against exact search that nprobe/efSearch are tuned to.")
@click.option("--max-memory", type=ByteSize(), default=None, help=MAX_MEMORY_HELP)
@click.option("--corpus", "corpus_root", default=None, metavar="ROOT",
              help="The corpus folder the files lie under (after --map-prefix): kept as one corpus with paths "
                   "relative to it, as `indexer build` records them, so --under and --glob work as on the original. "
                   "Default: each file's own folder.")
def import_(sources: tuple[Path, ...], index_path: Path, db_url: str | None, map_prefix: tuple[str, ...],
            index_type: str, target_recall: float, max_memory: int | None, corpus_root: str | None) -> None:
    """Add the vectors of SOURCES (files written by `indexer export`, or folders of them) with their files,
    windows, tags and provenance; creates the index from their provenance when there is none."""
    from indexer.import_vectors import ImportOptions, import_vectors, parse_map_prefix

    options = ImportOptions(parse_map_prefix(map_prefix), index_type, target_recall, db_url, max_memory,
                            corpus=os.path.abspath(corpus_root) if corpus_root else None)
    report = import_vectors(sources, index_path, options)
    click.echo(f"{report.index}: {report.files} files ({report.replaced} replaced), {report.windows} windows "
               f"from {len(report.sources)} exports{' (new index)' if report.created else ''} "
               f"in {report.seconds:.1f} s")
    _note_recall_short_of_target(report.index, db_url)


def _note_recall_short_of_target(index_path: Path, db_url: str | None) -> None:
    """Say so on stderr when the index's tuned search stays below its target recall."""
    from indexer.index import Index
    from indexer.tuning import short_of_target

    index = Index(index_path, db_url=db_url)
    try:
        provenance = index.provenance()
    finally:
        index.close()
    note = short_of_target(provenance.faiss_factory, provenance.search_params or {}) if provenance else None
    if note:
        click.echo(f"note: {note}", err=True)


@main.command(short_help="Write the vectors with file, window and tag columns.")
@index_option
@db_option
@click.option("--format", "fmt", type=click.Choice(["parquet", "npz"]), default=None,
              help="File format (default: from the suffix of --out).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write: one row per segment (file, window, tags, vector).")
def export(index_path: Path, db_url: str | None, fmt: str | None, out: Path) -> None:
    """Write the segment vectors with their file, window and tag columns (parquet or npz)."""
    from indexer.export import export_index

    report = export_index(index_path, out, fmt, db_url)
    click.echo(f"{report.path}: {report.rows} segments, {report.dim}-d vectors ({report.format})")


@main.command("demo-corpus", short_help="Render a labelled demo corpus into OUT.")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=300, show_default=True, type=click.IntRange(1), help="Number of clips.")
@click.option("--seed", cls=LibraryDefault, default_of="indexer.demo.generate:DEMO_SEED", type=int,
              help="Renders differ by seed; the default is one the starter model never trained on.")
@click.option("--sample-set", default="fluidr3", show_default=True,
              help="Samples that play the instruments: fluidr3, timgm6mb, csound, opl3, musescore, freepats.")
@click.option("--duration", "duration_s", default=4.0, show_default=True, type=FiniteRange(min=1.0), help="Seconds per clip.")
@click.option("--class", "classes", multiple=True, help="Only these classes (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo_corpus(out: Path, size: int, seed: int | None, sample_set: str, duration_s: float, classes: tuple[str, ...], quiet: bool) -> None:
    """Render a labelled demo corpus from the Debian sound packages into OUT."""
    from tqdm import tqdm

    from indexer.demo import DEMO_SEED, generate_demo_corpus

    seed = DEMO_SEED if seed is None else seed
    with tqdm(total=size, unit="clip", desc="rendering", file=sys.stderr, disable=quiet) as bar:
        clips = generate_demo_corpus(
            out, size=size, seed=seed, sample_set=sample_set, classes=classes or None, duration_s=duration_s,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    labels = sorted({c.label for c in clips})
    click.echo(f"{out}: {len(clips)} clips of {len(labels)} classes ({sample_set}, seed {seed}); "
               f"labels and captions in {out / 'metadata.csv'} and {out / 'captions.jsonl'}")


@main.command(short_help="Train a starter model on rendered corpora.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weights file to write (.safetensors).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Metrics JSON to write.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where rendered corpora and log-mels are cached.")
@click.option("--seed", type=int, cls=LibraryDefault, default_of="indexer.training.train:TrainConfig.seed",
              help="Seed of the renders, initialisation and batches (sample set i renders with seed + i).")
@click.option("--train-sets", cls=LibraryDefault, default_of="indexer.training.train:TrainConfig.train_sample_sets",
              help="Comma-separated sample sets to train on (never freepats).")
@click.option("--clips-per-set", type=click.IntRange(1), cls=LibraryDefault, default_of="indexer.training.train:TrainConfig.clips_per_set",
              help="Clips rendered per sample set.")
@click.option("--epochs", type=click.IntRange(1), cls=LibraryDefault, default_of="indexer.training.train:TrainConfig.epochs",
              help="Passes over the training clips.")
@click.option("--batch-size", type=click.IntRange(2), cls=LibraryDefault, default_of="indexer.training.train:TrainConfig.batch_size",
              help="Clips per step (the contrastive loss contrasts within a batch).")
@click.option("--learning-rate", type=FiniteRange(min=0, min_open=True), cls=LibraryDefault, default_of="indexer.training.train:TrainConfig.learning_rate",
              help="Peak learning rate.")
@click.option("--threads", type=click.IntRange(1), cls=LibraryDefault, default_of="indexer.training.train:TrainConfig.threads",
              help="torch threads; 1 is much faster on a machine other jobs load (threads wait on each other).")
@click.option("--audio-tower", type=click.Choice(["aisfx", "cnn", "aisfx+starter"]), default="aisfx", show_default=True,
              help="aisfx: a head on aiSFX's frozen pretrained tower (the default model, starter-aisfx); cnn: the "
                   "small CNN from scratch (the model `starter`); aisfx+starter: a head on aiSFX's and the "
                   "shipped starter's audio vectors together.")
def train(out_path: Path, metrics_path: Path | None, cache_dir: Path | None, seed: int | None, train_sets: str | None,
          clips_per_set: int | None, epochs: int | None, batch_size: int | None, learning_rate: float | None,
          threads: int | None, audio_tower: str) -> None:
    """Train a starter model on rendered demo corpora and measure it on the held-out sample set."""
    from dataclasses import replace

    from indexer.starter.prompts import PROMPT_STYLES
    from indexer.training.train import TrainConfig, recipe, train_starter

    overrides = {
        "metrics_path": metrics_path, "cache_dir": cache_dir, "seed": seed, "clips_per_set": clips_per_set,
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "threads": threads,
        "train_sample_sets": tuple(train_sets.split(",")) if train_sets else None,
    }
    config = replace(TrainConfig(out_path=out_path), **recipe(audio_tower),
                     **{k: v for k, v in overrides.items() if v is not None})
    result = train_starter(config, log=lambda line: click.echo(line, err=True))
    click.echo(f"{result.weights_path}: epoch {result.best_epoch} saved; held-out zero-shot accuracy "
               + ", ".join(f"{style} {result.validation[style]['accuracy']:.1f}%" for style in PROMPT_STYLES))


@main.command()
@index_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--failed", is_flag=True, help="List the files that could not be indexed.")
def info(index_path: Path, db_url: str | None, as_json: bool, failed: bool) -> None:
    """Show an index's provenance and counts."""
    from indexer.index import Index

    index = Index(index_path, db_url=db_url)
    try:
        provenance = index.provenance()
        counts = index.catalog.counts()
        failures = index.catalog.failures() if failed else []
        data = {
            "index": str(index.path),
            "catalog": index.catalog.display_url,
            "generation": index.generation(),
            "counts": counts,
            "provenance": asdict(provenance) if provenance else None,
        }
        if failed:
            data["failed"] = [{"path": str(Path(f.corpus_root) / f.path), "reason": f.reason} for f in failures]
    finally:
        index.close()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"index       {data['index']}")
    click.echo(f"catalog     {data['catalog']}")
    click.echo(f"generation  {data['generation']}")
    click.echo("counts      " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if provenance:
        for key, value in asdict(provenance).items():
            click.echo(f"{key:<19} {json.dumps(value) if isinstance(value, dict) else value}")
    for f in data.get("failed", []):
        click.echo(one_line(f"failed: {f['path']}: {f['reason']}"))


# -- the model zoo ----------------------------------------------------------------------------------
@main.group("models", short_help="List, fetch, verify and remove models.")
def models_group() -> None:
    """The registered models: which are on disk, fetching, verifying and removing them."""


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


@models_group.command("list", short_help="Every registered model and where it is on disk.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(as_json: bool) -> None:
    """Every registered model: family, dimension, size, licence, and whether (and where) it is on disk."""
    from indexer.encoders.model_store import list_models

    rows = []
    for status in list_models():
        entry = status.entry
        state = "yes" if status.present else ("partial" if status.checkpoint.path is not None else "no")
        rows.append({"name": entry.name, "family": entry.family, "dim": entry.dim, "size_bytes": status.size_bytes,
                     "licence": entry.licence, "on_disk": state,
                     "path": str(status.checkpoint.path) if status.checkpoint.path else None,
                     "missing": [f.label for f in status.missing], "description": entry.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    licence_width = max(len("licence"), *(len(r["licence"]) for r in rows))  # the widest, so columns stay apart
    click.echo(f"{'name':<27}{'family':<12}{'dim':>5}{'size':>10}  {'on disk':<8} {'licence':<{licence_width}}  where")
    for r in rows:
        where = r["path"] or f"indexer models download {r['name']}"
        if r["on_disk"] == "partial":
            where += f" (missing {', '.join(r['missing'])})"
        click.echo(f"{r['name']:<27}{r['family']:<12}{r['dim'] or '?':>5}{_size(r['size_bytes']):>10}  "
                   f"{r['on_disk']:<8} {r['licence']:<{licence_width}}  {where}")


@models_group.command("download", short_help="Fetch a model's checkpoint and tokenizer files.")
@click.argument("name")
def models_download(name: str) -> None:
    """Fetch a model's checkpoint and tokenizer files (resumable), check them against the hub's hashes."""
    from indexer.encoders.model_store import download_model, read_record

    status = download_model(name)
    record = read_record(status.checkpoint.path) if status.checkpoint.path else None
    for item in status.all_files:
        sha = ((record or {}).get("files", {}).get(str(item.ref), {}) or {}).get("sha256", "")
        click.echo(f"{item.label}: {item.path}" + (f" (sha256 {sha[:16]})" if sha else ""))
    if status.record_path is not None and status.record_path.exists():
        click.echo(f"{name}: ready; hashes recorded in {status.record_path}")
    else:
        click.echo(f"{name}: ready (ships with resound)")


@models_group.command("verify", short_help="Recheck a model's files against their hashes.")
@click.argument("name")
def models_verify(name: str) -> None:
    """Recheck a model's files: sha256 against the recorded (or the hub's) hash, tokenizer files readable."""
    from indexer.encoders.model_store import verify_model

    report = verify_model(name)
    for path, sha256 in report.checked:
        click.echo(f"{sha256}  {path}")
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    click.echo(f"{name}: ok" if report.ok else f"{name}: {len(report.problems)} problem(s)")
    if not report.ok:
        sys.exit(1)


@models_group.command("remove", short_help="Delete a model's files from disk.")
@click.argument("name")
def models_remove(name: str) -> None:
    """Delete a model's files from disk (tokenizer files only when no other model on disk needs them)."""
    from indexer.encoders.model_store import remove_model

    removed = remove_model(name)
    for path in removed:
        click.echo(f"removed {path}")
    if not removed:
        click.echo(f"{name}: nothing on disk")


if __name__ == "__main__":
    main()
