"""Paraphrase queries: every demo class has some, and none of their key words is a training word."""

from __future__ import annotations

import pytest

from indexer.demo import SOUND_CLASSES
from indexer.starter.paraphrases import (
    CONFIRMATION_QUERIES_PATH,
    ParaphraseLeakError,
    ParaphraseQuery,
    caption_vocabulary_texts,
    check_paraphrases,
    paraphrase_queries,
    stem,
)


def test_every_demo_class_has_at_least_two_paraphrase_queries_and_a_synonym() -> None:
    counts = {label: 0 for label in SOUND_CLASSES}
    synonyms = {label: 0 for label in SOUND_CLASSES}
    for query in paraphrase_queries():
        counts[query.label] += 1
        synonyms[query.label] += query.kind == "synonym"
    assert set(counts) == set(SOUND_CLASSES)
    assert min(counts.values()) >= 2, counts
    assert {label for label, n in synonyms.items() if n == 0} <= {
        "xylophone", "church organ", "harmonica", "acoustic guitar", "bass guitar", "sitar", "bagpipes", "steel drums"
    }


def test_no_key_word_is_a_word_of_any_caption_phrase() -> None:
    # The phrases every training caption and prompt is assembled from (bench/paraphrase_proof.py checks
    # the assembled texts themselves, which needs the rendered training corpora).
    counts = check_paraphrases(paraphrase_queries(), caption_vocabulary_texts())
    assert counts["queries"] == len(paraphrase_queries()) >= 2 * len(SOUND_CLASSES)


def test_the_confirmation_set_is_fair_and_shares_no_key_word_with_the_development_set() -> None:
    confirmation = paraphrase_queries(CONFIRMATION_QUERIES_PATH)
    counts = check_paraphrases(confirmation, caption_vocabulary_texts())
    assert counts["queries"] == len(confirmation) >= 2 * len(SOUND_CLASSES)
    assert {q.label for q in confirmation} == set(SOUND_CLASSES)
    development = {stem(part) for q in paraphrase_queries() for key in q.key_words for part in key.split("-")}
    shared = {key for q in confirmation for key in q.key_words if stem(key) in development}
    assert not shared, shared


def test_a_key_word_in_a_training_text_fails_loudly_with_the_text() -> None:
    queries = [ParaphraseQuery("violin", "a fiddle", ("fiddle",)), ParaphraseQuery("rain", "a downpour", ("downpour",))]
    texts = ["a violin in a hall", "heavy downpours on a roof"]
    with pytest.raises(ParaphraseLeakError) as caught:
        check_paraphrases(queries, texts)
    assert str(caught.value) == (
        "1 paraphrase problem(s):\n"
        "rain: 'a downpour': key word 'downpour' shares its stem with the training text 'heavy downpours on a roof'"
    )
    assert check_paraphrases(queries[:1], texts) == {"queries": 1, "key_words": 1, "texts": 2, "words": 8}


def test_every_meaningful_query_word_must_be_declared() -> None:
    with pytest.raises(ParaphraseLeakError, match="violin': 'violin' is neither a key word nor a stop word"):
        check_paraphrases([ParaphraseQuery("violin", "a fiddle like a violin", ("fiddle", "like"))], [])


def test_a_query_kind_must_be_known() -> None:
    with pytest.raises(ParaphraseLeakError, match="kind 'slang' is not one of synonym, reference"):
        check_paraphrases([ParaphraseQuery("violin", "a fiddle", ("fiddle",), "slang")], [])


def test_hyphenated_key_words_are_checked_part_by_part() -> None:
    with pytest.raises(ParaphraseLeakError, match="key word 'string' shares its stem"):
        check_paraphrases([ParaphraseQuery("guitar", "a six-string", ("six-string",))], ["a string section"])


def test_stems_join_inflections() -> None:
    assert stem("chanting") == stem("chanter") == "chant"
    assert stem("downpours") == stem("downpour")
    assert stem("buzzer") == "buzz"
