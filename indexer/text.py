"""Text as the text towers and the lexicon read it: any Unicode string, normalised the same way.

A query, label or caption may come from a terminal, a file or an HTTP form in any script, with combining
marks, right-to-left marks, zero-width joiners, control characters, or lone surrogates (a file name that
was not UTF-8, decoded with surrogateescape). None of these is an error: each is mapped to what a reader
would see, and a script no model or dictionary knows passes through unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from indexer.errors import TextFileError

_SPACES = re.compile(r"\s+")
_SURROGATES = re.compile("[\ud800-\udfff]")


def normalize_text(text: str) -> str:
    """`text` in NFKC (compatibility forms folded, "ｆｉｌｍ" -> "film", composed accents), with format
    characters (zero-width, bidi marks) dropped, control characters and line breaks turned into spaces,
    lone surrogates into U+FFFD, and runs of white space into one space; stripped."""
    text = _SURROGATES.sub("\ufffd", text)
    text = unicodedata.normalize("NFKC", text)
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if category == "Cf":
            continue
        kept.append(" " if category in ("Cc", "Zl", "Zp") else c)
    return _SPACES.sub(" ", "".join(kept)).strip()


def written_in_another_script(text: str) -> bool:
    """Whether `text` has letters and none of them Latin ("日本語", "кошка"; not "440" nor "café"): the text
    towers resound uses learned English, so such a query is answered with a note (search.engine)."""
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and not any("a" <= ch.lower() <= "z" or "\u00c0" <= ch <= "\u024f" for ch in letters)


def printable(text: str) -> str:
    """`text` as it can be printed or sent as UTF-8: a file name's undecodable bytes (kept by Python as lone
    surrogates) shown as backslash escapes (caf\\xe9.wav), everything else unchanged."""
    if not _SURROGATES.search(text):
        return text
    return "".join(c.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                   if "\udc80" <= c <= "\udcff" else (c if not _SURROGATES.match(c) else "\ufffd") for c in text)


def read_text_file(path: str | Path) -> str:
    """The UTF-8 text of a file a user names (a CSV, a split, a label list), without a byte-order mark;
    TextFileError says, in one line, why a file is not that (unreadable, binary, another encoding)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TextFileError(f"{path}: cannot read ({e.strerror or e})") from e
    if b"\0" in data:
        raise TextFileError(f"{path}: not a text file (it holds binary data)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextFileError(f"{path}: not UTF-8 text (byte {e.start})") from e
