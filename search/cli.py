"""`search`: query an index by text or by example. Thin: parse options, call Engine, print."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from db.filters import MODALITIES, TAG_KEYS, SearchFilter
from indexer.cli import FiniteRange, LibraryDefault, ResoundGroup, db_option, default_index, index_option
from indexer.encoders import AUTO_MODEL, DEFAULT_MODEL
from indexer.exit_status import one_line
from indexer.text import printable
from search.prompts import DEFAULT_PROMPTS_PER_LABEL, STRATEGIES
from search.validation import one_of

if TYPE_CHECKING:
    from search.engine import Engine, Hit

# Set by read-only commands once their output is written: run() may then end the process without the
# interpreter's teardown (freeing torch's modules costs a cold query about 0.45 s).
_done = {"fast_exit": False}


@click.group(cls=ResoundGroup)
def main() -> None:
    """Search indexed audio by description or by example."""


def run() -> None:
    """The `search` console script: main(), then a fast exit after a successful query or similar."""
    try:
        main()
        code: object = 0
    except SystemExit as e:
        code = e.code
    if _done["fast_exit"] and code in (0, None):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe (`search query ... | head`): nothing more can be written anyway
            pass
        else:
            os._exit(0)
    sys.exit(code)


def _print_hits(hits: list[Hit], as_json: bool, windows: bool, show: bool = False) -> None:
    from search.output import hits_table, ranking_note

    if as_json:
        # As the API sends them: a name's bytes that are not UTF-8 as backslash escapes (indexer/text.py).
        rows = [h.to_json() | {"path": printable(h.path)} for h in hits]
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("\n".join(hits_table(hits, windows, show=show)))
    note = ranking_note(hits)
    if note is not None:
        click.echo(f"note: {note}", err=True)


def _print_notes(engine: Engine) -> None:
    for note in engine.notes:
        click.echo(one_line(f"note: {note}"), err=True)  # a note may name a file (--exclude-self)


# Longest audio `similar` and `classify` decode from a file (the build's own default cap).
DEFAULT_MAX_SECONDS = 24 * 3600.0


def _max_seconds_option(f):  # type: ignore[no-untyped-def]
    return click.option("--max-seconds", default=DEFAULT_MAX_SECONDS, show_default=True, type=FiniteRange(min=0.1),
                        help="Refuse a file whose audio goes on longer (decoding stops there, whatever its header says).")(f)


# The most results one command prints: a million would hold gigabytes of answers (the API allows 100).
MAX_K = 10_000


def _common(f):  # type: ignore[no-untyped-def]
    for option in reversed([
        index_option,
        click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, MAX_K),
                     help="Number of results: files (each with its best window), or windows with --per-window."),
        click.option("--model", default=None, help="Model to embed the query with (default: the index's own)."),
        click.option("--device", default="auto", show_default=True,
                     help="cpu, cuda, cuda:N or auto (a GPU if there is one): where the query is embedded and searched."),
        db_option,
        click.option("--json", "as_json", is_flag=True,
                     help="Print a JSON array of hits (absolute paths, every matching window; see docs/usage.md)."),
        click.option("--windows", "show_windows", is_flag=True,
                     help="Also list each file's other matching windows under it."),
        click.option("--show", "show_tags", is_flag=True,
                     help="Also print each file's tags under it (title ... description, comment, notes)."),
        click.option("--per-window", is_flag=True,
                     help="Rank windows, not files: a file may appear several times."),
        click.option("--modality", type=click.Choice(["audio", "visual", "av"]), default=None,
                     help="Score sound, pictures or both (audio-visual indexes; default: all the index has)."),
    ]):
        f = option(f)
    return f


def _filter_options(f):  # type: ignore[no-untyped-def]
    """Options that narrow a search to what the catalog knows of files; they arrive as `where`."""
    options = [
        click.option("--under", type=click.Path(file_okay=True, path_type=Path), default=None,
                     help="Only files inside this folder (at any depth)."),
        click.option("--glob", default=None,
                     help="Only files whose path matches this shell pattern (relative to the corpus root; "
                          "absolute when it starts with /; * also crosses /), e.g. 'drums/*.wav'."),
        click.option("--ext", "extensions", multiple=True, help="Only files with this extension (repeatable): wav, flac, ..."),
        click.option("--min-duration", type=FiniteRange(min=0), default=None, help="Only files at least this many seconds long."),
        click.option("--max-duration", type=FiniteRange(min=0), default=None, help="Only files at most this many seconds long."),
        click.option("--has", "holding", type=click.Choice(MODALITIES), default=None,
                     help="Only segments holding sound (audio), picture (visual) or both (av)."),
        click.option("--modified-after", default=None, help="Only files modified at or after this time (2024-05-01, 2024-05-01T12:00, or epoch seconds)."),
        click.option("--modified-before", default=None, help="Only files modified before this time."),
        click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
                     help=f"Only files whose container tag matches, case-insensitively (repeatable; keys: {', '.join(TAG_KEYS)})."),
    ]

    def wrapper(**kwargs):  # type: ignore[no-untyped-def]
        kwargs["where"] = SearchFilter.parse(
            under=kwargs.pop("under"), glob=kwargs.pop("glob"), extensions=kwargs.pop("extensions"),
            min_duration=kwargs.pop("min_duration"), max_duration=kwargs.pop("max_duration"),
            modality=kwargs.pop("holding"), modified_after=kwargs.pop("modified_after"),
            modified_before=kwargs.pop("modified_before"), tags=kwargs.pop("tags"))
        return f(**kwargs)

    wrapped = functools.update_wrapper(wrapper, f)
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def _verbose_option(f):  # type: ignore[no-untyped-def]
    return click.option("--verbose", is_flag=True,
                        help="Say whether a running `search serve` on the index answered, or why not.")(f)


@main.command(short_help="Find the files that best match a description.")
@click.argument("text")
@_common
@_filter_options
@_verbose_option
@click.option("--mode", type=click.Choice(["hybrid", "vector", "keyword"]), default="hybrid", show_default=True,
              help="hybrid: the words of file names, folders and tags (title ... description, notes) fused with "
                   "the sound ranking; vector: the sound alone; keyword: the words alone.")
def query(text: str, index_path: Path, k: int, model: str | None, device: str, db_url: str | None, as_json: bool,
          show_windows: bool, show_tags: bool, per_window: bool, modality: str | None, where: SearchFilter,
          verbose: bool, mode: str) -> None:
    """Find the files that best match a text description (the filter options narrow where to look).

    By default a file ranks by its words (name, folders, embedded descriptions) and by its sound together:
    a file named "ZOOM0042.WAV" still ranks by its sound, and --show prints the words that matched."""
    from search.served import query_hits

    # A running server on the index answers, filters included (they go as the API's parameters).
    served = query_hits(index_path, text, k, modality, db_url, model, device, verbose, per_file=not per_window,
                        where=where, mode=mode)
    if served is not None:
        hits, notes = served
        _print_hits(hits, as_json, show_windows, show_tags)
        for note in notes:  # what the server says of its answer, as the in-process run prints it
            click.echo(one_line(f"note: {note}"), err=True)
        return
    from search.engine import Engine

    engine = Engine(index_path, model=model, device=device, db_url=db_url)
    try:
        _print_hits(engine.query(text, k, modality, where, per_file=not per_window, mode=mode), as_json, show_windows,
                    show_tags)
        _print_notes(engine)
    finally:
        engine.close()
    _done["fast_exit"] = True


@main.command(short_help="Find the files that sound most like FILE.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_common
@_filter_options
@_verbose_option
@_max_seconds_option
@click.option("--exclude-self", is_flag=True,
              help="Leave FILE out when it is in the index (same content or path); by default it ranks first.")
def similar(file: Path, index_path: Path, k: int, model: str | None, device: str, db_url: str | None, as_json: bool,
          show_windows: bool, show_tags: bool, per_window: bool, modality: str | None, where: SearchFilter,
            verbose: bool, max_seconds: float, exclude_self: bool) -> None:
    """Find the files that sound (and look) most like FILE (the filter options narrow where to look).

    Files are ranked by the cosine of their file vectors (the mean of their windows) with FILE's; FILE
    itself, when it is in the index, comes first (or is left out with --exclude-self)."""
    from search.served import similar_hits

    # A running server on the index answers, filters included (they go as the API's parameters).
    served = similar_hits(index_path, file, k, modality, db_url, model, device, verbose, per_file=not per_window,
                          where=where, exclude_self=exclude_self)
    if served is not None:
        hits, notes = served
        _print_hits(hits, as_json, show_windows, show_tags)
        for note in notes:  # what the server says of its answer, as the in-process run prints it
            click.echo(one_line(f"note: {note}"), err=True)
        return
    from indexer.media.decode import DecodeLimits
    from search.engine import Engine

    engine = Engine(index_path, model=model, device=device, db_url=db_url)
    try:
        _print_hits(engine.similar(file, k, modality, where, limits=DecodeLimits.for_seconds(max_seconds),
                                   per_file=not per_window, exclude_self=exclude_self), as_json, show_windows, show_tags)
        _print_notes(engine)
    finally:
        engine.close()
    _done["fast_exit"] = True



@main.command(short_help="Groups of files that are the same recording.")
@index_option
@db_option
@click.option("--threshold", type=FiniteRange(-1, 1), default=None,
              help="Aligned window similarity a candidate pair needs (default: chosen by bench/duplicates.py).")
@click.option("--min-match", type=FiniteRange(-1, 1), default=None,
              help="Spectral envelope match that confirms a member whose landmark fingerprints agree but are "
                   "too few to confirm it alone (default: chosen by bench/duplicates.py).")
@click.option("--no-check", "no_check", is_flag=True,
              help="Trust the window vectors alone; reads no file, but groups recordings of one kind too.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto: where FAISS searches.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of groups.")
def duplicates(index_path: Path, db_url: str | None, threshold: float | None, min_match: float | None,
               no_check: bool, device: str, as_json: bool) -> None:
    """Find groups of indexed files that are the same recording (re-encoded, resampled, trimmed, louder)."""
    from search.engine import Engine

    engine = Engine(index_path, device=device, db_url=db_url)
    try:
        groups = engine.duplicates(threshold, min_match, check=not no_check)
        _print_notes(engine)  # e.g. candidate pairs too short to fingerprint, left unchecked
    finally:
        engine.close()
    if as_json:
        # As the query's --json and the API show names: odd bytes as backslash escapes (indexer/text.py).
        click.echo(json.dumps([{**g.to_json(), "members": [{**m.to_json(), "path": printable(m.path)} for m in g.members]}
                               for g in groups], indent=2))
        return
    if not groups:
        click.echo("no duplicates")
    for n, group in enumerate(groups, 1):
        click.echo(f"group {n}: {len(group.members)} files (similarity, match, start in the first file)")
        for m in group.members:
            match = "     -" if m.match is None else f"{m.match:6.3f}"
            click.echo(f"  {m.similarity:6.3f}  {match}  {m.offset:+8.2f} s  {one_line(m.path)}")


@main.command(short_help="Serve the HTTP API and the listening page.")
@index_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The service has no authentication: keep it on loopback unless "
                   "every machine that can reach the address may search and listen to the corpus.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port to listen on.")
@click.option("--model", default=None, help="Model to embed queries with (default: the index's own).")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, cuda:N or auto: where queries are embedded and searched.")
@click.option("--max-upload-mb", default=25.0, show_default=True, type=FiniteRange(min=0.001),
              help="Largest clip accepted for similar/classify (413 beyond).")
@click.option("--max-upload-seconds", default=120.0, show_default=True, type=FiniteRange(min=0.1),
              help="Longest clip accepted for similar/classify (413 beyond).")
@click.option("--label-set", "default_label_set", default="starter", show_default=True,
              help="Label set the page classifies with by default.")
def serve(index_path: Path, db_url: str | None, host: str, port: int, model: str | None, device: str,
          max_upload_mb: float, max_upload_seconds: float, default_label_set: str) -> None:
    """Serve the HTTP API and the listening page (the engine stays loaded)."""
    from search.service import ServiceConfig, create_app, run_server
    from search.service.config import is_loopback
    from search.service.server import BindError, bind_socket

    shown = f"[{host}]" if ":" in host else host
    try:
        sock = bind_socket(host, port)  # before loading anything: a taken port is a second's error, not a minute's
    except BindError as e:
        raise click.ClickException(f"{e}: choose another with --port") from e
    config = ServiceConfig.for_host(host, max_upload_bytes=int(max_upload_mb * 2**20),
                                    max_upload_seconds=max_upload_seconds, default_label_set=default_label_set)
    try:
        app = create_app(index_path, config, db_url=db_url, device=device, model=model)
    except BaseException:
        sock.close()
        raise
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who can reach it can search and download the corpus",
                   err=True)
    click.echo(f"serving {one_line(str(index_path))} on http://{shown}:{port}/ (API schema: /api/openapi.json)", err=True)
    from search.served import announced

    with announced(app, index_path, host, port, db_url, config) as on_started:
        run_server(app, sock, on_started=on_started)


# -- zero-shot classification, audio-to-text, evaluation --------------------------------------------
def _label_options(f):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Label file: one label per line, or CSV with label,description."),
        click.option("--label-set", default=None,
                     help="Built-in label set: esc50, urbansound8k, starter. Default: the model's own classes "
                          "(the starter model's 40), where it has them."),
        click.option("--prompts", "strategy", type=click.Choice(STRATEGIES), default=None,
                     help="How labels become prompts: label, clap (one template), templates (7), reclap (from a "
                          "prompt bank). Default: reclap where a bank covers the labels, else templates."),
        click.option("--bank", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="ReCLAP prompt bank (default: the one shipped for the label set)."),
        click.option("--n-prompts", default=DEFAULT_PROMPTS_PER_LABEL, show_default=True, type=click.IntRange(1),
                     help="ReCLAP prompts drawn per label."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of the prompt draw."),
    ]):
        f = option(f)
    return f


def _model_option(f):  # type: ignore[no-untyped-def]
    return click.option("--model", default=AUTO_MODEL, show_default=True,
                        help=f"Model name or checkpoint path; auto: the best LAION-CLAP checkpoint on disk, else {DEFAULT_MODEL}.")(f)


def _chosen_model(model: str) -> str:
    """Resolve `auto`; its one-line hint (when it fell back to the starter model) follows the output."""
    chosen, hint = _chosen_model_and_hint(model)
    _note_after_output(hint)
    return chosen


def _chosen_model_and_hint(model: str) -> tuple[str, str | None]:
    """(the model `auto` resolves to, the hint to print if that model runs in this process)."""
    from indexer.encoders.auto import choose_model

    choice = choose_model(model)
    return choice.model, choice.hint


def _note_after_output(hint: str | None) -> None:
    from indexer.cli import print_model_hint

    if hint:
        click.get_current_context().call_on_close(lambda: print_model_hint(hint))


def _admitted(where: SearchFilter, path: Path, root: Path) -> bool:
    """Whether `where` admits the media file `path` (found under `root`), judged from the file itself."""
    from indexer.errors import ResoundError
    from indexer.media.decode import VIDEO_EXTENSIONS, probe_audio
    from indexer.media.tags import read_tags

    def duration() -> float:
        probe = probe_audio(path)
        # A container that does not say its length: NaN fails no duration bound, so the file is classified.
        return probe.frames / probe.source_rate if probe.frames is not None else float("nan")

    holding = "audio+visual" if path.suffix.lower() in VIDEO_EXTENSIONS else "audio"
    try:
        return where.admits_file(path, root, holding, duration, lambda: read_tags(path))
    except (OSError, ResoundError):
        return True  # a file that cannot be probed is classified, and its error reported there


def _label_set(labels_file: Path | None, label_set: str | None, family: str | None = None):
    """The labels to use: --labels, --label-set, or else the model family's own label set (if `family`)."""
    from search.prompts import builtin_label_sets, load_label_set, own_label_set

    one_of({"--labels": labels_file, "--label-set": label_set})
    if not labels_file and not label_set:
        own = own_label_set(family) if family else None
        if own is None:
            model = f"model family {family!r} has no label set of its own: " if family else ""
            raise click.UsageError(f"{model}give --labels FILE (one label per line) or --label-set NAME "
                                   f"({', '.join(builtin_label_sets())})")
        return load_label_set(own)
    return load_label_set(labels_file or label_set)


@main.command(short_help="Label audio files zero-shot.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_label_options
@_model_option
@click.option("--vision-model", default=None, help="CLIP model (ARCH/TAG or ARCH:/path): classify video by sound and picture.")
@click.option("--modality", type=click.Choice(["audio", "visual", "av"]), default="av", show_default=True,
              help="With --vision-model: score sound, picture or both.")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, MAX_K), help="Labels per file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the per-window timeline).")
@click.option("--index", "index_path", type=click.Path(file_okay=False, path_type=Path), default=default_index,
              show_default="$RESOUND_INDEX or ./resound_index",
              help="A `search serve` running on this index answers when it has the same model (no index is needed).")
@_filter_options
@_verbose_option
@_max_seconds_option
def classify(paths: tuple[Path, ...], labels_file: Path | None, label_set: str | None, strategy: str | None,
             bank: Path | None, n_prompts: int, seed: int, model: str, vision_model: str | None, modality: str, k: int,
             as_json: bool, index_path: Path, where: SearchFilter, verbose: bool, max_seconds: float) -> None:
    """Label audio files zero-shot; a folder gives a CSV (or JSON) table (the filter options choose which
    of its files)."""
    from indexer.corpus import scan_corpus
    from indexer.encoders import resolve_model
    from search.prompts import PromptBank, choose_strategy

    one_of({"--labels": labels_file, "--label-set": label_set})
    if vision_model is None and modality != "av":
        raise click.UsageError("--modality needs --vision-model")
    model, hint = _chosen_model_and_hint(model)
    labels = _label_set(labels_file, label_set, resolve_model(model).family)
    bank_obj = PromptBank.load(bank) if bank else None
    strategy, note = choose_strategy(labels, strategy, bank_obj)
    if note:
        click.echo(one_line(f"note: {note}"), err=True)
    files: list[Path] = []
    for path in paths:
        found = [f.absolute for f in scan_corpus(path)] if path.is_dir() else [path]
        if not where.is_empty:  # the files themselves are looked at: classify searches no index
            found = [f for f in found if _admitted(where, f, path if path.is_dir() else f.parent)]
        files.extend(found)
    served = None
    if vision_model is None and bank is None and n_prompts == DEFAULT_PROMPTS_PER_LABEL and seed == 0:
        from search.served import classify_results

        # The model's own label set (no --labels, no --label-set) is a built-in set the server has by name.
        served_set = label_set or (labels.name if labels_file is None else None)
        served = classify_results(index_path, files, labels, served_set, strategy, model, k, verbose)
    elif verbose:
        option = "--vision-model" if vision_model else "--bank" if bank else "--n-prompts" if (
            n_prompts != DEFAULT_PROMPTS_PER_LABEL) else "--seed"
        click.echo(f"note: answering in-process: the server draws its default prompts only ({option} given)", err=True)
    if served is not None:
        results, failures = served
    else:
        from indexer.encoders import EncoderSpec
        from indexer.media.decode import DecodeLimits
        from search.classify import ZeroShotClassifier, per_file

        _note_after_output(hint)  # the starter note is the in-process model's, not a server's
        encoder = EncoderSpec(model, vision_model).load()
        classifier = ZeroShotClassifier(encoder, labels, strategy, bank_obj, n_prompts, seed, modality)

        limits = DecodeLimits.for_seconds(max_seconds)
        results, failures = per_file(files, lambda f: classifier.classify_file(f, k, limits=limits))
    table = any(p.is_dir() for p in paths)
    if as_json:
        click.echo(json.dumps([r.to_json() | {"path": printable(r.path)} for r in results], indent=2))
    elif table:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["path"] + [c for i in range(1, k + 1) for c in (f"label_{i}", f"probability_{i}")])
        for r in results:
            writer.writerow([one_line(r.path)] + [v for s in r.top for v in (s.label, f"{s.probability:.4f}")])
    else:
        for r in results:
            click.echo(one_line(r.path))
            for s in r.top:
                click.echo(f"  {s.probability:6.3f}  {'#' * round(20 * s.probability):<20}  {s.label}")
            for w in r.timeline:
                click.echo(f"  {w.start:7.2f}-{w.end:<7.2f} {w.top[0].label} ({w.top[0].probability:.2f})")
    _end_partial(failures, len(files))


def _end_partial(failures: list, total: int) -> None:
    """After a command's results: each file it could not use on stderr, then exit status 3 if any (or 1,
    a failure, when no file could be used at all)."""
    from indexer.exit_status import EXIT_PARTIAL, CommandFailure

    if not failures:
        return
    if len(failures) == total == 1:
        raise CommandFailure(f"{failures[0].path}: {failures[0].reason}")
    for failure in failures:
        click.echo(one_line(f"failed: {failure.path}: {failure.reason}"), err=True)
    if len(failures) == total:
        raise CommandFailure(f"all {total} files failed")
    click.echo(f"{len(failures)} of {total} files failed; the others' results are above", err=True)
    click.get_current_context().exit(EXIT_PARTIAL)


@main.command(short_help="Rank texts by how well they describe FILE.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--texts", "texts_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Captions or labels to rank, one per line.")
@_model_option
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, MAX_K), help="Number of texts to print.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def caption(file: Path, texts_file: Path, model: str, k: int, as_json: bool) -> None:
    """Audio to text: rank the lines of --texts by how well they describe FILE."""
    from indexer.embed import embed_file
    from indexer.encoders import load_encoder
    from search.prompts import read_text_lines
    from search.ranking import rank_texts
    from search.validation import texts_list

    texts = texts_list(read_text_lines(texts_file), str(texts_file))  # before the model loads
    encoder = load_encoder(_chosen_model(model))
    ranked = rank_texts(encoder, embed_file(encoder, file).file_vector, texts, k)
    if as_json:
        click.echo(json.dumps([{"rank": i + 1, "text": t, "score": s} for i, (t, s) in enumerate(ranked)], indent=2))
    else:
        for i, (text, score) in enumerate(ranked):
            click.echo(f"{i + 1:>3}  {score:6.3f}  {text}")


@main.group("eval", short_help="Benchmarks: retrieval and classification.")
def eval_group() -> None:
    """Benchmarks: caption retrieval and zero-shot classification."""


@eval_group.command("retrieval", short_help="Text-audio retrieval R@k, mAP@10, median rank.")
@click.option("--captions", "captions_csv", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="AudioCaps or Clotho captions CSV.")
@click.option("--audio-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of the captioned audio files.")
@_model_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_retrieval(captions_csv: Path, audio_dir: Path, model: str, as_json: bool) -> None:
    """Text-to-audio and audio-to-text R@1/5/10, mAP@10 and median rank."""
    from indexer.encoders import load_encoder
    from search.evaluate import evaluate_retrieval, read_caption_csv

    result = evaluate_retrieval(load_encoder(_chosen_model(model)), read_caption_csv(captions_csv, audio_dir))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['audio']} audio, {result['captions']} captions")
    click.echo(f"{'direction':<15}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'mAP@10':>9}{'medR':>7}")
    for d in ("text_to_audio", "audio_to_text"):
        click.echo(f"{d:<15}" + "".join(f"{result[f'{d}_{m}']:>8.3f}" for m in ("R@1", "R@5", "R@10"))
                   + f"{result[f'{d}_mAP@10']:>9.3f}{result[f'{d}_median_rank']:>7.0f}")


@eval_group.command("classify", short_help="Zero-shot accuracy and confusion matrix.")
@click.option("--meta", "meta_csv", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ESC-50 (meta/esc50.csv) or UrbanSound8K metadata CSV.")
@click.option("--audio-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of the dataset's audio files.")
@click.option("--fold", "folds", multiple=True, type=int, help="Only these folds (repeatable; default all).")
@click.option("--prompts", "strategy", type=click.Choice(STRATEGIES), default="clap", show_default=True,
              help="How labels become prompts (reclap uses the bank shipped for the dataset).")
@click.option("--bank", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ReCLAP prompt bank (default: the one shipped for ESC-50 / UrbanSound8K).")
@click.option("--n-prompts", default=DEFAULT_PROMPTS_PER_LABEL, show_default=True, type=click.IntRange(1),
              help="ReCLAP prompts drawn per label.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the prompt draw.")
@_model_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write results.json and confusion.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_classify(meta_csv: Path, audio_dir: Path, folds: tuple[int, ...], strategy: str, bank: Path | None,
                  n_prompts: int, seed: int, model: str, out: Path | None, as_json: bool) -> None:
    """Zero-shot accuracy, per-class accuracy and confusion matrix."""
    from indexer.encoders import load_encoder
    from search.evaluate import evaluate_classification, read_classification_meta, write_confusion_png
    from search.prompts import PromptBank

    dataset = read_classification_meta(meta_csv, audio_dir, set(folds) or None)
    if bank is None and strategy == "reclap":
        bank_obj = PromptBank.load(dataset.format)  # the bank shipped for ESC-50 / UrbanSound8K
    else:
        bank_obj = PromptBank.load(bank) if bank else None
    model = _chosen_model(model)
    report = evaluate_classification(load_encoder(model), dataset, strategy, bank_obj, n_prompts, seed)
    result = report.as_dict() | {"format": dataset.format, "prompts": strategy, "model": model}
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result | {"label_prompts": report.prompts}, indent=2) + "\n")
        write_confusion_png(report.metrics, out / "confusion.png")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{dataset.format}: {result['clips']} clips, prompts {strategy}: accuracy {result['accuracy']:.4f}, "
               f"mean per-class {result['mean_per_class_accuracy']:.4f}")
    for label, accuracy in sorted(report.metrics.per_class.items(), key=lambda kv: kv[1]):
        click.echo(f"  {accuracy:6.3f}  {label}")



@main.group("prompts")
def prompts_group() -> None:
    """ReCLAP prompt banks."""


@prompts_group.command("generate", short_help="Write a ReCLAP prompt bank with an LLM.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Label file (one per line, or CSV label,description).")
@click.option("--label-set", default=None, help="Built-in label set instead of a file.")
@click.option("--llm-url", required=True, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
@click.option("--llm-model", default=None, help="Model name sent to the endpoint.")
@click.option("--descriptions", default=3, show_default=True, type=click.IntRange(1), help="Stage 1: descriptions per label.")
@click.option("--per-label", "prompts", default=6, show_default=True, type=click.IntRange(1), help="Stage 2: scene prompts per label.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bank JSON to write.")
@click.option("--timeout", default=60.0, show_default=True, type=FiniteRange(min=0, min_open=True), help="Seconds to wait for each LLM request.")
def prompts_generate(labels_file: Path | None, label_set: str | None, llm_url: str, llm_model: str | None,
                     descriptions: int, prompts: int, out: Path, timeout: float) -> None:
    """Write a ReCLAP prompt bank: describe each label's sound, then place it in scenes (two LLM requests)."""
    from tqdm import tqdm

    from search.prompt_generation import DEFAULT_MODEL as DEFAULT_LLM
    from search.prompt_generation import generate_bank

    labels = _label_set(labels_file, label_set)
    with tqdm(total=len(labels.labels), unit="label", file=sys.stderr) as bar:
        bank = generate_bank(labels, llm_url, model=llm_model or DEFAULT_LLM, descriptions=descriptions,
                             prompts=prompts, timeout=timeout, progress=lambda done, total, label: bar.update(done - bar.n))
    bank.save(out)
    click.echo(f"{one_line(str(out))}: {len(bank.entries)} labels, {sum(len(e.prompts) for e in bank.entries.values())} prompts")



@main.group("gzsl", short_help="Generalised zero-shot learning (ClipClap-GZSL).")
def gzsl_group() -> None:
    """Generalised zero-shot learning on audio-visual features (ClipClap-GZSL)."""


@gzsl_group.command("export", short_help="Export labelled file vectors as GZSL features.")
@index_option
@db_option
@click.option("--labels-csv", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with columns path,label.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="features .npz to write.")
def gzsl_export(index_path: Path, db_url: str | None, labels_csv: Path, out: Path) -> None:
    """Export the file vectors of labelled files from an index as GZSL features."""
    from search.gzsl.data import save_features
    from search.gzsl.export import export_index_features

    samples = export_index_features(index_path, labels_csv, db_url)
    save_features(out, samples)
    click.echo(f"{one_line(str(out))}: {len(samples.labels)} samples of {len(set(samples.labels.tolist()))} classes, "
               f"{samples.features.shape[1]}-d")


@gzsl_group.command("embed-labels", short_help="Class embeddings from the text towers.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Label file: one label per line, or CSV with label,description.")
@click.option("--label-set", default=None, help="Built-in label set: esc50, urbansound8k, starter.")
@click.option("--prompts", "strategy", type=click.Choice(STRATEGIES), default="templates", show_default=True,
              help="How labels become prompts.")
@_model_option
@click.option("--vision-model", default=None, help="CLIP model: class embeddings are [CLIP text, CLAP text].")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Class embeddings .npz to write.")
def gzsl_embed_labels(labels_file: Path | None, label_set: str | None, strategy: str, model: str,
                      vision_model: str | None, out: Path) -> None:
    """Class embeddings for GZSL from the text towers (prompt ensembles)."""
    from indexer.encoders import EncoderSpec
    from search.gzsl.data import save_class_embeddings
    from search.gzsl.export import class_embeddings

    classes = class_embeddings(EncoderSpec(_chosen_model(model), vision_model).load(), _label_set(labels_file, label_set), strategy)
    save_class_embeddings(out, classes)
    click.echo(f"{one_line(str(out))}: {len(classes.names)} classes, {classes.embeddings.shape[1]}-d")


@gzsl_group.command("train", short_help="Train the ClipClap-GZSL head.")
@click.option("--features", "features_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Training features .npz (search gzsl export).")
@click.option("--class-embeddings", "classes_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Class embeddings .npz (embed-labels).")
@click.option("--split", "split_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON {seen, unseen, val_unseen} or text with [seen]/[unseen]/[val_unseen] sections.")
@click.option("--val-features", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Validation features .npz (default: held out of --features by class).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Model folder to write.")
@click.option("--epochs", type=click.IntRange(1), cls=LibraryDefault, default_of="search.gzsl.config:GZSLConfig.epochs",
              help="Most epochs (the best on validation is kept).")
@click.option("--batch-size", type=click.IntRange(1), cls=LibraryDefault, default_of="search.gzsl.config:GZSLConfig.batch_size",
              help="Samples per step.")
@click.option("--batches-per-epoch", type=click.IntRange(1), cls=LibraryDefault, default_of="search.gzsl.config:GZSLConfig.batches_per_epoch",
              help="Steps per epoch.")
@click.option("--lr", type=FiniteRange(min=0, min_open=True), cls=LibraryDefault, default_of="search.gzsl.config:GZSLConfig.lr", help="Learning rate.")
@click.option("--seed", type=int, cls=LibraryDefault, default_of="search.gzsl.config:GZSLConfig.seed", help="Seed of initialisation and batches.")
@click.option("--no-ce", is_flag=True, help="Ablation: no cross-entropy term.")
@click.option("--no-rec", is_flag=True, help="Ablation: no reconstruction term.")
@click.option("--no-reg", is_flag=True, help="Ablation: no regression term.")
def gzsl_train(features_path: Path, classes_path: Path, split_path: Path, val_features: Path | None, out: Path,
               epochs: int | None, batch_size: int | None, batches_per_epoch: int | None, lr: float | None,
               seed: int | None, no_ce: bool, no_rec: bool, no_reg: bool) -> None:
    """Train the ClipClap-GZSL head; epochs and calibration are chosen on the validation classes."""
    import dataclasses

    from search.gzsl import GZSLConfig, load_class_embeddings, load_features, load_split, train_gzsl

    classes = load_class_embeddings(classes_path)
    split = load_split(split_path)
    train = load_features(features_path, classes.names)
    validation = load_features(val_features, classes.names) if val_features else None
    overrides = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "batches_per_epoch": batches_per_epoch,
                                   "lr": lr, "seed": seed}.items() if v is not None}
    overrides.update({name: False for flag, name in ((no_ce, "cross_entropy"), (no_rec, "reconstruction"),
                                                      (no_reg, "regression")) if flag})
    model = train_gzsl(train.features, train.labels, classes, split, dataclasses.replace(GZSLConfig(), **overrides),
                       validation=validation)
    model.save(out)
    record = model.record
    click.echo(f"{one_line(str(out))}: best epoch {record.best_epoch + 1}, gamma {model.gamma:.3f}; validation "
               f"HM {100 * record.validation.hm:.1f} (uncalibrated {100 * record.validation_uncalibrated.hm:.1f})")


@gzsl_group.command("eval", short_help="Seen, unseen, harmonic-mean and ZSL accuracy.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model folder (search gzsl train --out).")
@click.option("--features", "features_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Test features .npz.")
@click.option("--gamma", type=FiniteRange(), default=None, help="Calibration constant (default: the tuned one).")
@click.option("--uncalibrated", is_flag=True, help="gamma = 0.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gzsl_eval(model_dir: Path, features_path: Path, gamma: float | None, uncalibrated: bool, as_json: bool) -> None:
    """Seen and unseen accuracy, their harmonic mean, and ZSL accuracy."""
    from search.gzsl import GZSLModel, evaluate_gzsl, load_features

    model = GZSLModel.load(model_dir)
    test = load_features(features_path, model.class_names)
    report = evaluate_gzsl(model, test.features, test.labels, 0.0 if uncalibrated else gamma)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"S {100 * report.seen:.1f}  U {100 * report.unseen:.1f}  HM {100 * report.hm:.1f}  "
                   f"ZSL {100 * report.zsl:.1f}  (gamma {report.gamma:.3f})")


if __name__ == "__main__":
    run()
