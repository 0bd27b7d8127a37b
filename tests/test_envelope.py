"""Downsampling for pictures of long runs (issue 23): every recorded value lies within its span's
[lo, hi], the extremes are the span's own, NaN/Inf are counted, the output is bounded by the
buckets whatever the length, and layer labels are thinned to what fits without overlapping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradtui.envelope import Buckets, Envelope, envelope, thin_labels


def _messy(n: int, columns: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Irregular increasing steps (every 1..7, a long gap) and values with spikes, NaN, +/-Inf."""
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 8, n)).astype(float)
    steps[n // 2 :] += 10_000  # a gap: a resumed run
    vals = rng.lognormal(0, 1, (n, columns)) * 10.0 ** rng.integers(-8, 2, columns)
    spikes = rng.random((n, columns)) < 1e-3
    vals[spikes] *= 1e6
    for bad in (np.nan, np.inf, -np.inf):
        vals[rng.random((n, columns)) < 5e-4] = bad
    vals[:, -1] = np.nan  # a column never recorded
    return steps, vals


def _check_spans(b: Buckets, steps: np.ndarray, vals: np.ndarray, buckets: int) -> None:
    """Every record in exactly one span; the span's lo/hi/mean/counts are its records' own."""
    assert len(b.x) <= buckets
    assert b.records.sum() == len(steps)
    assert np.all(b.left[1:] == b.right[:-1])  # contiguous cells
    for i in range(len(b.x)):
        last = i == len(b.x) - 1
        inside = (steps >= b.left[i]) & ((steps <= b.right[i]) if last else (steps < b.right[i]))
        assert inside.sum() == b.records[i]
        assert b.left[i] <= b.x[i] <= b.right[i]
        v = vals[inside]
        fin = np.isfinite(v)
        np.testing.assert_array_equal(b.count[i], fin.sum(axis=0))
        np.testing.assert_array_equal(b.nan[i], np.isnan(v).sum(axis=0))
        np.testing.assert_array_equal(b.posinf[i], (v == np.inf).sum(axis=0))
        np.testing.assert_array_equal(b.neginf[i], (v == -np.inf).sum(axis=0))
        for j in range(v.shape[1]):
            col = v[fin[:, j], j]
            if col.size:
                # min and max preserved exactly: every value within [lo, hi], both attained
                assert b.lo[i, j] == col.min() and b.hi[i, j] == col.max()
                assert b.lo[i, j] <= b.mean[i, j] <= b.hi[i, j]
                assert math.isclose(b.mean[i, j], col.mean(), rel_tol=1e-9)
            else:
                assert math.isnan(b.lo[i, j]) and math.isnan(b.hi[i, j]) and math.isnan(b.mean[i, j])


@pytest.mark.parametrize("n, buckets", [(50_000, 700), (3_001, 1_000), (700, 700), (12, 5)])
def test_every_value_lies_within_its_span_and_the_output_is_bounded(n: int, buckets: int) -> None:
    steps, vals = _messy(n, 4, seed=n)
    b = envelope(steps, vals, buckets)
    _check_spans(b, steps, vals, buckets)
    # the whole run's extremes survive the downsampling: a one-step spike stays visible
    fin = np.where(np.isfinite(vals), vals, np.nan)
    np.testing.assert_array_equal(np.nanmax(b.hi[:, :3], axis=0), np.nanmax(fin[:, :3], axis=0))
    np.testing.assert_array_equal(np.nanmin(b.lo[:, :3], axis=0), np.nanmin(fin[:, :3], axis=0))
    assert b.nonfinite.sum() == (~np.isfinite(vals)).sum()


def test_a_short_run_keeps_one_span_a_record() -> None:
    steps = np.array([0.0, 10.0, 20.0, 40.0])
    vals = np.array([1.0, np.nan, 3.0, 0.5])
    b = envelope(steps, vals, 100)
    np.testing.assert_array_equal(b.x, steps)
    np.testing.assert_array_equal(b.mean[:, 0], [1.0, np.nan, 3.0, 0.5])
    np.testing.assert_array_equal(b.edges(), [-5.0, 5.0, 15.0, 30.0, 50.0])  # halfway to neighbours
    assert b.nan[:, 0].tolist() == [0, 1, 0, 0]


def test_streamed_in_blocks_with_an_unknown_range_it_stays_exact_and_bounded() -> None:
    steps, vals = _messy(40_000, 3, seed=7)
    env = Envelope(256, 3)  # the range is not given: spans double as the steps go on
    rng = np.random.default_rng(1)
    lo = 0
    while lo < len(steps):
        hi = lo + int(rng.integers(1, 3_000))
        block = slice(lo, hi)
        order = rng.permutation(len(steps[block]))  # a block need not be sorted
        env.add(steps[block][order], vals[block][order])
        lo = hi
    b = env.result()
    assert env._lo.shape == (256, 3)  # what it holds: the buckets, not the run
    assert len(b.x) <= 256 and env.width > 1  # at most the buckets; the spans grew
    _check_spans(b, steps, vals, 256)


def test_one_column_of_a_list_with_none_and_bad_arguments() -> None:
    b = envelope([0, 1, 2, 3, 4, 5], [1.0, None, 2.0, 5.0, 4.0, 3.0], 2)
    assert len(b.x) == 2 and b.hi[:, 0].tolist() == [2.0, 5.0] and b.nan[:, 0].tolist() == [1, 0]
    assert len(envelope([], [], 10).x) == 0
    with pytest.raises(ValueError):
        Envelope(1)
    with pytest.raises(ValueError):
        Envelope(10, 2).add([1, 2], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])


@pytest.mark.parametrize("fontsize", [6.0, 8.0, 10.0])
@pytest.mark.parametrize("length_pt", [40.0, 150.0, 446.0, 1000.0])
def test_thinned_labels_fit_without_overlapping(fontsize: float, length_pt: float) -> None:
    spacing = 1.2
    room = math.floor(length_pt / (fontsize * spacing))
    for n in range(1, 420):
        picked = thin_labels(n, length_pt, fontsize, spacing)
        assert picked[0] == 0 and picked[-1] == n - 1  # first and last always
        assert picked == sorted(set(picked))
        if room >= 2:
            assert len(picked) <= room <= length_pt / fontsize  # count <= height / fontsize
            gaps = np.diff(picked) * length_pt / n  # points between neighbouring labels
            assert (gaps >= fontsize * spacing - 1e-9).all()
        if n <= room:
            assert picked == list(range(n))  # everything fits: every label
    assert thin_labels(0, 100, 8) == []
