"""Texts to token ids for the starter text encoder: CLIP's BPE, restricted to the words it was trained on.

The BPE vocabulary file ships inside the open_clip package, so nothing is downloaded. The starter model
keeps an embedding only for the BPE tokens of its training captions (a few hundred of 49,408); every other
token maps to one shared "unknown" id, which the trainer also substitutes at random so that it learns to
mean "some word". The kept BPE ids are stored with the weights, so the mapping travels with the checkpoint.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType

import torch

from indexer.errors import MissingDependencyError

PAD_ID = 0
UNK_ID = 1
FIRST_TOKEN_ID = 2  # model ids of kept BPE tokens start here
START_OF_TEXT = "<start_of_text>"
END_OF_TEXT = "<end_of_text>"


def _clip_tokenizer_module() -> ModuleType:
    """open_clip's `tokenizer` module, loaded on its own.

    `import open_clip` imports torchvision, timm and transformers (seconds of start-up) for a pure-Python
    BPE tokenizer that needs none of them, so the module file is loaded directly unless open_clip is
    already imported.
    """
    if "open_clip.tokenizer" in sys.modules:
        return sys.modules["open_clip.tokenizer"]
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the starter model's tokenizer needs open_clip_torch: pip install 'resound[video]'"
        )
    path = f"{list(spec.submodule_search_locations)[0]}/tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_resound_clip_tokenizer", path)
    if module_spec is None or module_spec.loader is None:
        raise MissingDependencyError(f"{path}: open_clip's tokenizer module is missing")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def clip_bpe():
    """open_clip's `SimpleTokenizer` (CLIP BPE, lower-cased, whitespace-cleaned), built once."""
    return _clip_tokenizer_module().SimpleTokenizer()


def bpe_ids(text: str) -> list[int]:
    """CLIP BPE ids of `text`, framed by the start and end markers."""
    return list(_bpe_ids(text))


# Training tokenizes ~180 texts a step from a few thousand distinct captions and prompts, and
# open_clip's cleaning (ftfy, regexes) costs more than the lookup.
@functools.lru_cache(maxsize=1 << 16)
def _bpe_ids(text: str) -> tuple[int, ...]:
    bpe = clip_bpe()
    return (bpe.encoder[START_OF_TEXT], *bpe.encode(text), bpe.encoder[END_OF_TEXT])


def training_vocabulary(texts: Iterable[str]) -> list[int]:
    """Sorted BPE ids of every token in `texts`, start and end markers included."""
    return sorted({token for text in texts for token in bpe_ids(text)})


class CaptionTokenizer:
    """Texts -> (n, context) model token ids: kept BPE ids renumbered, others UNK_ID, padded with PAD_ID."""

    def __init__(self, kept_bpe_ids: Sequence[int], context: int):
        if context < 3:
            raise ValueError(f"context must hold at least one token between the markers, not {context}")
        self.kept_bpe_ids = [int(i) for i in kept_bpe_ids]
        self.context = context
        self._model_id = {bpe: FIRST_TOKEN_ID + i for i, bpe in enumerate(self.kept_bpe_ids)}

    @property
    def vocab_size(self) -> int:
        """Embedding rows the text encoder needs: pad, unknown and the kept tokens."""
        return FIRST_TOKEN_ID + len(self.kept_bpe_ids)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        rows = torch.full((len(texts), self.context), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = _bpe_ids(text)
            if len(ids) > self.context:
                # Keep the start, as many words as fit, and the end marker.
                ids = ids[: self.context - 1] + ids[-1:]
            rows[row, : len(ids)] = torch.tensor([self._model_id.get(i, UNK_ID) for i in ids])
        return rows

    def unknown_words(self, text: str) -> list[str]:
        """The BPE tokens of `text` the model has no embedding for (decoded), for diagnostics."""
        bpe = clip_bpe()
        return [bpe.decoder[i] for i in bpe.encode(text) if i not in self._model_id]
