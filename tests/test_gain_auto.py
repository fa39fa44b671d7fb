"""Automatic gain orientation on simulated movies: all 8 orientations found, refusals, ties, hints."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from sim_helpers import simulated

from framewatch.core.errors import GainError, MovieFormatError
from framewatch.core.gain import orient_gain, unorient_gain
from framewatch.core.gain_auto import (
    CANDIDATES,
    MARGIN_MIN,
    Z_MIN,
    OrientationAccumulator,
    accumulate_for_orientation,
    canonical_orientation,
    choose_gain_orientation,
    orientation_hint_from_labels,
    orientation_hint_from_movie,
)
from framewatch.core.movie_io import write_movie
from framewatch.core.settings import GainOrientation

# one tilt: 10 frames, 3 e/A^2 in all, 1.5 A pixels (6.75 counts per pixel)
TILT = dict(ny=256, nx=256, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, seed=3)


def raw_sum(sim) -> np.ndarray:
    return sim.frames.sum(axis=0, dtype=np.float64)


def test_the_8_candidates_are_the_8_distinct_operations():
    image = np.arange(12.0).reshape(3, 4)
    square = np.arange(16.0).reshape(4, 4)
    results = {orient_gain(square, o).tobytes() for o in CANDIDATES}
    assert len(CANDIDATES) == 8 and len(results) == 8
    for k in range(4):  # flip x == rotate 2 more, then flip y
        x = GainOrientation(rotate_ccw_90=k, flip="x")
        np.testing.assert_array_equal(orient_gain(image, x), orient_gain(image, canonical_orientation(x)))


@pytest.mark.parametrize("gain_kind", [dict(gain_rms=0.1), dict(gain_rms=0.05, gain_columns_rms=0.03)])
def test_every_orientation_is_found_from_one_tilt(gain_kind):
    sim = simulated(**TILT, **gain_kind)
    total = raw_sum(sim)
    for orientation in CANDIDATES:
        stored = unorient_gain(sim.gain, orientation)
        choice = choose_gain_orientation(total, stored, n_frames_summed=10)
        assert choice.accepted and choice.orientation == orientation, choice.reason
        assert choice.best_z >= Z_MIN and choice.margin >= MARGIN_MIN
        assert len(choice.scores) == 8 and choice.n_frames_summed == 10
        assert "--gain-rot" in choice.reason and f"{choice.margin:.1f}" in choice.reason


def thinned(counts: np.ndarray, sensitivity: np.ndarray, seed: int) -> np.ndarray:
    """Binomial thinning: Poisson(lambda) thinned by p is Poisson(lambda p), a detector of sensitivity p."""
    return np.random.default_rng(seed).binomial(counts.astype(np.int64), sensitivity).astype(np.uint16)


def test_accumulating_three_movies_of_one_detector():
    """Three tilts of different specimens through one detector: the sum finds all 8 orientations."""
    rng = np.random.default_rng(0)
    sensitivity = np.clip(0.8 + 0.08 * rng.standard_normal((128, 128)), 0.3, 1.0)
    true_gain = (sensitivity.mean() / sensitivity).astype(np.float32)
    movies = []
    for seed in (1, 2, 3):
        sim = simulated(ny=128, nx=128, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.375, seed=seed,
                        gain_rms=0.0)
        movies.append(thinned(sim.frames, sensitivity, seed))
    acc = OrientationAccumulator(max_movies=3)
    for movie in movies + movies[:1]:
        acc.add(movie)
    assert acc.full and acc.n_movies == 3 and acc.n_frames_summed == 30
    assert acc.raw_sum.mean() == pytest.approx(3 * 10 * 0.3 * 1.5**2, rel=0.05)  # 3 e/A^2 per tilt
    for orientation in CANDIDATES:
        choice = acc.choose(unorient_gain(true_gain, orientation))
        assert choice.accepted and choice.orientation == orientation, choice.reason
    one = choose_gain_orientation(movies[0].sum(axis=0, dtype=np.float64), true_gain, n_frames_summed=10)
    assert choice.best_z > 1.4 * one.best_z  # ~ sqrt(3) more signal from three movies


@pytest.mark.parametrize(
    "spec",
    [
        dict(TILT, gain_rms=0.002),  # featureless detector
        dict(TILT, gain_rms=0.1, dose_per_frame_e_per_a2=0.001),  # 0.01 e/A^2 per tilt
    ],
)
def test_refuses_with_too_little_signal(spec):
    sim = simulated(**spec)
    for hint in (None, GainOrientation(rotate_ccw_90=1)):
        choice = choose_gain_orientation(raw_sum(sim), sim.gain, n_frames_summed=10, hint=hint)
        assert not choice.accepted and choice.orientation is None
        assert "too little signal" in choice.reason and "--gain-rot" in choice.reason and "--gain-flip" in choice.reason
        assert choice.best_z < Z_MIN


def test_no_clear_winner_is_refused_and_a_hint_breaks_the_tie():
    """Strong column banding shared by two candidates, almost no pixel pattern to tell them apart."""
    sim = simulated(**TILT, gain_rms=0.003, gain_columns_rms=0.1)
    orientation = GainOrientation(rotate_ccw_90=1, flip="y")
    stored = unorient_gain(sim.gain, orientation)
    choice = choose_gain_orientation(raw_sum(sim), stored, n_frames_summed=10)
    assert not choice.accepted and choice.orientation is None and "no clear winner" in choice.reason
    assert choice.best_z >= Z_MIN and choice.margin < MARGIN_MIN
    hinted = choose_gain_orientation(raw_sum(sim), stored, n_frames_summed=10, hint=orientation)
    assert hinted.accepted and hinted.orientation == orientation and "r/f" in hinted.reason
    wrong_hint = choose_gain_orientation(raw_sum(sim), stored, n_frames_summed=10,
                                         hint=GainOrientation(rotate_ccw_90=2))
    assert not wrong_hint.accepted  # a hint outside the tie does not decide


def test_equivalent_orientations_of_a_symmetric_gain_are_accepted():
    sim = simulated(**TILT, gain_rms=0.0, gain_columns_rms=0.1)  # columns only: a y flip changes nothing
    choice = choose_gain_orientation(raw_sum(sim), sim.gain, n_frames_summed=10, hint=GainOrientation(flip="y"))
    assert choice.accepted and choice.orientation == GainOrientation(flip="y") and "same gain pattern" in choice.reason
    np.testing.assert_allclose(orient_gain(sim.gain, choice.orientation), sim.gain)


def test_a_data_decision_overrides_and_reports_a_contradicting_hint():
    sim = simulated(**TILT, gain_rms=0.1)
    choice = choose_gain_orientation(raw_sum(sim), sim.gain, n_frames_summed=10, hint=GainOrientation(rotate_ccw_90=3))
    assert choice.accepted and choice.orientation == GainOrientation() and "disagree" in choice.reason
    agree = choose_gain_orientation(raw_sum(sim), sim.gain, n_frames_summed=10, hint=GainOrientation())
    assert "agrees" in agree.reason


def test_count_gains_need_invert():
    sim = simulated(**TILT, gain_rms=0.1)
    counts = (1.0 / sim.gain).astype(np.float32)  # a sensitivity (count) image, EER-style
    refused = choose_gain_orientation(raw_sum(sim), counts, n_frames_summed=10)
    assert not refused.accepted and "invert" in refused.reason
    choice = choose_gain_orientation(raw_sum(sim), counts, n_frames_summed=10, invert=True)
    assert choice.accepted and choice.orientation == GainOrientation(invert=True)


def test_non_square_frames_have_four_candidates():
    sim = simulated(ny=128, nx=192, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, seed=5, gain_rms=0.1)
    for orientation in (GainOrientation(rotate_ccw_90=2), GainOrientation(flip="y"), GainOrientation(rotate_ccw_90=1)):
        stored = unorient_gain(sim.gain, orientation)
        choice = choose_gain_orientation(raw_sum(sim), stored, n_frames_summed=10)
        assert choice.accepted and choice.orientation == orientation
        assert sum(s.correlation is None for s in choice.scores) == 4
    with pytest.raises(GainError, match="no rotation"):
        choose_gain_orientation(raw_sum(sim), np.ones((50, 60), np.float32), n_frames_summed=10)


def test_a_super_resolution_gain_is_binned_first_when_allowed():
    sim = simulated(**TILT, gain_rms=0.1)
    super_res = np.repeat(np.repeat(sim.gain, 2, axis=0), 2, axis=1)
    orientation = GainOrientation(rotate_ccw_90=3)
    stored = unorient_gain(super_res, orientation)
    with pytest.raises(GainError):
        choose_gain_orientation(raw_sum(sim), stored, n_frames_summed=10)
    choice = choose_gain_orientation(raw_sum(sim), stored, n_frames_summed=10, allow_resample=True)
    assert choice.accepted and choice.orientation == orientation


def test_hot_pixels_and_gain_defects_do_not_decide():
    sim = simulated(**TILT, gain_rms=0.1, n_hot_pixels=200, hot_counts_per_frame=50.0, dead_column=17)
    orientation = GainOrientation(rotate_ccw_90=2, flip="y")
    gain = sim.gain.copy()
    gain[5:9, :] = 0.0  # defect rows in the reference
    choice = choose_gain_orientation(raw_sum(sim), unorient_gain(gain, orientation), n_frames_summed=10)
    assert choice.accepted and choice.orientation == orientation


def test_accumulate_for_orientation_reads_movie_files(tmp_path):
    sim = simulated(**TILT, gain_rms=0.1)
    paths = []
    for i in range(4):
        path = tmp_path / f"TS_01_{i:03d}.mrc"
        write_movie(path, sim.frames[i:i + 5])
        paths.append(path)
    total, n = accumulate_for_orientation(paths, max_movies=3)
    assert n == 15
    np.testing.assert_array_equal(total, sum(sim.frames[i:i + 5].sum(axis=0, dtype=np.float64) for i in range(3)))
    write_movie(tmp_path / "other.mrc", np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(MovieFormatError, match="one camera mode"):
        accumulate_for_orientation([paths[0], tmp_path / "other.mrc"])
    with pytest.raises(ValueError):
        accumulate_for_orientation([])


# ------------------------------------------------------------------------------ SerialEM's r/f


def serialem_reference(image: np.ndarray, n: int) -> np.ndarray:
    """SerialEM's r/f N applied by hand to a picture: mirror left-right if N >= 4, then rotate
    N % 4 quarter turns counter-clockwise as displayed (y up; numpy rows bottom-up)."""
    picture = image[::-1, :]  # as displayed, top row first
    if n >= 4:
        picture = picture[:, ::-1]
    picture = np.rot90(picture, n % 4)  # np.rot90 turns a top-row-first picture counter-clockwise
    return picture[::-1, :]


@pytest.mark.parametrize("n", range(8))
def test_rf_hint_means_flip_around_y_then_rotate(n):
    image = np.arange(12.0).reshape(3, 4)
    labels = ["SerialEMCCD: Dose frac. image, scaled by 1.00  r/f " + str(n) + "   01-Jan-24  10:00:00"]
    hint = orientation_hint_from_labels(labels)
    assert hint is not None and hint.flip in ("none", "y") and not hint.invert
    np.testing.assert_array_equal(orient_gain(image, hint), serialem_reference(image, n))


def test_rf_hint_parsing_edge_cases(tmp_path):
    assert orientation_hint_from_labels(["no title here", "4 bits packed  r/f 0 need 2"]) == GainOrientation()
    assert orientation_hint_from_labels(["r/f 9"]) is None
    assert orientation_hint_from_labels([]) is None
    from test_movie_io import handmade_mrc  # the byte-level MRC writer of the movie tests

    handmade_mrc(tmp_path / "f.mrc", np.zeros((1, 8, 8), np.uint8), mode=0, imod_flags=0,
                 labels=["SerialEMCCD: Dose frac. image, scaled by 1.00  r/f 6"])
    assert orientation_hint_from_movie(tmp_path / "f.mrc") == GainOrientation(rotate_ccw_90=0, flip="y")
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((8, 8), np.uint8), description="SerialEMCCD r/f 1")
    assert orientation_hint_from_movie(tmp_path / "f.tif") == GainOrientation(rotate_ccw_90=1)
    assert orientation_hint_from_movie(tmp_path / "missing.mrc") is None


def test_defect_coordinates_follow_the_orientation():
    from framewatch.core.gain_orientation_scores import _orient_view, _oriented_coords

    rng = np.random.default_rng(0)
    for shape in [(5, 7), (6, 6)]:
        mask = rng.random(shape) < 0.3
        ys, xs = np.nonzero(mask)
        for o in CANDIDATES:
            for transpose in (False, True):
                view = _orient_view(mask, o).T if transpose else _orient_view(mask, o)
                got = np.zeros(view.shape, bool)
                got[_oriented_coords(ys, xs, shape, o, transpose=transpose)] = True
                np.testing.assert_array_equal(got, view)
