"""`framewatch correct` and correct_movie_file on real files: outputs, orientation, bad input."""
import dataclasses
import json

import mrcfile
import numpy as np
import pytest
from sim_helpers import simulated

from framewatch.core.correct import correct_movie, correct_movie_file
from framewatch.core.movie_io import write_movie
from framewatch.core.settings import CorrectionSettings, GainOrientation
from framewatch.core.simulate import write_simulation
from framewatch.daemon.commands.cli import main

SMALL = dict(ny=256, nx=320, n_frames=6, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.5, seed=8)
SETTINGS = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.5)


def test_correct_writes_valid_outputs_and_report(tmp_path, capsys):
    sim = simulated(**SMALL, n_hot_pixels=3)
    paths = write_simulation(sim, tmp_path / "TS_01_000_0.0", gain_orientation=GainOrientation(rotate_ccw_90=1, flip="y"))
    prefix = tmp_path / "out" / "TS_01_000_0.0"
    prefix.parent.mkdir()
    argv = ["correct", str(paths["movie"]), "--out", str(prefix), "--pixel-size-a", "1.5", "--dose-per-tilt", "3",
            "--gain", str(paths["gain"]), "--gain-rot", "1", "--gain-flip", "y", "--prior-dose", "6"]
    assert main(argv) == 0
    expected = correct_movie(sim.frames, gain=sim.gain, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.5, prior_dose_e_per_a2=6.0)
    for suffix, image in ((".mrc", expected.dose_weighted_sum), ("_EVN.mrc", expected.even_sum), ("_ODD.mrc", expected.odd_sum)):
        path = prefix.with_name(prefix.name + suffix)
        assert mrcfile.validate(str(path), print_file=open("/dev/null", "w"))
        with mrcfile.open(path) as mrc:
            assert mrc.data.dtype == np.float32
            assert float(mrc.voxel_size.x) == pytest.approx(1.5)
            np.testing.assert_allclose(mrc.data, image, rtol=1e-5, atol=1e-4)
    report = json.loads(prefix.with_name(prefix.name + ".json").read_text())
    assert len(report["shifts_px"]) == 6 and report["shifts_px"][0] == [0.0, 0.0]
    np.testing.assert_allclose(report["shifts_px"], expected.shifts_px, atol=1e-9)
    np.testing.assert_allclose(report["accumulated_dose_e_per_a2"], 6.0 + 0.5 * np.arange(1, 7))
    for key in ("total_motion_px", "early_motion_a", "late_motion_a", "max_frame_shift_px", "frc_0_143_a"):
        assert key in report["statistics"]
    assert report["settings"]["gain_orientation"] == {"rotate_ccw_90": 1, "flip": "y", "invert": False}
    assert {tuple(p) for p in sim.hot_pixels_xy.tolist()} <= {tuple(p) for p in report["replaced_pixels_xy"]}
    assert report["framewatch_version"] and report["timings_s"]["total_s"] > 0
    assert len(capsys.readouterr().out.splitlines()) == 4


@pytest.mark.parametrize("rot", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", ["none", "x", "y"])
def test_every_gain_orientation_round_trips(tmp_path, rot, flip):
    sim = simulated(**SMALL, gain_rms=0.3)
    orientation = GainOrientation(rotate_ccw_90=rot, flip=flip)
    paths = write_simulation(sim, tmp_path / "m", movie_format="mrc", gain_orientation=orientation)
    got = correct_movie_file(paths["movie"], settings=dataclasses.replace(SETTINGS, gain_orientation=orientation),
                             gain=paths["gain"])
    want = correct_movie(sim.frames, gain=sim.gain, settings=SETTINGS)
    np.testing.assert_allclose(got.dose_weighted_sum, want.dose_weighted_sum, rtol=1e-5, atol=1e-4)


def test_mrc_and_serialem_tiff_of_the_same_movie_give_identical_output(tmp_path):
    sim = simulated(**SMALL)
    write_movie(tmp_path / "m.mrc", sim.frames)
    write_movie(tmp_path / "m.tif", sim.frames, tiff_compression="lzw")
    a = correct_movie_file(tmp_path / "m.mrc", settings=SETTINGS, gain=sim.gain)
    b = correct_movie_file(tmp_path / "m.tif", settings=SETTINGS, gain=sim.gain)
    np.testing.assert_array_equal(a.shifts_px, b.shifts_px)
    np.testing.assert_array_equal(a.dose_weighted_sum, b.dose_weighted_sum)
    np.testing.assert_array_equal(a.even_sum, b.even_sum)


def _bad_inputs(tmp_path, sim):
    good = tmp_path / "good.mrc"
    write_movie(good, sim.frames)
    data = good.read_bytes()
    cases = {}
    (tmp_path / "truncated.mrc").write_bytes(data[: len(data) - 5000])
    cases["truncated"] = (tmp_path / "truncated.mrc", [])
    header = bytearray(data[:1024])
    header[8:12] = (0).to_bytes(4, "little")
    (tmp_path / "zero.mrc").write_bytes(bytes(header))
    cases["zero frames"] = (tmp_path / "zero.mrc", [])
    mode = bytearray(data)
    mode[12:16] = (7).to_bytes(4, "little")
    (tmp_path / "mode.mrc").write_bytes(bytes(mode))
    cases["mode"] = (tmp_path / "mode.mrc", [])
    frame_bytes = sim.frames[0].nbytes
    (tmp_path / "count.mrc").write_bytes(data + b"\0" * (2 * frame_bytes))
    cases["frame count"] = (tmp_path / "count.mrc", [])
    nan = sim.frames.astype(np.float32)
    nan[3, 10, 10] = np.nan
    write_movie(tmp_path / "nan.mrc", nan)
    cases["nan"] = (tmp_path / "nan.mrc", [])
    wrong_gain = tmp_path / "gain.mrc"
    with mrcfile.new(wrong_gain) as mrc:
        mrc.set_data(np.ones((sim.spec.ny + 10, sim.spec.nx * 3), np.float32))  # no binning resolves it
    cases["gain size"] = (good, ["--gain", str(wrong_gain)])
    (tmp_path / "movie.dat").write_bytes(b"x" * 100)
    cases["suffix"] = (tmp_path / "movie.dat", [])
    return cases


def test_each_bad_input_gives_one_clear_line_and_no_output(tmp_path, capsys):
    sim = simulated(**SMALL)
    for what, (movie, extra) in _bad_inputs(tmp_path, sim).items():
        prefix = tmp_path / f"out_{what.replace(' ', '_')}"
        code = main(["correct", str(movie), "--out", str(prefix), "--pixel-size-a", "1.5", "--dose-per-frame", "0.5", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2, what
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (what, err)
        named = movie.name if what != "gain size" else "gain"
        assert named in err, (what, err)
        assert not list(tmp_path.glob(prefix.name + "*")), f"{what}: partial outputs left"


def test_correct_with_patches_writes_local_model_and_star(tmp_path):
    from framewatch.core.star import read_star

    sim = simulated(ny=1024, nx=1024, n_frames=8, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4,
                    local_amplitude_px=2.0, seed=21)
    write_movie(tmp_path / "m.mrc", sim.frames)
    gain = tmp_path / "gain.mrc"
    with mrcfile.new(gain) as mrc:
        mrc.set_data(sim.gain)
    prefix = tmp_path / "m_out"
    assert main(["correct", str(tmp_path / "m.mrc"), "--out", str(prefix), "--pixel-size-a", "1.5",
                 "--dose-per-frame", "0.4", "--gain", str(gain), "--patches", "4", "4", "--star"]) == 0
    report = json.loads((tmp_path / "m_out.json").read_text())
    local = report["local_motion"]
    assert local["applied"] and len(local["patch_centres_px"]) == 16
    assert report["statistics"]["patch_residual_mean_px"] is not None
    star = read_star(tmp_path / "m_out.star")
    shifts = np.column_stack([np.array(star["global_shift"]["rlnMicrographShiftX"], float),
                              np.array(star["global_shift"]["rlnMicrographShiftY"], float)])
    np.testing.assert_allclose(shifts, report["shifts_px"], atol=1e-5)  # same sign and origin as ours
    assert star["general"]["rlnMotionModelVersion"] in ("0", "1")
    assert report["star"]["motion_model_version"] == int(star["general"]["rlnMotionModelVersion"])


def test_version_and_help_of_every_subcommand(capsys):
    from framewatch.daemon.commands.cli import COMMAND_MODULES

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("framewatch ")
    for module in COMMAND_MODULES:
        name = module.rsplit(".", 1)[1].replace("_", "-")
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0, name
        text = capsys.readouterr().out
        assert "usage: framewatch " + name in text
    with pytest.raises(SystemExit):
        main(["correct", "--help"])
    text = capsys.readouterr().out
    for unit in ("Angstrom per pixel", "e/A^2", "kV"):
        assert unit in text


def test_correct_with_automatic_gain_orientation_finds_the_stored_rotation(tmp_path, capsys):
    sim = simulated(**SMALL, gain_rms=0.15)
    paths = write_simulation(sim, tmp_path / "m", movie_format="mrc", gain_orientation=GainOrientation(rotate_ccw_90=3, flip="y"))
    assert main(["correct", str(paths["movie"]), "--out", str(tmp_path / "auto"), "--pixel-size-a", "1.5",
                 "--dose-per-frame", "0.5", "--gain", str(paths["gain"]), "--gain-orientation", "auto"]) == 0
    report = json.loads((tmp_path / "auto.json").read_text())
    assert report["settings"]["gain_orientation"] == {"rotate_ccw_90": 3, "flip": "y", "invert": False}
    assert "margin" in capsys.readouterr().err


@pytest.mark.parametrize("mode", [0, 1, 2, 6, 12])
def test_every_mrc_mode_is_corrected_like_the_counts(tmp_path, mode):
    sim = simulated(**SMALL)
    frames = sim.frames if mode == 0 else sim.frames.astype({1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}[mode])
    write_movie(tmp_path / "m.mrc", frames, mrc_mode=mode)
    got = correct_movie_file(tmp_path / "m.mrc", settings=SETTINGS, gain=sim.gain)
    want = correct_movie(sim.frames, gain=sim.gain, settings=SETTINGS)
    np.testing.assert_allclose(got.dose_weighted_sum, want.dose_weighted_sum, rtol=1e-5, atol=1e-4)
