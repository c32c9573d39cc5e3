"""Dictionary glosses for query words the starter model never met, from WordNet.

A 22M-parameter sentence encoder knows "fiddle" is near "violin", but not that a sackbut is an early
trombone or a syrinx a pan flute; a dictionary does. Before a text reaches the text tower, every noun of it
whose stem no training text uses (the checkpoint's caption vocabulary) is looked up in WordNet's noun index,
and the first sense's other names and the first clause of its gloss are appended in brackets:

    "a sackbut" -> "a sackbut (a medieval brass instrument)"   [illustrative]

A text with any content word the captions use is left alone: the model reads it already, and a gloss of
its other words ("rain on a tin roof": roof, "a protective covering ...") would pull the query towards the
dictionary's wording rather than the sound. So queries in the captions' own words, and queries that mix
them with new ones, embed exactly as before. Three- and two-word phrases are looked up before single words ("tenor sax", "bossa nova"), when one of
their words is unknown.

WordNet 3.0 (Princeton University, the WordNet licence: free use with the copyright notice kept) comes
from Debian's `wordnet-base` (/usr/share/wordnet) or a directory named by RESOUND_WORDNET_DIR. Without
it texts pass unchanged. Lookups binary-search the sorted index file through mmap, as WordNet's own tools
do, so a query pays a few page reads, not the parsing of a 4.8 MB index.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from pathlib import Path

from indexer.starter.paraphrases import STOP_WORDS, stem, words

DEFAULT_WORDNET_DIRS = (Path("/usr/share/wordnet"),)
ENV_VAR = "RESOUND_WORDNET_DIR"
# Senses of a phrase used: the first (WordNet orders senses by frequency in its tagged corpus).
SENSES = 1
SYNONYMS = 3


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


class WordNetNouns:
    """Noun lookups in a WordNet 3.0 dictionary directory (index.noun, data.noun), read through mmap."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        with open(self.directory / "index.noun", "rb") as f:
            self._index = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        with open(self.directory / "data.noun", "rb") as f:
            self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def _index_line(self, lemma: bytes) -> bytes | None:
        # Binary search over byte offsets: each probe reads the first whole line after the offset.
        # The licence header's lines start with two spaces and sort before every lemma.
        low, high = 0, len(self._index)
        key = lemma + b" "
        while low < high:
            middle = (low + high) // 2
            start = self._index.rfind(b"\n", 0, middle) + 1
            end = self._index.find(b"\n", start)
            end = len(self._index) if end < 0 else end
            line = self._index[start:end]
            if line.startswith(key):
                return line
            if line.startswith(b"  ") or line < key:
                low = end + 1
            else:
                high = start
        return None

    def senses(self, lemma: str, limit: int = SENSES) -> list[tuple[list[str], str]]:
        """Up to `limit` senses of the noun `lemma` (spaces or underscores), most frequent first: each as
        (its synset's lemma names with spaces, the first clause of its gloss)."""
        line = self._index_line(lemma.lower().replace(" ", "_").encode("latin-1", "ignore"))
        if line is None:
            return []
        fields = line.decode("latin-1").split()
        count = int(fields[2])
        found = []
        for offset in fields[len(fields) - count :][:limit]:
            record = self._data[int(offset) : self._data.find(b"\n", int(offset))].decode("latin-1")
            head, _, gloss = record.partition(" | ")
            parts = head.split()
            names = [parts[4 + 2 * i].replace("_", " ") for i in range(int(parts[3], 16))]
            found.append((names, gloss.split(";")[0].strip()))
        return found


def _noun_forms(word: str) -> list[str]:
    # The plural forms a query is likely to hold; WordNet's index holds base forms ("ivories" -> "ivory").
    forms = [word]
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        forms.append(word[:-2])
    if word.endswith("s") and len(word) > 3:
        forms.append(word[:-1])
    return forms


class QueryGlosser:
    """Appends WordNet glosses of the nouns a text holds that `vocabulary` (word stems, paraphrases.stem)
    does not; see the module docstring."""

    def __init__(self, vocabulary: Iterable[str], nouns: WordNetNouns):
        self.vocabulary = frozenset(vocabulary)
        self.nouns = nouns

    def unknown(self, word: str) -> bool:
        """Whether `word` is a content word whose stem the vocabulary lacks."""
        return word not in STOP_WORDS and stem(word) not in self.vocabulary

    def glosses(self, text: str) -> list[str]:
        """"synonyms: gloss" for each unknown noun or phrase of `text`, in the order they are found; none
        when a content word of `text` is known."""
        tokens = words(text)
        content = [token for token in tokens if token not in STOP_WORDS]
        if not content or not all(self.unknown(token) for token in content):
            return []
        covered: set[int] = set()
        found = []
        for n in (3, 2, 1):
            for i in range(len(tokens) - n + 1):
                span = range(i, i + n)
                if covered & set(span) or not any(self.unknown(tokens[j]) for j in span):
                    continue
                phrase = " ".join(tokens[i : i + n])
                for form in (_noun_forms(phrase) if n == 1 else [phrase]):
                    senses = self.nouns.senses(form)
                    if senses:
                        covered |= set(span)
                        for names, gloss in senses:
                            others = [name for name in names if name.lower() != form][:SYNONYMS]
                            found.append(", ".join(others) + ": " + gloss if others else gloss)
                        break
        return found

    def expand(self, text: str) -> str:
        """`text`, followed by its unknown words' glosses in brackets when it has any."""
        glosses = self.glosses(text)
        return f"{text} ({'; '.join(glosses)})" if glosses else text


def caption_vocabulary(texts: Iterable[str]) -> list[str]:
    """Sorted stems of every word of `texts` (the words a model's captions and prompts use)."""
    return sorted({stem(word) for text in texts for word in words(text)})
