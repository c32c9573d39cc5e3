"""The prompt banks that ship with resound: loadable, complete for their label sets, well-formed."""

from __future__ import annotations

import pytest

from indexer.demo import SOUND_CLASSES
from search.prompt_generation import bank_from_caption_phrases
from search.prompts import BANK_DIR, PromptBank, label_prompts, load_label_set

# Hand-written banks (ReCLAP counts: 3-5 descriptions and 6-10 scene captions per label).
HAND_WRITTEN = ("esc50", "urbansound8k")
SHIPPED = (*HAND_WRITTEN, "starter")


def expected_labels(name: str) -> tuple[str, ...]:
    if name == "starter":
        return tuple(SOUND_CLASSES)  # every demo class, in the demo's order
    return load_label_set(name).labels


def test_every_shipped_bank_is_tested() -> None:
    assert sorted(p.stem for p in BANK_DIR.glob("*.json")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_bank_covers_exactly_its_labels(name: str) -> None:
    bank = PromptBank.load(name)
    assert tuple(bank.entries) == expected_labels(name)


def test_starter_label_file_matches_the_demo_classes() -> None:
    assert load_label_set("starter").labels == tuple(SOUND_CLASSES)


@pytest.mark.parametrize("name", SHIPPED)
def test_entries_are_well_formed(name: str) -> None:
    bank = PromptBank.load(name)
    for label, entry in bank.entries.items():
        assert len(entry.descriptions) >= 3, label
        assert len(entry.prompts) >= 6, label
        assert len(set(entry.prompts)) == len(entry.prompts), label
        assert len(set(entry.descriptions)) == len(entry.descriptions), label
        for text in (*entry.descriptions, *entry.prompts):
            assert isinstance(text, str) and text == " ".join(text.split()) and text, (label, text)


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_hand_written_entries_follow_reclap_counts(name: str) -> None:
    bank = PromptBank.load(name)
    all_prompts = [p for e in bank.entries.values() for p in e.prompts]
    assert len(set(all_prompts)) == len(all_prompts)  # no caption serves two labels
    for label, entry in bank.entries.items():
        assert 3 <= len(entry.descriptions) <= 5, label
        assert 6 <= len(entry.prompts) <= 10, label
        for prompt in entry.prompts:
            assert prompt[0].isupper() and prompt.endswith("."), (label, prompt)


def test_starter_bank_is_built_from_the_demo_phrase_tables() -> None:
    # Regenerate with: bank_from_caption_phrases().save("search/banks/starter.json")
    assert PromptBank.load("starter").entries == bank_from_caption_phrases().entries


@pytest.mark.parametrize("name", SHIPPED)
def test_sampling_is_deterministic(name: str) -> None:
    bank = PromptBank.load(name)
    reloaded = PromptBank.load(name)
    for label, entry in bank.entries.items():
        chosen = bank.sample(label, 2, seed=0)
        assert len(chosen) == 2 and len(set(chosen)) == 2
        assert set(chosen) <= set(entry.prompts)
        assert chosen == bank.sample(label, 2, seed=0) == reloaded.sample(label, 2, seed=0)


def test_reclap_strategy_gives_two_prompts_per_esc50_label() -> None:
    labels = load_label_set("esc50")
    bank = PromptBank.load("esc50")
    prompts = label_prompts(labels, "reclap")
    assert list(prompts) == list(labels.labels)
    for label, chosen in prompts.items():
        assert len(chosen) == 2
        assert set(chosen) <= set(bank.entries[label].prompts)
    assert prompts == label_prompts(labels, "reclap")
