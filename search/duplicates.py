"""Near-duplicate files: the same recording re-encoded, resampled, trimmed, louder or quieter, mono or stereo.

windows of every file (vectors in time order) -> each window's nearest windows in other files (k-NN)
-> votes for (other file, time offset) -> aligned score: the mean similarity of the windows that the
offset lines up -> candidate pairs at or above the threshold -> check: the files' spectral prints
(search/fingerprint.py) correlate at some offset where they overlap enough -> groups (union-find), each
listed from its longest member with every member's similarity, match and time offset.

Comparing windows in time order rather than one averaged vector per file is what lets a trimmed copy
match: its windows line up with the original's at one offset, whatever was cut at either end. Windows
are cut on a hop grid, so a trim that is not a multiple of the hop shifts the content against the grid
and the aligned windows overlap only partly: their similarity is below 1 even for identical audio
(bench/duplicates.py measures it, and the precision/recall curve that chose DEFAULT_THRESHOLD).

Window embeddings are semantic, so distinct recordings of one kind (two sentences in one voice, two
patterns of one drum kit) embed almost alike: the vectors find and align candidates with high recall, and
the spectral check, which sees when each sound happens, tells copies from other recordings.

What `search duplicates` runs by default (Engine.duplicates) confirms with landmark fingerprints instead
(search/landmarks.py: spectral peaks paired into hashes, lined up at one offset), which also find
candidates the vectors miss, and groups files around a reference that confirms every member itself
(verified_groups): a chain of weak links (A like B, B like C) never merges two recordings. The reference is
the file likeliest to be the original (full length, lossless, the most landmarks), since two copies share
less than either shares with it; where lossy coding or a sparse recording leaves few landmarks, the
spectral envelope confirms a member if landmarks line up at its offset and the files overlap long enough. Files with the
same bytes (the catalog's content hash) are one recording at offset 0 whatever their length, with no
fingerprint needed; clips too short for landmarks (a 0.2 s hit has one or two onsets) fall back to a
stricter spectral envelope check.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from search.landmarks import Landmarks

# bench/duplicates.py (starter model, hop = window = 4 s), see docs/benchmarks/duplicates.md: the window
# similarity that keeps 99% of the true pairs as candidates, and the spectral match where precision and
# recall of the checked pairs are both highest.
DEFAULT_THRESHOLD = 0.8
DEFAULT_MIN_MATCH = 0.7
# Nearest windows looked at per window: enough that a copy's windows are found although the window's
# own file (a long steady sound) and the other copies of a large group take many of the places.
DEFAULT_NEIGHBOURS = 32
# A pair must line up at least this share of the longer file's windows: a shared intro, or a short
# excerpt of a long recording, is not a copy of it.
DEFAULT_MIN_COVERAGE = 0.5
# Offsets (in hops) tried per candidate pair, the most voted first.
OFFSETS_TRIED = 3
# Landmarks confirm clips from about 2 s up (search/landmarks.py: MIN_MOMENTS distinct onsets); a pair
# whose longer file is shorter is checked by its spectral envelope alone, at this stricter match: a
# decoded-identical or near-identical clip correlates at about 1, another hit of one drum lower.
SHORT_CLIP_SECONDS = 2.0
SHORT_CLIP_MIN_MATCH = 0.9
# Files that overlap this long are confirmed by the spectral envelope at LONG_MIN_MATCH (or the user's
# min match if higher) where as few as one landmark lines up at the envelope's offset: on
# bench/duplicates.py no two distinct recordings overlapping 10 s or more matched above 0.63 (16 s renders
# of one instrument with other notes, one voice, one drum kit), while clips of 2-5 s of one instrument
# reached 0.88. It confirms a copy that lossy coding left few landmarks in (opus at 24 kbit/s), or a
# sparse recording with few peaks (two marimba notes in 16 s). The envelope counts sound, not silence, so
# one held note matches a note two semitones away at 0.79: the landmarks, which see the
# pitch, must agree, and the margin stays (tests/test_landmarks.py).
LONG_OVERLAP_SECONDS = 10.0
LONG_MIN_MATCH = 0.8
# A group's reference is the likeliest original (likeliest_original) among the files this close to the
# longest (a lossy encoder pads a few frames: tens of milliseconds).
DURATION_SLACK = 0.25
LOSSLESS_SUFFIXES = frozenset({".wav", ".wave", ".bwf", ".rf64", ".w64", ".flac", ".aif", ".aiff", ".aifc",
                               ".caf", ".wv", ".ape", ".tta", ".snd", ".au"})
# The few landmarks of a heavily coded copy back the spectral envelope's match only at its offset: the
# envelope's lag (20 ms frames) and the landmarks' (16 ms) agree to this.
AGREEMENT_SECONDS = 0.05
# Shorter than this (5 envelope frames of 20 ms), a file cannot be checked at all: only the same bytes
# group it, and the pairs left unchecked are counted (DuplicateGroups.too_short).
MIN_CHECK_SECONDS = 0.1

# (queries (n, dim), k) -> (scores (n, k), ids (n, k)); ids index the concatenated windows, -1 for none.
WindowSearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FileWindows:
    """One file's window vectors in time order."""

    file_id: int
    path: str
    duration: float
    starts: np.ndarray  # (n,) window start times in seconds, ascending
    vectors: np.ndarray  # (n, dim) unit vectors
    window_ids: np.ndarray | None = None  # (n,) the ids `search` answers with; None: positions in the list


@dataclass(frozen=True)
class DuplicatePair:
    """Two files that hold the same recording: content at time t in `a` is at t + `offset` in `b`."""

    a: int  # file id
    b: int
    similarity: float  # mean cosine of the aligned windows
    offset: float  # seconds: a multiple of the hop, or to 20 ms once checked
    windows: int  # aligned windows the similarity is the mean of
    match: float | None = None  # correlation of the spectral prints at `offset` (None: not checked)


@dataclass(frozen=True)
class DuplicateMember:
    """A file of a duplicate group, placed against the group's first member (its reference)."""

    file_id: int
    path: str
    duration: float
    similarity: float  # aligned window similarity with the reference (1.0 for the reference itself)
    offset: float  # seconds: the member's time 0 is at `offset` in the reference (trimmed start: > 0)
    match: float | None = None  # spectral match with the reference (None: not checked)

    def __post_init__(self) -> None:
        # To the millisecond, and never -0.0 (a copy at the reference's start prints as +0.00 s).
        object.__setattr__(self, "offset", round(float(self.offset), 3) + 0.0)

    def to_json(self) -> dict[str, object]:
        return {"file_id": self.file_id, "path": self.path, "duration": round(self.duration, 3),
                "similarity": round(self.similarity, 4),
                "match": None if self.match is None else round(self.match, 4), "offset": round(self.offset, 3)}


@dataclass(frozen=True)
class DuplicateGroup:
    """Files that are one recording; `members[0]` is the reference: the longest (verified_groups: the
    likeliest original among the files as long as the longest)."""

    members: list[DuplicateMember]

    def to_json(self) -> dict[str, object]:
        return {"members": [m.to_json() for m in self.members]}


class DuplicateGroups(list[DuplicateGroup]):
    """Groups as a list, with the number of candidate pairs left out because a file was too short to check
    (shorter than MIN_CHECK_SECONDS, with other bytes than its candidate)."""

    too_short: int = 0

    def note(self) -> str | None:
        """What the user should be told about the pairs left unchecked, if any."""
        if not self.too_short:
            return None
        n = self.too_short
        return (f"{n} candidate pair{'s' if n != 1 else ''} left unchecked: a file under {MIN_CHECK_SECONDS:g} s "
                f"is too short to fingerprint (only byte-identical copies of it are grouped)")


def flat_window_search(files: Sequence[FileWindows]) -> WindowSearch:
    """Exact inner-product search over every window of `files` (ids: positions in their concatenation)."""
    import faiss

    vectors = np.concatenate([f.vectors for f in files]).astype(np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, index.ntotal))

    return search


def duplicate_pairs(
    files: Sequence[FileWindows],
    hop_seconds: float,
    threshold: float = DEFAULT_THRESHOLD,
    search: WindowSearch | None = None,
    neighbours: int = DEFAULT_NEIGHBOURS,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    batch: int = 4096,
) -> list[DuplicatePair]:
    """Every pair of `files` whose windows, aligned at the best-voted offset, score at least `threshold`.

    `search` finds nearest windows (default: exact search over `files`); its ids are `window_ids`, or
    positions in the concatenated windows of `files` when those are None. Pairs come sorted by files.
    """
    if hop_seconds <= 0:
        raise ValueError("hop must be positive")
    files = [f for f in files if len(f.starts)]
    if len(files) < 2:
        return []
    if search is None:
        search = flat_window_search(files)
        files = [f if f.window_ids is None else _positional(f, None) for f in files]
    # Every window's id, file (index into `files`) and start, ordered by id for lookups.
    if all(f.window_ids is not None for f in files):
        ids = np.concatenate([f.window_ids for f in files]).astype(np.int64)  # type: ignore[misc]
    else:
        ids = np.arange(sum(len(f.starts) for f in files))
    owners = np.concatenate([np.full(len(f.starts), fi) for fi, f in enumerate(files)])
    starts = np.concatenate([f.starts for f in files]).astype(np.float64)
    vectors = np.concatenate([f.vectors for f in files])
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    # A window only nominates pairs it could belong to: well below the threshold is no candidate.
    floor = threshold - 0.25
    found = []
    for lo in range(0, len(ids), batch):
        scores, hits = search(vectors[lo : lo + batch], neighbours)
        where = np.clip(np.searchsorted(sorted_ids, hits), 0, len(ids) - 1)
        known = (hits >= 0) & (sorted_ids[where] == hits) & (scores >= floor)
        other = order[where]  # row of the hit window
        mine = np.arange(lo, min(lo + batch, len(ids)))[:, None].repeat(hits.shape[1], axis=1)
        keep = known & (owners[other] != owners[mine])
        q, h = mine[keep], other[keep]
        # Keyed by the pair in file order, the offset from the lower file to the higher one.
        lower = owners[q] < owners[h]
        shift = np.where(lower, starts[h] - starts[q], starts[q] - starts[h])
        found.append(np.stack([np.minimum(owners[q], owners[h]), np.maximum(owners[q], owners[h]),
                               np.round(shift / hop_seconds).astype(np.int64)], axis=1))
    votes: dict[tuple[int, int], dict[int, int]] = defaultdict(dict)
    if found:
        keys, counts = np.unique(np.concatenate(found), axis=0, return_counts=True)
        for (a, b, steps), count in zip(keys.tolist(), counts.tolist()):
            votes[(a, b)][steps] = count

    pairs = []
    for (a, b), by_offset in votes.items():
        fa, fb = files[a], files[b]
        best: tuple[float, int, int] | None = None
        for steps, _ in sorted(by_offset.items(), key=lambda kv: (-kv[1], abs(kv[0])))[:OFFSETS_TRIED]:
            similarity, aligned = aligned_similarity(fa, fb, steps * hop_seconds, hop_seconds)
            enough = aligned and aligned >= min_coverage * max(len(fa.starts), len(fb.starts))
            if enough and (best is None or similarity > best[0]):
                best = (similarity, steps, aligned)
        if best is not None and best[0] >= threshold:
            pairs.append(DuplicatePair(fa.file_id, fb.file_id, best[0], best[1] * hop_seconds, best[2]))
    return sorted(pairs, key=lambda p: (p.a, p.b))


def aligned_similarity(a: FileWindows, b: FileWindows, offset: float, hop_seconds: float) -> tuple[float, int]:
    """Mean cosine of `a`'s windows and the windows of `b` that start `offset` seconds later (to within
    half a hop), and how many such pairs there are."""
    target = a.starts + offset
    j = np.clip(np.searchsorted(b.starts, target), 0, len(b.starts) - 1)
    # The nearer of the two neighbouring starts.
    left = np.clip(j - 1, 0, len(b.starts) - 1)
    j = np.where(np.abs(b.starts[left] - target) < np.abs(b.starts[j] - target), left, j)
    matched = np.abs(b.starts[j] - target) < hop_seconds / 2
    if not matched.any():
        return 0.0, 0
    sims = np.einsum("nd,nd->n", a.vectors[matched], b.vectors[j[matched]])
    return float(sims.mean()), int(matched.sum())


def check_pairs(
    files: Sequence[FileWindows],
    pairs: Sequence[DuplicatePair],
    prints: Callable[[FileWindows], SpectralPrint | None],  # noqa: F821
    min_match: float = DEFAULT_MIN_MATCH,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> list[DuplicatePair]:
    """The candidate `pairs` whose spectral prints correlate at least `min_match` at some offset where
    they overlap by `min_coverage` of the longer file, with that correlation and offset (to 20 ms).

    `prints` gives a file's print (None: it cannot be read now, and its pairs are left out). The whole
    overlap range is searched, not only around the windows' offset: windows that all embed alike (one
    voice speaking) align candidates by chance."""
    from search.fingerprint import aligned_match

    by_id = {f.file_id: f for f in files}
    checked = []
    for p in pairs:
        a, b = by_id[p.a], by_id[p.b]
        print_a, print_b = prints(a), prints(b)
        if print_a is None or print_b is None:
            continue
        longer = max(a.duration, b.duration)
        match, offset = aligned_match(print_a, print_b, 0.0, longer, min_overlap_seconds=min_coverage * longer)
        if match >= min_match:
            checked.append(DuplicatePair(p.a, p.b, p.similarity, offset, p.windows, match))
    return checked


def group_duplicates(files: Sequence[FileWindows], pairs: Sequence[DuplicatePair]) -> list[DuplicateGroup]:
    """Connected groups of `pairs` (union-find). Each is listed from its longest file: the others follow
    the strongest path to it (a maximum spanning tree), their offsets added up along it."""
    by_id = {f.file_id: f for f in files}
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    edges: dict[int, list[tuple[DuplicatePair, int, float]]] = defaultdict(list)  # file -> (pair, other, offset)
    for p in pairs:
        parent[root(p.a)] = root(p.b)
        edges[p.a].append((p, p.b, p.offset))
        edges[p.b].append((p, p.a, -p.offset))
    components: dict[int, list[int]] = defaultdict(list)
    for file_id in parent:
        components[root(file_id)].append(file_id)

    def strength(p: DuplicatePair) -> float:
        return p.match if p.match is not None else p.similarity

    groups = []
    for members in components.values():
        reference = max(members, key=lambda m: (by_id[m].duration, len(by_id[m].starts), -m))
        # Prim's algorithm from the reference: the strongest path places each member. A member paired
        # with the reference keeps that pair's scores; one joined through others, the weakest link's.
        placed: dict[int, tuple[float, float | None, float]] = {reference: (1.0, 1.0, 0.0)}
        while len(placed) < len(members):
            pair, member, offset, via = max(
                ((p, other, placed[m][2] - off, m) for m in placed for p, other, off in edges[m] if other not in placed),
                key=lambda e: strength(e[0]),
            )
            similarity, match = pair.similarity, pair.match
            if via != reference:
                similarity = min(similarity, placed[via][0])
                match = None if match is None or placed[via][1] is None else min(match, placed[via][1])
            placed[member] = (similarity, match, offset)
        checked = all(p.match is not None for m in members for p, _, _ in edges[m])
        ordered = [reference] + sorted((m for m in members if m != reference),
                                       key=lambda m: (-(placed[m][1] or placed[m][0]), by_id[m].path))
        groups.append(DuplicateGroup([
            DuplicateMember(m, by_id[m].path, by_id[m].duration, placed[m][0], placed[m][2],
                            placed[m][1] if checked else None) for m in ordered]))
    return sorted(groups, key=lambda g: (-len(g.members), g.members[0].path))


def find_duplicates(
    files: Sequence[FileWindows],
    hop_seconds: float,
    threshold: float = DEFAULT_THRESHOLD,
    search: WindowSearch | None = None,
    prints: Callable[[FileWindows], SpectralPrint | None] | None = None,  # noqa: F821
    min_match: float = DEFAULT_MIN_MATCH,
    neighbours: int = DEFAULT_NEIGHBOURS,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> list[DuplicateGroup]:
    """Groups of files that hold the same recording, largest first (see the module docstring).

    `prints`: each file's spectral print, to check candidates with (None: the window vectors decide alone,
    which groups distinct recordings of one kind too; see docs/benchmarks/duplicates.md)."""
    pairs = duplicate_pairs(files, hop_seconds, threshold, search, neighbours, min_coverage)
    if prints is not None:
        pairs = check_pairs(files, pairs, prints, min_match, min_coverage)
    return group_duplicates(files, pairs)


def _positional(f: FileWindows, ids: np.ndarray | None) -> FileWindows:
    return FileWindows(f.file_id, f.path, f.duration, f.starts, f.vectors, ids)


# -- confirmed by landmark fingerprints, grouped around a reference -------------------------------------
def landmark_candidates(prints: dict[int, Landmarks], min_shared: int = 8,
                        max_share_of_files: float = 0.05) -> set[tuple[int, int]]:
    """Pairs of files that share at least `min_shared` distinct landmark hashes (an inverted index over
    the hashes; a hash found in more than `max_share_of_files` of the files, and in more than 32, says
    nothing and is skipped).
    Finds copies the window vectors rank too low: short clips, heavy re-encodes."""
    owners: dict[int, list[int]] = defaultdict(list)
    for file_id, marks in prints.items():
        for h in np.unique(marks.hashes).tolist():
            owners[h].append(file_id)
    limit = max(32, int(max_share_of_files * len(prints)))  # a recording with many copies keeps its hashes
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for files in owners.values():
        if 2 <= len(files) <= limit:
            for i, a in enumerate(files):
                for b in files[i + 1:]:
                    shared[(min(a, b), max(a, b))] += 1
    return {pair for pair, n in shared.items() if n >= min_shared}


def likeliest_original(files: Sequence[FileWindows], prints: Mapping[int, Landmarks | None]) -> FileWindows:
    """The file of a group most likely to be the original the others were made from: as long as the
    longest (a cut copy is shorter; within DURATION_SLACK, since a lossy encoder pads a few frames), in a
    lossless format before a lossy one, then the one with the most landmarks, then the longest, then the
    first indexed. Every copy loses peaks (lossy coding, requantizing a quieter copy, resampling): two
    copies share fewer landmarks than either shares with the original, so the original verifies most.

    The sample rate is not asked: landmarks see 0-4 kHz, which any copy at 8 kHz or more keeps."""
    longest = max(f.duration for f in files)

    def landmark_count(f: FileWindows) -> int:
        marks = prints.get(f.file_id)
        return 0 if marks is None else len(marks.hashes)

    return min(files, key=lambda f: (f.duration < longest - DURATION_SLACK,
                                     PurePosixPath(f.path).suffix.lower() not in LOSSLESS_SUFFIXES,
                                     -landmark_count(f), -f.duration, f.file_id))


def verified_groups(files: Sequence[FileWindows], candidates: set[tuple[int, int]],
                    prints: dict[int, Landmarks | None], hop_seconds: float,
                    spectral: Callable[[FileWindows], SpectralPrint | None] | None = None,  # noqa: F821
                    min_match: float = DEFAULT_MIN_MATCH,
                    content: Mapping[int, str] | None = None) -> DuplicateGroups:
    """Groups of files whose every member is confirmed against the group's first file (its reference);
    no chaining through other members.

    The files the candidate pairs connect (at any distance) are checked against one reference, the one
    most likely to be their original (likeliest_original: the longest, lossless before lossy, the most
    landmarks); files it does not confirm are checked again around the next reference. A member is confirmed by its landmark
    fingerprints (search/landmarks.py: LandmarkMatch.confirmed, at any offset); or by the spectral
    envelope's match of at least `min_match` (`spectral`: a file's print, search/fingerprint.py) where
    heavy lossy coding left fewer peaks in place and the landmarks agree (LandmarkMatch.consistent), or
    where the two files overlap by LONG_OVERLAP_SECONDS or more (a long stretch of sound has too many
    events for another recording to line up; the envelope alone takes other notes of one instrument for
    a copy only in short clips). The member's `match` is the share of landmarks that line up.

    `content`: each file's content hash. Files with the reference's bytes are members at offset 0 without a
    fingerprint (match 1.0), whatever their length; pass their pairs in `candidates`. Pairs whose longer
    file is under SHORT_CLIP_SECONDS have too few landmarks to confirm them: the spectral envelope decides
    alone, at SHORT_CLIP_MIN_MATCH (a decoded-identical clip matches at about 1). A pair with a file under
    MIN_CHECK_SECONDS cannot be checked and is counted in the result's `too_short`."""
    from search.fingerprint import aligned_match
    from search.landmarks import match

    by_id = {f.file_id: f for f in files}
    links: dict[int, set[int]] = defaultdict(set)
    for a, b in candidates:
        if a in by_id and b in by_id:
            links[a].add(b)
            links[b].add(a)
    order = sorted(links, key=lambda m: (-by_id[m].duration, -len(by_id[m].starts), m))
    grouped: set[int] = set()
    tried: set[int] = set()  # references that confirmed nobody: still members of a later group, if one takes them
    unchecked: set[tuple[int, int]] = set()
    groups = DuplicateGroups()

    def confirm(ref: FileWindows, other: FileWindows) -> DuplicateMember | None:
        if content and content.get(other.file_id) and content.get(other.file_id) == content.get(ref.file_id):
            similarity, _ = aligned_similarity(ref, other, 0.0, hop_seconds)
            return DuplicateMember(other.file_id, other.path, other.duration, similarity, 0.0, 1.0)
        if min(ref.duration, other.duration) < MIN_CHECK_SECONDS:
            unchecked.add((min(ref.file_id, other.file_id), max(ref.file_id, other.file_id)))
            return None
        if prints.get(ref.file_id) is None or prints.get(other.file_id) is None:
            return None
        found = match(prints[ref.file_id], prints[other.file_id])  # type: ignore[arg-type]
        # found.offset: content at t in the reference is at t + offset in the member.
        offset = found.offset if found.confirmed else None
        longer = max(ref.duration, other.duration)
        short = longer < SHORT_CLIP_SECONDS
        long = min(ref.duration, other.duration) >= LONG_OVERLAP_SECONDS
        if offset is None and spectral is not None and (short or (found.aligned and (found.consistent or long))):
            a, b = spectral(ref), spectral(other)
            if a is not None and b is not None:
                envelope, lag = aligned_match(a, b, 0.0, longer, min_overlap_seconds=DEFAULT_MIN_COVERAGE * longer)
                overlap = min(ref.duration, other.duration - lag) - max(0.0, -lag)
                # Landmarks that line up at the envelope's offset back it; none at all (a file without peaks, a
                # note of another pitch) or elsewhere (another recording) do not.
                agree = found.aligned > 0 and abs(lag - found.offset) <= AGREEMENT_SECONDS
                if agree and found.consistent:
                    needed: float | None = min_match
                elif agree and overlap >= LONG_OVERLAP_SECONDS:
                    needed = max(min_match, LONG_MIN_MATCH)
                elif short:
                    needed = max(min_match, SHORT_CLIP_MIN_MATCH)
                else:
                    needed = None  # a clip of a few seconds: the envelope alone confirms no copy
                offset = lag if needed is not None and envelope >= needed else None
        if offset is None:
            return None
        similarity, _ = aligned_similarity(ref, other, offset, hop_seconds)
        return DuplicateMember(other.file_id, other.path, other.duration, similarity, -offset, found.share)

    for start in order:
        if start in grouped or start in tried:
            continue
        component, frontier = {start}, [start]  # the files the candidate pairs connect, not yet grouped
        while frontier:
            node = frontier.pop()
            for other in links[node] - component - grouped:
                component.add(other)
                frontier.append(other)
        while True:
            free = [by_id[m] for m in component - grouped - tried]
            if not free or len(component - grouped) < 2:
                break
            ref = likeliest_original(free, prints)
            tried.add(ref.file_id)
            members = [m for other in sorted(component - grouped - {ref.file_id})
                       if (m := confirm(ref, by_id[other])) is not None]
            if members:
                grouped.add(ref.file_id)
                grouped.update(m.file_id for m in members)
                members.sort(key=lambda m: (-(m.match or 0.0), m.path))
                groups.append(DuplicateGroup([DuplicateMember(ref.file_id, ref.path, ref.duration, 1.0, 0.0, 1.0),
                                              *members]))
    groups.sort(key=lambda g: (-len(g.members), g.members[0].path))
    # A pair counts as left out only if its files did not end up in one group by other evidence.
    home = {m.file_id: n for n, g in enumerate(groups) for m in g.members}
    groups.too_short = sum(1 for a, b in unchecked if home.get(a, -1) != home.get(b, -2))
    return groups
