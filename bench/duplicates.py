"""Near-duplicate detection on generated data: precision and recall of file pairs against the truth, as a
curve over the threshold, and the aligned window similarity of each kind of copy.

Originals are distinct recordings made from Debian packages, in four families, each holding pairs of
DIFFERENT recordings of the same kind as hard negatives:
  instrument  fluidsynth renders of the demo corpus (indexer/demo): one class, two seeds (other notes)
  speech      espeak-ng sentences, one voice
  drums       hydrogen-drumkits patterns: one kit, two seeded patterns
  events      sound-theme-freedesktop sounds placed at seeded times over quiet noise: one set of sounds,
              two placements
Each original gets copies: mp3/opus/aac at low bitrates, resampled, trimmed 0.5-5 s at either end,
gain +-6 dB, mono/stereo. Every pair of files from one original is a duplicate; no other pair is.
Printed: precision/recall of pairs (found directly) and of groups (two files in one group) over the window
similarity threshold alone, then over the spectral match of the candidates (the default), and each kind
of copy's scores against its original: hop-grid misalignment keeps trimmed copies' window similarity below 1.

The default of `search duplicates` (landmark fingerprints, search/landmarks.py; groups verified against
their first file) is measured last, on this corpus and on a family of short clips (2-5 s) of one instrument
rendered by one synthesizer with other notes (hard negatives of each other), whose copies are mp3 64 kbit/s,
cut by up to half the clip, -6 dB and 22.05 kHz; with its time per 1,000 files.

The true pairs the default leaves apart and the false pairs it groups are printed, each with the groups'
references. `--old-set` measures the corpus as it was before the short clips were added (238 files: the
four 16 s families and their copies), in a work folder of its own.

Run: python bench/duplicates.py [--work DIR] [--hop SECONDS] [--model starter] [--old-set]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import soundfile
import soxr

RATE = 44100
SECONDS = 16.0
INSTRUMENTS = ("piano", "violin", "flute", "acoustic guitar", "church organ", "trumpet", "marimba", "choir")
SENTENCES = (  # each long enough to fill SECONDS of speech: digital silence would match any other file's
    ("The archive keeps every recording of the river, from the spring floods to the quiet weeks of August. "
     "Each reel was copied twice before the originals went into the cold store under the east wing."),
    ("Please remember to label each tape with the date, the place and the name of the person who recorded it. "
     "Unlabelled tapes end up in the long grey cabinet, and nobody has opened that in years."),
    ("A small brass band played in the square while the market traders packed away their stalls for the night. "
     "Somebody recorded the whole evening from a balcony, with the church clock striking nine."),
    ("The engineer moved the microphone closer to the piano and asked the pianist to play the opening again. "
     "On the third take the rain started, and they kept it, because it sounded better that way."),
    ("When the storm reached the coast, the fishermen pulled their boats high onto the shingle beach. "
     "The wind took the harbour master's hat, and the recording still has his shouting on it."),
    ("Our library holds eleven thousand sound effects, most of them recorded on a single portable deck. "
     "The best of them are footsteps: gravel, snow, wet leaves, a wooden stair and a marble hall."),
)
KITS = ("VariBreaks", "Millo-Drums_v.1", "ElectricEmpireKit")
EVENT_SETS = (
    ("alarm-clock-elapsed", "phone-incoming-call", "message-new-instant", "complete"),
    ("service-login", "service-logout", "bell", "camera-shutter", "trash-empty"),
    ("phone-outgoing-busy", "dialog-warning", "window-attention", "device-added", "suspend-error"),
)


@dataclass(frozen=True)
class Original:
    name: str  # family/kind-take
    family: str
    kind: str  # recordings of one kind are hard negatives of each other
    samples: np.ndarray  # mono float32 at RATE


def _fit(x: np.ndarray, seconds: float = SECONDS) -> np.ndarray:
    n = int(seconds * RATE)
    x = x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), dtype=np.float32)])
    peak = float(np.max(np.abs(x))) or 1.0
    return (0.5 * x / peak).astype(np.float32)


def _read(path: Path | io.BytesIO) -> np.ndarray:
    x, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return soxr.resample(x.mean(axis=1), rate, RATE).astype(np.float32)


def instrument_originals(work: Path) -> list[Original]:
    from indexer.demo import generate_demo_corpus

    out = []
    for take, seed in enumerate((11, 12)):
        directory = work / f"demo-{seed}"
        clips = generate_demo_corpus(directory, size=len(INSTRUMENTS), seed=seed, classes=INSTRUMENTS,
                                     duration_s=SECONDS, scenes=("dry",), workers=1)
        for clip in clips:
            kind = clip.label.replace(" ", "_")
            out.append(Original(f"instrument/{kind}-{take}", "instrument", kind, _fit(_read(directory / clip.path))))
    return out


def speech_originals() -> list[Original]:
    out = []
    for i, text in enumerate(SENTENCES):
        wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "110", "--stdout", text], check=True,
                             capture_output=True).stdout
        out.append(Original(f"speech/sentence-{i}", "speech", "en-us", _fit(_read(io.BytesIO(wav)))))
    return out


def drum_originals(rng: np.random.Generator) -> list[Original]:
    out = []
    for kit in KITS:
        folder = Path("/usr/share/hydrogen/data/drumkits") / kit
        samples = [_read(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in (".flac", ".wav")][:12]
        for take in range(2):
            step = int(RATE * 60 / 120 / 4)  # 16ths at 120 bpm
            bar = [rng.choice(len(samples), size=rng.integers(0, 3), replace=False) for _ in range(16)]
            x = np.zeros(int(SECONDS * RATE) + RATE, dtype=np.float32)
            for s in range(int(SECONDS * RATE) // step):
                for hit in bar[s % 16] if rng.random() > 0.15 else ():  # a loop, with some hits left out
                    sound = samples[hit][: RATE]
                    x[s * step : s * step + len(sound)] += rng.uniform(0.5, 1.0) * sound
            out.append(Original(f"drums/{kit}-{take}", "drums", kit, _fit(x)))
    return out


def event_originals(rng: np.random.Generator) -> list[Original]:
    out = []
    folder = Path("/usr/share/sounds/freedesktop/stereo")
    for s, names in enumerate(EVENT_SETS):
        sounds = [_read(folder / f"{n}.oga") for n in names]
        for take in range(2):
            x = 0.01 * rng.standard_normal(int(SECONDS * RATE)).astype(np.float32)
            for _ in range(16):
                sound = sounds[rng.integers(len(sounds))]
                at = rng.integers(0, len(x) - len(sound))
                x[at : at + len(sound)] += rng.uniform(0.3, 1.0) * sound
            out.append(Original(f"events/set{s}-{take}", "events", f"set{s}", _fit(x)))
    return out


SHORT_INSTRUMENT = "piano"
SHORT_CLIPS = 24  # half of them with copies


def short_originals(work: Path, rng: np.random.Generator) -> list[tuple[Original, bool]]:
    """Short clips (2-5 s) of one instrument from one synthesizer, each seeded (other notes); (original,
    whether it gets copies)."""
    from indexer.demo import generate_demo_corpus

    out = []
    for n in range(SHORT_CLIPS):
        seconds = float(rng.uniform(2.0, 5.0))
        directory = work / f"short-{n}"
        clip = generate_demo_corpus(directory, size=1, seed=1000 + n, classes=(SHORT_INSTRUMENT,),
                                    duration_s=seconds, scenes=("dry",), workers=1)[0]
        x = _read(directory / clip.path)
        out.append((Original(f"short/{SHORT_INSTRUMENT}-{n:02d}", "short", SHORT_INSTRUMENT, _fit(x, seconds)),
                    n < SHORT_CLIPS // 2))
    return out


def short_recipes(rng: np.random.Generator, seconds: float) -> list[Copy]:
    """The copies a sample library's clip gets: re-encoded, cut by up to half, quieter, resampled."""
    return [
        Copy("short: mp3 64k", ".mp3", 44100, 64000, 0, 0, 0, False),
        Copy("short: cut start (up to half)", ".wav", 44100, None, float(rng.uniform(0.1, 0.5)) * seconds, 0, 0, False),
        Copy("short: -6 dB", ".flac", 44100, None, 0, 0, -6.0, False),
        Copy("short: 22.05 kHz", ".wav", 22050, None, 0, 0, 0, False),
    ]


# -- copies --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Copy:
    kind: str  # what was done, for the per-kind similarity table
    suffix: str
    rate: int
    bitrate: int | None
    trim_start: float
    trim_end: float
    gain_db: float
    stereo: bool


def copy_recipes(rng: np.random.Generator) -> list[Copy]:
    trim = lambda: float(rng.uniform(0.5, 5.0))
    gain = lambda: float(rng.choice([-6.0, 6.0]))
    return [
        Copy("mp3 32k", ".mp3", 22050, 32000, 0, 0, gain(), False),
        Copy("opus 24k, trim start", ".opus", 48000, 24000, trim(), 0, 0, False),
        Copy("aac 48k, trim end, stereo", ".m4a", 44100, 48000, 0, trim(), 0, True),
        Copy("wav 22.05k, trim both, -6 dB", ".wav", 22050, None, trim() / 2, trim() / 2, -6.0, False),
        Copy("mp3 64k, trim start, +6 dB, stereo", ".mp3", 44100, 64000, trim(), 0, 6.0, True),
        Copy("flac 16k, trim end", ".flac", 16000, None, 0, trim(), gain(), False),
    ]


def write_copy(path: Path, x: np.ndarray, copy: Copy) -> None:
    x = x[int(copy.trim_start * RATE) : len(x) - int(copy.trim_end * RATE)]
    x = np.clip(x * 10 ** (copy.gain_db / 20), -1, 1)
    x = soxr.resample(x, RATE, copy.rate).astype(np.float32)
    data = np.stack([x, x]) if copy.stereo else x[None, :]
    path.parent.mkdir(parents=True, exist_ok=True)
    if copy.bitrate is None:
        soundfile.write(path, data.T, copy.rate)
        return
    import av

    codec = {".mp3": "libmp3lame", ".opus": "libopus", ".m4a": "aac"}[copy.suffix]
    layout = "stereo" if copy.stereo else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=copy.rate)
        stream.layout = layout
        stream.bit_rate = copy.bitrate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
        frame.sample_rate = copy.rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=copy.rate)
        for out in resampler.resample(frame):
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def make_corpus(corpus: Path, work: Path, seed: int = 0, short: bool = True) -> dict[str, tuple[str, str, str]]:
    """Write originals and copies, and the short clips unless `short` is False (the old set); returns
    relative path -> (original name, kind, copy kind)."""
    rng = np.random.default_rng(seed)
    originals = instrument_originals(work) + speech_originals() + drum_originals(rng) + event_originals(rng)
    truth = {}
    for original in originals:
        path = f"{original.name}.wav"
        (corpus / path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(corpus / path, original.samples, RATE)
        truth[path] = (original.name, original.kind, "original")
        for i, recipe in enumerate(copy_recipes(rng)):
            path = f"{original.name}.copy{i}{recipe.suffix}"
            write_copy(corpus / path, original.samples, recipe)
            truth[path] = (original.name, original.kind, recipe.kind)
    for original, copied in short_originals(work, rng) if short else ():
        path = f"{original.name}.wav"
        (corpus / path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(corpus / path, original.samples, RATE)
        truth[path] = (original.name, original.kind, "original")
        for i, recipe in enumerate(short_recipes(rng, len(original.samples) / RATE) if copied else ()):
            path = f"{original.name}.copy{i}{recipe.suffix}"
            write_copy(corpus / path, original.samples, recipe)
            truth[path] = (original.name, original.kind, recipe.kind)
    return truth


# -- measuring ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Keep corpus and index here (default: a temp dir).")
    parser.add_argument("--hop", type=float, default=None, help="Window hop of the index (default: the model's window).")
    parser.add_argument("--model", default="starter")
    parser.add_argument("--old-set", action="store_true",
                        help="Without the short clips (238 files), as the bench was before they were added.")
    args = parser.parse_args()

    from indexer import BuildOptions, build_index
    from search.duplicates import (
        DEFAULT_MIN_MATCH,
        DEFAULT_THRESHOLD,
        check_pairs,
        duplicate_pairs,
        group_duplicates,
    )
    from search.engine import Engine
    from search.fingerprint import spectral_print

    work = args.work or Path(tempfile.mkdtemp(prefix="resound-dup-"))
    if (work / "truth.tsv").is_file():
        has_short = any(line.startswith("short/") for line in (work / "truth.tsv").read_text().splitlines())
        if has_short == args.old_set:
            parser.error(f"{work} holds the {'full' if has_short else 'old'} set: use another --work for "
                         f"{'--old-set' if args.old_set else 'the full set'}")
    corpus, index = work / "corpus", work / f"index-{args.hop or 'default'}"
    started = time.monotonic()
    if not corpus.is_dir():
        truth = make_corpus(corpus, work, short=not args.old_set)
        (work / "truth.tsv").write_text("".join("\t".join((p, *v)) + "\n" for p, v in sorted(truth.items())))
    truth = {line.split("\t")[0]: tuple(line.split("\t")[1:]) for line in (work / "truth.tsv").read_text().splitlines()}
    print(f"corpus: {len(truth)} files, {len({v[0] for v in truth.values()})} originals "
          f"({time.monotonic() - started:.0f} s)")
    report = build_index(corpus, index, BuildOptions(model=args.model, hop_seconds=args.hop))
    print(f"index: {report.segments_added} windows embedded in {report.seconds:.0f} s")

    engine = Engine(index)
    try:
        files = engine.file_windows()
        t0 = time.monotonic()
        scored = duplicate_pairs(files, engine.provenance.hop_seconds, threshold=0.5, search=engine.window_search)
        pair_seconds = time.monotonic() - t0
        hop = engine.provenance.hop_seconds
    finally:
        engine.close()
    t0, c0 = time.monotonic(), time.process_time()
    prints = {f.file_id: spectral_print(f.path) for f in files}
    envelope_seconds = (time.monotonic() - t0, time.process_time() - c0)
    candidates = [p for p in scored if p.similarity >= DEFAULT_THRESHOLD]
    checked = check_pairs(files, candidates, lambda f: prints[f.file_id], min_match=-1.0)
    check_seconds = time.monotonic() - t0
    root = corpus.resolve()
    rel = {f.file_id: str(Path(f.path).relative_to(root)) for f in files}
    original_of = {fid: truth[p][0] for fid, p in rel.items()}
    positives = {tuple(sorted(p)) for p in combinations(rel, 2) if original_of[p[0]] == original_of[p[1]]}
    hard = {tuple(sorted(p)) for p in combinations(rel, 2)
            if original_of[p[0]] != original_of[p[1]] and truth[rel[p[0]]][1] == truth[rel[p[1]]][1]}
    similarity = {(p.a, p.b): p.similarity for p in scored}
    match = {(p.a, p.b): p.match for p in checked}
    print(f"{len(files)} files, {len(positives)} duplicate pairs, {len(hard)} same-kind distinct pairs "
          f"(hard negatives); hop {hop} s; candidates in {pair_seconds:.1f} s, {len(candidates)} checked in "
          f"{check_seconds:.1f} s (prints of every file included)\n")

    def precision_recall(pairs: list) -> tuple[float, float, float, float]:
        found = {(p.a, p.b) for p in pairs}
        together = set()
        for group in group_duplicates(files, pairs):
            together |= set(combinations(sorted(m.file_id for m in group.members), 2))
        cells = []
        for predicted in (found, together):
            tp = len(predicted & positives)
            cells += [tp / len(predicted) if predicted else 1.0, tp / len(positives)]
        return tuple(cells)  # type: ignore[return-value]

    print("Window vectors alone (`--no-check`): pairs at or above the window similarity threshold\n")
    print("| threshold | pair precision | pair recall | group precision | group recall |")
    print("|---:|---:|---:|---:|---:|")
    for threshold in (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975):
        cells = precision_recall([p for p in scored if p.similarity >= threshold])
        mark = " (candidates)" if threshold == DEFAULT_THRESHOLD else ""
        print(f"| {threshold}{mark} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")

    print(f"\nChecked (the default): candidates at window similarity >= {DEFAULT_THRESHOLD}, confirmed by "
          f"the spectral match\n")
    print("| min match | pair precision | pair recall | group precision | group recall |")
    print("|---:|---:|---:|---:|---:|")
    for min_match in (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9):
        cells = precision_recall([p for p in checked if p.match >= min_match])
        mark = " (default)" if min_match == DEFAULT_MIN_MATCH else ""
        print(f"| {min_match}{mark} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")

    landmark_table(engine_files=files, truth=truth, rel=rel, hop=hop, index=index, envelopes=prints,
                   envelope_seconds=envelope_seconds)

    # Each kind of copy against its original, and the hard negatives: window similarity, spectral match.
    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    ids = {p: fid for fid, p in rel.items()}
    for path, (name, _, kind) in truth.items():
        if kind != "original":
            pair = tuple(sorted((ids[path], ids[f"{name}.wav"])))
            by_kind[kind].append((similarity.get(pair, 0.0), match.get(pair) or 0.0))
    by_kind["hard negatives (same kind, other recording)"] = [(similarity.get(p, 0.0), match.get(p) or 0.0)
                                                             for p in hard]
    print("\n| pair | n | window similarity min / median / max | spectral match min / median / max |")
    print("|---|---:|---:|---:|")
    for kind, values in by_kind.items():
        v = np.array(values)
        cells = [" / ".join(f"{x:.3f}" for x in (c.min(), np.median(c), c.max())) for c in v.T]
        print(f"| {kind} | {len(v)} | {cells[0]} | {cells[1]} |")


def landmark_table(engine_files: list, truth: dict, rel: dict, hop: float, index: Path, envelopes: dict,
                   envelope_seconds: tuple[float, float]) -> None:
    """The default of `search duplicates`: candidates (window vectors, shared landmark hashes) confirmed
    by landmark fingerprints (or by the spectral envelope where the landmarks agree but are few), groups
    verified against their first file; pair precision and recall (two files in one group) over all files
    and over the short clips alone, and the time per 1,000 files (landmarks, candidates, envelopes of
    every file, verification)."""
    from search.duplicates import (
        DEFAULT_MIN_MATCH,
        DEFAULT_THRESHOLD,
        duplicate_pairs,
        landmark_candidates,
        verified_groups,
    )
    from search.engine import Engine
    from search.landmarks import landmarks

    engine = Engine(index)
    try:
        t0, c0 = time.monotonic(), time.process_time()
        prints = {f.file_id: landmarks(f.path) for f in engine_files}
        fingerprint_seconds, fingerprint_cpu = time.monotonic() - t0, time.process_time() - c0
        t0, c0 = time.monotonic(), time.process_time()
        candidates = {(p.a, p.b) for p in duplicate_pairs(engine_files, hop, DEFAULT_THRESHOLD,
                                                          search=engine.window_search)}
        candidates |= landmark_candidates(prints)
        candidate_seconds, candidate_cpu = time.monotonic() - t0, time.process_time() - c0
    finally:
        engine.close()
    original_of = {fid: truth[p][0] for fid, p in rel.items()}
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nLandmark fingerprints (the default): {len(candidates)} candidate pairs; landmarks of {len(engine_files)} "
          f"files in {fingerprint_seconds:.1f} s, candidates in {candidate_seconds:.1f} s; load average {load}\n")
    print("| envelope min match | files | pair precision | pair recall | pairs found | true pairs "
          "| s per 1,000 files (wall / CPU) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for min_match in (0.6, DEFAULT_MIN_MATCH, 0.8):
        t0, c0 = time.monotonic(), time.process_time()
        groups = verified_groups(engine_files, candidates, prints, hop, spectral=lambda f: envelopes[f.file_id],
                                 min_match=min_match)
        verify_seconds, verify_cpu = time.monotonic() - t0, time.process_time() - c0
        found = set()
        for g in groups:
            found |= set(combinations(sorted(m.file_id for m in g.members), 2))
        per_thousand = 1000 * (fingerprint_seconds + candidate_seconds + envelope_seconds[0] + verify_seconds) / len(
            engine_files)
        cpu_per_thousand = 1000 * (fingerprint_cpu + candidate_cpu + envelope_seconds[1] + verify_cpu) / len(engine_files)
        for label, keep in (("all", lambda f: True), ("short clips", lambda f: rel[f].startswith("short/")),
                            ("16 s families", lambda f: not rel[f].startswith("short/"))):
            ids = sorted(f for f in rel if keep(f))
            positives = {p for p in combinations(ids, 2) if original_of[p[0]] == original_of[p[1]]}
            mine = {p for p in found if keep(p[0]) and keep(p[1])}
            tp = len(mine & positives)
            mark = " (default)" if min_match == DEFAULT_MIN_MATCH else ""
            print(f"| {min_match}{mark} | {label} | {tp / len(mine) if mine else 1.0:.3f} | "
                  f"{tp / len(positives) if positives else 1.0:.3f} | {len(mine)} | {len(positives)} | "
                  f"{per_thousand:.0f} / {cpu_per_thousand:.0f} |")
        if min_match == DEFAULT_MIN_MATCH:
            default_groups, default_found = groups, found
    # What the default gets wrong, pair by pair: each file's group is named by its reference (its first file).
    reference = {m.file_id: g.members[0].file_id for g in default_groups for m in g.members}
    everything = {p for p in combinations(sorted(rel), 2) if original_of[p[0]] == original_of[p[1]]}
    for title, pairs in (("true pairs left apart", everything - default_found),
                         ("false pairs grouped", {p for p in default_found if original_of[p[0]] != original_of[p[1]]})):
        print(f"\n{title} (default): {len(pairs)}")
        for a, b in sorted(pairs, key=lambda p: (rel[p[0]], rel[p[1]])):
            where = [f"in the group of {rel[reference[f]]}" if f in reference else "in no group" for f in (a, b)]
            print(f"  {rel[a]} ({where[0]})  |  {rel[b]} ({where[1]})")

if __name__ == "__main__":
    main()
