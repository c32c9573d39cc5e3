"""CLI queries answered by a running `search serve` on the same index, so they cost milliseconds.

`search serve` announces itself in `<index>/serve.json` (host, port, pid, the index's model and a random
token; owner-only permissions), written once it listens and removed at shutdown. `search query|similar|
classify` read it before loading anything heavy: a live pid, a loopback host, a connection accepted within
a short timeout and the same index and model are required; then the request goes over HTTP with the token,
which the server echoes back (proof that the answer comes from that server, not from whatever else took
the port). Any doubt, error or refusal and the command answers in-process as before: nothing here may change
what a command prints, only how fast.

This module uses the standard library only: importing it must not pull in torch, numpy or the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import mimetypes
import os
import secrets
import socket
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SERVE_FILE = "serve.json"
TOKEN_HEADER = "x-resound-token"
CONNECT_TIMEOUT_S = 0.25  # a server on loopback accepts at once; anything slower is not worth waiting for
REQUEST_TIMEOUT_S = 120.0  # an answer being computed (a long clip, a new label set's prompts) is worth it
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeRecord:
    """What `<index>/serve.json` holds."""

    host: str
    port: int
    pid: int
    token: str
    index: str  # the index directory, resolved
    model_id: str
    checkpoint_sha256: str
    generation: int
    db: str | None  # sha256 of the catalog URL given to serve (None: the index's own catalog)
    max_upload_bytes: int
    max_k: int


class RemoteUnavailable(Exception):
    """Why a command did not go through the server (shown with --verbose)."""


class ServerRefused(RemoteUnavailable):
    """The announced server answered, and refused the request (4xx): `detail` is its one-line reason."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"the server answered {status}: {detail[:200]}")
        self.status, self.detail = status, detail


def db_key(db_url: str | None) -> str | None:
    """A catalog URL as the record keeps it: hashed, so that no password is ever written down."""
    return hashlib.sha256(db_url.encode()).hexdigest() if db_url else None


# -- the server's side ------------------------------------------------------------------------------
class TokenEchoMiddleware:
    """Answers a request that carries the server's token with the token in a response header."""

    def __init__(self, app: Any, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or (TOKEN_HEADER.encode(), self.token) not in scope.get("headers", []):
            await self.app(scope, receive, send)
            return

        async def send_with_token(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (TOKEN_HEADER.encode(), self.token)]}
            await send(message)

        await self.app(scope, receive, send_with_token)


def new_token() -> str:
    return secrets.token_hex(16)


def write_record(index_path: str | Path, record: ServeRecord) -> Path | None:
    """Announce a server in the index directory, unless another live server already is; returns the file."""
    path = Path(index_path) / SERVE_FILE
    current = read_record(index_path)
    if current is not None and current.token != record.token and _alive(current.pid) and _accepts(current):
        return None  # that one keeps answering the CLI; this one serves its own clients only
    tmp = path.with_name(f".{SERVE_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(record), f)
    os.replace(tmp, path)
    return path


def remove_record(index_path: str | Path, token: str) -> None:
    """Remove the announcement, if it is still this server's."""
    current = read_record(index_path)
    if current is not None and current.token == token:
        with contextlib.suppress(OSError):
            (Path(index_path) / SERVE_FILE).unlink()


# -- the command line's side ------------------------------------------------------------------------
def read_record(index_path: str | Path) -> ServeRecord | None:
    try:
        data = json.loads((Path(index_path) / SERVE_FILE).read_text())
        return ServeRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _accepts(record: ServeRecord) -> bool:
    try:
        with socket.create_connection((record.host, record.port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _index_model(index_path: Path) -> tuple[str, str] | None:
    """(model id, checkpoint sha256) from the index's manifest (a JSON mirror of its provenance)."""
    try:
        provenance = json.loads((index_path / "manifest.json").read_text()).get("provenance") or {}
        return provenance["model_id"], provenance["checkpoint_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_server(index_path: str | Path, db_url: str | None = None, model: str | None = None) -> ServeRecord:
    """The live server announced for this index, catalog and model; RemoteUnavailable says why not."""
    index = Path(index_path).expanduser().resolve()
    record = read_record(index)
    if record is None:
        raise RemoteUnavailable(f"no search serve announced in {index / SERVE_FILE}")
    if record.host not in _LOOPBACK:
        raise RemoteUnavailable(f"the server listens on {record.host}, not on loopback")
    if Path(record.index) != index:
        raise RemoteUnavailable(f"{index / SERVE_FILE} announces a server of {record.index}")
    if not _alive(record.pid):
        raise RemoteUnavailable(f"the announced server (pid {record.pid}) is gone")
    if db_key(db_url) != record.db:
        raise RemoteUnavailable("the server uses another catalog")
    if model is not None and model != record.model_id:
        raise RemoteUnavailable(f"the server embeds with {record.model_id}, not {model}")
    if _index_model(index) != (record.model_id, record.checkpoint_sha256):
        raise RemoteUnavailable("the index's model changed since the server started")
    if not _accepts(record):
        raise RemoteUnavailable(f"nothing accepts connections on {record.host}:{record.port}")
    return record


def _request(record: ServeRecord, method: str, target: str, body: bytes | None = None,
             content_type: str | None = None) -> Any:
    host = record.host if ":" not in record.host else f"[{record.host}]"
    connection = http.client.HTTPConnection(record.host, record.port, timeout=REQUEST_TIMEOUT_S)
    headers = {TOKEN_HEADER: record.token, "host": f"{host}:{record.port}", "accept": "application/json"}
    if content_type:
        headers["content-type"] = content_type
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status >= 500:  # answered by the server's last-resort handler, which adds no token
            raise RemoteUnavailable(f"the server failed ({response.status})")
        if response.getheader(TOKEN_HEADER) != record.token:
            raise RemoteUnavailable(f"{record.host}:{record.port} is not the announced server")
        if response.status != 200:
            raise ServerRefused(response.status, _detail(payload))
        return json.loads(payload)
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise RemoteUnavailable(f"request to the server failed ({e})") from e
    finally:
        connection.close()


def _detail(payload: bytes) -> str:
    """The one-line reason of a refusal: the API's `detail` string (or its first validation message)."""
    try:
        detail = json.loads(payload)["detail"]
        if isinstance(detail, list):
            detail = "; ".join(str(d.get("msg", d)) for d in detail)
        return str(detail)
    except (ValueError, KeyError, TypeError, AttributeError):
        return payload.decode("utf-8", "replace")[:200]


def _multipart(path: Path, fields: dict[str, str] | Params) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields.items() if isinstance(fields, dict) else fields):
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    filename = urllib.parse.quote(os.fsencode(path.name))  # a name that is not UTF-8 goes as its bytes
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                 f"Content-Type: {kind}\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _upload(record: ServeRecord, target: str, path: Path, fields: dict[str, str] | Params) -> Any:
    if not path.is_file():
        raise RemoteUnavailable(f"{path}: not a file")  # in-process says it its own way
    if path.stat().st_size > record.max_upload_bytes:
        raise RemoteUnavailable(f"{path} is larger than the server accepts")
    try:
        body, content_type = _multipart(path, fields)
    except UnicodeEncodeError as e:
        raise RemoteUnavailable("a field value is not UTF-8 text") from e
    return _request(record, "POST", target, body, content_type)


Params = list[tuple[str, str]]  # request parameters in order; a name may repeat (ext, tag)


def query(record: ServeRecord, text: str, k: int, modality: str | None, per_window: bool = False,
          filters: Params = (), mode: str = "hybrid") -> list[dict[str, Any]]:  # type: ignore[assignment]
    """The API's answer to a text query (`hits`, and `notes` on the answer), among the files `filters` (API
    parameters) admit."""
    _check_k(record, k)
    # Lone surrogates (argv bytes that were not UTF-8) cannot go into a URL: U+FFFD, as the text towers
    # read them anyway (indexer/text.py).
    params = {"q": "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text), "k": str(k), **({"modality": modality} if modality else {}),
              **({"per_window": "true"} if per_window else {}), "mode": mode}
    try:
        target = "/api/query?" + urllib.parse.urlencode([*params.items(), *filters])
    except UnicodeEncodeError as e:  # a filter path whose bytes are not UTF-8: a URL cannot carry it
        raise RemoteUnavailable("a filter value is not UTF-8 text") from e
    return _request(record, "GET", target)


def similar(record: ServeRecord, path: Path, k: int, modality: str | None, per_window: bool = False,
            filters: Params = (), exclude_self: bool = False) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """The API's answer (`hits`, `notes`) for an audio or video file, uploaded to the server, among the files
    `filters` admit."""
    _check_k(record, k)
    fields = {"k": str(k), **({"modality": modality} if modality else {}), **({"per_window": "true"} if per_window else {}),
              **({"exclude_self": "true"} if exclude_self else {})}
    return _upload(record, "/api/similar", path, [*fields.items(), *filters])


def classify(record: ServeRecord, path: Path, k: int, strategy: str, label_set: str | None = None,
             labels: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The API's classification of a file: {labels: [...], timeline: [{start, end, labels}]}."""
    _check_k(record, k)
    fields = {"k": str(k), "prompts": strategy}
    fields.update({"label_set": label_set} if label_set else {"labels": "\n".join(labels or ())})
    return _upload(record, "/api/classify", path, fields)


def _check_k(record: ServeRecord, k: int) -> None:
    if k > record.max_k:
        raise RemoteUnavailable(f"k={k} exceeds the server's limit of {record.max_k}")


@contextlib.contextmanager
def announced(index_path: str | Path, record: ServeRecord) -> Iterator[Callable[[], None]]:
    """For `search serve`: yields the function to call once the server listens; removes the file at exit."""
    try:
        yield lambda: write_record(index_path, record) and None
    finally:
        remove_record(index_path, record.token)
