"""Sounds that are not General MIDI instruments: speech, event sounds and noises.

Speech is espeak-ng's formant synthesis, event sounds are the freedesktop sound theme's recordings,
noises and rain are synthesised. Each function returns float32 mono audio of exactly the requested
length at the requested sample rate and draws its randomness only from the generator it is given.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

from indexer.demo.errors import RenderError, SampleSetNotInstalledError
from indexer.demo.score import PLAYED_FRACTION

EVENT_SOUND_DIR = Path("/usr/share/sounds/freedesktop/stereo")
EVENT_SOUND_PACKAGE = "sound-theme-freedesktop"
ESPEAK_PACKAGE = "espeak-ng"


@dataclass(frozen=True)
class SpeechVoice:
    """An espeak-ng language voice and the sentences it reads."""

    voice: str  # espeak-ng voice name
    language: str  # language name used in captions
    sentences: tuple[str, ...]


SPEECH_VOICES: tuple[SpeechVoice, ...] = (
    SpeechVoice(
        "en-us",
        "English",
        (
            "The train to the city leaves from platform four in ten minutes.",
            "Please remember to close the window before you go to bed.",
            "We found a small cafe near the river and stayed there all afternoon.",
            "Turn left at the next corner and the museum is on your right.",
        ),
    ),
    SpeechVoice(
        "en-gb",
        "English",
        (
            "The weather will be cloudy this morning with rain later in the day.",
            "Could you tell me where the nearest post office is, please?",
            "The library is open every day except Sunday.",
        ),
    ),
    SpeechVoice(
        "de",
        "German",
        (
            "Der Zug nach Berlin hat heute leider zwanzig Minuten Verspätung.",
            "Kannst du mir bitte sagen, wie spät es ist?",
            "Am Wochenende fahren wir mit dem Fahrrad an den See.",
        ),
    ),
    SpeechVoice(
        "fr-fr",
        "French",
        (
            "Le marché ouvre tous les samedis matin sur la grande place.",
            "Pouvez-vous parler un peu plus lentement, s'il vous plaît ?",
            "Nous avons visité un vieux château au bord de la rivière.",
        ),
    ),
    SpeechVoice(
        "es",
        "Spanish",
        (
            "El autobús pasa por aquí cada quince minutos.",
            "Mañana vamos a comer en casa de mis abuelos.",
            "¿Sabes dónde está la estación de tren?",
        ),
    ),
    SpeechVoice(
        "it",
        "Italian",
        (
            "La biblioteca chiude alle sette di sera.",
            "Domani andiamo al mare con i nostri amici.",
            "Vorrei un caffè e un bicchiere d'acqua, per favore.",
        ),
    ),
)

# espeak-ng voice variants and pitch (0-99) by register: deep and low voices are male, mid and high female.
SPEECH_REGISTERS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "deep": (("m1", "m3", "m6"), (5, 25)),
    "low": (("m2", "m4", "m7"), (30, 50)),
    "mid": (("f1", "f2", "f4"), (35, 55)),
    "high": (("f3", "f5", "f2"), (65, 90)),
}
SPEECH_RATE_WPM = {"slow": (110, 135), "fast": (190, 230)}

# Noise colour by register: the exponent of the power spectrum, power ~ f ** exponent.
NOISE_COLOURS: dict[str, tuple[str, float]] = {
    "deep": ("brown", -2.0),
    "low": ("pink", -1.0),
    "mid": ("white", 0.0),
    "high": ("blue", 1.0),
}
# Band of the raindrops' ringing (Hz) by register; how many drops a second by dynamics.
RAINDROP_BANDS_HZ = {
    "deep": (300.0, 900.0),
    "low": (600.0, 1800.0),
    "mid": (1500.0, 4000.0),
    "high": (3000.0, 8000.0),
}
RAINDROPS_PER_SECOND = {"soft": 60, "loud": 350}
# Pitch shift of an event sound by register, in semitones (played faster or slower, like tape).
EVENT_SHIFT_SEMITONES = {"deep": -12, "low": -5, "mid": 0, "high": 5}


def _fit(audio: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Place `audio` at `offset` in `length` samples of silence, cutting what overruns."""
    out = np.zeros(length, dtype=np.float32)
    part = audio[: max(length - offset, 0)]
    out[offset : offset + len(part)] = part
    return out


def _fade_out(audio: np.ndarray, samples: int) -> np.ndarray:
    samples = min(samples, len(audio))
    audio[len(audio) - samples :] *= np.linspace(1.0, 0.0, samples, dtype=np.float32)
    return audio


def speech_voice(register: str, rng: np.random.Generator) -> tuple[SpeechVoice, str]:
    """Choose a language voice and an espeak-ng variant for a speech clip in `register`."""
    language = SPEECH_VOICES[int(rng.integers(len(SPEECH_VOICES)))]
    variants, _ = SPEECH_REGISTERS[register]
    return language, str(rng.choice(variants))


def speech(
    voice: SpeechVoice,
    variant: str,
    register: str,
    articulation: str,
    length: int,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return espeak-ng reading one or two sentences, pitched by register, paced by articulation."""
    if shutil.which("espeak-ng") is None:
        raise SampleSetNotInstalledError(f"speech needs espeak-ng (apt-get install {ESPEAK_PACKAGE})")
    _, (pitch_low, pitch_high) = SPEECH_REGISTERS[register]
    rate_low, rate_high = SPEECH_RATE_WPM[articulation]
    order = rng.permutation(len(voice.sentences))
    text = " ".join(voice.sentences[i] for i in order[:2])
    with tempfile.TemporaryDirectory(prefix="resound-demo-") as work_dir:
        wav_path = Path(work_dir) / "speech.wav"
        command = [
            "espeak-ng",
            "-v",
            f"{voice.voice}+{variant}",
            "-p",
            str(int(rng.integers(pitch_low, pitch_high + 1))),
            "-s",
            str(int(rng.integers(rate_low, rate_high + 1))),
            "-w",
            str(wav_path),
            text,
        ]
        completed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
        if completed.returncode != 0:
            raise RenderError(
                f"espeak-ng failed (exit {completed.returncode}): {completed.stderr.strip()[-300:]}"
            )
        audio, rate = sf.read(wav_path, dtype="float32")
    audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    offset = int(rng.uniform(0.05, 0.3) * sample_rate)
    return _fade_out(_fit(audio, length, offset), int(0.05 * sample_rate))


def event_sound(
    file_stem: str, register: str, articulation: str, length: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Return a freedesktop theme sound, pitch-shifted for `register`, played once or repeated."""
    path = EVENT_SOUND_DIR / f"{file_stem}.oga"
    if not path.is_file():
        raise SampleSetNotInstalledError(f"{path} is missing (apt-get install {EVENT_SOUND_PACKAGE})")
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    # Resampling to a rate other than the one played back shifts pitch and tempo together.
    shift = 2 ** (EVENT_SHIFT_SEMITONES[register] / 12)
    audio = soxr.resample(audio, rate, sample_rate / shift).astype(np.float32)
    offset = int(rng.uniform(0.05, 0.3) * sample_rate)
    out = np.zeros(length, dtype=np.float32)
    played_end = int(length * PLAYED_FRACTION)
    gap = int(rng.uniform(0.15, 0.5) * sample_rate)
    while offset < played_end:
        out += _fit(audio, length, offset)
        if articulation == "single":
            break
        offset += len(audio) + gap
    return _fade_out(out, int(0.05 * sample_rate))


def coloured_noise(length: int, exponent: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Return unit-RMS noise whose power spectrum falls as frequency ** exponent (above 20 Hz)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1 / sample_rate)
    # Below 20 Hz nothing is audible, and brown noise's power there would swamp the rest.
    spectrum *= np.maximum(frequencies, 20.0) ** (exponent / 2)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def _envelope(articulation: str, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Fade in and out; a "swelling" sound also rises and falls in one or two slow waves."""
    envelope = np.ones(length, dtype=np.float32)
    if articulation == "swelling":
        swells = int(rng.integers(1, 3))
        phase = np.linspace(0.0, swells * np.pi, length)
        envelope = (0.1 + 0.9 * np.sin(phase) ** 2).astype(np.float32)
    fade = int(0.05 * sample_rate)
    envelope[:fade] *= np.linspace(0.0, 1.0, fade, dtype=np.float32)
    envelope[length - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return envelope


def noise(
    register: str, articulation: str, length: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Return brown, pink, white or blue noise (by `register`), steady or swelling."""
    _, exponent = NOISE_COLOURS[register]
    return coloured_noise(length, exponent, sample_rate, rng) * _envelope(
        articulation, length, sample_rate, rng
    )


def rain(
    register: str, dynamics: str, articulation: str, length: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Return rain: many raindrops, each a short damped ring, over a bed of soft hiss."""
    low_hz, high_hz = RAINDROP_BANDS_HZ[register]
    count = int(RAINDROPS_PER_SECOND[dynamics] * length / sample_rate)
    drops = np.zeros(length + sample_rate // 10, dtype=np.float64)
    ring_time = np.arange(int(0.03 * sample_rate)) / sample_rate
    for start, frequency, decay_s, amplitude in zip(
        rng.integers(0, length, count),
        np.exp(rng.uniform(np.log(low_hz), np.log(high_hz), count)),
        rng.uniform(0.003, 0.012, count),
        rng.lognormal(0.0, 0.6, count),
    ):
        # A raindrop's bubble rings with a pitch that rises as it collapses.
        chirp = 2 * np.pi * frequency * (ring_time + 8.0 * ring_time**2)
        drops[start : start + len(ring_time)] += amplitude * np.sin(chirp) * np.exp(-ring_time / decay_s)
    drops = drops[:length]
    hiss = signal.sosfilt(
        signal.butter(
            2, (low_hz, min(2 * high_hz, 0.45 * sample_rate)), btype="bandpass", fs=sample_rate, output="sos"
        ),
        rng.standard_normal(length),
    )
    bed = drops / max(np.sqrt(np.mean(drops**2)), 1e-12) + 0.5 * hiss / max(np.sqrt(np.mean(hiss**2)), 1e-12)
    return (bed * _envelope(articulation, length, sample_rate, rng)).astype(np.float32)
