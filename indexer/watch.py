"""`indexer watch`: keep an index in step with a corpus directory for as long as it runs.

catch-up build (whatever changed while nobody watched, a crash included) -> file events (watchdog), or a
stat walk every `interval` (`poll`, for file systems without events) -> changed paths -> debounce (a path
is read once its size and mtime have held for `settle_seconds`: a file still being written is not read
half-way) -> one generation per batch through build.apply_changes (content-hash skipping, the rows and the
FAISS files committed together, atomic swap) -> a running `search serve` loads it on its next request.

A generation is committed whole or not at all, so a watcher killed at any point loses nothing: the next
start's catch-up build sees the files whose change was never committed and applies them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from indexer.build import BuildOptions, BuildReport, apply_changes
from indexer.corpus import catalog_text, scan_corpus
from indexer.device import resolve_device
from indexer.encoders import Encoder
from indexer.errors import EmptyCorpusError, MissingDependencyError
from indexer.index import Index
from indexer.media import MEDIA_EXTENSIONS


@dataclass(frozen=True)
class WatchOptions:
    """How to watch: events or polling, how often to look, how long a file must hold still."""

    build: BuildOptions = field(default_factory=BuildOptions)
    poll: bool = False  # stat-walk the corpus every `interval` instead of file events (NFS, SMB, FUSE mounts)
    interval: float = 1.0  # seconds between looks at pending files (and between polls)
    settle_seconds: float = 2.0  # a file's size and mtime must hold this long before it is read
    max_batch: int = 256  # files per generation at most: a large copy lands in steps, searchable as it goes


StatKey = tuple[int, int] | None  # (size, mtime_ns); None: not there


def _stat_key(path: Path) -> StatKey:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class PendingChanges:
    """Paths that changed and are waiting to hold still: the debounce. Thread-safe (events arrive on the
    observer's thread)."""

    def __init__(self, settle_seconds: float):
        self.settle_seconds = settle_seconds
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[StatKey | str, float]] = {}  # path -> (last stat, held since)
        self._directories: set[str] = set()  # directories created, moved or deleted: expanded by the watcher

    def mark(self, path: str, now: float) -> None:
        """`path` (relative to the corpus) changed at `now`: it must hold still from now on."""
        with self._lock:
            self._pending[path] = ("unseen", now)

    def mark_directory(self, path: str) -> None:
        with self._lock:
            self._directories.add(path)

    def take_directories(self) -> set[str]:
        with self._lock:
            directories, self._directories = self._directories, set()
            return directories

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._directories)

    def take_ready(self, root: Path, now: float, limit: int) -> set[str]:
        """Up to `limit` paths whose size and mtime (or absence) have held for `settle_seconds`; they leave
        the pending set. A path whose stat moved since the last look starts holding again from `now`."""
        ready: list[str] = []
        with self._lock:
            for path, (key, since) in sorted(self._pending.items()):
                current = _stat_key(root / path)
                if current != key:
                    self._pending[path] = (current, now)
                elif now - since >= self.settle_seconds and len(ready) < limit:
                    ready.append(path)
            for path in ready:
                del self._pending[path]
        return set(ready)


@dataclass
class WatchState:
    """What the watcher has done so far (for the CLI's lines and for tests)."""

    generations: int = 0
    reports: list[BuildReport] = field(default_factory=list)


class CorpusWatcher:
    """Keeps one index in step with one corpus. `start()` catches up and starts watching; `step()` applies
    what has settled (tests call it with their own clock); `run(stop)` loops until `stop` is set."""

    def __init__(self, corpus: str | Path, index_path: str | Path, options: WatchOptions = WatchOptions(),
                 on_generation: Callable[[BuildReport], None] | None = None):
        self.corpus = Path(corpus).expanduser().resolve()
        if not self.corpus.is_dir():
            raise EmptyCorpusError(f"{self.corpus}: corpus directory not found")
        self.options = options
        self.index = Index(index_path, db_url=options.build.db_url, create=True)
        self.pending = PendingChanges(options.settle_seconds)
        self.state = WatchState()
        self.on_generation = on_generation
        self._encoder: Encoder | None = None
        self._observer = None
        self._snapshot: dict[str, tuple[int, float]] = {}
        self._lock_context = None

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> BuildReport:
        """Take the index's writer lock, load the model, catch up with the corpus, and start watching.

        Raises IndexLockedError when another process writes the index, EmptyCorpusError when the corpus
        is empty but the index holds files from it (an unmounted disk must not empty the index)."""
        self._lock_context = self.index.writer_lock()
        self._lock_context.__enter__()
        try:
            spec = self.options.build.encoder_spec()
            self._encoder = spec.load(device=resolve_device(self.options.build.device).torch_device)
            if not self.options.poll:
                self._start_observer()  # before the catch-up scan: nothing that changes during it is missed
            files = scan_corpus(self.corpus)
            self._snapshot = {f.path: (f.size, f.mtime) for f in files}
            indexed = self._indexed_paths()
            if not files and indexed:
                raise EmptyCorpusError(f"{self.corpus}: no media files, but the index holds files from it; "
                                       f"not emptying the index (is the disk mounted?)")
            # Every path found and every path indexed: the incremental build of the whole corpus.
            report = apply_changes(self.index, self.corpus, {f.path for f in files} | set(indexed),
                                   self.options.build, encoder=self._encoder)
            self._record(report)
            return report
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop watching and release the writer lock (a generation being applied has finished by then)."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None
        if self._lock_context is not None:
            self._lock_context.__exit__(None, None, None)
            self._lock_context = None

    def close(self) -> None:
        self.stop()
        self.index.close()

    def run(self, stop: threading.Event) -> None:
        """Apply settled changes every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            self.step()
            stop.wait(self.options.interval)

    # -- one look ----------------------------------------------------------------------------------
    def step(self, now: float | None = None) -> BuildReport | None:
        """Poll (in polling mode), then apply the paths that have settled as one generation; returns its
        report, or None when nothing had settled."""
        now = time.monotonic() if now is None else now
        if self.options.poll:
            self._poll(now)
        for directory in self.pending.take_directories():
            for path in self._paths_under(directory):
                self.pending.mark(path, now)
        ready = self.pending.take_ready(self.corpus, now, self.options.max_batch)
        if not ready:
            return None
        report = apply_changes(self.index, self.corpus, ready, self.options.build, encoder=self._encoder)
        self._record(report)
        return report

    def _record(self, report: BuildReport) -> None:
        if report.changed:
            self.state.generations += 1
        self.state.reports.append(report)
        if self.on_generation is not None:
            self.on_generation(report)

    def _poll(self, now: float) -> None:
        """Mark what a stat walk finds changed since the last one."""
        snapshot = {f.path: (f.size, f.mtime) for f in scan_corpus(self.corpus)}
        for path in snapshot.keys() | self._snapshot.keys():
            if snapshot.get(path) != self._snapshot.get(path):
                self.pending.mark(path, now)
        self._snapshot = snapshot

    def _indexed_paths(self) -> list[str]:
        with self.index.catalog.session() as s:
            from sqlalchemy import select

            from db.schema import CorpusRow, FileRow

            return list(s.scalars(select(FileRow.path).join(CorpusRow, FileRow.corpus_id == CorpusRow.id)
                                  .where(CorpusRow.root == str(self.corpus))))

    def _paths_under(self, directory: str) -> set[str]:
        """Media files now under `directory` and indexed ones that were (a directory moved in or out)."""
        prefix = catalog_text(directory).rstrip("/") + "/"
        paths = {p for p in self._indexed_paths() if p.startswith(prefix)}
        full = self.corpus / directory
        if full.is_dir():
            paths |= {f"{directory.rstrip('/')}/{f.path}" for f in scan_corpus(full)}
        return paths

    # -- file events -------------------------------------------------------------------------------
    def _start_observer(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError as e:
            raise MissingDependencyError("indexer watch needs watchdog (pip install watchdog), or use --poll") from e

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # type: ignore[no-untyped-def]
                if event.event_type in ("opened", "closed_no_write"):
                    return
                if event.is_directory and event.event_type in ("modified", "closed"):
                    return  # a directory's mtime moves with every file added: the files have their own events
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    if raw:
                        watcher._event(os.fsdecode(raw), event.is_directory)

        observer = Observer()
        observer.schedule(Handler(), str(self.corpus), recursive=True)
        observer.start()
        self._observer = observer

    def _event(self, absolute: str, is_directory: bool) -> None:
        try:
            path = Path(absolute).relative_to(self.corpus).as_posix()
        except ValueError:
            return
        if path == ".":
            return
        if is_directory:
            self.pending.mark_directory(path)
        elif Path(path).suffix.lower() in MEDIA_EXTENSIONS:
            self.pending.mark(path, time.monotonic())
