"""LAION-CLAP (the `laion-clap` package) as a resound encoder.

Preprocessing follows `laion_clap.CLAP_Module.get_audio_embedding_from_data` exactly (48 kHz mono, int16
quantisation round trip, repeat-pad to 10 s, fusion mel for fusion checkpoints), except that resound never
crops at random: long audio arrives already cut into windows of at most 10 s, so every vector is
reproducible. tests/test_laion_clap_parity.py checks this against laion_clap's own code to 1e-5.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.encoders.base import EncoderInfo
from indexer.encoders.checkpoints import file_sha256, resolve_hub_file
from indexer.encoders.converted import load_converted, read_pickled_state, write_converted
from indexer.encoders.imports import import_clap_module
from indexer.encoders.registry import ROBERTA_FILES
from indexer.errors import CheckpointError, CheckpointNotFoundError

ROBERTA_TOKENIZER, ROBERTA_MERGES = ROBERTA_FILES
_ROBERTA_CONFIG = Path(__file__).with_name("configs") / "roberta-base.json"
# The tiny/base/large HTS-AT variants differ in their patch-embedding width (clap_module/htsat.py).
_HTSAT_BY_PATCH_WIDTH = {96: "HTSAT-tiny", 128: "HTSAT-base", 256: "HTSAT-large"}
TEXT_MAX_LENGTH = 77


def int16_round_trip(x: np.ndarray) -> np.ndarray:
    """laion_clap's quantisation: clip to [-1, 1], truncate to int16, scale back (float32)."""
    quantised = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
    return (quantised / 32767.0).astype(np.float32)


def repeat_pad(x: "torch.Tensor", length: int) -> "torch.Tensor":  # noqa: F821
    """laion_clap's 'repeatpad' filling: whole repeats of the clip, then zeros up to `length`."""
    import torch.nn.functional as F

    if len(x) >= length:
        return x[:length]
    x = x.repeat(int(length / len(x)))
    return F.pad(x, (0, length - len(x)), mode="constant", value=0)


def fusion_mel(audio: "torch.Tensor", audio_cfg: dict[str, Any]) -> "torch.Tensor":  # noqa: F821
    """Log-mel spectrogram (frames, mel_bins) as laion_clap's `get_mel` computes it with torchaudio.

    torchaudio is not a dependency (PyPI only has CUDA builds of it), so this restates
    `MelSpectrogram(center=True, reflect pad, power=2, htk mel scale, norm=None)` followed by
    `AmplitudeToDB(top_db=None)` in plain torch.
    """
    import torch

    n_fft = audio_cfg["window_size"]
    spec = torch.stft(
        audio,
        n_fft=n_fft,
        hop_length=audio_cfg["hop_size"],
        win_length=n_fft,
        window=torch.hann_window(n_fft, device=audio.device),
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    ).abs().pow(2.0)
    fb = _htk_mel_filterbank(
        n_freqs=n_fft // 2 + 1,
        f_min=float(audio_cfg["fmin"]),
        f_max=float(audio_cfg["fmax"]),
        n_mels=audio_cfg["mel_bins"],
        sample_rate=audio_cfg["sample_rate"],
    ).to(audio.device)
    mel = torch.matmul(spec.transpose(-1, -2), fb)  # (frames, n_mels)
    return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))


def _htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int):
    import torch

    def hz_to_mel(f: float) -> float:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


def load_clap_state_dict(path: str | Path, use_converted: bool = True, convert: bool = False) -> dict[str, Any]:
    """A LAION-CLAP checkpoint's weights, loaded without unpickling arbitrary objects.

    With `use_converted`, a matching safetensors copy beside the checkpoint (indexer/encoders/converted.py)
    is memory-mapped instead of reading the pickle; with `convert`, one is written when missing.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: checkpoint file not found")
    if use_converted:
        state = load_converted(path)
        if state is not None:
            return state
        if convert:
            state = read_pickled_state(path)
            write_converted(path, state)
            return state
    return read_pickled_state(path)


def infer_architecture(state: dict[str, Any]) -> tuple[str, bool]:
    """(audio model name, fusion) of a CLAP state dict, read from its parameter names and shapes."""
    fusion = any(".fusion_model." in k or k.startswith("audio_branch.mel_conv2d") for k in state)
    patch = state.get("audio_branch.patch_embed.proj.weight")
    if patch is None:
        raise CheckpointError("not an HTS-AT CLAP checkpoint (no audio_branch.patch_embed.proj.weight)")
    width = int(patch.shape[0])
    if width not in _HTSAT_BY_PATCH_WIDTH:
        raise CheckpointError(f"unknown HTS-AT width {width}")
    return _HTSAT_BY_PATCH_WIDTH[width], fusion


def roberta_tokenizer(tokenizer_dir: str | Path | None = None):
    """The RoBERTa BPE tokenizer CLAP's text tower expects, from a directory or the HF cache.

    Built directly from vocab.json and merges.txt so that a missing file is an error, never a
    tokenizer without a vocabulary.
    """
    from transformers import RobertaTokenizer

    tokenizer_dir = tokenizer_dir or os.environ.get("RESOUND_ROBERTA_TOKENIZER")
    if tokenizer_dir:
        vocab, merges = Path(tokenizer_dir) / "vocab.json", Path(tokenizer_dir) / "merges.txt"
        for needed in (vocab, merges):
            if not needed.is_file():
                raise CheckpointNotFoundError(f"{needed}: RoBERTa tokenizer file not found")
    else:
        vocab, merges = resolve_hub_file(ROBERTA_TOKENIZER), resolve_hub_file(ROBERTA_MERGES)
    tokenizer = RobertaTokenizer(vocab_file=str(vocab), merges_file=str(merges))
    if len(tokenizer) < 4:
        raise CheckpointError(f"{vocab}: RoBERTa vocabulary is empty")
    return tokenizer


@contextlib.contextmanager
def _roberta_from_config() -> Iterator[None]:
    """Make CLAP's `RobertaModel.from_pretrained('roberta-base')` build the architecture from its config.

    laion_clap downloads the pretrained RoBERTa weights while constructing CLAP, only for the CLAP
    checkpoint to overwrite every one of them; building from the config needs no network.
    """
    from transformers import RobertaConfig, RobertaModel

    clap_model_module = import_clap_module().model
    config = RobertaConfig(**json.loads(_ROBERTA_CONFIG.read_text()))

    class _RobertaFromConfig(RobertaModel):
        @classmethod
        def from_pretrained(cls, *args: Any, **kwargs: Any) -> RobertaModel:
            return RobertaModel(config)

    original = clap_model_module.RobertaModel
    clap_model_module.RobertaModel = _RobertaFromConfig
    try:
        yield
    finally:
        clap_model_module.RobertaModel = original


@contextlib.contextmanager
def _without_random_init() -> Iterator[None]:
    """Skip the random fills of a model's construction (about half of building CLAP on a CPU).

    Only for a model whose every parameter is then overwritten by a strict `load_state_dict`: the fills
    (`uniform_`/`normal_` behind nn.init and transformers' _init_weights, HTS-AT's truncated normal) leave
    the freshly allocated memory as it is. Computed buffers (window functions, mel banks, position
    indices) do not come from these fills and are built as usual. The patch is process-wide while it lasts.
    """
    import torch

    htsat = import_clap_module().htsat
    originals = (torch.Tensor.uniform_, torch.Tensor.normal_, htsat._no_grad_trunc_normal_)
    torch.Tensor.uniform_ = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.Tensor.normal_ = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    htsat._no_grad_trunc_normal_ = lambda tensor, *args, **kwargs: tensor
    try:
        yield
    finally:
        torch.Tensor.uniform_, torch.Tensor.normal_, htsat._no_grad_trunc_normal_ = originals  # type: ignore[method-assign]


def build_clap_model(amodel: str, fusion: bool, device: str = "cpu", initialise: bool = True):
    """A laion_clap CLAP model and its config, built offline: randomly initialised, or (`initialise=False`)
    with uninitialised weights that a strict `load_state_dict` must then fill."""
    clap_module = import_clap_module()
    with _roberta_from_config(), (contextlib.nullcontext() if initialise else _without_random_init()):
        model, model_cfg = clap_module.create_model(
            amodel,
            "roberta",
            precision="fp32",
            device=device,
            enable_fusion=fusion,
            fusion_type="aff_2d" if fusion else "None",
        )
    return model.eval(), model_cfg


class LaionClapEncoder:
    """A LAION-CLAP checkpoint: HTS-AT audio tower and RoBERTa text tower, 512-d joint space."""

    def __init__(
        self,
        checkpoint: str | Path,
        model_id: str | None = None,
        tokenizer_dir: str | Path | None = None,
        device: str = "cpu",
        amodel: str | None = None,
        fusion: bool | None = None,
        convert: bool = False,
    ):
        import torch

        checkpoint = Path(checkpoint)
        state = load_clap_state_dict(checkpoint, convert=convert)
        inferred_amodel, inferred_fusion = infer_architecture(state)
        amodel = amodel or inferred_amodel
        fusion = inferred_fusion if fusion is None else fusion
        self.tokenizer = roberta_tokenizer(tokenizer_dir)
        self.model, self.model_cfg = build_clap_model(amodel, fusion, device, initialise=False)
        try:
            # strict: no parameter may keep its uninitialised memory. On the CPU the loaded tensors become
            # the parameters (no copy): from the safetensors copy, they stay memory-mapped.
            self.model.load_state_dict(state, strict=True, assign=torch.device(device).type == "cpu")
        except RuntimeError as e:
            raise CheckpointError(f"{checkpoint}: weights do not fit {amodel} ({_first_line(e)})") from e
        self.device = torch.device(device)
        self.fusion = fusion
        audio_cfg = self.model_cfg["audio_cfg"]
        self.info = EncoderInfo(
            model_id=model_id or f"laion-clap:{checkpoint.name}",
            family="laion_clap",
            # The joint space is what the projection heads output, whatever the config calls it.
            dim=int(self.model.audio_projection[-1].out_features),
            sample_rate=int(audio_cfg["sample_rate"]),
            window_seconds=audio_cfg["clip_samples"] / audio_cfg["sample_rate"],
            checkpoint_sha256=file_sha256(checkpoint),
            preprocessing={
                "audio_model": amodel,
                "fusion": fusion,
                "text_model": "roberta",
                "resample": "soxr_hq",
                "mono": "mean",
                "quantize": "int16",
                "fill": "repeatpad",
                "text_max_length": TEXT_MAX_LENGTH,
            },
        )

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) unit vectors for mono 48 kHz windows of at most 10 s."""
        import torch

        audio_cfg = self.model_cfg["audio_cfg"]
        clip_samples = int(audio_cfg["clip_samples"])
        batch = []
        for window in windows:
            if len(window) == 0:
                raise ValueError("empty audio window")
            if len(window) > clip_samples:
                raise ValueError(f"window of {len(window)} samples exceeds {clip_samples}")
            waveform = repeat_pad(torch.from_numpy(int16_round_trip(window)).float(), clip_samples)
            features: dict[str, torch.Tensor] = {"longer": torch.tensor([False]), "waveform": waveform}
            if self.fusion:
                mel = fusion_mel(waveform, audio_cfg)
                features["mel_fusion"] = torch.stack([mel, mel, mel, mel], dim=0)
            batch.append(features)
        if not batch:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        with torch.inference_mode():
            embeddings = self.model.get_audio_embedding(batch)
        return embeddings.float().cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) unit vectors for texts (RoBERTa, padded/truncated to 77 tokens)."""
        import torch

        if len(texts) == 0:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        tokens = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH, return_tensors="pt"
        )
        with torch.inference_mode():
            embeddings = self.model.get_text_embedding(dict(tokens))
        return embeddings.float().cpu().numpy()

    def logit_scale(self) -> float:
        """The learned temperature (exp of logit_scale_a) that turns cosines into logits."""
        return float(self.model.logit_scale_a.exp().item())


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
