"""`framewatch correct A B C --out-dir D`: several movies in one call, each as if corrected alone."""
import json

import mrcfile
import numpy as np
from sim_helpers import simulated

from framewatch.core.correct import correct_movie_file
from framewatch.core.movie_io import write_movie
from framewatch.core.settings import CorrectionSettings
from framewatch.daemon.commands.cli import main

SMALL = dict(ny=256, nx=256, n_frames=6, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.5, gain_rms=0.0)
FLAGS = ["--pixel-size-a", "1.5", "--dose-per-frame", "0.5"]


def _movies(tmp_path):
    paths = []
    for name, seed in (("TS_01_000_0.0.tif", 31), ("TS_01_001_3.0.mrc", 32), ("TS_01_002_-3.0.tif", 33)):
        path = tmp_path / name
        write_movie(path, simulated(**SMALL, seed=seed).frames)
        paths.append(path)
    return paths


def test_several_movies_each_equal_to_its_own_correction(tmp_path, capsys):
    movies = _movies(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["correct", *map(str, movies), "--out-dir", str(out), *FLAGS]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 * 3  # three sums and a report per movie
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.5)
    for movie in movies:
        stem = movie.name[: -len(movie.suffix)]
        alone = correct_movie_file(movie, settings=settings)
        with mrcfile.open(out / f"{stem}.mrc") as mrc:
            np.testing.assert_allclose(mrc.data, alone.dose_weighted_sum, rtol=1e-5, atol=1e-4)
        with mrcfile.open(out / f"{stem}_ODD.mrc") as mrc:
            np.testing.assert_allclose(mrc.data, alone.odd_sum, rtol=1e-5, atol=1e-4)
        report = json.loads((out / f"{stem}.json").read_text())
        assert report["movie"] == str(movie.resolve())
        np.testing.assert_allclose(report["shifts_px"], alone.shifts_px, atol=1e-9)


def test_a_broken_movie_gets_one_line_and_the_others_are_written(tmp_path, capsys):
    movies = _movies(tmp_path)
    broken = tmp_path / "TS_01_001_3.0.mrc"
    broken.write_bytes(broken.read_bytes()[:5000])  # cut inside the first frame
    out = tmp_path / "out"
    out.mkdir()
    code = main(["correct", *map(str, movies), "--out-dir", str(out), *FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "TS_01_001_3.0.mrc" in err[0] and "Traceback" not in err[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}{suffix}" for s in ("TS_01_000_0.0", "TS_01_002_-3.0") for suffix in (".mrc", "_EVN.mrc", "_ODD.mrc", ".json")
    )


def test_out_with_several_movies_and_twin_names_are_refused_before_any_work(tmp_path, capsys):
    movies = _movies(tmp_path)
    assert main(["correct", *map(str, movies[:2]), "--out", str(tmp_path / "x"), *FLAGS]) == 2
    assert "--out-dir" in capsys.readouterr().err
    twin = tmp_path / "TS_01_000_0.0.mrc"
    write_movie(twin, simulated(**SMALL, seed=34).frames)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["correct", str(movies[0]), str(twin), "--out-dir", str(out), *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "would both write" in err and not list(out.iterdir())
    assert main(["correct", str(movies[0]), "--out-dir", str(tmp_path / "missing"), *FLAGS]) == 2
    assert "output directory does not exist" in capsys.readouterr().err


def test_an_output_that_cannot_be_written_gets_one_line_and_the_others_are_written_in_order(tmp_path, capsys):
    """Outputs are written by a thread while the next movie is corrected: a write that fails (a
    directory stands on the middle movie's _EVN.mrc) is reported once, leaves none of that movie's
    files, and the paths of the others are printed in the order of the movies."""
    movies = _movies(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "TS_01_001_3.0_EVN.mrc").mkdir()
    code = main(["correct", *map(str, movies), "--out-dir", str(out), *FLAGS])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "TS_01_001_3.0_EVN.mrc" in err[0] and "Traceback" not in err[0], err
    stems = [line.rsplit("/", 1)[-1].split(".mrc")[0].split(".json")[0] for line in captured.out.splitlines()]
    assert [s.replace("_EVN", "").replace("_ODD", "") for s in stems] == ["TS_01_000_0.0"] * 4 + ["TS_01_002_-3.0"] * 4
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}{suffix}" for s in ("TS_01_000_0.0", "TS_01_002_-3.0") for suffix in (".mrc", "_EVN.mrc", "_ODD.mrc", ".json")]
        + ["TS_01_001_3.0_EVN.mrc"]
    )
    assert not any(out.glob("TS_01_001_3.0.mrc")) and not any(out.glob("TS_01_001_3.0.json"))
