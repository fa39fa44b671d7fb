"""Gain files as facilities have them, and matching super-resolution / physical-pixel gains to movies."""
from __future__ import annotations

import logging

import mrcfile
import numpy as np
import pytest
import tifffile

from framewatch.core.errors import GainError
from framewatch.core.gain import (
    bin_gain_2x2,
    eer_gain_is_count_image,
    gain_file_kind,
    load_gain_for_movie,
    match_gain_to_movie,
    read_gain,
    replicate_gain_2x2,
)
from framewatch.core.movie_io import write_movie
from framewatch.core.settings import GainOrientation

NY, NX = 24, 40


def gain_image(seed=0, shape=(NY, NX)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 1.5, shape).astype(np.float32)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("CountRef_TS_01.mrc", "serialem_count_ref"),
        ("SuperRef_TS_01.mrc", "serialem_super_ref"),
        ("CountCDSRef_x.mrc", "serialem_count_ref"),
        ("SuperDarkRef_x.tif", "serialem_super_ref"),
        ("CountRef_x.dm4", "gatan_dm"),
        ("20240101_gain.gain", "thermo_gain"),
        ("gain.mrc", "mrc"),
        ("gain.TIFF", "tiff"),
        ("Countless.mrc", "mrc"),
        ("gain.png", "unknown"),
    ],
)
def test_gain_file_kinds(name, kind):
    assert gain_file_kind(name) == kind


def test_mrc_and_serialem_references_are_read_as_stored_multiplicative(tmp_path):
    gain = gain_image(1)
    for name in ("gain.mrc", "CountRef_TS_01.mrc", "SuperRef_TS_01.mrc"):
        with mrcfile.new(tmp_path / name) as mrc:
            mrc.set_data(gain)
        np.testing.assert_array_equal(read_gain(tmp_path / name), gain)  # never inverted, never flipped


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "uint16", "uint32", "int32"])
def test_tiff_gains_of_any_real_type_are_flipped_like_movies(tmp_path, dtype):
    stored = (gain_image(2) * 100).astype(dtype)
    tifffile.imwrite(tmp_path / "g.tif", stored)  # rows as another program writes them
    out = read_gain(tmp_path / "g.tif")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, stored[::-1].astype(np.float32))


def test_thermo_gain_is_not_flipped(tmp_path):
    """RELION reads a .gain through its (flipping) TIFF reader and reverts the flip: net, file order."""
    stored = gain_image(3)
    tifffile.imwrite(tmp_path / "falcon.gain", stored)
    np.testing.assert_array_equal(read_gain(tmp_path / "falcon.gain"), stored)
    tifffile.imwrite(tmp_path / "rgb.gain", np.ones((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(GainError, match="single-channel") as err:
        read_gain(tmp_path / "rgb.gain")
    assert "rgb.gain" in str(err.value)
    (tmp_path / "bad.gain").write_bytes(b"not a tiff")
    with pytest.raises(GainError, match="TIFF") as err:
        read_gain(tmp_path / "bad.gain")
    assert "bad.gain" in str(err.value)


def test_dm4_asks_for_dm2mrc(tmp_path):
    (tmp_path / "CountRef_x.dm4").write_bytes(b"\x00" * 32)
    with pytest.raises(GainError) as err:
        read_gain(tmp_path / "CountRef_x.dm4")
    message = str(err.value)
    assert "CountRef_x.dm4" in message and "dm2mrc CountRef_x.dm4 CountRef_x.mrc" in message


def test_eer_count_gains_are_inverted_by_relions_rule(tmp_path):
    assert eer_gain_is_count_image("gain.mrc", movie_path="a.eer")
    assert eer_gain_is_count_image("x.tif", movie_path="a.EER")
    assert not eer_gain_is_count_image("x.gain", movie_path="a.eer")
    assert not eer_gain_is_count_image("gain.mrc", movie_path="a.tif")
    counts = np.array([[100, 200], [0, 400]], np.float32)
    write_movie(tmp_path / "eer_counts.mrc", counts)
    out = load_gain_for_movie(tmp_path / "eer_counts.mrc", orientation=GainOrientation(invert=True), movie_shape=(2, 2))
    np.testing.assert_allclose(out, [[0.01, 0.005], [0.0, 0.0025]])  # 1 / count, 0 stays a defect


# ------------------------------------------------------------------------- super-resolution sizes


def test_binning_is_the_harmonic_mean_hand_checked():
    g = np.array([[1.0, 2.0, 1.0, 1.0], [4.0, 4.0, 0.0, 1.0]], np.float32)
    # block 1: 4 / (1 + 1/2 + 1/4 + 1/4) = 2; block 2 holds a defect (0): 0
    np.testing.assert_allclose(bin_gain_2x2(g), [[2.0, 0.0]])
    np.testing.assert_array_equal(replicate_gain_2x2(np.array([[1.0, 3.0]], np.float32)),
                                  [[1, 1, 3, 3], [1, 1, 3, 3]])


def test_harmonic_binning_flattens_summed_counts_and_the_arithmetic_mean_does_not():
    """Sub-pixels with sensitivity s record lambda * s counts; their sum over 2 x 2, times the binned
    gain, must be flat. True for the harmonic mean of g = 1/s, not for the arithmetic mean."""
    s = np.random.default_rng(4).uniform(0.6, 1.4, (64, 64))
    g = (1.0 / s).astype(np.float32)
    counts = (100.0 * s).reshape(32, 2, 32, 2).sum(axis=(1, 3))  # expected counts per physical pixel
    harmonic = counts * bin_gain_2x2(g)
    arithmetic = counts * g.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert np.ptp(harmonic) / harmonic.mean() < 1e-5
    assert np.ptp(arithmetic) / arithmetic.mean() > 0.01


def test_load_gain_resamples_super_resolution_and_physical_gains(tmp_path, caplog):
    physical = gain_image(5)
    super_res = replicate_gain_2x2(physical) * np.random.default_rng(6).uniform(0.9, 1.1, (2 * NY, 2 * NX))
    write_movie(tmp_path / "SuperRef_a.mrc", super_res.astype(np.float32))
    write_movie(tmp_path / "CountRef_a.mrc", physical)
    with caplog.at_level(logging.INFO, logger="framewatch.core.gain"):
        binned = load_gain_for_movie(tmp_path / "SuperRef_a.mrc", orientation=GainOrientation(),
                                     movie_shape=(NY, NX), movie_path="m.tif", allow_resample=True)
    assert binned.shape == (NY, NX) and "harmonic" in caplog.text and "m.tif" in caplog.text
    np.testing.assert_allclose(binned, bin_gain_2x2(super_res.astype(np.float32)))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="framewatch.core.gain"):
        replicated = load_gain_for_movie(tmp_path / "CountRef_a.mrc", orientation=GainOrientation(),
                                         movie_shape=(2 * NY, 2 * NX), allow_resample=True)
    assert "replicated" in caplog.text
    np.testing.assert_array_equal(replicated, replicate_gain_2x2(physical))
    # orientation comes first: a rotated super-resolution gain for a transposed movie
    rotated = load_gain_for_movie(tmp_path / "SuperRef_a.mrc", orientation=GainOrientation(rotate_ccw_90=1),
                                  movie_shape=(NX, NY), allow_resample=True)
    np.testing.assert_allclose(rotated, np.rot90(bin_gain_2x2(super_res.astype(np.float32)), -1))


def test_unresolvable_sizes_stay_errors(tmp_path):
    write_movie(tmp_path / "g.mrc", gain_image(7))
    with pytest.raises(GainError, match="allow resampling") as err:
        load_gain_for_movie(tmp_path / "g.mrc", orientation=GainOrientation(), movie_shape=(2 * NY, 2 * NX))
    assert "g.mrc" in str(err.value)
    for shape in [(3 * NY, 3 * NX), (NY + 1, NX), (2 * NY, NX)]:
        with pytest.raises(GainError, match="g.mrc"):
            load_gain_for_movie(tmp_path / "g.mrc", orientation=GainOrientation(), movie_shape=shape,
                                allow_resample=True)
    with pytest.raises(ValueError):
        match_gain_to_movie(gain_image(7), (NY + 2, NX))
    gain, note = match_gain_to_movie(gain_image(7), (NY, NX))
    assert note is None and gain.shape == (NY, NX)
