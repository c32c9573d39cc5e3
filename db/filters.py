"""Search filters: conditions on what the catalog knows of a segment's file, turned into SQL.

A `SearchFilter` selects segments by their file's folder or path pattern, extension, duration, modified
time and container tags, and by what the segment holds (sound, picture). The catalog turns it into the set
of matching segment ids (`Catalog.matching_segment_ids`), which the vector store searches among (an id
selector inside the FAISS search, see indexer/store.py), so a filter never shortens a result list that
could have been full.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from db.errors import FilterError

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

# SQLAlchemy is imported by the functions that build SQL, not here: a cold `search query` parses its
# filter options without paying for SQLAlchemy (the catalog reads a current SQLite schema with sqlite3).

# Tags read from containers at build time (indexer/media/tags.py) and accepted by `tag` conditions: the
# names, then the words sound libraries embed (BWF bext description and originator, iXML notes, ID3/Vorbis/
# MP4 comments and descriptions).
TAG_KEYS = ("title", "artist", "album", "genre", "description", "comment", "originator", "notes")
# What a segment holds, by the value its row records (indexer.embed.modalities_of).
_HOLDING = {"audio": ("audio", "audio+visual"), "visual": ("visual", "audio+visual"), "av": ("audio+visual",)}
MODALITIES = tuple(_HOLDING)


@dataclass(frozen=True)
class SearchFilter:
    """Conditions a hit must meet; every condition given must hold (None or empty: no condition).

    Paths are those of the indexed files: `under` is a folder (or file) on this machine, `glob` a shell
    pattern (`*`, `?`, `[...]`; `*` also crosses `/`) matched against the path relative to its corpus root,
    or against the absolute path when it starts with `/`. Times are seconds since the epoch.

    A folder given as a relative path means what the results table shows, a folder inside the corpus
    root (`under_relative`), unless it is a folder from the current directory that lies in a corpus
    (`under`): `--under b` finds `<root>/b` wherever the shell stands.
    """

    under: str | None = None  # absolute folder: files inside it (at any depth)
    under_relative: str | None = None  # the same folder relative to each corpus root ("." is the root)
    glob: str | None = None
    extensions: tuple[str, ...] = ()  # lower case, without the dot: any of them
    min_duration: float | None = None  # seconds, of the whole file
    max_duration: float | None = None
    modality: str | None = None  # segments holding "audio", "visual" or "av" (both)
    modified_after: float | None = None  # file mtime >= this
    modified_before: float | None = None  # file mtime < this
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs, every one matched case-insensitively

    def __post_init__(self) -> None:
        if self.modality is not None and self.modality not in _HOLDING:
            raise FilterError(f"unknown modality {self.modality!r}: use one of {', '.join(MODALITIES)}")
        for key, _ in self.tags:
            if key not in TAG_KEYS:
                raise FilterError(f"unknown tag {key!r}: filters know {', '.join(TAG_KEYS)}")
        for low, high, what in ((self.min_duration, self.max_duration, "duration"),
                                (self.modified_after, self.modified_before, "modified time")):
            for value in (low, high):
                if value is not None and not math.isfinite(value):
                    raise FilterError(f"{what} bound {value} is not a finite number")
            if low is not None and high is not None and low > high:
                raise FilterError(f"empty {what} range: {low} > {high}")

    @property
    def is_empty(self) -> bool:
        """True when the filter has no condition (every segment matches)."""
        return all(getattr(self, f.name) in (None, ()) for f in fields(self))

    def admits_file(self, path: Path, root: Path, holding: str, duration: Callable[[], float],
                    tags: Callable[[], Mapping[str, str]]) -> bool:
        """Whether a file on disk meets the conditions, with the catalog's semantics measured on the file
        itself: for commands that label given files rather than search the index (`search classify`).

        `root` plays the corpus root (relative globs), `holding` what the file holds ("audio", "visual" or
        "audio+visual"); `duration` and `tags` are asked only when a condition needs them.
        """
        absolute = Path(path).resolve()
        if self.under is not None or self.under_relative is not None:
            inside = self.under is not None and _inside(str(absolute), self.under)
            if not inside and self.under_relative is not None and absolute.is_relative_to(root.resolve()):
                relative = absolute.relative_to(root.resolve()).as_posix()
                inside = self.under_relative == "." or _inside(relative, self.under_relative)
            if not inside:
                return False
        if self.glob is not None:
            relative = absolute.relative_to(root.resolve()).as_posix() if absolute.is_relative_to(root.resolve()) else absolute.name
            if not re.search(glob_regex(self.glob), str(absolute) if self.glob.startswith("/") else relative):
                return False
        if self.extensions and absolute.suffix.lower().lstrip(".") not in self.extensions:
            return False
        if self.modified_after is not None or self.modified_before is not None:
            mtime = absolute.stat().st_mtime
            if (self.modified_after is not None and mtime < self.modified_after) or (
                    self.modified_before is not None and mtime >= self.modified_before):
                return False
        if self.modality is not None and holding not in _HOLDING[self.modality]:
            return False
        if self.min_duration is not None or self.max_duration is not None:
            seconds = duration()
            if (self.min_duration is not None and seconds < self.min_duration) or (
                    self.max_duration is not None and seconds > self.max_duration):
                return False
        if self.tags:
            found = {key: value.casefold() for key, value in tags().items()}
            if any(found.get(key) != value.casefold() for key, value in self.tags):
                return False
        return True

    @classmethod
    def parse(cls, *, under: str | Path | None = None, glob: str | None = None, extensions: list[str] | tuple[str, ...] = (),
              min_duration: float | None = None, max_duration: float | None = None, modality: str | None = None,
              modified_after: str | None = None, modified_before: str | None = None,
              tags: list[str] | tuple[str, ...] = (), from_cwd: bool = True) -> SearchFilter:
        """A filter from the strings a command line or a request gives: `under` is resolved to an absolute
        folder, and a relative one is also kept as a folder inside the corpus roots (see the class; with
        `from_cwd=False`, as the HTTP API has it, only that), extensions lose their dot and case, times are
        ISO dates or datetimes (naive: local time) or epoch seconds, tags are `key=value`. Raises
        FilterError on what it cannot read."""
        parsed_tags = []
        for tag in tags:
            key, sep, value = tag.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise FilterError(f"tag filter {tag!r} is not key=value (keys: {', '.join(TAG_KEYS)})")
            parsed_tags.append((key.strip().lower(), value.strip()))
        exts = tuple(dict.fromkeys(e.strip().lower().lstrip(".") for e in extensions if e.strip().lstrip(".")))
        absolute, relative = _folder(under, from_cwd) if under else (None, None)
        for name, text in (("under", str(under or "")), ("glob", glob or ""), *(("tag", t) for t in tags),
                           *(("ext", e) for e in extensions)):
            if any("\ud800" <= c <= "\udfff" for c in text):  # bytes that are not UTF-8, from argv
                raise FilterError(f"{name} filter '{os.fsencode(text).decode('utf-8', 'backslashreplace')}' is not "
                             f"UTF-8 text: the catalog's paths and tags are matched as text")
        return cls(
            under=absolute,
            under_relative=relative,
            glob=glob or None,
            extensions=exts,
            min_duration=min_duration,
            max_duration=max_duration,
            modality=modality or None,
            modified_after=parse_time(modified_after) if modified_after else None,
            modified_before=parse_time(modified_before) if modified_before else None,
            tags=tuple(parsed_tags),
        )


    def conditions(self) -> list[tuple[str, SearchFilter]]:
        """Each condition of the filter alone, named as a user gave it (`under 'b'`, `ext wav`): what an
        empty answer is explained by."""
        out: list[tuple[str, SearchFilter]] = []
        if self.under is not None or self.under_relative is not None:
            shown = self.under_relative if self.under_relative is not None else self.under
            out.append((f"under {shown!r}", SearchFilter(under=self.under, under_relative=self.under_relative)))
        if self.glob is not None:
            out.append((f"glob {self.glob!r}", SearchFilter(glob=self.glob)))
        if self.extensions:
            out.append((f"ext {' or '.join(self.extensions)}", SearchFilter(extensions=self.extensions)))
        if self.min_duration is not None or self.max_duration is not None:
            low = "" if self.min_duration is None else f"{self.min_duration:g}"
            high = "" if self.max_duration is None else f"{self.max_duration:g}"
            out.append((f"duration {low}..{high} s", SearchFilter(min_duration=self.min_duration,
                                                                  max_duration=self.max_duration)))
        if self.modality is not None:
            out.append((f"has {self.modality}", SearchFilter(modality=self.modality)))
        if self.modified_after is not None or self.modified_before is not None:
            out.append(("modified time", SearchFilter(modified_after=self.modified_after,
                                                      modified_before=self.modified_before)))
        for key, value in self.tags:
            out.append((f"tag {key}={value}", SearchFilter(tags=((key, value),))))
        return out


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _folder(under: str | Path, from_cwd: bool) -> tuple[str | None, str | None]:
    """(absolute folder, folder relative to the corpus roots) that an `under` value names."""
    given = Path(under).expanduser()
    if given.is_absolute():
        return str(given.resolve()), None
    relative = posixpath.normpath(given.as_posix())
    if relative == ".." or relative.startswith("../"):
        relative = None  # above the corpus root: only a folder from the current directory can mean it
    absolute = given.resolve() if from_cwd else None
    if absolute is not None and relative is not None and not absolute.exists():
        absolute = None
    if absolute is None and relative is None:
        return str(given.resolve()), None  # a folder that is nowhere: it admits nothing, and says so
    return (str(absolute) if absolute is not None else None), relative


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO date or datetime (naive: local time, as `find -newermt` reads it), or of a
    number of epoch seconds. Raises FilterError."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as e:
        raise FilterError(f"time {text!r} is not an ISO date (2024-05-01), datetime (2024-05-01T12:00) "
                          f"or epoch seconds") from e


def glob_regex(pattern: str) -> str:
    """A regular expression, the same on Postgres (POSIX ARE) and SQLite (Python `re`), matching what the
    shell pattern `pattern` matches with fnmatch rules (`*` also crosses `/`)."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + (1 if i < len(pattern) and pattern[i] in "!^" else 0)
            j += 1 if j < len(pattern) and pattern[j] == "]" else 0
            close = pattern.find("]", j)
            if close < 0:  # no closing bracket: a literal "["
                out.append(re.escape(c))
                continue
            body = pattern[i:close]
            i = close + 1
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            # A backslash and "[" are literal in a shell class; escaped, they are literal in both dialects.
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(re.escape(c))
    out.append("$")
    return "".join(out)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def file_conditions(where: SearchFilter, corpora: dict[int, str]) -> list[ColumnElement[bool]]:
    """SQL conditions on FileRow (joined with CorpusRow) for the file-level parts of `where`;
    `corpora` maps corpus ids to their roots (for `under`)."""
    from sqlalchemy import and_, false, func, or_, select

    from db.schema import CorpusRow, FileRow, FileTagRow

    conditions: list[ColumnElement[bool]] = []
    if where.under is not None or where.under_relative is not None:
        inside = []
        folder = PurePosixPath(where.under) if where.under is not None else None
        for corpus_id, root in corpora.items() if folder is not None else ():
            root_path = PurePosixPath(root)
            if folder == root_path or folder in root_path.parents:
                inside.append(FileRow.corpus_id == corpus_id)  # the whole corpus lies under the folder
            elif root_path in folder.parents:
                inside.append(and_(FileRow.corpus_id == corpus_id, _path_inside(str(folder.relative_to(root_path)))))
        if not inside and where.under_relative is not None:
            # Not a folder from here that lies in a corpus: the folder inside each corpus root, as the
            # results table shows paths.
            # With the corpus ids: the (corpus_id, path) indexes serve `corpus_id IN (...) AND path ...` (one
            # range per corpus), not the path alone.
            corpus_ids = FileRow.corpus_id.in_(sorted(corpora))
            inside.append(corpus_ids if where.under_relative == "." else and_(corpus_ids, _path_inside(where.under_relative)))
        conditions.append(or_(*inside) if inside else false())
    if where.glob is not None:
        target = (CorpusRow.root + "/" + FileRow.path) if where.glob.startswith("/") else FileRow.path
        conditions.append(target.regexp_match(glob_regex(where.glob)))
        literal = glob_prefix(where.glob)
        if literal and not where.glob.startswith("/"):
            # The pattern's literal start bounds a range of the (corpus_id, path) index per corpus ('drums/*'
            # reads drums/, not every file).
            conditions.append(and_(FileRow.corpus_id.in_(sorted(corpora)), path_prefix(literal)))
    if where.extensions:
        conditions.append(or_(*(func.lower(FileRow.path).like("%." + _like_escape(e), escape="\\")
                                for e in where.extensions)))
    if where.min_duration is not None:
        conditions.append(FileRow.duration >= where.min_duration)
    if where.max_duration is not None:
        conditions.append(FileRow.duration <= where.max_duration)
    if where.modified_after is not None:
        conditions.append(FileRow.mtime >= where.modified_after)
    if where.modified_before is not None:
        conditions.append(FileRow.mtime < where.modified_before)
    for key, value in where.tags:
        # IN, not a correlated EXISTS: SQLite then reads the (key, folded) index once instead of probing the
        # tags of every file (Postgres plans both as one semi-join).
        conditions.append(FileRow.id.in_(select(FileTagRow.file_id).where(
            FileTagRow.key == key, FileTagRow.folded == value.casefold())))
    return conditions


def _path_inside(relative: str) -> ColumnElement[bool]:
    """FileRow.path is the corpus-relative `relative` or lies inside it."""
    return _prefix_class()(relative.rstrip("/") + "/", folder=True)


def glob_prefix(pattern: str) -> str:
    """The literal start of a shell pattern, before its first wildcard or class ('' if it starts with one)."""
    return re.split(r"[*?\[]", pattern, maxsplit=1)[0]


def path_prefix(prefix: str) -> ColumnElement[bool]:
    """FileRow.path starts with `prefix`, case-sensitively (as paths are), in SQL an index range serves."""
    return _prefix_class()(prefix)


@lru_cache(maxsize=1)
def _prefix_class() -> type:
    """The SQL construct of path_prefix() and _path_inside(), compiled per dialect (built on first use:
    SQLAlchemy is not imported by a cold search that does not filter)."""
    from sqlalchemy import Boolean, and_, func, or_
    from sqlalchemy.ext.compiler import compiles
    from sqlalchemy.sql.expression import ColumnElement
    from sqlalchemy.sql.visitors import InternalTraversal

    from db.schema import FileRow

    class PathPrefix(ColumnElement[bool]):
        """FileRow.path starts with `prefix`; with `folder` (`prefix` then ends with "/"), or is the folder
        itself (`prefix` without its "/")."""

        type = Boolean()
        _is_implicitly_boolean = True  # a condition as it stands: no "= 1" where booleans are not native
        inherit_cache = True
        _traverse_internals = [("prefix", InternalTraversal.dp_string),  # noqa: RUF012 (SQLAlchemy's protocol)
                               ("folder", InternalTraversal.dp_boolean)]

        def __init__(self, prefix: str, folder: bool = False):
            self.prefix = prefix
            self.folder = folder

    @compiles(PathPrefix)
    def _like(element: PathPrefix, compiler, **kw) -> str:  # type: ignore[no-untyped-def]
        # Postgres: LIKE is case-sensitive, and a constant prefix pattern bounds a range of
        # ix_files_path_pattern (an OR of the folder itself is a second range: a BitmapOr).
        condition = FileRow.path.like(_like_escape(element.prefix) + "%", escape="\\")
        if element.folder:
            condition = or_(FileRow.path == element.prefix[:-1], condition)
        return f"({compiler.process(condition, **kw)})"

    @compiles(PathPrefix, "sqlite")
    def _range(element: PathPrefix, compiler, **kw) -> str:  # type: ignore[no-untyped-def]
        # SQLite's LIKE ignores ASCII case and no BINARY index serves it; a range of the (corpus_id, path)
        # index does (BINARY order of UTF-8 is code point order, so [prefix, next prefix) is exactly it). A
        # folder is [folder, folder + "0"): itself and what starts "folder/" ("/" + 1 is "0"), less the
        # names between them ("folder.wav", "folder-2/..."), which the last condition leaves out; one range,
        # as an OR of two would not be one.
        prefix = element.prefix
        low = prefix[:-1] if element.folder else prefix
        last = ord(prefix[-1])
        if last in (0xD7FF, 0x10FFFF):  # the next code point is a surrogate, or there is none
            condition = and_(FileRow.path >= prefix, func.substr(FileRow.path, 1, len(prefix)) == prefix)
        else:
            condition = and_(FileRow.path >= low, FileRow.path < prefix[:-1] + chr(last + 1))
            if element.folder:
                condition = and_(condition, or_(FileRow.path == low, FileRow.path >= prefix))
        return f"({compiler.process(condition, **kw)})"

    return PathPrefix


def segment_query(where: SearchFilter, corpora: dict[int, str]):  # type: ignore[no-untyped-def]
    """SELECT of the ids of the segments that `where` admits (in no particular order)."""
    from sqlalchemy import and_, literal_column, select, true

    from db.schema import CorpusRow, FileRow, SegmentRow

    conditions: list[ColumnElement[bool]] = []
    file_level = file_conditions(where, corpora)
    if file_level:
        # The file conditions (a regular expression, LIKE) are evaluated once per file, not per segment.
        files = select(FileRow.id).join(CorpusRow, FileRow.corpus_id == CorpusRow.id).where(and_(*file_level))
        conditions.append(SegmentRow.file_id.in_(files))
    if where.modality is not None:
        conditions.append(SegmentRow.modalities.in_(_HOLDING[where.modality]))
        if where.modality != "audio":
            # Implied by the IN above; spelled as the partial index ix_segments_visual's own condition, so
            # that a picture filter reads the few windows that hold one instead of all of them.
            conditions.append(SegmentRow.modalities != literal_column("'audio'"))
    return select(SegmentRow.id).where(and_(true(), *conditions))


def file_query(where: SearchFilter, corpora: dict[int, str]):  # type: ignore[no-untyped-def]
    """SELECT of the ids of the files holding a segment that `where` admits (in no particular order): what a
    keyword or file-level search looks among, found from the files' own conditions rather than from the
    admitted segments' ids (100k ids of a 1% filter at 10M windows took 0.5-0.8 s to map back on Postgres)."""
    from sqlalchemy import and_, exists, select, true

    from db.schema import CorpusRow, FileRow, SegmentRow

    if where.modality is not None:  # a condition on windows: the files of the admitted windows
        admitted = segment_query(where, corpora).subquery()
        return select(SegmentRow.file_id).where(SegmentRow.id.in_(select(admitted.c.id))).distinct()
    return (select(FileRow.id).join(CorpusRow, FileRow.corpus_id == CorpusRow.id)
            .where(and_(true(), *file_conditions(where, corpora)),
                   exists(select(SegmentRow.id).where(SegmentRow.file_id == FileRow.id))))


def count_files(connection, where: SearchFilter, corpora: dict[int, str]) -> int:  # type: ignore[no-untyped-def]
    """How many indexed files hold at least one segment `where` admits (`connection`: SQLAlchemy)."""
    from sqlalchemy import distinct, func, select

    from db.schema import SegmentRow

    admitted = segment_query(where, corpora).subquery()
    return int(connection.execute(select(func.count(distinct(SegmentRow.file_id)))
                                  .where(SegmentRow.id.in_(select(admitted.c.id)))).scalar() or 0)
