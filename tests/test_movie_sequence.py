"""core.movie_sequence: several movie files corrected in order, the next read while this one is corrected.

Movies are simulated (core.simulate), written to disk as LZW TIFF and MRC, and the outcomes compared
with ``correct_movie_file`` of each file on its own: reading ahead must not change a single value.
"""
from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import simulated

import framewatch.core.movie_sequence as movie_sequence
from framewatch.core.correct import correct_movie_file
from framewatch.core.errors import MovieFormatError
from framewatch.core.movie_io import write_image_mrc, write_movie
from framewatch.core.movie_sequence import MovieJob, correct_movie_files
from framewatch.core.settings import CorrectionSettings

SETTINGS = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.8, patches=(0, 0), threads=1)


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    d = tmp_path_factory.mktemp("movies")
    sims = [simulated(ny=256, nx=256, n_frames=6, dose_per_frame_e_per_a2=0.8, trajectory="jerky", gain_rms=0.0,
                      seed=s)
            for s in (21, 22, 23)]
    paths = [d / "a.tif", d / "b.mrc", d / "c.tif"]
    for path, sim in zip(paths, sims):
        write_movie(path, sim.frames)
    gain = d / "gain.mrc"
    write_image_mrc(gain, np.ones((256, 256), np.float32), pixel_size_a=1.5)  # the sims have a flat gain
    return paths, sims, gain


def test_outcomes_equal_single_corrections_and_follow_the_truth(movies):
    paths, sims, gain = movies
    jobs = [MovieJob(path=p, settings=SETTINGS, gain=gain) for p in paths]
    outcomes = list(correct_movie_files(jobs))
    assert [o.job.path for o in outcomes] == paths
    for outcome, path, sim in zip(outcomes, paths, sims):
        assert outcome.error is None
        alone = correct_movie_file(path, settings=SETTINGS, gain=gain)
        np.testing.assert_array_equal(outcome.result.dose_weighted_sum, alone.dose_weighted_sum)
        np.testing.assert_array_equal(outcome.result.shifts_px, alone.shifts_px)
        # and the shifts are the simulated ones (256^2, 6 frames at 0.8 e/A^2: within 0.25 px)
        truth = sim.shifts_px - sim.shifts_px[0]
        assert np.abs(outcome.result.shifts_px - truth).max() < 0.25


def test_a_broken_movie_is_an_outcome_with_its_error_and_the_rest_go_on(movies, tmp_path):
    paths, _, gain = movies
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(paths[1].read_bytes()[:3000])  # header and part of the first frame
    jobs = [MovieJob(path=p, settings=SETTINGS, gain=gain) for p in (paths[0], broken, paths[2])]
    outcomes = list(correct_movie_files(jobs))
    assert outcomes[0].error is None and outcomes[2].error is None
    assert outcomes[1].result is None
    assert isinstance(outcomes[1].error, MovieFormatError) and "broken.mrc" in str(outcomes[1].error)


def test_reading_ahead_or_not_gives_the_same_numbers_and_the_gain_is_loaded_once(movies, monkeypatch):
    paths, _, gain = movies
    loads = []
    real = movie_sequence.load_gain_for_movie

    def counting(*args, **kwargs):  # a spy on the real loader, which still runs
        loads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(movie_sequence, "load_gain_for_movie", counting)
    jobs = [MovieJob(path=p, settings=SETTINGS, gain=gain) for p in paths]
    ahead = list(correct_movie_files(jobs))
    one_by_one = list(correct_movie_files(jobs, read_ahead=False))
    for a, b in zip(ahead, one_by_one):
        np.testing.assert_array_equal(a.result.even_sum, b.result.even_sum)
    assert len(loads) == 2  # once per call of correct_movie_files, not once per movie


def test_no_jobs_no_outcomes():
    assert list(correct_movie_files([])) == []
