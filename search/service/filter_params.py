"""Search filters as request parameters: the same conditions as the CLI's filter options, as query
parameters (GET /api/query, GET /api/segments/{id}/similar) or form fields (POST /api/similar)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Form, Query

from db.filters import TAG_KEYS, SearchFilter

Holding = Literal["audio", "visual", "av"]

_DOC = {
    "under": "only files inside this folder (at any depth): relative to the corpus root, as hits' paths are, "
             "or absolute on the server",
    "glob": "only files whose path matches this shell pattern (relative to the corpus root; absolute when it "
            "starts with /; * also crosses /)",
    "ext": "only files with one of these extensions (repeat the parameter)",
    "min_duration": "only files at least this many seconds long",
    "max_duration": "only files at most this many seconds long",
    "has": "only segments holding sound (audio), picture (visual) or both (av)",
    "modified_after": "only files modified at or after this time (ISO date or datetime, or epoch seconds)",
    "modified_before": "only files modified before this time",
    "tag": f"only files whose container tag matches, case-insensitively: key=value (repeatable; keys: "
           f"{', '.join(TAG_KEYS)})",
}


def query_filter(
    under: Annotated[str | None, Query(description=_DOC["under"], max_length=4096)] = None,
    glob: Annotated[str | None, Query(description=_DOC["glob"], max_length=1000)] = None,
    ext: Annotated[list[str], Query(description=_DOC["ext"])] = [],  # noqa: B006 - FastAPI copies defaults
    min_duration: Annotated[float | None, Query(ge=0, description=_DOC["min_duration"])] = None,
    max_duration: Annotated[float | None, Query(ge=0, description=_DOC["max_duration"])] = None,
    has: Annotated[Holding | None, Query(description=_DOC["has"])] = None,
    modified_after: Annotated[str | None, Query(description=_DOC["modified_after"], max_length=64)] = None,
    modified_before: Annotated[str | None, Query(description=_DOC["modified_before"], max_length=64)] = None,
    tag: Annotated[list[str], Query(description=_DOC["tag"])] = [],  # noqa: B006
) -> SearchFilter:
    """The filter the query parameters describe (FilterError, a 400, on what cannot be read)."""
    return SearchFilter.parse(under=under, glob=glob, extensions=ext, min_duration=min_duration,
                              max_duration=max_duration, modality=has, modified_after=modified_after,
                              modified_before=modified_before, tags=tag, from_cwd=False)


def form_filter(
    under: Annotated[str | None, Form(description=_DOC["under"], max_length=4096)] = None,
    glob: Annotated[str | None, Form(description=_DOC["glob"], max_length=1000)] = None,
    ext: Annotated[list[str], Form(description=_DOC["ext"])] = [],  # noqa: B006
    min_duration: Annotated[float | None, Form(ge=0, description=_DOC["min_duration"])] = None,
    max_duration: Annotated[float | None, Form(ge=0, description=_DOC["max_duration"])] = None,
    has: Annotated[Holding | None, Form(description=_DOC["has"])] = None,
    modified_after: Annotated[str | None, Form(description=_DOC["modified_after"], max_length=64)] = None,
    modified_before: Annotated[str | None, Form(description=_DOC["modified_before"], max_length=64)] = None,
    tag: Annotated[list[str], Form(description=_DOC["tag"])] = [],  # noqa: B006
) -> SearchFilter:
    """The filter the form fields of an upload describe."""
    return query_filter(under, glob, ext, min_duration, max_duration, has, modified_after, modified_before, tag)
