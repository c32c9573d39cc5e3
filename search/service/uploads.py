"""Receiving clips: a hard cap on request bodies, and checks on what an uploaded clip is and how long.

The cap is enforced while the body arrives (an ASGI middleware), not after: the multipart parser would
otherwise spool an arbitrarily large upload to disk before any route could look at its size.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from indexer.errors import AudioDecodeError, MediaTooLongError, ResoundError
from indexer.media import MEDIA_EXTENSIONS, decode_audio
from indexer.media.decode import NO_LIMITS, DecodeLimits
from search.service.errors import ServiceError, UploadTooLargeError, status_for

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Multipart framing (boundaries, part headers, the other form fields) on top of the clip itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class _BodyTooLarge(Exception):
    pass


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 1024:.3g} KiB"


class BodySizeLimitMiddleware:
    """Answers 413 to any request whose body exceeds `max_bytes`: at once when Content-Length says so,
    otherwise as soon as the streamed (chunked) body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, detail: str, status: int = 413) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = f"request body exceeds the {_mib(self.max_bytes)} upload limit"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._refuse(send, "malformed Content-Length header", status=400)
                return
            if int(declared) > self.max_bytes:
                await self._refuse(send, limit)
                return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The app turned the aborted body into an error of its own (a 400 parse error): the
                # client must hear the real reason instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send, limit)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            if not started:
                started = True
                await self._refuse(send, limit)


def safe_suffix(filename: str | None) -> str:
    """The upload's extension when it is a media type resound reads, else none (decoders sniff content).

    Only the suffix of the client's file name is used; the name itself never reaches the file system.
    """
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in MEDIA_EXTENSIONS else ""


@contextlib.contextmanager
def stored_upload(source: BinaryIO, filename: str | None, max_bytes: int) -> Iterator[Path]:
    """The uploaded bytes in a private temporary file (removed afterwards). Raises ServiceError when empty
    and UploadTooLargeError past `max_bytes` (in case a body slipped past the middleware's count).

    Errors raised inside the block name the client's file, not the server's temporary path.
    """
    directory = tempfile.mkdtemp(prefix="resound-upload-")
    path = Path(directory) / f"clip{safe_suffix(filename)}"
    shown = Path(filename or "").name or "the clip"
    try:
        written = 0
        with open(path, "wb") as out:
            while block := source.read(1 << 20):
                written += len(block)
                if written > max_bytes:
                    raise UploadTooLargeError(f"clip exceeds the {_mib(max_bytes)} upload limit")
                out.write(block)
        if written == 0:
            raise ServiceError("the uploaded clip is empty")
        try:
            yield path
        except ResoundError as e:
            if str(path) not in str(e):
                raise
            raise ServiceError(str(e).replace(str(path), shown), status_for(e)) from e
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def clip_duration(path: Path, limits: DecodeLimits = NO_LIMITS) -> float:
    """Seconds of audio in a clip: from its header when it has one, else by decoding it at a low rate
    (stopping at `limits`: MediaTooLongError).

    A header can lie: this is a quick first refusal of clips that say they are too long; decoding the
    clip for the query stops at the limit whatever the header said (SearchService.clip_limits).
    Raises AudioDecodeError when nothing can read it.
    """
    import soundfile

    with contextlib.suppress(Exception):
        info = soundfile.info(os.fsencode(path))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    with contextlib.suppress(Exception):
        import av

        with av.open(str(path), metadata_errors="ignore") as container:
            if container.streams.audio and container.duration:
                return container.duration / 1_000_000  # av.time_base
    # No usable header (a stream recorded in the browser, a raw container): measure by decoding.
    return decode_audio(path, 8000, limits).duration


def check_clip(path: Path, max_seconds: float) -> float:
    """The clip's duration, refused (413) beyond `max_seconds` and (400) when it is not audio."""
    try:
        seconds = clip_duration(path, DecodeLimits.for_seconds(max_seconds))
    except MediaTooLongError as e:
        raise UploadTooLargeError(f"the clip lasts more than the {max_seconds:g} s limit") from e
    except AudioDecodeError as e:
        # stored_upload() puts the client's file name in place of the server's path.
        raise ServiceError(f"the uploaded clip {path} cannot be decoded: {e.reason}") from e
    if seconds > max_seconds:
        raise UploadTooLargeError(f"the clip lasts {seconds:.1f} s; the limit is {max_seconds:g} s")
    return seconds
