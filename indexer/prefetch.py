"""Decoding ahead of the model: files are decoded and windowed while the main thread runs inference, with a
bounded number of files in flight so memory stays flat whatever the corpus size.

On 2 CPUs one decoding thread (`decode_thread`) overlaps with the model: libsndfile, soxr and PyAV release
the GIL while they work, so decoding fills the second core for the price of a thread, where a process
would cost pickling every window and a second interpreter (measured slower, see default_workers). On more
CPUs, worker processes decode (the Python between the C calls then runs in parallel too); on 1, inline.

A long file (see embed.file_inputs) comes back from its worker as a StreamedInputs, not as its samples:
the main process streams it, a background thread decoding at most `STREAM_READ_AHEAD_PARTS` parts ahead
of the model, so memory holds a few windows of it however long it is.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from indexer.embed import SegmentInputs, StreamedInputs, WindowPlan, snapshot_inputs
from indexer.errors import AudioDecodeError, MediaTooLongError, UnreadableFileError
from indexer.media.tags import read_tags

FILES_IN_FLIGHT_PER_WORKER = 2
# Files a decoding thread holds decoded ahead of the model: enough to cover one long file's decode.
THREAD_FILES_AHEAD = 4
# The decoding thread runs `step` on a file only when this many decoded files already wait for the model:
# a full queue, where it would otherwise wait idle for the model to take one. Otherwise the model's thread
# does the step (embed.FrontEnd.embed). Measured on 44.1 kHz FLAC, where decoding costs as much as the
# starter's model, a lower threshold (2) put the step on the thread that was the bottleneck: 237-253
# windows/s against 248-265 with the step on the model's thread, in three quiet paired runs.
STEP_WHEN_AHEAD = THREAD_FILES_AHEAD
STREAM_READ_AHEAD_PARTS = 2

T = TypeVar("T")


def default_workers() -> int:
    """Decoding processes: CPUs minus one for the model, at most 4; none on machines of 2 CPUs or fewer.

    On 2 CPUs a decoding process only takes turns with the model's threads: measured there, 58 windows/s
    with one worker against 65 inline; a decoding thread does better (decode_thread).
    """
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus - 1)


def decode_thread(workers: int | None = None) -> bool:
    """Whether to decode in a thread ahead of the model: on 2 CPUs when no processes decode (`workers`
    None: the default). bench/indexing_throughput.py measures it against inline decoding ("decode thread"
    rows); on 1 CPU there is no core to overlap on, so decoding stays inline."""
    if workers is not None:
        return False
    return default_workers() == 0 and (os.cpu_count() or 1) >= 2


# Decoding errors a worker hands back by name (with path and reasons), so that the build tells them apart.
_ERRORS = {cls.__name__: cls for cls in (AudioDecodeError, MediaTooLongError, UnreadableFileError)}


def _load(path: str, plan: WindowPlan, with_tags: bool = True) -> SegmentInputs | StreamedInputs | tuple[str, str, list[str]]:
    """Runs in a worker; errors come back as data (path, reasons), since exception pickling loses fields.

    The file is read once (embed.snapshot_inputs): the inputs carry the content hash of what they decode.
    `with_tags`: the container tags are read here too (0.4 ms a file), else where the catalog rows are made.
    """
    try:
        inputs = snapshot_inputs(plan, path)
        if with_tags and isinstance(inputs, SegmentInputs):
            inputs.tags = read_tags(path)
        return inputs
    except AudioDecodeError as e:
        return (type(e).__name__ if type(e).__name__ in _ERRORS else "AudioDecodeError", e.path, e.reasons)


# A step run on each decoded part where it was decoded (the encoder's front end, embed.FrontEnd).
Step = Callable[[SegmentInputs], SegmentInputs]


def _stepped(part: SegmentInputs, step: Step | None) -> SegmentInputs:
    """`step(part)`, or `part` as it was when the step fails: the model's thread then computes what the
    step would have (and meets the same error, if it is one, where the build handles it)."""
    if step is None:
        return part
    try:
        return step(part)
    except Exception:  # noqa: BLE001 - see docstring
        return part


@dataclass(frozen=True)
class ReadAheadInputs:
    """A streamed file whose parts a background thread decodes while the caller embeds the previous ones."""

    inputs: StreamedInputs
    depth: int = STREAM_READ_AHEAD_PARTS
    step: Step | None = None  # run on each part in the background thread

    @property
    def path(self) -> Path:
        return self.inputs.path

    @property
    def content_hash(self) -> str | None:
        return self.inputs.content_hash

    def parts(self) -> Iterator[SegmentInputs]:
        """The parts of `inputs`, decoded at most `depth` ahead; decoding errors are raised here."""
        parts = self.inputs.parts()
        return read_ahead(parts if self.step is None else (_stepped(p, self.step) for p in parts), self.depth)


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, produced by a background thread at most `depth` items ahead of the consumer.

    An exception of the producer is raised in the consumer at the position it happened. Closing the
    returned iterator early stops the producer after the item it is producing.
    """
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put((end, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # in this thread, where the generator runs

    thread = threading.Thread(target=produce, name="resound-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def _result(value: SegmentInputs | StreamedInputs | tuple[str, str, list[str]], read_ahead_parts: int,
            step: Step | None = None) -> SegmentInputs | StreamedInputs | ReadAheadInputs | AudioDecodeError:
    if isinstance(value, tuple):
        kind, path, reasons = value
        return _ERRORS[kind](path, reasons if kind != "MediaTooLongError" else reasons[0])  # type: ignore[arg-type]
    if isinstance(value, StreamedInputs) and read_ahead_parts > 0:
        return ReadAheadInputs(value, read_ahead_parts, step)
    return _stepped(value, step) if isinstance(value, SegmentInputs) else value


@dataclass
class Backlog:
    """Files a decoding thread has decoded and files its caller has taken (ints, written by one thread each)."""

    decoded: int = 0
    taken: int = 0
    finished: bool = False  # every file decoded: the decoder has nothing left to do (but a long file's parts)
    waited: float = 0.0  # seconds the decoding thread has waited on a full queue

    def ahead(self) -> int:
        """Decoded files waiting for the caller: THREAD_FILES_AHEAD when the decoder waits on a full queue."""
        return self.decoded - self.taken


def prefetch_inputs(paths: Sequence[Path], plan: WindowPlan, workers: int | None = None, thread: bool | None = None,
                    step: Step | None = None, backlog: Backlog | None = None
                    ) -> Iterator[SegmentInputs | StreamedInputs | ReadAheadInputs | AudioDecodeError]:
    """Each path's inputs (or its AudioDecodeError), in order, decoded `workers` processes ahead, or by one
    thread (`thread`; None: `decode_thread(workers)`), or inline (`workers=0`, no thread).
    `step` runs on decoded parts in the decoding thread when it is ahead of the caller (STEP_WHEN_AHEAD;
    threads only: processes and inline decoding leave it to the caller, who must run it on parts without).
    `backlog` counts the decoding thread's files decoded and taken (left at 0 without a thread).

    Every result but an error has `parts()`: a file decoded whole is one part; a long file is streamed
    part by part (inline without processes or thread, else by a read-ahead thread), and may raise
    AudioDecodeError from `parts()` when it breaks off midway. The results are the same in every mode.
    """
    threaded = decode_thread(workers) if thread is None else thread
    workers = default_workers() if workers is None else workers
    if threaded and workers <= 0 and len(paths) > 1:
        counts = backlog if backlog is not None else Backlog()  # read across threads: int reads are atomic

        def decoded() -> Iterator[SegmentInputs | StreamedInputs | ReadAheadInputs | AudioDecodeError]:
            for path in paths:
                # Tags are left to the model's thread: on 2 cores this is the busier thread (on 44.1 kHz FLAC
                # its work costs 3.4 core-ms a starter window, the model's 2.8), and reading them there
                # measured 284.9 windows/s against 271.9 (5 interleaved quiet runs, 100 files).
                value = _load(str(path), plan, with_tags=False)
                ahead = counts.ahead() >= STEP_WHEN_AHEAD
                counts.decoded += 1
                handed = time.perf_counter()
                yield _result(value, STREAM_READ_AHEAD_PARTS, step if ahead else None)
                counts.waited += time.perf_counter() - handed  # resumed once the queue took it
            counts.finished = True

        for inputs in read_ahead(decoded(), THREAD_FILES_AHEAD):
            counts.taken += 1
            yield inputs
        return
    if workers <= 0 or len(paths) <= 1:
        for path in paths:
            yield _result(_load(str(path), plan), STREAM_READ_AHEAD_PARTS if workers > 0 else 0)
        return
    # forkserver: the parent holds torch's thread pools, which must not be forked into the workers.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        in_flight: deque[Future] = deque()
        queue_ = iter(paths)
        for path in queue_:
            in_flight.append(pool.submit(_load, str(path), plan))
            if len(in_flight) >= workers * FILES_IN_FLIGHT_PER_WORKER:
                break
        while in_flight:
            value = in_flight.popleft().result()
            next_path = next(queue_, None)
            if next_path is not None:
                in_flight.append(pool.submit(_load, str(next_path), plan))
            yield _result(value, STREAM_READ_AHEAD_PARTS)
