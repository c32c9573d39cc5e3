"""Generate the demo corpus: plan the clips, render them in parallel, write WAVs and metadata."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer.demo.availability import classes_available
from indexer.demo.classes import SoundClass, get_sound_class
from indexer.demo.errors import SampleSetNotInstalledError, SoundClassUnavailableError
from indexer.demo.loudness import TARGET_DBFS, normalise, to_pcm16
from indexer.demo.metadata import write_metadata
from indexer.demo.plan import SCENE, SOUND, DemoClip, clip_rng, plan_demo_corpus
from indexer.demo.sample_sets import SAMPLE_SETS, get_sample_set, require_installed, sample_set_contents
from indexer.demo.scenes import SCENE_LEVEL_DB, SCENES, apply_scene, check_scene
from indexer.demo.score import drum_notes, instrument_notes
from indexer.demo.sources import SPEECH_VOICES, event_sound, noise, rain, speech
from indexer.demo.synth import MidiClip, render_clips

SAMPLE_RATE = 32000
# Clips rendered by one worker, with one synthesiser run for all their MIDI (loading a sample set
# is the slow part; MuseScore's .sf3 takes seconds of CPU).
CLIPS_PER_GROUP = 50
# The end of a clip fades out, since a scene's reverberation is cut there.
FADE_OUT_S = 0.03


def _other_source(
    clip: DemoClip, sound_class: SoundClass, length: int, rng: np.random.Generator
) -> np.ndarray:
    """Render a clip that does not come from the sample set: speech, an event sound or a noise."""
    if sound_class.kind == "speech":
        voice_name, espeak_variant = clip.variant.split("+")
        voice = next(v for v in SPEECH_VOICES if v.voice == voice_name)
        return speech(voice, espeak_variant, clip.register, clip.articulation, length, SAMPLE_RATE, rng)
    if sound_class.kind == "event":
        return event_sound(clip.variant, clip.register, clip.articulation, length, SAMPLE_RATE, rng)
    if sound_class.label == "rain":
        return rain(clip.register, clip.dynamics, clip.articulation, length, SAMPLE_RATE, rng)
    return noise(clip.register, clip.articulation, length, SAMPLE_RATE, rng)


def _dry_audio(
    clips: Sequence[DemoClip], indices: Sequence[int], sample_set: str, seed: int, duration_ms: int
) -> list[np.ndarray]:
    """Render the dry sound of each clip: all MIDI clips in one synthesiser run, the others one by one."""
    length = duration_ms * SAMPLE_RATE // 1000
    audio: list[np.ndarray | None] = [None] * len(clips)
    midi_positions: list[int] = []
    midi_clips: list[MidiClip] = []
    for position, (clip, index) in enumerate(zip(clips, indices)):
        sound_class = get_sound_class(clip.label)
        rng = clip_rng(seed, index, SOUND)
        if sound_class.kind == "instrument":
            notes = instrument_notes(
                sound_class, clip.register, clip.dynamics, clip.articulation, duration_ms, rng
            )
            midi_clips.append(MidiClip(sound_class.program, notes))
            midi_positions.append(position)
        elif sound_class.kind == "drums":
            drum_keys = sorted(sample_set_contents(sample_set).drum_keys)
            notes = drum_notes(clip.register, clip.dynamics, clip.articulation, duration_ms, rng, drum_keys)
            midi_clips.append(MidiClip(None, notes))
            midi_positions.append(position)
        else:
            audio[position] = _other_source(clip, sound_class, length, rng)
    if midi_clips:
        rendered = render_clips(get_sample_set(sample_set), midi_clips, duration_ms, SAMPLE_RATE)
        for position, clip_audio in zip(midi_positions, rendered):
            audio[position] = clip_audio
    return audio


def finish_clip(dry: np.ndarray, scene: str, dynamics: str, rng: np.random.Generator) -> np.ndarray:
    """Place a dry clip in `scene`, fade its end and normalise its level; returns 16-bit PCM."""
    wet = apply_scene(dry, scene, SAMPLE_RATE, rng)
    fade = int(FADE_OUT_S * SAMPLE_RATE)
    wet[len(wet) - fade :] *= np.linspace(1.0, 0.0, fade)
    return to_pcm16(normalise(wet, SAMPLE_RATE, TARGET_DBFS[dynamics] + SCENE_LEVEL_DB.get(scene, 0.0)))


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    sf.write(temporary, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(temporary, path)


def _render_group(
    clips: Sequence[DemoClip],
    indices: Sequence[int],
    sample_set: str,
    seed: int,
    duration_ms: int,
    out_dir: str,
) -> int:
    """Render, place and write a group of clips; returns how many were written."""
    for clip, index, dry in zip(clips, indices, _dry_audio(clips, indices, sample_set, seed, duration_ms)):
        pcm = finish_clip(dry, clip.scene, clip.dynamics, clip_rng(seed, index, SCENE))
        _write_wav(Path(out_dir) / clip.path, pcm)
    return len(clips)


def _render_groups(
    clips: Sequence[DemoClip],
    sample_set: str,
    seed: int,
    duration_ms: int,
    out_dir: Path,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    # Groups are fixed runs of indices, so clip i lands in the same group and synthesiser slot
    # whatever the corpus size.
    groups = [
        list(range(start, min(start + CLIPS_PER_GROUP, len(clips))))
        for start in range(0, len(clips), CLIPS_PER_GROUP)
    ]
    jobs = [
        ([clips[i] for i in group], group, sample_set, seed, duration_ms, str(out_dir)) for group in groups
    ]
    done = 0
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            done += _render_group(*job)
            if progress:
                progress(done, len(clips))
        return
    # "fork" where there is one: "spawn" re-imports the caller's __main__, which fails for scripts read
    # from stdin. The workers only run numpy, scipy and subprocesses, none of which a fork upsets.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        for future in as_completed([pool.submit(_render_group, *job) for job in jobs]):
            done += future.result()
            if progress:
                progress(done, len(clips))


# The default seed of a demo corpus. The starter model trains on seeds 0-3 (one per sample set, see
# indexer.training.train), so a corpus with this seed holds notes, voices and scene draws it never heard:
# the demo shows how it finds new recordings of known sounds, not how well it remembers its training set.
DEMO_SEED = 100


def generate_demo_corpus(
    out_dir: Path,
    size: int = 300,
    seed: int = DEMO_SEED,
    sample_set: str = "fluidr3",
    classes: Sequence[str] | None = None,
    scenes: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    duration_s: float = 4.0,
    workers: int | None = None,
) -> list[DemoClip]:
    """Render `size` labelled clips into `out_dir` and return them in order.

    Writes `<class>/<clip_id>.wav` (mono 16-bit PCM, 32 kHz, `duration_s` long), `metadata.csv`,
    `captions.jsonl` and `corpus.json` (the settings). `classes` defaults to every class the sample
    set renders (classes_available), `scenes` to all SCENES. The same size, seed, sample set,
    classes, scenes and duration give byte-identical files. `progress(done, total)` is called as
    clips are written; `workers` processes render in parallel (default: one per CPU).
    """
    require_installed(get_sample_set(sample_set))
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    if duration_s < 1.0:
        raise ValueError(f"clips must last at least 1 s, not {duration_s}")
    available = classes_available(sample_set)
    classes = list(dict.fromkeys(classes)) if classes is not None else list(available)
    for label in classes:
        get_sound_class(label)
        if label not in available:
            able = [name for name in SAMPLE_SETS if _can_render(name, label)]
            raise SoundClassUnavailableError(
                f"sample set {sample_set!r} has no samples for {label!r}; "
                f"sets that have: {', '.join(able) or 'none installed'}"
            )
    scenes = list(dict.fromkeys(scenes)) if scenes is not None else list(SCENES)
    for scene in scenes:
        check_scene(scene)
    if not classes or not scenes:
        raise ValueError("at least one class and one scene are needed")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    duration_ms = round(duration_s * 1000)
    clips = plan_demo_corpus(size, seed, sample_set, classes, scenes)
    _render_groups(
        clips,
        sample_set,
        seed,
        duration_ms,
        out_dir,
        workers if workers is not None else (os.cpu_count() or 1),
        progress,
    )
    provenance = {
        "generator": "indexer.demo",
        "size": size,
        "seed": seed,
        "sample_set": sample_set,
        "sample_set_file": str(get_sample_set(sample_set).path),
        "classes": classes,
        "scenes": scenes,
        "duration_s": duration_ms / 1000,
        "sample_rate": SAMPLE_RATE,
    }
    write_metadata(out_dir, clips, provenance)
    return clips


def _can_render(sample_set: str, label: str) -> bool:
    try:
        return label in classes_available(sample_set)
    except SampleSetNotInstalledError:
        return False
