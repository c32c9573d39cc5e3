"""`indexer`: build and inspect indexes. Thin: parse options, call the library, print."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import click

from indexer.build import BuildOptions, build_index
from indexer.encoders import DEFAULT_MODEL, MODELS
from indexer.errors import ResoundError
from indexer.index import Index

# Exit status of a build that finished but could not index some files.
EXIT_PARTIAL = 3


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


class ResoundGroup(click.Group):
    """Turns the library's domain errors into one-line click errors."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except ResoundError as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=ResoundGroup)
def main() -> None:
    """Index folders of audio and video for semantic search."""


@main.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@index_option
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help=f"Model name ({', '.join(MODELS)}) or checkpoint path.")
@click.option("--vision-model", default=None,
              help="CLIP model for video frames (ARCH/TAG, e.g. ViT-B-32/laion2b_s34b_b79k, or ARCH:/path): audio-visual index.")
@click.option("--audio-weight", default=1.0, show_default=True, type=click.FloatRange(min=0), help="Audio part's weight (audio-visual).")
@click.option("--visual-weight", default=1.0, show_default=True, type=click.FloatRange(min=0), help="Visual part's weight (audio-visual).")
@click.option("--frames", "frames_per_window", default=1, show_default=True, type=click.IntRange(1),
              help="Frames per window: 1 is the middle frame, k averages k evenly spaced frames.")
@click.option("--index-type", default="auto", show_default=True,
              help="FAISS factory string (IDMap2,Flat / IVF4096,Flat / IVF4096,SQ8 / OPQ64,IVF4096,PQ64 / "
                   "IDMap2,HNSW32,Flat), or auto: exact below 100k windows, IVF beyond.")
@click.option("--target-recall", default=0.95, show_default=True, type=click.FloatRange(0, 1),
              help="recall@10 against exact search that nprobe/efSearch are tuned to.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1), help="Windows per forward pass.")
@click.option("--hop", "hop_seconds", type=click.FloatRange(min=0.01), default=None, help="Seconds between window starts (default: the window length).")
@click.option("--device", default="auto", show_default=True,
              help="cpu, cuda, cuda:N or auto (a GPU if there is one): where the model runs and FAISS trains.")
@click.option("--checkpoint-seconds", default=300.0, show_default=True, type=click.FloatRange(min=0),
              help="Commit finished files at least this often (0: after every file).")
@db_option
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Decode and embed on a Ray cluster: `auto` (the running one), an address, or none (a local one). "
                   "Corpus and index must be on storage every node sees.")
@click.option("--ray-actors", default=1, show_default=True, type=click.IntRange(1), help="Encoder actors (--ray).")
@click.option("--ray-gpus-per-actor", type=click.FloatRange(min=0), default=None,
              help="GPUs per encoder actor (--ray; default: 1 where the cluster has GPUs, else 0).")
@click.option("--ray-block-files", default=16, show_default=True, type=click.IntRange(1),
              help="Files per block, one shard each (--ray): a block's decoded audio is in memory at once.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(corpus: Path, index_path: Path, model: str, vision_model: str | None, audio_weight: float,
          visual_weight: float, frames_per_window: int, index_type: str, target_recall: float, batch_size: int,
          hop_seconds: float | None, device: str, checkpoint_seconds: float, db_url: str | None,
          ray_address: str | None, ray_actors: int, ray_gpus_per_actor: float | None, ray_block_files: int,
          quiet: bool) -> None:
    """Index the media files under CORPUS (re-runs skip unchanged files)."""
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="file", desc="indexing", file=sys.stderr)
        bar.update(done - bar.n)

    options = BuildOptions(model=model, vision_model=vision_model, audio_weight=audio_weight, visual_weight=visual_weight,
                           frames_per_window=frames_per_window, batch_size=batch_size, hop_seconds=hop_seconds,
                           device=device, db_url=db_url, index_type=index_type, target_recall=target_recall,
                           checkpoint_seconds=checkpoint_seconds)
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
    click.echo(
        f"{report.index}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.failed)} failed "
        f"({report.segments_added} segments added, {report.segments_removed} removed) in {report.seconds:.1f} s"
    )
    if ray_address is not None and (report.blocks_embedded or report.files_reused):
        click.echo(f"ray: {report.blocks_embedded} blocks embedded ({report.windows_embedded} windows) in "
                   f"{report.embed_seconds:.1f} s; {report.files_reused} files from shards of an interrupted run")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for failure in report.failed:
        click.echo(f"failed: {failure.path}: {failure.reason}", err=True)
    if report.still_failed:
        click.echo(f"{report.still_failed} unchanged files failed before and were not retried "
                   f"(indexer info --failed)", err=True)
    if report.failed:
        sys.exit(EXIT_PARTIAL)


@main.command()
@index_option
@db_option
@click.option("--repair", is_flag=True, help="Drop vectors and rows that do not map, then re-index the files affected.")
@click.option("--json", "as_json", is_flag=True)
def verify(index_path: Path, db_url: str | None, repair: bool, as_json: bool) -> None:
    """Check that every vector maps to exactly one catalog row and back, and provenance agrees."""
    from indexer.verify import repair_index, verify_index

    report = repair_index(index_path, db_url) if repair else verify_index(index_path, db_url)
    if as_json:
        click.echo(json.dumps({"index": str(report.index), "generation": report.generation, "ok": report.ok,
                               "counts": report.counts, "problems": report.problems,
                               "stale_files": report.stale_files}, indent=2))
    else:
        click.echo(f"{report.index}: generation {report.generation}, "
                   + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.counts.items()))
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        if report.stale_files:
            click.echo(f"stale files: {', '.join(report.stale_files)}")
        click.echo("consistent" if report.ok else ("repaired (files whose vectors were missing were embedded again)"
                                                   if repair else "inconsistent: run `indexer verify --repair`"))
    if not report.ok and not repair:
        sys.exit(1)


@main.command()
@index_option
@db_option
@click.option("--index-type", default="auto", show_default=True, help="FAISS factory string, or auto (by size).")
@click.option("--target-recall", default=0.95, show_default=True, type=click.FloatRange(0, 1))
def compact(index_path: Path, db_url: str | None, index_type: str, target_recall: float) -> None:
    """Rewrite the segment index: retrain it on the current vectors and retune its search parameters."""
    from indexer.compact import compact_index

    report = compact_index(index_path, index_type, target_recall, db_url)
    click.echo(f"{index_path}: {report.vectors} vectors, {report.before} -> {report.after}, "
               f"search parameters {report.search_params}")


@main.command("demo-corpus")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=300, show_default=True, type=click.IntRange(1), help="Number of clips.")
@click.option("--seed", default=None, type=int,
              help="Renders differ by seed. Default: indexer.demo.DEMO_SEED, which the starter model never trained on.")
@click.option("--sample-set", default="fluidr3", show_default=True,
              help="Samples that play the instruments: fluidr3, timgm6mb, csound, opl3, musescore, freepats.")
@click.option("--duration", "duration_s", default=4.0, show_default=True, type=click.FloatRange(min=1.0), help="Seconds per clip.")
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


@main.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weights file to write (.safetensors).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Metrics JSON to write.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where rendered corpora and log-mels are cached.")
@click.option("--seed", type=int, default=None)
@click.option("--train-sets", default=None, help="Comma-separated sample sets to train on (never freepats).")
@click.option("--clips-per-set", type=click.IntRange(1), default=None)
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(2), default=None)
@click.option("--learning-rate", type=float, default=None)
def train(out_path: Path, metrics_path: Path | None, cache_dir: Path | None, seed: int | None, train_sets: str | None,
          clips_per_set: int | None, epochs: int | None, batch_size: int | None, learning_rate: float | None) -> None:
    """Train a starter model on rendered demo corpora and measure it on the held-out sample set."""
    from dataclasses import replace

    from indexer.starter import TrainConfig, train_starter
    from indexer.starter.prompts import PROMPT_STYLES

    overrides = {
        "metrics_path": metrics_path, "cache_dir": cache_dir, "seed": seed, "clips_per_set": clips_per_set,
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "train_sample_sets": tuple(train_sets.split(",")) if train_sets else None,
    }
    config = replace(TrainConfig(out_path=out_path), **{k: v for k, v in overrides.items() if v is not None})
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
        click.echo(f"failed: {f['path']}: {f['reason']}")


if __name__ == "__main__":
    main()
