"""Inputs of audio-visual GZSL: labelled feature sets, class label embeddings and the class split.

File formats:
- features `.npz`: `features` (n, d) float, `labels` (n,) class names or integer indices, optional `ids` (n,).
  Integer labels index the file's own `class_names` array when it has one, else the class-embedding file's
  class order.
- class embeddings `.npz`: `names` (or `classes`) (C,) and either `embeddings` (C, e) or `clip_text` and
  `clap_text`, concatenated in that order (the order of the CLIP visual + CLAP audio features).
- split: JSON `{"seen": [...], "unseen": [...], "val_unseen": [...]}`, or text with `[seen]`, `[unseen]`
  and `[val_unseen]` section headers followed by one class name a line (blank lines and `#` lines skipped).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.gzsl.errors import GZSLDataError, GZSLSplitError

SPLIT_ROLES = ("seen", "unseen", "val_unseen")


@dataclass(frozen=True)
class FeatureSet:
    """Samples: `features` (n, d) float32, `labels` (n,) class names, `ids` (n,) or None."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        features = np.asarray(self.features, dtype=np.float32)
        labels = np.asarray(self.labels).astype(str)
        if features.ndim != 2:
            raise GZSLDataError(f"features must be 2-D (n, d), got shape {features.shape}")
        if labels.shape != (len(features),):
            raise GZSLDataError(f"{len(features)} feature rows but labels of shape {labels.shape}")
        if not np.isfinite(features).all():
            raise GZSLDataError("features hold NaN or infinite values")
        if self.ids is not None and len(self.ids) != len(features):
            raise GZSLDataError(f"{len(features)} feature rows but {len(self.ids)} ids")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, mask: np.ndarray) -> FeatureSet:
        """The samples where `mask` (boolean, or an index array) selects."""
        return FeatureSet(self.features[mask], self.labels[mask], None if self.ids is None else self.ids[mask])

    def of_classes(self, names: Sequence[str]) -> FeatureSet:
        """The samples whose label is one of `names`."""
        return self.subset(np.isin(self.labels, np.asarray(list(names), dtype=str)))


@dataclass(frozen=True)
class ClassEmbeddings:
    """One label embedding per class name (e.g. CLIP text + CLAP text, each a prompt ensemble)."""

    names: tuple[str, ...]
    embeddings: np.ndarray

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        embeddings = np.asarray(self.embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(names):
            raise GZSLDataError(f"{len(names)} class names but embeddings of shape {embeddings.shape}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GZSLDataError(f"class named more than once in the class embeddings: {duplicates[0]!r}")
        if not np.isfinite(embeddings).all():
            raise GZSLDataError("class embeddings hold NaN or infinite values")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "embeddings", embeddings)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def select(self, names: Sequence[str]) -> ClassEmbeddings:
        """The embeddings of `names`, in that order."""
        position = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in position]
        if missing:
            raise GZSLSplitError(f"class {missing[0]!r} has no label embedding")
        return ClassEmbeddings(tuple(names), self.embeddings[[position[n] for n in names]])


@dataclass(frozen=True)
class GZSLSplit:
    """Class roles of a GZSL benchmark.

    `seen`: classes with training samples (the test-time seen classes); `unseen`: test-time unseen classes,
    never trained on; `val_unseen`: a subset of `seen` that acts as unseen while epochs and the calibration
    constant are chosen (the "val" split of VGGSound-GZSL, UCF-GZSL and ActivityNet-GZSL).
    """

    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    val_unseen: tuple[str, ...]

    def __post_init__(self) -> None:
        for role in SPLIT_ROLES:
            object.__setattr__(self, role, tuple(str(n) for n in getattr(self, role)))

    @property
    def val_seen(self) -> tuple[str, ...]:
        """Seen classes that stay seen during validation."""
        held_out = set(self.val_unseen)
        return tuple(n for n in self.seen if n not in held_out)

    @property
    def all_classes(self) -> tuple[str, ...]:
        """Test-time classes: seen then unseen."""
        return self.seen + self.unseen

    def validate(self, known: Sequence[str] | None = None) -> None:
        """Raise GZSLSplitError naming the first inconsistency; `known`: the class names that have embeddings."""
        for role in SPLIT_ROLES:
            names = getattr(self, role)
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise GZSLSplitError(f"class {repeated[0]!r} is listed twice under {role}")
        for role in ("seen", "unseen"):
            if not getattr(self, role):
                raise GZSLSplitError(f"the split names no {role} class")
        both = sorted(set(self.seen) & set(self.unseen))
        if both:
            raise GZSLSplitError(f"class {both[0]!r} is both seen and unseen")
        outside = [n for n in self.val_unseen if n not in set(self.seen)]
        if outside:
            raise GZSLSplitError(f"validation-unseen class {outside[0]!r} is not a seen class")
        if not self.val_unseen:
            raise GZSLSplitError("the split names no val_unseen class: epochs and gamma cannot be chosen")
        if len(self.val_seen) == 0:
            raise GZSLSplitError("every seen class is validation-unseen: no class is left to train stage 1 on")
        if known is not None:
            known_set = set(known)
            unknown = [n for n in self.all_classes if n not in known_set]
            if unknown:
                raise GZSLSplitError(f"unknown class {unknown[0]!r}: it has no label embedding")

    def to_json(self) -> dict[str, list[str]]:
        return {role: list(getattr(self, role)) for role in SPLIT_ROLES}


def check_labels(samples: FeatureSet, allowed: Sequence[str], what: str) -> None:
    """Raise GZSLSplitError naming the first label of `samples` that is not in `allowed`."""
    stray = np.setdiff1d(np.unique(samples.labels), np.asarray(list(allowed), dtype=str))
    if len(stray):
        raise GZSLSplitError(f"{what} holds samples of class {str(stray[0])!r}, which is not allowed there")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # EOFError: an empty file
        raise GZSLDataError(f"{path}: cannot read npz ({e})") from e


def load_class_embeddings(path: str | Path) -> ClassEmbeddings:
    """Class names and label embeddings from an `.npz` (see the module docstring)."""
    path = Path(path)
    data = _read_npz(path)
    names_key = "names" if "names" in data else "classes" if "classes" in data else None
    if names_key is None:
        raise GZSLDataError(f"{path}: no 'names' (or 'classes') array")
    if "embeddings" in data:
        embeddings = data["embeddings"]
    elif "clip_text" in data and "clap_text" in data:
        embeddings = np.concatenate([data["clip_text"], data["clap_text"]], axis=1)
    else:
        raise GZSLDataError(f"{path}: no 'embeddings' array (nor 'clip_text' and 'clap_text')")
    try:
        return ClassEmbeddings(tuple(data[names_key].astype(str)), embeddings)
    except GZSLDataError as e:
        raise GZSLDataError(f"{path}: {e}") from e


def load_features(path: str | Path, class_names: Sequence[str] | None = None) -> FeatureSet:
    """Samples from an `.npz`; integer labels are mapped to names through the file's `class_names`, else
    through `class_names` (the class-embedding order)."""
    path = Path(path)
    data = _read_npz(path)
    for key in ("features", "labels"):
        if key not in data:
            raise GZSLDataError(f"{path}: no '{key}' array")
    labels = data["labels"]
    if np.issubdtype(labels.dtype, np.integer):
        names = data["class_names"].astype(str) if "class_names" in data else class_names
        if names is None:
            raise GZSLDataError(f"{path}: integer labels but no class names to map them to")
        names = np.asarray(list(names), dtype=str)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise GZSLDataError(f"{path}: label index {int(labels.max())} outside the {len(names)} classes")
        labels = names[labels]
    try:
        return FeatureSet(data["features"], labels, data.get("ids"))
    except GZSLDataError as e:
        raise GZSLDataError(f"{path}: {e}") from e


def save_features(path: str | Path, samples: FeatureSet) -> None:
    """Write `samples` in the `.npz` layout `load_features` reads (labels as names)."""
    arrays = {"features": samples.features, "labels": samples.labels}
    if samples.ids is not None:
        arrays["ids"] = np.asarray(samples.ids)
    np.savez(Path(path), **arrays)


def save_class_embeddings(path: str | Path, classes: ClassEmbeddings) -> None:
    """Write `classes` in the `.npz` layout `load_class_embeddings` reads."""
    np.savez(Path(path), names=np.asarray(classes.names, dtype=str), embeddings=classes.embeddings)


def _parse_split_text(text: str, path: Path) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {role: [] for role in SPLIT_ROLES}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            if current not in roles:
                raise GZSLSplitError(f"{path}:{number}: unknown section [{current}] (use {', '.join(SPLIT_ROLES)})")
            continue
        if current is None:
            raise GZSLSplitError(f"{path}:{number}: class {line!r} before any [seen]/[unseen]/[val_unseen] header")
        roles[current].append(line)
    return roles


def load_split(path: str | Path) -> GZSLSplit:
    """A class split from JSON or sectioned text (see the module docstring); not yet validated against
    the class embeddings (call `GZSLSplit.validate`)."""
    path = Path(path)
    from indexer.text import read_text_file

    text = read_text_file(path)
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            roles = json.loads(text)
        except json.JSONDecodeError as e:
            raise GZSLSplitError(f"{path}: invalid JSON ({e})") from e
        if not isinstance(roles, dict):
            raise GZSLSplitError(f"{path}: expected a JSON object with seen, unseen and val_unseen")
        unknown_keys = sorted(set(roles) - set(SPLIT_ROLES))
        if unknown_keys:
            raise GZSLSplitError(f"{path}: unknown key {unknown_keys[0]!r} (use {', '.join(SPLIT_ROLES)})")
        for role in SPLIT_ROLES:
            if not isinstance(roles.get(role, []), list):
                raise GZSLSplitError(f"{path}: {role} must be a list of class names")
    else:
        roles = _parse_split_text(text, path)
    return GZSLSplit(*(tuple(roles.get(role, [])) for role in SPLIT_ROLES))


def save_split(path: str | Path, split: GZSLSplit) -> None:
    """Write `split` as JSON."""
    Path(path).write_text(json.dumps(split.to_json(), indent=2) + "\n", encoding="utf-8")
