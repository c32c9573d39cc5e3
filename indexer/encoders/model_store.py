"""The registered models' files on this machine: where they are, fetching, verifying and removing them.

A model's files are its checkpoint and the files its text side needs (RoBERTa's BPE files for LAION-CLAP).
They are looked up, in order, in a directory override ($RESOUND_ROBERTA_TOKENIZER for the tokenizer), the
model directory (checkpoints.model_dir(): `<dir>/<repo id>/<file>`) and the Hugging Face cache. `download`
fetches what is missing through huggingface_hub (progress bar, resumable) into the HF cache, or into
$RESOUND_MODEL_DIR when that is set; each file's hash is checked against the hub's (the LFS sha256 in the
ETag, or the git blob id of small files) and recorded in `<checkpoint>.sha256.json`, which `verify` rechecks.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.encoders.checkpoints import (
    HubFile,
    cached_hub_file,
    hub_cache_dir,
    hub_offline,
    model_dir,
    model_dir_path,
    sha256_now,
)
from indexer.encoders.registry import MODELS, ModelEntry
from indexer.errors import CheckpointError, CheckpointNotFoundError, UnknownModelError

RECORD_SUFFIX = ".sha256.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: what it is, and where it is on this machine (None: missing)."""

    ref: HubFile | None  # None for files that ship inside resound
    path: Path | None

    @property
    def label(self) -> str:
        return str(self.ref) if self.ref is not None else str(self.path)


@dataclass(frozen=True)
class ModelStatus:
    """A registered model and the state of its files on this machine."""

    entry: ModelEntry
    checkpoint: ModelFile
    files: tuple[ModelFile, ...]

    @property
    def all_files(self) -> tuple[ModelFile, ...]:
        return (self.checkpoint, *self.files)

    @property
    def missing(self) -> list[ModelFile]:
        return [f for f in self.all_files if f.path is None]

    @property
    def present(self) -> bool:
        """Every file the model needs is on disk: it loads without the network."""
        return not self.missing

    @property
    def size_bytes(self) -> int | None:
        """The checkpoint's size: on disk when present, else the registry's figure (None if unknown)."""
        if self.checkpoint.path is not None:
            return self.checkpoint.path.stat().st_size
        return self.entry.size_bytes

    @property
    def record_path(self) -> Path | None:
        return record_path(self.checkpoint.path) if self.checkpoint.path is not None else None


@dataclass
class VerifyReport:
    """What `verify_model` checked, and what was wrong."""

    name: str
    checked: list[tuple[Path, str]] = field(default_factory=list)  # (file, sha256)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def registered(name: str) -> ModelEntry:
    """The registry entry of `name`, or UnknownModelError naming the registered ones."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}: registered models are {', '.join(MODELS)}")
    return MODELS[name]


def model_status(name: str) -> ModelStatus:
    """Where each file of a registered model is on this machine (never touches the network)."""
    entry = registered(name)
    if isinstance(entry.checkpoint, HubFile):
        checkpoint = ModelFile(entry.checkpoint, cached_hub_file(entry.checkpoint))
    else:
        checkpoint = ModelFile(None, entry.checkpoint if entry.checkpoint.is_file() else None)
    return ModelStatus(entry, checkpoint, tuple(ModelFile(ref, cached_hub_file(ref)) for ref in entry.files))


def list_models() -> list[ModelStatus]:
    """Every registered model with the state of its files."""
    return [model_status(name) for name in MODELS]


def record_path(checkpoint: Path) -> Path:
    """The JSON beside a checkpoint that records its files' hashes."""
    return checkpoint.with_name(checkpoint.name + RECORD_SUFFIX)


def read_record(checkpoint: Path) -> dict[str, Any] | None:
    try:
        return json.loads(record_path(checkpoint).read_text())
    except (OSError, ValueError):
        return None


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: the hub's ETag for files not stored with LFS."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_one(ref: HubFile) -> str:
    return (f"{ref} (https://huggingface.co/{ref.repo_id}/resolve/main/{ref.filename}) to "
            f"{model_dir_path(ref, model_dir())}")


def copy_instructions(status: ModelStatus) -> str:
    """Which files to copy where for the model to load offline (one line)."""
    return "copy " + ", and ".join(_copy_one(f.ref) for f in status.missing if f.ref is not None)


# -- download ---------------------------------------------------------------------------------------
def download_model(name: str, convert: bool = True) -> ModelStatus:
    """Fetch every missing file of a registered model, check each against the hub's hash, record them.

    Files already on disk are kept (and hashed into the record). Raises CheckpointNotFoundError when
    offline or unreachable (the message says which file to copy where), CheckpointError on a hash mismatch
    (the bad file is deleted). With `convert`, also writes the checkpoint's safetensors copy.
    """
    status = model_status(name)
    if status.entry.family == "starter" or not isinstance(status.entry.checkpoint, HubFile):
        return status  # ships inside resound
    if status.missing and hub_offline():
        raise CheckpointNotFoundError(f"cannot download {name}: HF_HUB_OFFLINE is set; {copy_instructions(status)}")
    fetched: dict[str, dict[str, Any]] = {}
    for item in status.missing:
        assert item.ref is not None
        fetched[str(item.ref)] = _download_file(item.ref, status)
    status = model_status(name)
    record = _record(status, fetched)
    assert status.checkpoint.path is not None
    _write_json(record_path(status.checkpoint.path), record)
    if convert and status.entry.family == "laion_clap":
        from indexer.encoders.converted import ensure_converted

        ensure_converted(status.checkpoint.path)
    return status


def _download_file(ref: HubFile, status: ModelStatus) -> dict[str, Any]:
    """Download one file; returns what the hub said about it, after checking the bytes against it."""
    import huggingface_hub

    try:
        meta = huggingface_hub.get_hf_file_metadata(
            huggingface_hub.hf_hub_url(ref.repo_id, ref.filename, revision=ref.revision), timeout=10)
        target = os.environ.get("RESOUND_MODEL_DIR")
        if target:
            local = huggingface_hub.hf_hub_download(ref.repo_id, ref.filename, revision=meta.commit_hash,
                                                    local_dir=Path(target).expanduser() / ref.repo_id)
        else:
            local = huggingface_hub.hf_hub_download(ref.repo_id, ref.filename, revision=meta.commit_hash,
                                                    cache_dir=hub_cache_dir())
    except Exception as e:  # no network: requests/httpx/hub errors of many kinds
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointNotFoundError(
            f"cannot download {ref} ({reason}); {copy_instructions(status)}") from e
    path = Path(local)
    etag = (meta.etag or "").strip('"').lower()
    sha256 = sha256_now(path)
    if _SHA256.match(etag):
        expected, actual = etag, sha256
    elif _GIT_SHA1.match(etag):
        expected, actual = etag, git_blob_sha1(path)
    else:
        expected = actual = None  # no hash offered: the recorded sha256 protects from here on
    entry = status.entry
    if expected != actual or (ref == entry.checkpoint and entry.sha256 and entry.sha256 != sha256):
        _remove_file(path)
        raise CheckpointError(f"{ref}: downloaded file does not match the hub's hash "
                              f"({actual} != {expected or entry.sha256}); deleted it, run the download again")
    return {"etag": etag or None, "revision": meta.commit_hash, "size": meta.size}


def _record(status: ModelStatus, fetched: dict[str, dict[str, Any]]) -> dict[str, Any]:
    old = (read_record(status.checkpoint.path) or {}) if status.checkpoint.path else {}
    files = dict(old.get("files", {}))
    for item in status.all_files:
        assert item.path is not None and item.ref is not None
        key = str(item.ref)
        if key in fetched or key not in files:
            sha256 = sha256_now(item.path)
            if key not in fetched:  # on disk already: check it against what is known before vouching for it
                expected, source = _expected_sha256(status.entry, item, None)
                if expected is not None and expected != sha256:
                    raise CheckpointError(f"{item.path}: sha256 {sha256[:12]} differs from {source} "
                                          f"{expected[:12]}; remove it (`indexer models remove "
                                          f"{status.entry.name}`) and download again")
            files[key] = {"path": str(item.path), "sha256": sha256, "size": item.path.stat().st_size,
                          **fetched.get(key, {"etag": None})}
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {"model": status.entry.name, "recorded": now, "files": files}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# -- verify -----------------------------------------------------------------------------------------
def verify_model(name: str) -> VerifyReport:
    """Recheck every file of a model: present, sha256 as recorded (or as the hub's hash where the cache
    keeps it), tokenizer files readable, the safetensors copy in step with its checkpoint."""
    status = model_status(name)
    report = VerifyReport(name)
    for item in status.missing:
        if item.ref is not None:
            report.problems.append(f"{item.label}: missing; copy {_copy_one(item.ref)}, or run "
                                   f"`indexer models download {name}`")
        else:
            report.problems.append(f"{item.label}: missing (reinstall resound)")
    record = read_record(status.checkpoint.path) if status.checkpoint.path else None
    for item in status.all_files:
        if item.path is None:
            continue
        sha256 = sha256_now(item.path)
        report.checked.append((item.path, sha256))
        expected, source = _expected_sha256(status.entry, item, record)
        if expected is None:
            blob = item.path.resolve().name  # the HF cache names blobs by the hub's ETag
            if _GIT_SHA1.match(blob):
                if git_blob_sha1(item.path) != blob:
                    report.problems.append(f"{item.path}: content differs from the hub's (git blob {blob[:12]})")
            elif item is status.checkpoint and item.ref is not None:  # tokenizer files without a hash are still checked for content
                report.problems.append(f"{item.path}: no recorded hash to check it against "
                                       f"(run `indexer models download {name}` to record one)")
        elif sha256 != expected:
            report.problems.append(f"{item.path}: sha256 {sha256[:12]} differs from {source} {expected[:12]} "
                                   f"(corrupt or replaced: `indexer models remove {name}`, then download it again)")
        if item.ref is not None and item.ref.repo_id == "roberta-base":
            problem = _tokenizer_file_problem(item.path)
            if problem:
                report.problems.append(problem)
    if status.checkpoint.path is not None and status.entry.family == "laion_clap":
        from indexer.encoders.converted import converted_problem

        problem = converted_problem(status.checkpoint.path)
        if problem:
            report.problems.append(problem)
    return report


def _expected_sha256(entry: ModelEntry, item: ModelFile, record: dict[str, Any] | None) -> tuple[str | None, str]:
    if item.ref is None:
        return entry.sha256, "the registry's"
    recorded = (record or {}).get("files", {}).get(str(item.ref), {})
    if recorded.get("sha256") and recorded.get("path") in (None, str(item.path)):
        return recorded["sha256"], "the recorded"
    if item.ref == entry.checkpoint and entry.sha256:
        return entry.sha256, "the registry's"
    blob = item.path.resolve().name if item.path else ""
    if _SHA256.match(blob):
        return blob, "the hub's LFS"
    return None, ""


def _tokenizer_file_problem(path: Path) -> str | None:
    try:
        if path.name == "vocab.json":
            vocab = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(vocab, dict) or len(vocab) < 4:
                return f"{path}: RoBERTa vocabulary is empty"
        elif path.name == "merges.txt" and not path.read_text(encoding="utf-8").startswith("#version"):
            return f"{path}: not a BPE merges file (no #version header)"
    except (OSError, ValueError) as e:
        return f"{path}: unreadable tokenizer file ({e})"
    return None


# -- remove -----------------------------------------------------------------------------------------
def remove_model(name: str) -> list[Path]:
    """Delete a model's checkpoint, its record and converted copy, and tokenizer files no other model
    on disk needs; returns what was deleted. The bundled starter cannot be removed."""
    status = model_status(name)
    if not isinstance(status.entry.checkpoint, HubFile):
        raise UnknownModelError(f"{name} ships inside resound and cannot be removed")
    removed: list[Path] = []
    if status.checkpoint.path is not None:
        from indexer.encoders.converted import converted_path

        for extra in (record_path(status.checkpoint.path), converted_path(status.checkpoint.path)):
            if extra.exists():
                extra.unlink()
                removed.append(extra)
        removed += _remove_file(status.checkpoint.path)
    still_needed = {str(ref) for other in list_models() if other.entry.name != name and other.checkpoint.path
                    for ref in other.entry.files}
    for item in status.files:
        if item.path is not None and str(item.ref) not in still_needed and not _overridden(item.ref):
            removed += _remove_file(item.path)
    return removed


def _overridden(ref: HubFile | None) -> bool:
    from indexer.encoders.checkpoints import DIRECTORY_OVERRIDES

    return ref is not None and bool(os.environ.get(DIRECTORY_OVERRIDES.get(ref.repo_id, ""), ""))


def _remove_file(path: Path) -> list[Path]:
    """Delete a file; in the HF cache, its snapshot link and the blob behind it unless another link uses it."""
    removed = []
    blob = path.resolve()
    if path.is_symlink():
        path.unlink()
        removed.append(path)
        cache = hub_cache_dir().resolve()
        if blob.is_file() and cache in blob.parents:
            repo_dir = blob.parent.parent
            others = [p for p in (repo_dir / "snapshots").rglob("*") if p.is_symlink() and p.resolve() == blob]
            if not others:
                blob.unlink()
                removed.append(blob)
    elif path.exists():
        path.unlink()
        removed.append(path)
    return removed
