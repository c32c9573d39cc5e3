"""The command line's use of a running `search serve` (search/remote.py): the same Hit and FileLabels
objects the in-process path returns, or None to answer in-process. Kept apart from search/cli.py so the
commands only gain a call each."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import click

from indexer.exit_status import one_line
from search import remote


def _served(index_path: Path, db_url: str | None, model: str | None, device: str, verbose: bool,
            ask: Callable[[remote.ServeRecord], Any]) -> Any | None:
    """`ask(record)` answered by a running `search serve` on this index, or None when there is none or it
    cannot answer exactly as in-process would; decided without importing torch."""
    try:
        if device != "auto":
            raise remote.RemoteUnavailable(f"--device {device} asks for this process's own device")
        record = remote.find_server(index_path, db_url, model)
        answer = ask(record)
    except remote.RemoteUnavailable as e:
        if verbose:
            click.echo(one_line(f"note: answering in-process: {e}"), err=True)  # the reason may name a file
        return None
    if verbose:
        click.echo(f"note: answered by search serve at {record.host}:{record.port} (pid {record.pid})", err=True)
    return answer


def _hits(hits: list[dict[str, Any]]) -> list:  # list[Hit]
    import dataclasses

    from search.engine import Hit, Window

    extra = ("windows", "root", "tags", "matched", "keyword_score", "fused_score")
    names = [f.name for f in dataclasses.fields(Hit) if f.name not in extra]
    return [Hit(**{name: h[name] for name in names}, root=h.get("root", ""), tags=h.get("tags") or {},
                matched=tuple(h.get("matched_words") or ()), keyword_score=h.get("keyword_score"),
                fused_score=h.get("fused_score"),
                windows=tuple(Window(w["start"], w["end"], w["score"], w["segment_id"]) for w in h.get("windows", ())))
            for h in hits]


def filter_params(where: Any) -> remote.Params:
    """A parsed SearchFilter as the API's filter parameters (search/service/filter_params.py): `under`
    already absolute, times as epoch seconds, so the server reads exactly the filter this process did."""
    if where is None:
        return []
    params: remote.Params = []
    for name, value in (("under", where.under), ("glob", where.glob), ("min_duration", where.min_duration),
                        ("max_duration", where.max_duration), ("has", where.modality),
                        ("modified_after", where.modified_after), ("modified_before", where.modified_before)):
        if value is not None:
            params.append((name, repr(value) if isinstance(value, float) else str(value)))
    params += [("ext", e) for e in where.extensions]
    params += [("tag", f"{key}={value}") for key, value in where.tags]
    return params


def query_hits(index_path: Path, text: str, k: int, modality: str | None, db_url: str | None, model: str | None,
               device: str, verbose: bool, per_file: bool = True, where: Any = None,
               mode: str = "hybrid") -> tuple[list, list[str]] | None:
    """`search query` answered by the index's running server (list[Hit] and the answer's notes), or None. A query the server
    refuses (400: empty text, a filter it cannot read) is refused here with its words, as in-process would
    (QueryError), without loading a model to find that out again."""

    def ask(record: remote.ServeRecord) -> dict[str, Any]:
        try:
            return remote.query(record, text, k, modality, per_window=not per_file, filters=filter_params(where),
                                mode=mode)
        except remote.ServerRefused as e:
            if e.status == 400:
                from indexer.errors import QueryError

                raise QueryError(e.detail) from e
            raise

    return _answer(_served(index_path, db_url, model, device, verbose, ask))


def _answer(answer: dict[str, Any] | None) -> tuple[list, list[str]] | None:
    """(hits, notes) of an API answer: the notes say what the in-process answer would print (a query file
    left out, a filter that admitted nothing)."""
    return None if answer is None else (_hits(answer["hits"]), list(answer.get("notes") or []))


def similar_hits(index_path: Path, file: Path, k: int, modality: str | None, db_url: str | None, model: str | None,
                 device: str, verbose: bool, per_file: bool = True, where: Any = None,
                 exclude_self: bool = False) -> tuple[list, list[str]] | None:
    """`search similar` answered by the index's running server (list[Hit] and the answer's notes), or None."""
    return _answer(_served(index_path, db_url, model, device, verbose,
                           lambda r: remote.similar(r, file, k, modality, per_window=not per_file,
                                                    filters=filter_params(where), exclude_self=exclude_self)))


def classify_results(index_path: Path, files: list[Path], labels: Any, label_set: str | None, strategy: str,
                     model: str, k: int, verbose: bool) -> list | None:
    """`search classify` (default prompts draw, audio only) answered by a running server on `index_path`
    when it embeds with `model`: (list[FileLabels], list[FileFailure] of the files it refused), or None."""

    def ask(record: remote.ServeRecord) -> list:
        from indexer.encoders import resolve_model
        from search.classify import FileFailure, FileLabels, LabelScore, WindowLabels

        ref = resolve_model(model)
        if (ref.model_id, ref.sha256()) != (record.model_id, record.checkpoint_sha256):
            raise remote.RemoteUnavailable(f"the server embeds with {record.model_id}, not {ref.model_id}")
        if label_set is None and (labels.descriptions or strategy == "reclap"):
            raise remote.RemoteUnavailable("the server takes bare labels (no descriptions, no ReCLAP bank) "
                                           "from a file")

        def scores(items: list[dict[str, Any]]) -> list[LabelScore]:
            return [LabelScore(s["label"], s["probability"], s["similarity"]) for s in items]

        results, failures = [], []
        for f in files:
            try:
                answer = remote.classify(record, f, k, strategy, label_set=label_set, labels=labels.labels)
            except remote.ServerRefused as e:
                if e.status not in (400, 413):
                    raise
                # The server names the upload by its file name; the failure is listed under the whole path.
                reason = _file_reason(e.detail, f.name)
                failures.append(FileFailure(str(f), reason))
                continue
            timeline = [WindowLabels(w["start"], w["end"], scores(w["labels"])) for w in answer["timeline"]]
            results.append(FileLabels(str(f), scores(answer["labels"]), timeline))
        return results, failures

    return _served(index_path, None, None, "auto", verbose, ask)


def _file_reason(detail: str, name: str) -> str:
    """The server's refusal of an uploaded file in the in-process words ("empty file", the decoder's
    reason), without the upload's own framing."""
    if detail == "the uploaded clip is empty":
        return "empty file"
    for prefix in (f"the uploaded clip {name} cannot be decoded: ", f"{name}: "):
        if detail.startswith(prefix):
            return detail[len(prefix):]
    return detail


def announced(app: Any, index_path: Path, host: str, port: int, db_url: str | None,
              config: Any) -> AbstractContextManager[Callable[[], None] | None]:
    """For `search serve`: announce the server in <index>/serve.json once it listens (loopback only), and
    make it echo the announcement's token; yields run_server's `on_started`."""
    from search.service.config import is_loopback

    if not is_loopback(host):
        return contextlib.nullcontext(None)
    engine = app.state.service.engine
    token = remote.new_token()
    app.add_middleware(remote.TokenEchoMiddleware, token=token)
    record = remote.ServeRecord(
        host=host if host != "localhost" else "127.0.0.1", port=port, pid=os.getpid(), token=token,
        index=str(engine.index.path.resolve()), model_id=engine.provenance.model_id,
        checkpoint_sha256=engine.provenance.checkpoint_sha256, generation=engine.index.generation(),
        db=remote.db_key(db_url), max_upload_bytes=config.max_upload_bytes, max_k=config.max_k)
    return remote.announced(engine.index.path, record)
