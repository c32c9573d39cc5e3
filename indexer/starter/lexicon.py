"""Dictionary glosses for query words the starter model never met, from WordNet.

A 22M-parameter sentence encoder knows "fiddle" is near "violin", but not that a sackbut is an early
trombone or a syrinx a pan flute; a dictionary does. Before a text reaches the text tower, every word of it
whose stem no training text uses (the checkpoint's caption vocabulary) is looked up in WordNet (nouns,
verbs and adjectives, by their base forms: "ivories" -> ivory, "strummed" -> strum), and one sense's other
names, its hypernym's name and the first clause of its gloss are appended in brackets:

    "a sackbut" -> "a sackbut (brass: a medieval musical instrument resembling a trombone)"

Which sense: a word has several ("a concertina" is first coiled barbed wire in WordNet, then a free-reed
instrument). A sound search engine is asked for sounds, so the glosser takes the sense whose description
uses the most words of the model's own vocabulary (the captions speak of instruments, reeds and air, not of
wire); ties go to WordNet's more frequent sense, nouns before verbs before adjectives. Scoring each sense
with the sentence encoder instead (its nearness to the training texts) chose no better on the paraphrase
queries and cost 30-80 ms a glossed query.

A text with any content word the captions use is left alone: the model reads it already, and a gloss of
its other words ("rain on a tin roof": roof, "a protective covering ...") would pull the query towards the
dictionary's wording rather than the sound. So queries in the captions' own words, and queries that mix
them with new ones, embed exactly as before. Three- and two-word phrases are looked up before single words
("tenor sax", "bossa nova"), when one of their words is unknown.

WordNet 3.0 (Princeton University, the WordNet licence: free use with the copyright notice kept) comes
from Debian's `wordnet-base` (/usr/share/wordnet) or a directory named by RESOUND_WORDNET_DIR. Without
it texts pass unchanged. Lookups binary-search the sorted index files through mmap, as WordNet's own tools
do, so a query pays a few page reads, not the parsing of a 4.8 MB index.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from indexer.starter.paraphrases import STOP_WORDS, stem, words

DEFAULT_WORDNET_DIRS = (Path("/usr/share/wordnet"),)
ENV_VAR = "RESOUND_WORDNET_DIR"
# Parts of speech looked up, in the order their senses are preferred among equals.
PARTS_OF_SPEECH = ("noun", "verb", "adj")
# Senses of each part of speech a word's candidates are drawn from (WordNet orders senses by frequency in
# its tagged corpus; rarer ones are seldom what a person means).
SENSES = 4
SYNONYMS = 3
# WordNet's "morphy" detachment rules: inflected ending -> base ending, tried after the exception lists.
DETACHMENTS = {
    "noun": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
}


def find_wordnet(directory: str | Path | None = None) -> Path | None:
    """The WordNet dictionary directory (`directory`, then $RESOUND_WORDNET_DIR, then Debian's), or None."""
    candidates = [Path(directory)] if directory else []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.extend(DEFAULT_WORDNET_DIRS)
    for candidate in candidates:
        if (candidate / "index.noun").is_file() and (candidate / "data.noun").is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Sense:
    """One WordNet synset as a gloss needs it."""

    pos: str
    names: tuple[str, ...]  # the synset's lemmas, with spaces
    gloss: str  # the first clause of its definition
    hypernym: str = ""  # the first name of its first (instance) hypernym, "" for adjectives and roots

    def describe(self, form: str) -> str:
        """"other names, hypernym: gloss" for the word `form` this sense was found by."""
        others = [name for name in self.names if name.lower() != form][:SYNONYMS]
        if self.hypernym and self.hypernym.lower() != form and self.hypernym not in others:
            others.append(self.hypernym)
        return ", ".join(others) + ": " + self.gloss if others else self.gloss


def _mmap(path: Path) -> mmap.mmap:
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


class WordNetPart:
    """Lookups in one part of speech of a WordNet 3.0 directory (index.POS, data.POS, POS.exc), through mmap."""

    def __init__(self, directory: Path, pos: str):
        self.pos = pos
        self._index = _mmap(directory / f"index.{pos}")
        self._data = _mmap(directory / f"data.{pos}")
        exceptions = directory / f"{pos}.exc"
        self._exceptions = _mmap(exceptions) if exceptions.is_file() and exceptions.stat().st_size else None

    @staticmethod
    def _find_all(table: mmap.mmap, key: bytes) -> list[bytes]:
        # Binary search over byte offsets of a file sorted by its first field: each probe reads the first
        # whole line after the offset. The licence header's lines start with two spaces and sort first.
        # Index files hold each lemma once; exception files may list an inflection twice ("aurar"), so
        # the neighbours of the line found are read too.
        if not key or not key.isascii() or b" " in key or key.startswith(b" "):
            return []  # WordNet's lemmas are ASCII words: nothing else has a line (and b"" would match any)
        key += b" "
        low, high = 0, len(table)
        while low < high:
            middle = (low + high) // 2
            start = table.rfind(b"\n", 0, middle) + 1
            end = table.find(b"\n", start)
            end = len(table) if end < 0 else end
            line = table[start:end]
            if line.startswith(key) and not line.startswith(b"  "):
                found = [line]
                before = start - 1
                while before > 0:
                    previous = table.rfind(b"\n", 0, before) + 1
                    if not table[previous:before].startswith(key) or table[previous:before].startswith(b"  "):
                        break
                    found.insert(0, table[previous:before])
                    before = previous - 1
                while end < len(table):
                    following = table.find(b"\n", end + 1)
                    following = len(table) if following < 0 else following
                    if not table[end + 1 : following].startswith(key):
                        break
                    found.append(table[end + 1 : following])
                    end = following
                return found
            if line.startswith(b"  ") or line < key:
                low = end + 1
            else:
                high = start
        return []

    @classmethod
    def _find(cls, table: mmap.mmap, key: bytes) -> bytes | None:
        """The line of `table` whose first field is `key` (the first, where several are)."""
        found = cls._find_all(table, key)
        return found[0] if found else None

    @staticmethod
    def _key(lemma: str) -> bytes:
        # WordNet 3.0's lemmas are ASCII: a word in another script has no line, and gets an empty key
        # (never one with its non-ASCII letters dropped: "café" is not "caf").
        key = lemma.lower().replace(" ", "_")
        return key.encode("ascii") if key.isascii() and key.isprintable() else b""

    def _candidate_forms(self, word: str) -> list[str]:
        # WordNet's morphy order: the word, its exception-list bases, then the detachment rules.
        forms = [word]
        if self._exceptions is not None:
            for line in self._find_all(self._exceptions, self._key(word)):
                forms += [base.replace("_", " ") for base in line.decode("latin-1").split()[1:]]
        for ending, base in DETACHMENTS.get(self.pos, ()):
            if word.endswith(ending) and len(word) > len(ending) + 1:
                forms.append(word[: len(word) - len(ending)] + base)
        return forms

    def _synset(self, offset: int) -> tuple[list[str], list[tuple[str, int, str]], str]:
        # data line: offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (symbol offset pos source/target)*
        # [frames] | gloss
        record = self._data[offset : self._data.find(b"\n", offset)].decode("latin-1")
        head, _, gloss = record.partition(" | ")
        parts = head.split()
        count = int(parts[3], 16)
        names = [parts[4 + 2 * i].split("(")[0].replace("_", " ") for i in range(count)]
        p = 4 + 2 * count
        pointers = [(parts[p + 1 + 4 * i], int(parts[p + 2 + 4 * i]), parts[p + 3 + 4 * i]) for i in range(int(parts[p]))]
        return names, pointers, gloss.split(";")[0].strip()

    def lookup(self, word: str, limit: int = SENSES) -> tuple[str, list[Sense]]:
        """(the first base form of `word` this part of speech holds, up to `limit` of its senses, most
        frequent first); ("", []) when it holds none. `word` may be a phrase (spaces or underscores)."""
        for form in self._candidate_forms(word):
            line = self._find(self._index, self._key(form))
            if line is not None:
                return form, self._senses(line, limit)
        return "", []

    def _senses(self, line: bytes, limit: int) -> list[Sense]:
        # index line: lemma pos synset_cnt p_cnt [ptr_symbol]* sense_cnt tagsense_cnt synset_offset*
        fields = line.decode("latin-1").split()
        count = int(fields[2])
        found = []
        for offset in fields[len(fields) - count :][:limit]:
            names, pointers, gloss = self._synset(int(offset))
            hypernym = ""
            for symbol, target, pos in pointers:
                if symbol in ("@", "@i") and pos == self.pos[0]:
                    hypernym = self._synset(target)[0][0]
                    break
            found.append(Sense(self.pos, tuple(names), gloss, hypernym))
        return found


class WordNet:
    """The parts of speech of a WordNet 3.0 directory that it holds (nouns at least)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.parts = [
            WordNetPart(self.directory, pos)
            for pos in PARTS_OF_SPEECH
            if (self.directory / f"index.{pos}").is_file() and (self.directory / f"data.{pos}").is_file()
        ]

    def senses(self, phrase: str, limit: int = SENSES) -> tuple[str, list[Sense]]:
        """(the base form found, its senses) for a word or phrase: per part of speech, the first base form
        the dictionary holds and up to `limit` of its senses, nouns first; ("", []) when none."""
        found: list[Sense] = []
        form_found = ""
        for part in self.parts:
            form, senses = part.lookup(phrase, limit)
            form_found = form_found or form
            found += senses
        return form_found, found


class QueryGlosser:
    """Appends WordNet glosses of the words a text holds that `vocabulary` (word stems, paraphrases.stem)
    does not; see the module docstring."""

    def __init__(self, vocabulary: Iterable[str], wordnet: WordNet):
        self.vocabulary = frozenset(vocabulary)
        self.wordnet = wordnet

    def unknown(self, word: str) -> bool:
        """Whether `word` is a content word whose stem the vocabulary lacks."""
        return word not in STOP_WORDS and stem(word) not in self.vocabulary

    def known_words(self, text: str) -> int:
        """How many content words of `text` the vocabulary holds: a sense's nearness to the model's domain."""
        return sum(not self.unknown(word) for word in words(text) if word not in STOP_WORDS)

    def _lookups(self, tokens: list[str]) -> list[tuple[str, list[Sense]]]:
        # Longest phrases first; a span is looked up when one of its words is unknown and none of it is
        # covered by a longer phrase already found.
        covered: set[int] = set()
        found = []
        for n in (3, 2, 1):
            for i in range(len(tokens) - n + 1):
                span = set(range(i, i + n))
                if covered & span or not any(self.unknown(tokens[j]) for j in span):
                    continue
                form, senses = self.wordnet.senses(" ".join(tokens[i : i + n]))
                if senses:
                    covered |= span
                    found.append((form, senses))
        return found

    def glosses(self, text: str) -> list[str]:
        """A description of the chosen sense of each unknown word or phrase of `text`, in the order they are
        found; none when a content word of `text` is known."""
        tokens = words(text)
        content = [token for token in tokens if token not in STOP_WORDS]
        if not content or not all(self.unknown(token) for token in content):
            return []
        chosen = []
        for form, senses in self._lookups(tokens):
            options = [sense.describe(form) for sense in senses]
            # max keeps the first of equals: the more frequent sense.
            chosen.append(max(options, key=self.known_words))
        return chosen

    def expand(self, text: str) -> str:
        """`text`, followed by its unknown words' glosses in brackets when it has any."""
        glosses = self.glosses(text)
        return f"{text} ({'; '.join(glosses)})" if glosses else text


def caption_vocabulary(texts: Iterable[str]) -> list[str]:
    """Sorted stems of every word of `texts` (the words a model's captions and prompts use)."""
    return sorted({stem(word) for text in texts for word in words(text)})
