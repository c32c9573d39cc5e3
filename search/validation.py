"""Checks of the parameters that the command line and the HTTP API both take, in one place, so that a
value one refuses the other refuses too, with the same words.

Each check raises `ParameterError` (a `QueryError`): the command line prints it as a usage error (exit
status 2), the API answers 400 with the message as `detail` (limits it already declared in its schema stay
FastAPI's 422). `names` arguments say how the caller spells a parameter ("--labels" on the command line,
"labels" in a form), so each side's message names what its user typed.
"""

from __future__ import annotations

from collections.abc import Iterable

from indexer.errors import ParameterError
from indexer.text import normalize_text

MAX_QUERY_CHARS = 2000  # a description, not a document (and a bound on the text tower's work)
MAX_LABELS = 256  # labels per classification: each is embedded, with its prompts
MAX_LABEL_CHARS = 200


class LabelListError(ParameterError):
    """Labels that cannot be told apart or that are not there (a file's, or a request's): the content is at
    fault, not the command line's use, so the command fails (exit status 1) rather than refusing usage."""

    content = True


class LabelLimitError(ParameterError):
    """Too many labels, or one too long, for one request (the API's 422, as its schema documents)."""


def query_text(text: str | None) -> str:
    """`text` stripped; refuses an empty one or one longer than MAX_QUERY_CHARS."""
    text = (text or "").strip()
    if not text:
        raise ParameterError("empty query text")
    if not normalize_text(text):
        raise ParameterError("query text holds only invisible characters (controls, zero-width marks)")
    if len(text) > MAX_QUERY_CHARS:
        raise ParameterError(f"query text of {len(text)} characters exceeds {MAX_QUERY_CHARS}")
    return text


def one_of(given: dict[str, object]) -> None:
    """Refuses two or more of the mutually exclusive parameters `given` (name as the caller spells it ->
    value; None or "" means not given)."""
    named = [name for name, value in given.items() if value not in (None, "")]
    if len(named) > 1:
        raise ParameterError(f"give {' or '.join(given)}, not both" if len(given) == 2
                             else f"give one of {', '.join(given)}, not {', '.join(named)}")


def label_list(lines: Iterable[str], source: str) -> tuple[str, ...]:
    """The labels of `lines` (one per line, stripped, blank lines skipped) in order; refuses none at all
    and a label given twice (which would split its probability in two). `source` names where they came
    from ("labels", a file's path)."""
    labels = [line.strip() for line in lines if line.strip()]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise LabelListError(f"{source}: duplicate labels {duplicates}")
    if not labels:
        raise LabelListError(f"{source}: no labels")
    return tuple(labels)


def label_limits(labels: tuple[str, ...], max_labels: int = MAX_LABELS, max_chars: int = MAX_LABEL_CHARS) -> None:
    """Refuses more than `max_labels` labels, or one longer than `max_chars` characters."""
    if len(labels) > max_labels:
        raise LabelLimitError(f"{len(labels)} labels; at most {max_labels} per request")
    too_long = [label for label in labels if len(label) > max_chars]
    if too_long:
        raise LabelLimitError(f"label {too_long[0][:40]!r}... exceeds {max_chars} characters")


def texts_list(lines: Iterable[str], source: str) -> list[str]:
    """Captions or labels to rank (one per line, stripped, blank lines skipped); refuses none at all."""
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise LabelListError(f"{source}: no texts (one caption or label per line)")
    return texts
