"""The human-readable form of search results: a table that fits a 100-column terminal."""

from __future__ import annotations

import math

from search.engine import Hit

WIDTH = 100


def clock(seconds: float, up: bool = False) -> str:
    """`seconds` as m:ss (h:mm:ss from an hour), rounded down, or up with `up` (a span's end)."""
    whole = math.ceil(seconds - 1e-6) if up else math.floor(seconds + 1e-6)
    hours, rest = divmod(max(whole, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def span(start: float, end: float) -> str:
    """A window's span, e.g. 1:05-1:15."""
    return f"{clock(start)}-{clock(end, up=True)}"


def _printable(path: str) -> str:
    # Undecodable bytes in file names (kept as surrogates) are shown escaped rather than crashing print, and
    # so are line breaks and control characters (one hit, one line; no terminal escapes from a file name).
    from indexer.exit_status import one_line

    return one_line(path)


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` columns from the left (the file name at the end is what tells files apart)."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def ranking_note(hits: list[Hit]) -> str | None:
    """A line saying why the score column does not fall with the rank, when it does not: keyword and hybrid
    searches rank by words (and sound), while `score` stays the best window's cosine (new-user trial: a
    column that rises at rank 4 reads as a broken ranking)."""
    ranked_by_words = any(h.keyword_score is not None or h.fused_score is not None for h in hits)
    falls = all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    if not ranked_by_words or falls:
        return None
    return ("ranked by the words of names, folders and tags with the sound (--mode hybrid or keyword); "
            "score is the sound's cosine (--show prints the matched words; --mode vector ranks by sound alone)")


def hits_table(hits: list[Hit], windows: bool = False, width: int = WIDTH, show: bool = False) -> list[str]:
    """The lines of the results table: a header, then one line per hit, paths relative to the corpus root.

    A hit whose file matched in further windows says how many (`+2 windows`); with `windows` each of them
    follows on its own line; with `show`, the file's tags (`description: ...`) follow it.
    """
    if not hits:
        return ["no results"]
    spans = [span(h.start, h.end) for h in hits]
    time_width = max(11, *(len(t) for t in spans))  # 0:00-0:04 up to 59:59-60:00; wider past an hour
    prefix = 4 + 2 + 6 + 2 + time_width + 2
    roots = {h.root for h in hits}
    file_title = "file"
    if len(roots) == 1 and next(iter(roots)):
        titled = f"file (in {_printable(next(iter(roots)))})"
        file_title = titled if prefix + len(titled) <= width else file_title
    absolute = len(roots) > 1  # relative paths of different corpus roots could not be told apart
    if absolute:
        file_title = f"file (absolute: hits from {len(roots)} corpus folders)"
    lines = [f"{'rank':>4}  {'score':>6}  {'time':<{time_width}}  {file_title}"]
    for h, when in zip(hits, spans):
        more = len(h.windows) - 1
        suffix = f"  +{more} window{'s' if more > 1 else ''}" if more > 0 else ""
        path = _fit(_printable(h.path if absolute else h.relative_path), width - prefix - len(suffix))
        lines.append(f"{h.rank:>4}  {h.score:6.3f}  {when:<{time_width}}  {path}{suffix}")
        if windows:
            lines.extend(f"{'':>4}  {w.score:6.3f}  {span(w.start, w.end)}" for w in h.windows[1:])
        if show and h.matched:
            lines.append(_fit(f"{'':>6}words: {', '.join(h.matched)}", width))
        if show:
            lines.extend(_fit(f"{'':>6}{key}: {_printable(value)}", width) for key, value in h.tags.items())
    return lines
