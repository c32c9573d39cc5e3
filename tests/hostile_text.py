"""Hypothesis strategies for hostile text and file names: what a user can type, paste or have on disk.

Text is drawn from all of Unicode (every script, combining marks, right-to-left and zero-width marks,
control characters, lone surrogates as a command line holds them for bytes that are not UTF-8), up to
2,000 characters; file names from arbitrary bytes (not UTF-8, newlines, spaces, leading dashes).
Used by tests/test_hostile_input.py (the command lines), tests/test_openapi_fuzz.py (the API) and
bench/hostile_cli.py.
"""

from __future__ import annotations

import os

from hypothesis import strategies as st

# Characters that break naive text handling, each for its own reason.
SPECIAL = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff",  # zero-width space, (non-)joiners, word joiner, BOM
           "\u202e", "\u202d", "\u2066", "\u2069", "\u200f",  # bidi overrides and isolates, RTL mark
           "\u0301", "\u0308", "\u20dd", "\u0489",  # combining marks, alone or stacked
           "\x00", "\x07", "\x1b", "\r", "\n", "\t", "\x85", "\u2028", "\u2029",  # controls and line breaks
           "\ufffd", "\uffff", "\U0010ffff", "\U0001f3b5", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
           "ﷺ", "ꙮ", "𒐫", "\u0e47\u0e47\u0e47")
SCRIPTS = ("日本語の音", "кошка мяукает", "Ω ω", "你好", "مرحبا بالعالم", "שלום עולם", "नमस्ते", "ᚠᚢᚦ", "ⴰⵣⵓⵍ",
           "ελληνικά", "한국어", "ไทย", "Ἀθῆναι", "e\u0301te\u0301", "ｆｕｌｌ ｗｉｄｔｈ", "dog barking")


def any_character(surrogates: bool = True) -> st.SearchStrategy[str]:
    """One code point of all of Unicode (lone surrogates too, unless `surrogates` is False)."""
    return st.characters(codec=None, exclude_categories=() if surrogates else ("Cs",))


def hostile_text(max_size: int = 2000, surrogates: bool = True) -> st.SearchStrategy[str]:
    """Text a query, label or caption may be: mixed scripts and marks, short or up to `max_size` long."""
    piece = st.one_of(any_character(surrogates), st.sampled_from(SPECIAL), st.sampled_from(SCRIPTS))
    mixed = st.lists(piece, max_size=40).map("".join)
    long = st.tuples(st.one_of(st.sampled_from(SCRIPTS), any_character(surrogates)),
                     st.integers(1, max_size)).map(lambda pair: (pair[0] * pair[1])[:max_size])
    return st.one_of(mixed, long, st.sampled_from(SCRIPTS)).map(lambda text: text[:max_size])


def hostile_lines(surrogates: bool = True) -> st.SearchStrategy[list[str]]:
    """Lines of a label or caption file: a few hostile texts, duplicates and blank lines possible."""
    line = hostile_text(200, surrogates).map(lambda t: " ".join(t.splitlines()))  # \x85, \u2028 break lines too
    return st.lists(st.one_of(line, st.sampled_from(SCRIPTS), st.just("")), min_size=0, max_size=8)


def odd_file_name() -> st.SearchStrategy[str]:
    """A file name (str, as os.listdir gives it) from arbitrary bytes: not UTF-8, newlines, dashes, spaces."""
    raw = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))
    named = st.one_of(raw, st.sampled_from([b"-leading dash", b"new\nline", b"caf\xe9", b" spaces ", b"\xff\xfe",
                                            "日本語".encode(), b"\x1b[31mred", b"a\rb"]))
    return named.filter(lambda b: b not in (b".", b"..")).map(lambda b: os.fsdecode(b + b".wav"))


def file_bytes(text: str) -> bytes:
    """`text` as a file holds it: UTF-8, with lone surrogates as the bytes they stand for (surrogateescape)
    or, where they stand for none, as the invalid UTF-8 a careless writer produces (surrogatepass)."""
    return b"".join(c.encode("utf-8", "surrogateescape" if "\udc80" <= c <= "\udcff" else "surrogatepass")
                    for c in text)
