"""aiSFX's pretrained sound-effects embedding tower (Ma & Lerch, ISMIR 2022) and its front end, in plain torch.

The tower is the `EmbeddingNet` of the `aisfx` 0.1.2 wheel (PANNs' 9-layer CNN: four blocks of two 3x3
conv + batch-norm + ReLU layers, 64-128-256-512 channels, 2x2 max pooling after the first three, then the
mean over mel bins and the max over time): a 512-d vector per block of 100 log-mel frames (~2.3 s). The
weights ship in `weights/aisfx_tower.safetensors`, taken once out of the wheel's pickle by
`indexer/training/aisfx_convert.py` (licence CC BY 4.0, attribution in weights/MODEL_CARD.md).

The front end reproduces the wheel's Essentia path (the one its paper's numbers come from), not its
librosa fallback (which peak-normalises the audio and returns the spectrogram transposed):

- 44.1 kHz mono samples as decoded, no gain (Essentia's EasyLoader with its default replayGain of -6 dB
  scales by 10^((-6 + 6) / 20) = 1);
- frames of 2048 samples every 1024, the first centred on sample 0 (zeros before), as long as a frame
  starts inside the signal (Essentia's FrameCutter: ceil(n / 1024) + 1 frames, zeros after the end);
- a symmetric Hann window (Essentia applies it zero-phase, which leaves magnitudes unchanged), |FFT|^2;
- 96 triangular mel bands on the HTK scale over 0-22050 Hz, triangles in mel, each band's weights
  summing to one (Essentia's MelBands, warping weighting, unit_sum);
- log10(10^4 x + 1), divided by 9.4578 (the wheel's cross-dataset maximum; its minimum is 0);
- blocks of 100 frames every 50, a trailing partial block dropped unless it is the only one, which is
  zero-padded (the wheel's `blocking`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from indexer.errors import CheckpointError, CheckpointNotFoundError

TOWER_PATH = Path(__file__).with_name("weights") / "aisfx_tower.safetensors"
TOWER_FORMAT = "aisfx-tower/1"

SAMPLE_RATE = 44100
FRAME_SIZE = 2048
HOP_SIZE = 1024
N_MELS = 96
BLOCK_FRAMES = 100
EMBED_DIM = 512
# The wheel's `spectrogram_normalize(spec_norm="original")`: (x - 0) / (9.457798957824707 - 0), the
# maximum of log10(10^4 mel + 1) over every spectrogram of the paper's training data.
LOG_MEL_MAX = 9.457798957824707
CHANNELS = (64, 128, 256, 512)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def essentia_mel_filterbank(
    n_freqs: int = FRAME_SIZE // 2 + 1,
    n_mels: int = N_MELS,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = 0.0,
    f_max: float = SAMPLE_RATE / 2,
) -> torch.Tensor:
    """(n_freqs, n_mels) weights of Essentia's MelBands (htkMel, weighting "warping", normalize "unit_sum").

    Band i is a triangle in mel between the band edges i and i + 2, spanning every FFT bin whose frequency
    lies in [edge i, edge i + 2); its weights are scaled to sum to one. Equal to the matrix Essentia 2.1b6
    returns to 7e-7 (probed with one-hot spectra).
    """
    bins = torch.arange(n_freqs, dtype=torch.float64) * (sample_rate / 2) / (n_freqs - 1)
    edges = _mel_to_hz(
        torch.linspace(
            float(_hz_to_mel(torch.tensor(f_min, dtype=torch.float64))),
            float(_hz_to_mel(torch.tensor(f_max, dtype=torch.float64))),
            n_mels + 2,
            dtype=torch.float64,
        )
    )
    mel_bins, mel_edges = _hz_to_mel(bins), _hz_to_mel(edges)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (mel_bins[:, None] - mel_edges[None, :-2]) / (mel_edges[1:-1] - mel_edges[:-2])
    down = (mel_edges[None, 2:] - mel_bins[:, None]) / (mel_edges[2:] - mel_edges[1:-1])
    rising = (bins[:, None] >= lower) & (bins[:, None] < centre)
    falling = (bins[:, None] >= centre) & (bins[:, None] < upper)
    weights = torch.where(rising, up, torch.where(falling, down, torch.zeros_like(up)))
    sums = weights.sum(dim=0, keepdim=True)
    return (weights / torch.where(sums > 0, sums, torch.ones_like(sums))).float()


def frame_count(num_samples: int) -> int:
    """Frames Essentia's FrameCutter gives `num_samples` samples: every frame that starts inside them."""
    return math.ceil(num_samples / HOP_SIZE) + 1


class AisfxFrontEnd(nn.Module):
    """Waveforms (batch, samples) at 44.1 kHz -> normalised log-mel (batch, frames, 96), as the aiSFX wheel's
    Essentia path computes them (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        # Buffers, not parameters: fixed constants of the wheel's front end, never stored in a checkpoint.
        self.register_buffer("window", torch.hann_window(FRAME_SIZE, periodic=False), persistent=False)
        self.register_buffer("mel_filters", essentia_mel_filterbank(), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        n = waveforms.shape[-1]
        frames = frame_count(n)
        # Half a frame of zeros before (the first frame is centred on sample 0) and enough after for the
        # last frame, which starts inside the signal.
        right = (frames - 1) * HOP_SIZE + FRAME_SIZE - FRAME_SIZE // 2 - n
        padded = F.pad(waveforms.float(), (FRAME_SIZE // 2, right))
        spec = torch.stft(
            padded,
            n_fft=FRAME_SIZE,
            hop_length=HOP_SIZE,
            win_length=FRAME_SIZE,
            window=self.window,
            center=False,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.mel_filters)
        return torch.log10(mel * 1e4 + 1.0) / LOG_MEL_MAX


def block_frames(
    spec: torch.Tensor, block: int = BLOCK_FRAMES, hop: int = BLOCK_FRAMES // 2, drop_partial: bool = True
) -> torch.Tensor:
    """(frames, mels) -> (blocks, block, mels), as the wheel's `preprocessing.blocking` cuts them.

    Blocks start every `hop` frames; with `drop_partial` a trailing block that would run past the end is
    left out, unless it is the only one; blocks past the end are zero-padded.
    """
    frames = spec.shape[0]
    count = math.ceil((frames - block) / hop + 1)
    if (frames - block) % hop != 0 and drop_partial:
        count -= 1
    count = max(count, 1)
    padded = torch.cat([spec, spec.new_zeros(block, spec.shape[1])])
    return torch.stack([padded[i * hop : i * hop + block] for i in range(count)])


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch-norm + ReLU layers, then max pooling (the wheel's `cnn2d.ConvBlock`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, pool) if pool > 1 else x


class AisfxTower(nn.Module):
    """Normalised log-mel blocks (batch, frames, 96) -> (batch, 512) embeddings, not normalised (the wheel's
    `EmbeddingNet('max', 3, 1, 64)`; parameter names as in its checkpoint, less `embedding_net.`)."""

    def __init__(self) -> None:
        super().__init__()
        widths = (1, *CHANNELS)
        for i, (a, b) in enumerate(itertools.pairwise(widths), start=1):
            self.add_module(f"conv_block{i}", ConvBlock(a, b))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.unsqueeze(1)  # (batch, 1, frames, mels)
        x = self.conv_block1(x, 2)
        x = self.conv_block2(x, 2)
        x = self.conv_block3(x, 2)
        x = self.conv_block4(x, 1)
        # Mean over mel bins, then max over time: a short event anywhere in the block counts in full.
        return x.mean(dim=3).amax(dim=2)


def load_aisfx_tower(path: Path = TOWER_PATH) -> AisfxTower:
    """The tower with float32 weights from its safetensors file, in eval mode.

    Raises CheckpointNotFoundError for a missing file and CheckpointError for one that is unreadable, of
    another format, or whose tensors do not fit the architecture, each naming the file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: aiSFX tower weights not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # safetensors raises its own SafetensorError, or OSError/ValueError
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).strip()[:200]})") from e
    if metadata.get("format") != TOWER_FORMAT:
        raise CheckpointError(f"{path}: not an aiSFX tower file (format {metadata.get('format')!r})")
    tower = AisfxTower()
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        tower.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: tensors do not fit the aiSFX tower ({str(e).splitlines()[0][:200]})"
        ) from e
    return tower.eval()


class AisfxEmbedder:
    """The front end and the tower together: a clip's samples -> its blocks' 512-d embeddings."""

    def __init__(self, path: Path = TOWER_PATH, device: str = "cpu"):
        self.device = torch.device(device)
        self.front_end = AisfxFrontEnd().to(self.device)
        self.tower = load_aisfx_tower(path).to(self.device)

    def block_embeddings(self, samples: torch.Tensor, block_hop: int = BLOCK_FRAMES // 2) -> torch.Tensor:
        """(blocks, 512) embeddings of mono 44.1 kHz `samples` (1-D), blocks cut as the wheel cuts them
        (`block_hop` 50 frames: its default half-block overlap; 100: no overlap, half the cost)."""
        with torch.inference_mode():
            spec = self.front_end(samples.to(self.device, torch.float32)[None])[0]
            return self.tower(block_frames(spec, hop=block_hop)).float().cpu()


def window_features(
    front_end: AisfxFrontEnd, windows: Sequence[np.ndarray], window_samples: int
) -> list[torch.Tensor]:
    """Each mono 44.1 kHz window's normalised log-mel frames (frames_i, 96), only the frames Essentia would
    cut from its samples: windows are zero-padded to `window_samples` to run as one batch (zeros are what
    the wheel pads with), then each is cut back to `frame_count` of its own length."""
    padded = np.zeros((len(windows), window_samples), dtype=np.float32)
    lengths = []
    for row, window in zip(padded, windows):
        samples = np.asarray(window, dtype=np.float32)
        if samples.ndim != 1 or len(samples) == 0:
            raise ValueError(f"expected a non-empty mono window, got shape {samples.shape}")
        if len(samples) > window_samples:
            raise ValueError(f"window of {len(samples)} samples exceeds {window_samples}")
        row[: len(samples)] = samples
        lengths.append(len(samples))
    with torch.inference_mode():
        mel = front_end(torch.from_numpy(padded).to(front_end.mel_filters.device))
    return [m[: min(frame_count(n), m.shape[0])] for m, n in zip(mel, lengths)]


def window_blocks(features: torch.Tensor) -> torch.Tensor:
    """(frames, 96) of one window -> (blocks, 100, 96): blocks side by side without overlap (half the cost
    of the wheel's 50-frame hop); a trailing block is kept when at least half of it holds frames, the first
    always; blocks are zero-padded as the wheel pads them."""
    frames = features.shape[0]
    count = max(1, frames // BLOCK_FRAMES + (frames % BLOCK_FRAMES >= BLOCK_FRAMES // 2))
    padded = features.new_zeros(count * BLOCK_FRAMES, features.shape[1])
    kept = min(frames, count * BLOCK_FRAMES)
    padded[:kept] = features[:kept]
    return padded.reshape(count, BLOCK_FRAMES, features.shape[1])


def pooled_embeddings(
    tower: AisfxTower, features: Sequence[torch.Tensor], batch_size: int = 32
) -> torch.Tensor:
    """(n, 512) float32: the mean of each window's block embeddings (`window_blocks`), blocks of all windows
    run through the tower together, `batch_size` at a time, at the caller's autocast precision."""
    blocks = [window_blocks(f) for f in features]
    if not blocks:
        return torch.zeros(0, EMBED_DIM)
    stacked = torch.cat(blocks)
    device = next(tower.parameters()).device
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(stacked), batch_size):
            batch = stacked[start : start + batch_size].to(device)
            outputs.append(tower(batch).float().cpu())
    embeddings = torch.cat(outputs)
    owners = torch.repeat_interleave(torch.arange(len(blocks)), torch.tensor([len(b) for b in blocks]))
    sums = torch.zeros(len(blocks), EMBED_DIM).index_add_(0, owners, embeddings)
    return sums / torch.bincount(owners, minlength=len(blocks)).unsqueeze(1).float()
