"""Paraphrase queries for the demo corpus's classes, and the proof that no training text uses their words.

`paraphrase_queries.json` holds, for every class of indexer.demo, a few queries in other words than the
captions with their key words, of two kinds: a "synonym" names or describes the sound itself in other
words ("a fiddle" for violin, "a downpour" for rain, "a sackbut" for trombone); a "reference" names
something people associate with it (a work, performer, brand, genre or place: "Yo-Yo Ma", "a Steinway",
"calypso"), which asks for world knowledge as well. A query is fair when

- every word of it is either a key word or a function word (STOP_WORDS), so no word it shares with the
  training texts carries its meaning, and
- no key word, nor a word of the same stem ("chant" and "chanter", "buzzer" and "buzz"), occurs in any
  text the trainer can give the text tower.

`check_paraphrases` enforces both against a list of texts and raises ParaphraseLeakError naming every
clash; `bench/paraphrase_proof.py` runs it on `indexer.training.train.training_texts`, and
`bench/paraphrase_precision.py` measures precision@10 of the queries on a fresh render.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import ResoundError

PARAPHRASE_QUERIES_PATH = Path(__file__).with_name("paraphrase_queries.json")
# A second set in the same form, written after the glosser and the text anchors were developed on the first
# by someone who never ran a model on it: a check of the query-time text processing on words nobody tuned on.
CONFIRMATION_QUERIES_PATH = Path(__file__).with_name("paraphrase_queries_confirm.json")
# Words that carry no meaning of their own; the only words a query may share with the training texts.
QUERY_KINDS = ("synonym", "reference")
STOP_WORDS = frozenset({"a", "an", "the", "of", "on", "in", "and", "over", "with", "by", "to", "at", "from"})
_SUFFIXES = ("ings", "ing", "ers", "er", "ed", "es", "s", "y", "e")
_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")


class ParaphraseLeakError(ResoundError):
    """A paraphrase query uses a word the training texts contain."""


@dataclass(frozen=True)
class ParaphraseQuery:
    """A query for the demo class `label` in words no training text uses (`key_words`)."""

    label: str
    query: str
    key_words: tuple[str, ...]
    kind: str = "synonym"  # one of QUERY_KINDS


@functools.lru_cache(maxsize=4)
def paraphrase_queries(path: Path = PARAPHRASE_QUERIES_PATH) -> tuple[ParaphraseQuery, ...]:
    """Every paraphrase query of a query file (class label -> [{query, key_words, kind}]), in class then
    file order."""
    table = json.loads(Path(path).read_text(encoding="utf-8"))
    return tuple(
        ParaphraseQuery(label, entry["query"], tuple(entry["key_words"]), entry["kind"])
        for label, entries in table.items()
        for entry in entries
    )


def words(text: str) -> list[str]:
    """Lower-case words of `text`; hyphenated words and possessives stay whole ("six-string", "elgar's")."""
    from indexer.text import normalize_text

    return [w.removesuffix("'s") for w in _WORD.findall(normalize_text(text).lower())]


def stem(word: str) -> str:
    """A crude stem: the word without one common English suffix, keeping at least three letters."""
    word = word.lower().removesuffix("'s")
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _word_parts(word: str) -> list[str]:
    # "six-string" shares "string" with the captions as surely as "string" does.
    return [word, *word.split("-")] if "-" in word else [word]


def check_paraphrases(queries: Iterable[ParaphraseQuery], texts: Iterable[str]) -> dict[str, int]:
    """Raise ParaphraseLeakError listing every query word that is neither declared nor a stop word, and
    every key word (or a part of a hyphenated one) whose stem is the stem of a word of `texts` (with an
    example text). Returns counts: queries, key words, texts, distinct words in the texts."""
    queries = list(queries)
    examples: dict[str, str] = {}
    n_texts = 0
    for text in texts:
        n_texts += 1
        for word in words(text):
            examples.setdefault(stem(word), text)
    problems = []
    key_words = set()
    for q in queries:
        if q.kind not in QUERY_KINDS:
            problems.append(f"{q.label}: {q.query!r}: kind {q.kind!r} is not one of {', '.join(QUERY_KINDS)}")
        declared = {k.lower() for k in q.key_words}
        key_words |= declared
        for word in words(q.query):
            if word not in declared and word not in STOP_WORDS:
                problems.append(f"{q.label}: {q.query!r}: {word!r} is neither a key word nor a stop word")
        for key in sorted(declared):
            for part in _word_parts(key):
                if stem(part) in examples:
                    problems.append(
                        f"{q.label}: {q.query!r}: key word {part!r} shares its stem with the training text "
                        f"{examples[stem(part)]!r}"
                    )
    if problems:
        raise ParaphraseLeakError(f"{len(problems)} paraphrase problem(s):\n" + "\n".join(problems))
    return {"queries": len(queries), "key_words": len(key_words), "texts": n_texts, "words": len(examples)}


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def caption_vocabulary_texts() -> list[str]:
    """Every phrase the training captions and prompts are assembled from, without rendering a corpus:
    the demo phrase tables and the details they are filled with (languages, voices, noise colours), the
    demo and recordings labels, the recordings' captions and the prompt template. Any training caption's
    words are among these texts' words."""
    from indexer.demo.captions import caption_phrases
    from indexer.demo.classes import SOUND_CLASSES
    from indexer.demo.sources import NOISE_COLOURS, SPEECH_VOICES
    from indexer.starter.prompts import TEMPLATE
    from indexer.starter.recording_captions import LABEL_CAPTIONS

    return [
        *_strings(caption_phrases()),
        *(voice.language for voice in SPEECH_VOICES),
        "male voice",
        "female voice",
        *(colour for colour, _ in NOISE_COLOURS.values()),
        *SOUND_CLASSES,
        *LABEL_CAPTIONS,
        *(caption for captions in LABEL_CAPTIONS.values() for caption in captions),
        TEMPLATE,
    ]
