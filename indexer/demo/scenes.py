"""Acoustic scenes: where a clip is heard, made by signal processing of the dry sound.

Rooms convolve the sound with a synthetic impulse response: early reflections, then exponentially
decaying noise whose high frequencies die out sooner (air and stone absorb them), which is what
makes a cathedral sound dark and long. Transmission scenes (telephone, radio) band-limit and
distort; "far away" and "outdoors" darken the sound and lay it in an ambience.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import signal

from indexer.demo.errors import UnknownSceneError


@dataclass(frozen=True)
class Room:
    """A reverberant space: decay time, delay of the first reflection and dry/reverberant balance."""

    rt60_s: float  # time for the reverberation to decay by 60 dB, between 500 and 2000 Hz
    predelay_s: float  # delay between the direct sound and the first reflection
    direct_to_reverb_db: float  # energy of the direct sound over that of the reverberation
    # Decay time of each band relative to rt60_s: high frequencies decay faster.
    band_rt60_scale: tuple[float, float, float, float] = (1.2, 1.0, 0.7, 0.45)


# Bands of the reverberation tail, in Hz; each decays at its own rate.
DECAY_BAND_EDGES_HZ = (500.0, 2000.0, 6000.0)

ROOMS: dict[str, Room] = {
    "cathedral": Room(rt60_s=5.0, predelay_s=0.045, direct_to_reverb_db=-4.0),
    "concert hall": Room(rt60_s=2.0, predelay_s=0.025, direct_to_reverb_db=1.0),
    "small room": Room(
        rt60_s=0.4, predelay_s=0.004, direct_to_reverb_db=6.0, band_rt60_scale=(1.1, 1.0, 0.85, 0.7)
    ),
    # A distant source in a large space: mostly reverberation.
    "far away": Room(rt60_s=1.5, predelay_s=0.030, direct_to_reverb_db=-6.0),
}

SCENES: tuple[str, ...] = (
    "dry",
    "small room",
    "concert hall",
    "cathedral",
    "telephone",
    "radio",
    "far away",
    "outdoors",
)

# Loudness of a scene relative to the others after normalisation: a distant source is quieter.
SCENE_LEVEL_DB: dict[str, float] = {"far away": -8.0}

TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE = 8000  # the network's sampling rate: nothing above 4 kHz survives
RADIO_BAND_HZ = (200.0, 5000.0)


def room_impulse_response(room: Room, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Return a synthetic impulse response of `room`, with the direct sound at sample 0.

    Its length is the longest band's RT60, so the tail has decayed by 60 dB where it ends.
    """
    length = int(max(room.band_rt60_scale) * room.rt60_s * sample_rate)
    time_s = np.arange(length) / sample_rate
    noise = rng.standard_normal(length)
    edges = (0.0, *DECAY_BAND_EDGES_HZ, sample_rate / 2)
    tail = np.zeros(length)
    for (low, high), scale in zip(itertools.pairwise(edges), room.band_rt60_scale):
        if low == 0.0:
            sos = signal.butter(4, high, btype="lowpass", fs=sample_rate, output="sos")
        elif high >= sample_rate / 2:
            sos = signal.butter(4, low, btype="highpass", fs=sample_rate, output="sos")
        else:
            sos = signal.butter(4, (low, high), btype="bandpass", fs=sample_rate, output="sos")
        # exp(-6.91 t / T) is -60 dB at t = T.
        tail += signal.sosfilt(sos, noise) * np.exp(-6.91 * time_s / (room.rt60_s * scale))
    predelay = int(room.predelay_s * sample_rate)
    # The reverberation builds up over a few tens of milliseconds as reflections multiply.
    tail *= np.clip((time_s - room.predelay_s) / 0.03, 0.0, 1.0)
    tail /= np.sqrt(np.sum(tail**2))

    direct = 10 ** (room.direct_to_reverb_db / 20)
    response = tail
    response[0] += direct
    # A handful of discrete early reflections from the nearest walls, within 20 ms of the first.
    for _ in range(6):
        delay = predelay + int(rng.uniform(0.0, 0.02) * sample_rate)
        response[delay] += rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.4) * direct
    return response / np.sqrt(np.sum(response**2))


def _reverberate(audio: np.ndarray, room: Room, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    response = room_impulse_response(room, sample_rate, rng)
    return signal.fftconvolve(audio, response)[: len(audio)]


def _soft_clip(audio: np.ndarray, drive: float) -> np.ndarray:
    """Saturate like an overdriven amplifier; keeps the peak level of a full-scale signal."""
    peak = np.abs(audio).max()
    if peak == 0.0:
        return audio
    return np.tanh(drive * audio / peak) / np.tanh(drive) * peak


def _compress(audio: np.ndarray, sample_rate: int, ratio: float) -> np.ndarray:
    """Reduce the level differences of `audio` by `ratio` with a smoothed envelope follower."""
    envelope = np.sqrt(
        signal.lfilter(
            [1 - np.exp(-1 / (0.02 * sample_rate))], [1, -np.exp(-1 / (0.02 * sample_rate))], audio**2
        )
    )
    reference = envelope.max()
    if reference == 0.0:
        return audio
    level = np.maximum(envelope / reference, 1e-4)
    return audio * level ** (1 / ratio - 1)


def _telephone(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    sos = signal.butter(6, TELEPHONE_BAND_HZ, btype="bandpass", fs=sample_rate, output="sos")
    voice_band = _soft_clip(_compress(signal.sosfilt(sos, audio), sample_rate, ratio=3.0), drive=2.0)
    # Through the 8 kHz network and back, then the band-pass again for the distortion's harmonics.
    narrow = signal.resample_poly(voice_band, TELEPHONE_RATE, sample_rate)
    wide = signal.resample_poly(narrow, sample_rate, TELEPHONE_RATE)[: len(audio)]
    return signal.sosfilt(sos, wide)


def _radio(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    sos = signal.butter(4, RADIO_BAND_HZ, btype="bandpass", fs=sample_rate, output="sos")
    band = _soft_clip(_compress(signal.sosfilt(sos, audio), sample_rate, ratio=2.0), drive=3.0)
    hiss = signal.sosfilt(sos, rng.standard_normal(len(audio)))
    hiss *= 0.03 * np.sqrt(np.mean(band**2) / max(np.mean(hiss**2), 1e-12))
    return signal.sosfilt(sos, band + hiss)


def _far_away(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    # Air absorbs high frequencies over distance; the room's reverberation then dominates.
    sos = signal.butter(2, 1800.0, btype="lowpass", fs=sample_rate, output="sos")
    return _reverberate(signal.sosfilt(sos, audio), ROOMS["far away"], sample_rate, rng)


def wind_noise(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Return wind-like noise: low-passed noise whose level rises and falls in slow gusts."""
    rumble = signal.sosfilt(
        signal.butter(2, 400.0, btype="lowpass", fs=sample_rate, output="sos"), rng.standard_normal(length)
    )
    # Gusts: noise low-passed below 1 Hz, kept positive.
    gust_sos = signal.butter(2, 0.7, btype="lowpass", fs=sample_rate, output="sos")
    gusts = signal.sosfilt(gust_sos, rng.standard_normal(length))
    gusts = 0.4 + np.abs(gusts) / max(np.abs(gusts).max(), 1e-12)
    wind = rumble * gusts
    return wind / max(np.sqrt(np.mean(wind**2)), 1e-12)


def _outdoors(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    # No walls: one weak ground reflection a few milliseconds late instead of a reverberant tail.
    delay = int(rng.uniform(0.003, 0.008) * sample_rate)
    reflected = audio.copy()
    reflected[delay:] += 0.3 * audio[: len(audio) - delay]
    level = np.sqrt(np.mean(reflected**2))
    return reflected + wind_noise(len(audio), sample_rate, rng) * 0.25 * level


def _dry(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    return audio.copy()


def _room(name: str):
    def apply(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        return _reverberate(audio, ROOMS[name], sample_rate, rng)

    return apply


SCENE_PROCESSORS = {
    "dry": _dry,
    "small room": _room("small room"),
    "concert hall": _room("concert hall"),
    "cathedral": _room("cathedral"),
    "telephone": _telephone,
    "radio": _radio,
    "far away": _far_away,
    "outdoors": _outdoors,
}


def check_scene(scene: str) -> None:
    """Raise UnknownSceneError if `scene` is not a known scene."""
    if scene not in SCENE_PROCESSORS:
        raise UnknownSceneError(f"unknown scene {scene!r}; known: {', '.join(SCENES)}")


def apply_scene(audio: np.ndarray, scene: str, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Return `audio` (mono float) as heard in `scene`, same length, not yet level-normalised."""
    check_scene(scene)
    return SCENE_PROCESSORS[scene](np.asarray(audio, dtype=np.float64), sample_rate, rng)
