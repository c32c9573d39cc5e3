"""Window placement: every sample covered, hop-aligned, the last window aligned to the end."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.windows import cut_windows, window_starts


@pytest.mark.parametrize(
    ("n", "window", "hop", "expected"),
    [
        (0, 10, 10, []),
        (3, 10, 10, [0]),
        (10, 10, 10, [0]),
        (11, 10, 10, [0, 1]),
        (25, 10, 10, [0, 10, 15]),
        (30, 10, 10, [0, 10, 20]),
        (25, 10, 5, [0, 5, 10, 15]),
    ],
)
def test_window_starts(n: int, window: int, hop: int, expected: list[int]) -> None:
    assert window_starts(n, window, hop) == expected


@settings(deadline=None, max_examples=200)
@given(n=st.integers(1, 5000), window=st.integers(8, 700), hop_fraction=st.floats(0.01, 1.0))
def test_windows_cover_every_sample_with_full_windows(n: int, window: int, hop_fraction: float) -> None:
    hop = max(1, int(window * hop_fraction))  # hop <= window; a longer hop samples sparsely by design
    samples = np.arange(n, dtype=np.float32)
    windows = cut_windows(samples, window, hop)
    covered = np.zeros(n, dtype=bool)
    for w in windows:
        covered[w.start : w.end] = True
        np.testing.assert_array_equal(w.samples, samples[w.start : w.end])
        assert w.end - w.start == min(window, n)
    assert covered.all()
    assert [w.start for w in windows] == sorted({w.start for w in windows})


def test_seconds() -> None:
    (w,) = cut_windows(np.zeros(24000, dtype=np.float32), 48000, 48000)
    assert w.seconds(48000) == (0.0, 0.5)
