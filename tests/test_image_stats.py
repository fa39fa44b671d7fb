"""core/image_stats.py: the header statistics kernel against a slow NumPy reference (float64 copy)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from framewatch.core.image_stats import image_stats


def _reference(a):
    b = np.asarray(a, dtype=np.float64)
    return b.min(), b.max(), b.mean(), b.var()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 40), st.integers(1, 40)),
              elements=st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)))
def test_matches_numpy_reference(a):
    got = image_stats(a)
    lo, hi, mean, var = _reference(a)
    assert got.n_pixels == a.size and got.min == lo and got.max == hi
    assert got.mean == pytest.approx(mean, rel=1e-9, abs=1e-9 * (abs(hi) + abs(lo) + 1))
    assert got.variance == pytest.approx(var, rel=1e-7, abs=1e-9 * (hi - lo + 1) ** 2)


def test_a_large_offset_does_not_cancel_the_variance():
    # E[x^2] - E[x]^2 in float64 would lose the 1e-2 spread on top of 1e4; the two passes keep it
    rng = np.random.default_rng(0)
    a = (1e4 + 1e-2 * rng.standard_normal((512, 512))).astype(np.float32)
    assert image_stats(a).variance == pytest.approx(np.asarray(a, np.float64).var(), rel=1e-6)


def test_other_pixel_types_and_shapes_are_read_as_float32():
    a = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    got = image_stats(a)
    assert (got.min, got.max, got.mean, got.variance) == (0.0, 23.0, 11.5, pytest.approx(np.arange(24).var()))


def test_empty_image_is_refused_with_its_reason():
    with pytest.raises(ValueError, match="empty"):
        image_stats(np.zeros((0, 5), np.float32))


def test_a_nan_pixel_makes_mean_and_variance_nan_and_min_max_skip_it():
    # the behaviour the module documents (a corrected image never holds NaN; a stack written by hand may)
    a = np.arange(1.0, 65.0, dtype=np.float32).reshape(8, 8)
    a[3, 5] = np.nan
    got = image_stats(a)
    assert np.isnan(got.mean) and np.isnan(got.variance)
    assert (got.min, got.max) == (1.0, 64.0)
