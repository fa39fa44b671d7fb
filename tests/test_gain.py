"""Gain references: orientation convention (hand-checked), round trips, reading, shape checks."""
from __future__ import annotations

import itertools

import mrcfile
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from framewatch.core.errors import GainError
from framewatch.core.gain import load_gain_for_movie, orient_gain, read_gain, unorient_gain
from framewatch.core.movie_io import write_movie
from framewatch.core.settings import GainOrientation

ALL_ORIENTATIONS = [
    GainOrientation(rotate_ccw_90=k, flip=f, invert=inv)
    for k, f, inv in itertools.product(range(4), ("none", "x", "y"), (False, True))
]

# Rows are stored bottom-up: row 0 is the BOTTOM row when displayed with y up, so
#   displayed:  4 5 6
#               1 2 3
EXAMPLE = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)


def test_quarter_turn_ccw_with_y_up_hand_checked():
    # Turning the displayed picture a quarter counter-clockwise:
    #   4 5 6     ->    6 3
    #   1 2 3           5 2
    #                   4 1
    # so the new bottom row (row 0) is "4 1", then "5 2", then the top row "6 3".
    out = orient_gain(EXAMPLE, GainOrientation(rotate_ccw_90=1))
    np.testing.assert_array_equal(out, [[4, 1], [5, 2], [6, 3]])
    # the single bright pixel at the bottom-left goes to the bottom-right
    spot = np.zeros((2, 3), np.float32)
    spot[0, 0] = 1
    turned = orient_gain(spot, GainOrientation(rotate_ccw_90=1))
    assert turned.shape == (3, 2) and turned[0, 1] == 1 and turned.sum() == 1
    # ... and the top-left one (row 1, column 0) goes to the bottom-left
    spot = np.zeros((2, 3), np.float32)
    spot[1, 0] = 1
    assert orient_gain(spot, GainOrientation(rotate_ccw_90=1))[0, 0] == 1


def test_half_and_three_quarter_turns():
    np.testing.assert_array_equal(orient_gain(EXAMPLE, GainOrientation(rotate_ccw_90=2)), [[6, 5, 4], [3, 2, 1]])
    # three CCW quarter turns = one clockwise: 4 5 6 / 1 2 3 -> 1 4 / 2 5 / 3 6 (top to bottom)
    np.testing.assert_array_equal(orient_gain(EXAMPLE, GainOrientation(rotate_ccw_90=3)), [[3, 6], [2, 5], [1, 4]])


def test_flips():
    np.testing.assert_array_equal(orient_gain(EXAMPLE, GainOrientation(flip="y")), [[4, 5, 6], [1, 2, 3]])
    np.testing.assert_array_equal(orient_gain(EXAMPLE, GainOrientation(flip="x")), [[3, 2, 1], [6, 5, 4]])


def test_rotation_comes_before_the_flip():
    # rotate (-> 6 3 / 5 2 / 4 1 displayed), then upside down (-> 4 1 / 5 2 / 6 3 displayed)
    out = orient_gain(EXAMPLE, GainOrientation(rotate_ccw_90=1, flip="y"))
    np.testing.assert_array_equal(out, [[6, 3], [5, 2], [4, 1]])
    out = orient_gain(EXAMPLE, GainOrientation(rotate_ccw_90=1, flip="x"))
    np.testing.assert_array_equal(out, [[1, 4], [2, 5], [3, 6]])


def test_invert_keeps_zeros_and_bad_values_at_zero():
    gain = np.array([[2.0, 0.0, 4.0], [np.nan, np.inf, 0.5]], np.float32)
    out = orient_gain(gain, GainOrientation(invert=True))
    np.testing.assert_array_equal(out, [[0.5, 0.0, 0.25], [0.0, 0.0, 2.0]])
    assert out.dtype == np.float32


@pytest.mark.parametrize("orientation", ALL_ORIENTATIONS, ids=str)
def test_every_orientation_round_trips(orientation):
    rng = np.random.default_rng(7)
    # powers of two make 1/(1/g) exact, so the inverse is exact for every combination
    gain = (2.0 ** rng.integers(-3, 4, (5, 8))).astype(np.float32)
    oriented = orient_gain(gain, orientation)
    assert oriented.dtype == np.float32 and oriented.flags.c_contiguous
    assert oriented.shape == (gain.shape[::-1] if orientation.rotate_ccw_90 % 2 else gain.shape)
    np.testing.assert_array_equal(unorient_gain(oriented, orientation), gain)
    np.testing.assert_array_equal(orient_gain(unorient_gain(gain, orientation), orientation), gain)
    assert not np.shares_memory(oriented, gain)


@settings(max_examples=60, deadline=None)
@given(
    gain=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7),
        elements=st.floats(0.25, 4.0, width=32),
    ),
    k=st.integers(0, 3),
    flip=st.sampled_from(["none", "x", "y"]),
    invert=st.booleans(),
)
def test_orient_unorient_property(gain, k, flip, invert):
    orientation = GainOrientation(rotate_ccw_90=k, flip=flip, invert=invert)
    back = unorient_gain(orient_gain(gain, orientation), orientation)
    if invert:
        np.testing.assert_allclose(back, gain, rtol=3e-7)
    else:
        np.testing.assert_array_equal(back, gain)


# ------------------------------------------------------------------------------------- reading


def test_read_gain_mrc_first_section_and_tiff_flipped_like_movies(tmp_path):
    rng = np.random.default_rng(1)
    gain = rng.uniform(0.5, 1.5, (64, 96)).astype(np.float32)
    write_movie(tmp_path / "g.mrc", gain)
    write_movie(tmp_path / "g.tif", gain, tiff_compression="none")
    with mrcfile.new(tmp_path / "g3.mrc") as mrc:
        mrc.set_data(np.stack([gain, gain * 0 + 7]))
    for name in ("g.mrc", "g.tif", "g3.mrc"):
        out = read_gain(tmp_path / name)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, gain)
    # an integer (count-type) MRC gain becomes float32
    write_movie(tmp_path / "gi.mrc", (gain * 100).astype(np.uint16))
    assert read_gain(tmp_path / "gi.mrc").dtype == np.float32


def test_read_gain_errors_name_the_file(tmp_path):
    with pytest.raises(GainError, match="not found") as err:
        read_gain(tmp_path / "missing.mrc")
    assert "missing.mrc" in str(err.value)
    write_movie(tmp_path / "zero.mrc", np.zeros((8, 12), np.float32))
    with pytest.raises(GainError, match="all zero") as err:
        read_gain(tmp_path / "zero.mrc")
    assert "zero.mrc" in str(err.value)
    (tmp_path / "g.dm4").write_bytes(b"\x00" * 64)
    with pytest.raises(GainError, match="dm2mrc") as err:
        read_gain(tmp_path / "g.dm4")
    assert "g.dm4" in str(err.value)
    (tmp_path / "g.png").write_bytes(b"\x00" * 64)
    with pytest.raises(GainError, match="format") as err:
        read_gain(tmp_path / "g.png")
    assert "g.png" in str(err.value)
    (tmp_path / "short.mrc").write_bytes(b"\x00" * 100)
    with pytest.raises(GainError, match="truncated") as err:
        read_gain(tmp_path / "short.mrc")
    assert "short.mrc" in str(err.value)


# ------------------------------------------------------------------------------ matching a movie


def test_load_gain_for_movie_orients_and_cleans(tmp_path):
    rng = np.random.default_rng(2)
    true_gain = rng.uniform(0.8, 1.2, (64, 96)).astype(np.float32)
    orientation = GainOrientation(rotate_ccw_90=3, flip="x", invert=True)
    write_movie(tmp_path / "stored.mrc", unorient_gain(true_gain, orientation))
    out = load_gain_for_movie(tmp_path / "stored.mrc", orientation=orientation, movie_shape=(64, 96))
    np.testing.assert_allclose(out, true_gain, rtol=1e-6)
    stored = true_gain.copy()
    stored[3, 4] = np.nan
    out = load_gain_for_movie(stored, orientation=GainOrientation(), movie_shape=(64, 96))
    assert out[3, 4] == 0 and np.isfinite(out).all()
    assert not np.shares_memory(out, stored)


@pytest.mark.parametrize(
    "gain_shape, hint",
    [((128, 192), "super-resolution"), ((32, 48), "super-resolution"), ((96, 64), "--gain-rot 1"), ((50, 50), "gain")],
)
def test_shape_mismatch_explains_the_fix(tmp_path, gain_shape, hint):
    path = tmp_path / "gain.mrc"
    write_movie(path, np.ones(gain_shape, np.float32))
    with pytest.raises(GainError) as err:
        load_gain_for_movie(path, orientation=GainOrientation(), movie_shape=(64, 96), movie_path="TS_01_001.tif")
    message = str(err.value)
    assert "gain.mrc" in message and "TS_01_001.tif" in message and hint in message


def test_transposed_hint_accounts_for_the_current_rotation():
    with pytest.raises(GainError, match="--gain-rot 2"):
        load_gain_for_movie(np.ones((64, 96), np.float32), orientation=GainOrientation(rotate_ccw_90=1), movie_shape=(64, 96))


def test_array_gain_checks():
    with pytest.raises(GainError, match="2-D"):
        load_gain_for_movie(np.ones((2, 4, 4)), orientation=GainOrientation(), movie_shape=(4, 4))
    with pytest.raises(GainError, match="all zero"):
        load_gain_for_movie(np.zeros((4, 4)), orientation=GainOrientation(), movie_shape=(4, 4))
    with pytest.raises(GainError, match="no positive"):
        load_gain_for_movie(-np.ones((4, 4)), orientation=GainOrientation(), movie_shape=(4, 4))
