"""Decoding ahead of the model: files are decoded and windowed in worker processes while the main process
runs inference, with a bounded number of files in flight so memory stays flat whatever the corpus size."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from indexer.embed import SegmentInputs, WindowPlan, segment_inputs
from indexer.errors import AudioDecodeError

FILES_IN_FLIGHT_PER_WORKER = 2


def default_workers() -> int:
    """CPUs minus one for the model, at most 4: decoding is cheap next to embedding."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _load(path: str, plan: WindowPlan) -> SegmentInputs | tuple[str, list[str]]:
    """Runs in a worker; errors come back as data (path, reasons), since exception pickling loses fields."""
    try:
        return segment_inputs(plan, path)
    except AudioDecodeError as e:
        return (e.path, e.reasons)


def _result(value: SegmentInputs | tuple[str, list[str]]) -> SegmentInputs | AudioDecodeError:
    return AudioDecodeError(*value) if isinstance(value, tuple) else value


def prefetch_inputs(paths: Sequence[Path], plan: WindowPlan, workers: int | None = None
                    ) -> Iterator[SegmentInputs | AudioDecodeError]:
    """Each path's SegmentInputs (or its AudioDecodeError), in order, decoded `workers` processes ahead."""
    workers = default_workers() if workers is None else workers
    if workers <= 0 or len(paths) <= 1:
        for path in paths:
            yield _result(_load(str(path), plan))
        return
    # forkserver: the parent holds torch's thread pools, which must not be forked into the workers.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        in_flight: deque[Future] = deque()
        queue = iter(paths)
        for path in queue:
            in_flight.append(pool.submit(_load, str(path), plan))
            if len(in_flight) >= workers * FILES_IN_FLIGHT_PER_WORKER:
                break
        while in_flight:
            value = in_flight.popleft().result()
            next_path = next(queue, None)
            if next_path is not None:
                in_flight.append(pool.submit(_load, str(next_path), plan))
            yield _result(value)
