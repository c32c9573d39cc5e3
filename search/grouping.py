"""One hit per file: fold a window ranking into a file ranking.

A long recording has many windows, and the windows of one file tend to match a query together, so a
plain top-k of windows fills up with one file. Searches rank files by their best window and keep the
file's other matching windows beside it. Pure functions over ids, scores and file ids: no FAISS, no
catalog, so the engine (and anything else that ranks windows) can share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FileGroup:
    """The windows of one file in a ranking: positions into the window ranking, best first."""

    file_id: int
    positions: tuple[int, ...]

    @property
    def best(self) -> int:
        """Position of the file's best window."""
        return self.positions[0]


def group_by_file(file_ids: Sequence[int], k: int) -> list[FileGroup]:
    """The first `k` files of a best-first window ranking, each with the positions of its matching windows.

    `file_ids[i]` is the file of the i-th best window. Files are ordered by their best window. A file's
    windows are those that rank at or above the last file's best window (the k-th, or the last there is
    when a filter or a small index leaves fewer), so every window listed scores at least as high as the
    last hit; since they all rank above that point, the search has necessarily fetched them all.
    """
    positions: dict[int, list[int]] = {}
    for position, file_id in enumerate(file_ids):
        positions.setdefault(file_id, []).append(position)
    # dicts keep insertion order: the order in which each file's best window was met.
    first = list(positions.items())[:k]
    cutoff = first[-1][1][0] if first else 0
    return [FileGroup(file_id, tuple(p for p in found if p <= cutoff)) for file_id, found in first]


def next_fetch(k: int, fetched: int, found_files: int, total: int) -> int | None:
    """How many windows to ask FAISS for next so that `k` distinct files turn up, or None to stop.

    Stops when `k` files were found or the index is exhausted (`fetched >= total`). Otherwise it grows
    the request by the windows-per-file ratio seen so far (at least doubling), so a corpus of long
    files needs few rounds and a corpus of one-window files needs none.
    """
    if found_files >= k or fetched >= total:
        return None
    per_file = fetched / max(found_files, 1)
    return min(total, max(2 * fetched, int(per_file * k * 1.5) + 1))
