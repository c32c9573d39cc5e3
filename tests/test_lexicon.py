"""WordNet glosses for query words the starter never met: lookups in a hand-made dictionary in WordNet's
file format, which texts get glosses and which do not, and the shipped weights with Debian's WordNet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.starter.lexicon import QueryGlosser, WordNetNouns, caption_vocabulary, find_wordnet

# (lemmas of the synset, gloss) per synset; data.noun lines are found by their byte offset.
SYNSETS = [
    (["violin", "fiddle"], "bowed stringed instrument that is the highest member of the violin family; this instrument has four strings"),
    (["fiddle"], "a dishonest scheme"),
    (["sackbut"], "a medieval musical instrument resembling a trombone"),
    (["bossa_nova"], "a Brazilian dance music"),
    (["ivory", "tusk"], "a hard smooth ivory colored dentine"),
]


def write_wordnet(directory: Path) -> Path:
    directory.mkdir()
    header = "  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"
    data, offsets = header, []
    for i, (lemmas, gloss) in enumerate(SYNSETS):
        offsets.append(len(data.encode("latin-1")))
        names = " ".join(f"{lemma} 0" for lemma in lemmas)
        data += f"{offsets[-1]:08d} 06 n {len(lemmas):02x} {names} 000 | {gloss}\n"
    # The offsets written into each line must be the lines' own: rewrite with fixed-width offsets.
    (directory / "data.noun").write_text(data, encoding="latin-1")
    senses: dict[str, list[int]] = {}
    for (lemmas, _), offset in zip(SYNSETS, offsets):
        for lemma in lemmas:
            senses.setdefault(lemma, []).append(offset)
    lines = [f"{lemma} n {len(o)} 0 {len(o)} 0 " + " ".join(f"{x:08d}" for x in o) + "  \n" for lemma, o in sorted(senses.items())]
    (directory / "index.noun").write_text(header + "".join(lines), encoding="latin-1")
    return directory


@pytest.fixture()
def glosser(tmp_path: Path) -> QueryGlosser:
    vocabulary = caption_vocabulary(["a cello playing in a cathedral", "rain falling", "a trombone"])
    return QueryGlosser(vocabulary, WordNetNouns(write_wordnet(tmp_path / "wordnet")))


def test_every_lemma_is_found_with_its_senses_in_frequency_order(tmp_path: Path) -> None:
    nouns = WordNetNouns(write_wordnet(tmp_path / "wordnet"))
    assert nouns.senses("fiddle", limit=2) == [
        (["violin", "fiddle"], "bowed stringed instrument that is the highest member of the violin family"),
        (["fiddle"], "a dishonest scheme"),
    ]
    assert nouns.senses("bossa nova") == [(["bossa nova"], "a Brazilian dance music")]
    assert [nouns.senses(lemma)[0][0][0] for lemma in ("ivory", "sackbut", "tusk", "violin")] == ["ivory", "sackbut", "ivory", "violin"]
    assert nouns.senses("aardvark") == [] and nouns.senses("zither") == [] and nouns.senses("  1") == []


def test_unknown_nouns_get_the_first_sense_with_its_other_names(glosser: QueryGlosser) -> None:
    assert glosser.expand("a fiddle") == (
        "a fiddle (violin: bowed stringed instrument that is the highest member of the violin family)"
    )
    assert glosser.expand("a sackbut") == "a sackbut (a medieval musical instrument resembling a trombone)"
    # Plurals are looked up by their base form; a phrase before its words.
    assert glosser.expand("ivories") == "ivories (tusk: a hard smooth ivory colored dentine)"
    assert glosser.expand("strummed bossa nova") == "strummed bossa nova (a Brazilian dance music)"


def test_texts_with_a_word_the_captions_use_are_left_alone(glosser: QueryGlosser) -> None:
    for text in ("a cello in a cathedral", "a fiddle in a cathedral", "rain", "a sackbut falling", ""):
        assert glosser.expand(text) == text
    assert glosser.expand("a zither") == "a zither"  # unknown, but not in the dictionary


def test_wordnet_is_found_where_the_environment_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = write_wordnet(tmp_path / "wn")
    monkeypatch.setenv("RESOUND_WORDNET_DIR", str(directory))
    assert find_wordnet() == directory
    assert find_wordnet(tmp_path / "wn") == directory
    monkeypatch.delenv("RESOUND_WORDNET_DIR")
    # A directory without the dictionary's files is passed over for the system's (Debian's or none).
    assert find_wordnet(tmp_path) in (None, Path("/usr/share/wordnet"))


# The README's test command installs Debian's wordnet-base: these run wherever the suite runs.


def test_the_shipped_weights_gloss_words_they_never_met() -> None:
    from indexer.starter import WEIGHTS_PATH, StarterEncoder
    from indexer.starter.paraphrases import paraphrase_queries

    assert find_wordnet() is not None, "install Debian's wordnet-base (the README's test command does)"
    encoder = StarterEncoder(WEIGHTS_PATH)
    assert encoder.glosser is not None
    vocabulary = json.loads(encoder.metadata["caption_vocabulary"])
    assert len(vocabulary) == 598 and "violin" in vocabulary
    assert encoder.glosser.expand("a sackbut") == "a sackbut (a medieval musical instrument resembling a trombone)"
    # The paraphrase queries' key words are unknown by construction (tests/test_paraphrases.py), so every
    # query that WordNet covers is glossed; the captions' own words never are.
    glossed = [q.query for q in paraphrase_queries() if encoder.glosser.glosses(q.query)]
    assert len(glossed) >= 70
    assert encoder.glosser.expand("deep resonant organ in a cathedral") == "deep resonant organ in a cathedral"


def test_a_gloss_brings_a_rare_name_to_its_instrument() -> None:
    from indexer.demo import SOUND_CLASSES
    from indexer.starter import WEIGHTS_PATH, StarterEncoder

    encoder = StarterEncoder(WEIGHTS_PATH)
    classes = sorted(SOUND_CLASSES)
    vectors = encoder.embed_text(classes)
    for query, instrument in [("a sackbut", "trombone"), ("a sousaphone", "tuba"), ("a violoncello", "cello")]:
        scores = vectors @ encoder.embed_text([query])[0]
        assert classes[int(np.argmax(scores))] == instrument, query
