"""Label sets and the prompts that turn labels into text embeddings for zero-shot classification.

Strategies (chosen per run):
- `label`: the bare label ("church organ");
- `clap`: "This is a sound of {label}." (the LAION-CLAP paper's zero-shot protocol);
- `templates`: an ensemble of templates, embeddings averaged;
- `reclap`: ReCLAP descriptive prompts from a prompt bank (label -> descriptions of its sound -> captions
  placing it in scenes); N prompts per label drawn with a fixed seed (default N=2, as in ReCLAP's ablation),
  embeddings averaged.
A label's embedding is the renormalised mean of its prompts' unit embeddings; results are cached per model
and prompt set.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from indexer.encoders.base import Encoder, l2_normalize
from indexer.errors import ResoundError

LABEL_SET_DIR = Path(__file__).with_name("labelsets")
BANK_DIR = Path(__file__).with_name("banks")
BANK_FORMAT = "resound-prompt-bank"
STRATEGIES = ("label", "clap", "templates", "reclap")
CLAP_TEMPLATE = "This is a sound of {label}."
TEMPLATES = (
    "This is a sound of {label}.",
    "A sound of {label}.",
    "The sound of {label}.",
    "A recording of {label}.",
    "{label} can be heard.",
    "An audio clip of {label}.",
    "Listen to {label}.",
)
DEFAULT_PROMPTS_PER_LABEL = 2


class PromptError(ResoundError):
    """A label file, label set or prompt bank that cannot be used."""


@dataclass(frozen=True)
class LabelSet:
    """Class names in dataset order (so that index i is the dataset's class id i)."""

    name: str
    labels: tuple[str, ...]
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def text(self, label: str) -> str:
        """How a label reads in a prompt: dataset spellings like 'sea_waves' become 'sea waves'."""
        return label.replace("_", " ").strip()


def builtin_label_sets() -> list[str]:
    return sorted(p.stem for p in LABEL_SET_DIR.glob("*.txt"))


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """A built-in label set by name (esc50, urbansound8k, starter) or a user's label file."""
    path = Path(name_or_path)
    if not path.is_file() and (LABEL_SET_DIR / f"{name_or_path}.txt").is_file():
        path = LABEL_SET_DIR / f"{name_or_path}.txt"
    if not path.is_file():
        raise PromptError(f"{name_or_path}: no such label file or built-in label set ({', '.join(builtin_label_sets())})")
    return read_label_file(path)


def read_text_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (captions, labels); PromptError names a file that is not one."""
    from indexer.text import TextFileError, read_text_file

    try:
        return read_text_file(path).splitlines()
    except TextFileError as e:
        raise PromptError(str(e)) from e


def read_label_file(path: str | Path) -> LabelSet:
    """One label per line ('#' comments), or CSV with a `label` column and optional `description`."""
    path = Path(path)
    text = "\n".join(read_text_lines(path))
    labels: list[str] = []
    descriptions: dict[str, str] = {}
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if rows and [c.strip().lower() for c in rows[0][:2]] in (["label"], ["label", "description"]):
            rows = rows[1:]
        for row in rows:
            if row and row[0].strip():
                labels.append(row[0].strip())
                if len(row) > 1 and row[1].strip():
                    descriptions[row[0].strip()] = row[1].strip()
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    from search.validation import label_list

    return LabelSet(path.stem, label_list(labels, str(path)), descriptions)


@dataclass(frozen=True)
class BankEntry:
    """ReCLAP material for one label: descriptions of its sound, and captions placing it in scenes."""

    descriptions: tuple[str, ...]
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class PromptBank:
    """Descriptive prompts per label (JSON: {"format", "version", "labels": {label: {descriptions, prompts}}})."""

    entries: Mapping[str, BankEntry]
    source: str = ""

    @classmethod
    def load(cls, name_or_path: str | Path) -> "PromptBank":
        path = Path(name_or_path)
        if not path.is_file() and (BANK_DIR / f"{name_or_path}.json").is_file():
            path = BANK_DIR / f"{name_or_path}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise PromptError(f"{name_or_path}: cannot read prompt bank ({e})") from e
        if not isinstance(data, dict) or data.get("format") != BANK_FORMAT:
            raise PromptError(f"{path}: not a resound prompt bank (no \"format\": \"{BANK_FORMAT}\")")
        labels = data.get("labels")
        if not isinstance(labels, dict):
            raise PromptError(f"{path}: \"labels\" must be an object of label -> {{descriptions, prompts}}")
        entries = {}
        for label, entry in labels.items():
            lists = [entry.get(key, []) if isinstance(entry, dict) else None for key in ("descriptions", "prompts")]
            if not all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in lists):
                raise PromptError(f"{path}: label {label!r} needs lists of strings under descriptions and prompts")
            entries[label] = BankEntry(tuple(lists[0]), tuple(lists[1]))
        return cls(entries, str(path))

    def save(self, path: str | Path) -> None:
        data = {
            "format": BANK_FORMAT,
            "version": 1,
            "labels": {k: {"descriptions": list(e.descriptions), "prompts": list(e.prompts)} for k, e in self.entries.items()},
        }
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def sample(self, label: str, n: int, seed: int) -> list[str]:
        """`n` of the label's prompts, the same for the same (label, seed) whatever else is in the bank."""
        entry = self.entries.get(label)
        if entry is None or not entry.prompts:
            raise PromptError(f"prompt bank {self.source or '(in memory)'} has no prompts for label {label!r}")
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        if n >= len(entry.prompts):
            return list(entry.prompts)
        return [entry.prompts[i] for i in sorted(rng.choice(len(entry.prompts), size=n, replace=False))]


def default_bank_for(label_set: LabelSet) -> PromptBank | None:
    """The shipped bank of a built-in label set, if there is one."""
    path = BANK_DIR / f"{label_set.name}.json"
    return PromptBank.load(path) if path.is_file() else None


# The strategy that needs no prompt bank and scores best on held-out audio (docs/benchmarks/zero-shot.md).
BANK_FREE_STRATEGY = "templates"

# Label sets a model family was trained on: what `search classify` labels with when given no labels.
OWN_LABEL_SETS = {"starter": "starter"}


def own_label_set(family: str) -> str | None:
    """The built-in label set of a model family's own classes, or None (e.g. LAION-CLAP: open vocabulary)."""
    return OWN_LABEL_SETS.get(family)


def choose_strategy(label_set: LabelSet, strategy: str | None, bank: PromptBank | None = None) -> tuple[str, str | None]:
    """The prompt strategy to use, and a one-line note when the default had to change.

    No strategy asked for means ReCLAP where a bank covers every label (the given one, or the one shipped
    for a built-in set), else the best bank-free strategy. ReCLAP asked for explicitly stays ReCLAP (and
    label_prompts() says what is missing).
    """
    if strategy is not None:
        return strategy, None
    bank = bank or default_bank_for(label_set)
    if bank is not None and all(label in bank.entries for label in label_set.labels):
        return "reclap", None
    return BANK_FREE_STRATEGY, (f"no ReCLAP prompt bank for the labels of {label_set.name!r}: using the "
                                f"{BANK_FREE_STRATEGY!r} prompts ({len(TEMPLATES)} templates per label; "
                                f"--bank FILE gives ReCLAP prompts, see `search prompts generate`)")


def label_prompts(
    label_set: LabelSet,
    strategy: str = "reclap",
    bank: PromptBank | None = None,
    n_prompts: int = DEFAULT_PROMPTS_PER_LABEL,
    seed: int = 0,
) -> dict[str, list[str]]:
    """The prompts of every label under `strategy`."""
    if strategy not in STRATEGIES:
        raise PromptError(f"unknown prompt strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if strategy == "reclap":
        bank = bank or default_bank_for(label_set)
        if bank is None:
            raise PromptError(
                f"label set {label_set.name!r} has no shipped prompt bank: pass --bank FILE "
                f"(see `search prompts generate`) or use --prompts templates"
            )
        return {label: bank.sample(label, n_prompts, seed) for label in label_set.labels}
    prompts = {}
    for label in label_set.labels:
        text = label_set.text(label)
        if strategy == "label":
            prompts[label] = [text]
        elif strategy == "clap":
            prompts[label] = [CLAP_TEMPLATE.format(label=text)]
        else:
            prompts[label] = [t.format(label=text) for t in TEMPLATES]
    return prompts


def _cache_dir() -> Path:
    return Path(os.environ.get("RESOUND_CACHE", Path.home() / ".cache" / "resound")) / "label_embeddings"


def label_embeddings(encoder: Encoder, prompts: Mapping[str, Sequence[str]], cache: bool = True) -> np.ndarray:
    """(n_labels, dim) unit vectors: each label's prompt embeddings averaged, in `prompts` order.

    Cached on disk by model (id and checkpoint hash) and the exact prompts.
    """
    key_source = json.dumps(
        {"model": encoder.info.model_id, "sha": encoder.info.checkpoint_sha256, "prompts": list(prompts.items())},
        ensure_ascii=False,
    )
    path = _cache_dir() / f"{hashlib.sha256(key_source.encode()).hexdigest()}.npy"
    if cache and path.is_file():
        cached = np.load(path)
        if cached.shape == (len(prompts), encoder.info.dim):
            return cached
    flat = [p for ps in prompts.values() for p in ps]
    vectors = l2_normalize(encoder.embed_text(flat))
    out, start = [], 0
    for ps in prompts.values():
        out.append(vectors[start : start + len(ps)].mean(axis=0))
        start += len(ps)
    result = l2_normalize(np.stack(out))
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, result)
            os.replace(tmp, path)
        except OSError:
            pass  # the cache only saves time
    return result
