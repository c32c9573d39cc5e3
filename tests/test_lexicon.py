"""WordNet glosses for query words the starter never met: lookups in a hand-made dictionary in WordNet's
file format, which texts get glosses and which do not, and the shipped weights with Debian's WordNet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.starter.lexicon import QueryGlosser, Sense, WordNet, caption_vocabulary, find_wordnet

# (part of speech, lemmas, gloss, index of its hypernym or None) per synset; data lines are found by
# their byte offset, and a hypernym pointer names its target's offset.
SYNSETS = [
    ("noun", ["violin", "fiddle"], "bowed stringed instrument that is the highest member of the violin family; this instrument has four strings", 5),
    ("noun", ["fiddle"], "a dishonest scheme", None),
    ("noun", ["sackbut"], "a medieval musical instrument resembling a trombone", None),
    ("noun", ["bossa_nova"], "a Brazilian dance music", None),
    ("noun", ["ivory", "tusk"], "a hard smooth ivory colored dentine", None),
    ("noun", ["bowed_stringed_instrument", "string"], "a stringed instrument that is played with a bow", None),
    ("noun", ["concertina"], "coiled barbed wire used as an obstacle", None),
    ("noun", ["concertina"], "free-reed instrument played like an accordion", None),
    ("verb", ["strum", "thrum"], "sound the strings of (a string instrument)", None),
    ("adj", ["angelic(a)", "seraphic"], "having a sweet nature befitting an angel or cherub", None),
]
LICENCE = "  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"


def write_wordnet(directory: Path) -> Path:
    directory.mkdir()
    for pos in ("noun", "verb", "adj"):
        synsets = [(i, s) for i, s in enumerate(SYNSETS) if s[0] == pos]
        # Offsets are written with a fixed width, so every line's length is known before its offset.
        lines, offsets, position = {}, {}, len(LICENCE)
        for i, (_, lemmas, gloss, hypernym) in synsets:
            pointers = "001 @ 00000000 n 0000" if hypernym is not None else "000"
            line = f"00000000 06 {pos[0]} {len(lemmas):02x} " + " ".join(f"{lemma} 0" for lemma in lemmas) + f" {pointers} | {gloss}\n"
            offsets[i], lines[i] = position, line
            position += len(line.encode("latin-1"))
        data = LICENCE
        for i, (_, lemmas, gloss, hypernym) in synsets:
            line = f"{offsets[i]:08d}" + lines[i][8:]
            if hypernym is not None:
                line = line.replace("@ 00000000", f"@ {offsets[hypernym]:08d}")
            data += line
        (directory / f"data.{pos}").write_text(data, encoding="latin-1")
        senses: dict[str, list[int]] = {}
        for i, (_, lemmas, _, _) in synsets:
            for lemma in lemmas:
                senses.setdefault(lemma.split("(")[0], []).append(offsets[i])
        index = [f"{lemma} {pos[0]} {len(o)} 0 {len(o)} 0 " + " ".join(f"{x:08d}" for x in o) + "  \n"
                 for lemma, o in sorted(senses.items())]
        (directory / f"index.{pos}").write_text(LICENCE + "".join(index), encoding="latin-1")
    (directory / "verb.exc").write_text("strummed strum\n", encoding="latin-1")
    return directory


@pytest.fixture()
def wordnet(tmp_path: Path) -> WordNet:
    return WordNet(write_wordnet(tmp_path / "wordnet"))


@pytest.fixture()
def glosser(wordnet: WordNet) -> QueryGlosser:
    vocabulary = caption_vocabulary(["a cello playing in a cathedral", "rain falling", "a trombone"])
    return QueryGlosser(vocabulary, wordnet)


def test_every_lemma_is_found_with_its_senses_in_frequency_order(wordnet: WordNet) -> None:
    violin = "bowed stringed instrument that is the highest member of the violin family"
    assert wordnet.senses("fiddle", limit=2) == ("fiddle", [
        Sense("noun", ("violin", "fiddle"), violin, "bowed stringed instrument"),
        Sense("noun", ("fiddle",), "a dishonest scheme"),
    ])
    assert wordnet.senses("bossa nova")[1] == [Sense("noun", ("bossa nova",), "a Brazilian dance music")]
    assert [wordnet.senses(lemma)[1][0].names[0] for lemma in ("ivory", "sackbut", "tusk", "violin")] == ["ivory", "sackbut", "ivory", "violin"]
    assert wordnet.senses("aardvark") == ("", []) and wordnet.senses("zither") == ("", []) and wordnet.senses("  1") == ("", [])


def test_inflections_find_their_base_forms_in_every_part_of_speech(wordnet: WordNet) -> None:
    # Nouns by WordNet's detachment rules, verbs by its exception list, adjectives without their marker.
    assert wordnet.senses("ivories")[0] == "ivory"
    assert wordnet.senses("strummed") == ("strum", [Sense("verb", ("strum", "thrum"), "sound the strings of (a string instrument)")])
    assert wordnet.senses("angelic")[1] == [Sense("adj", ("angelic", "seraphic"), "having a sweet nature befitting an angel or cherub")]


def test_unknown_words_get_the_first_sense_with_its_other_names_and_hypernym(glosser: QueryGlosser) -> None:
    assert glosser.expand("a fiddle") == (
        "a fiddle (violin, bowed stringed instrument: bowed stringed instrument that is the highest member of the violin family)"
    )
    assert glosser.expand("a sackbut") == "a sackbut (a medieval musical instrument resembling a trombone)"
    # Plurals and verb forms are looked up by their base form; a phrase before its words.
    assert glosser.expand("ivories") == "ivories (tusk: a hard smooth ivory colored dentine)"
    assert glosser.expand("strummed bossa nova") == (
        "strummed bossa nova (a Brazilian dance music; thrum: sound the strings of (a string instrument))"
    )


def test_the_sense_that_uses_the_models_words_is_chosen(wordnet: WordNet) -> None:
    # The fixture's vocabulary holds "playing": the instrument's gloss ("played like an accordion") uses it,
    # the barbed wire's uses none of its words.
    glossers = {
        "sound words": QueryGlosser(caption_vocabulary(["a cello playing in a cathedral"]), wordnet),
        "other words": QueryGlosser(caption_vocabulary(["a cello in a cathedral"]), wordnet),
    }
    assert glossers["sound words"].expand("a concertina") == "a concertina (free-reed instrument played like an accordion)"
    # Among equals, WordNet's more frequent sense.
    assert glossers["other words"].expand("a concertina") == "a concertina (coiled barbed wire used as an obstacle)"
    assert glossers["sound words"].known_words("an accordion played in a cathedral") == 2


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
    assert encoder.glosser.expand("a sackbut") == "a sackbut (trombone: a medieval musical instrument resembling a trombone)"
    # WordNet's first sense of "concertina" is barbed wire; the instrument's gloss uses the captions' words.
    instrument = ("free-reed instrument: free-reed instrument played like an accordion by pushing its ends together "
                  "to force air through the reeds")
    assert encoder.glosser.glosses("a concertina") == [instrument]
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


def test_binary_search_finds_every_lemma_and_exception_a_linear_parse_finds() -> None:
    # Debian's whole dictionary: each index and exception file's every first field, found by the mmap
    # binary search with the very lines a linear read gives (exception files list a few inflections twice:
    # "aurar eyir", "aurar eyrir"), and nothing found that the file lacks.
    from indexer.starter.lexicon import WordNetPart

    directory = find_wordnet()
    assert directory is not None, "install Debian's wordnet-base (the README's test command does)"
    lemmas = 0
    for pos in ("noun", "verb", "adj"):
        part = WordNetPart(directory, pos)
        for table, name in ((part._index, f"index.{pos}"), (part._exceptions, f"{pos}.exc")):
            assert table is not None
            lines = [line for line in (directory / name).read_bytes().split(b"\n") if line and not line.startswith(b"  ")]
            by_key: dict[bytes, list[bytes]] = {}
            for line in lines:
                by_key.setdefault(line.split(b" ", 1)[0], []).append(line)
            for key, expected in by_key.items():
                assert WordNetPart._find_all(table, key) == expected, key
            lemmas += len(lines) if name.startswith("index") else 0
            assert WordNetPart._find_all(table, b"zzzz-not-a-word") == [] and WordNetPart._find(table, b"a-") is None
    assert lemmas > 140_000
