"""A finished series read the way RELION 5's tomography jobs read it, as a client: ``starfile``
(teamtomo) parses ``tilt_series.star`` -> ``data_global`` -> the per-series file; every image path
opens with ``mrcfile`` from the project directory as one 2D image equal to its section of the
sorted stack. Written by the daemon's own functions (outputs.py, tilt_images.py, relion_tables.py)."""
import math
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from framewatch.core.atomic_write import atomic_write_text
from framewatch.daemon.outputs.relion_tables import GLOBAL_TABLE, GlobalRow, RelionSettings, global_table, series_table, tomo_name
from framewatch.daemon.outputs.series_outputs import SeriesPaths, append_tilt, records_of, write_sorted
from framewatch.daemon.outputs.tilt_images import tilt_image_paths, write_tilt_images

ANGLES = [0.0, 3.0, -3.0, -6.0, 3.0, 6.0]  # z=4 re-acquires +3
GLOBAL_COLUMNS = {"rlnTomoName", "rlnTomoTiltSeriesStarFile", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                  "rlnMicrographOriginalPixelSize", "rlnTomoTiltSeriesPixelSize", "rlnTomoHand", "rlnOpticsGroupName"}
SERIES_COLUMNS = {"rlnMicrographMovieName", "rlnTomoTiltMovieFrameCount", "rlnTomoNominalStageTiltAngle",
                  "rlnMicrographPreExposure", "rlnMicrographName", "rlnMicrographNameEven", "rlnMicrographNameOdd",
                  "rlnAccumMotionTotal", "rlnAccumMotionEarly", "rlnAccumMotionLate"}


def row(z, angle, *, series="TS_01", acq="/acq/frames", axis=85.3, defocus=-4.0):
    return {
        "z": z, "path": f"{acq}/{series}_{z:03d}_{angle:.1f}.tif", "angle_deg": angle, "acq_index": z, "acq_time": 1.7e9 + 45 * z,
        "n_frames": 8,
        "info": {
            "tilt": {"angle_source": "mdoc", "tilt_axis_angle_deg": axis, "defocus_um": defocus},
            "resolved": {"dose_e_per_a2": 3.0, "dose_per_frame_e_per_a2": 0.375, "prior_dose_e_per_a2": 3.0 * z,
                         "prior_dose_rule": "sum of earlier ExposureDose", "pixel_size_a": 1.5, "voltage_kv": 300.0,
                         "sources": {}},
        },
        "stats": {"total_motion_a": 1.0 + z, "early_motion_a": 0.5, "late_motion_a": 0.5 + z,
                  "relion_early_motion_a": 0.5 if z == 0 else 0.0, "relion_late_motion_a": 0.5 + z if z == 0 else 1.0 + z},
        "flags": [], "timings": {},
    }


def write_series(out: Path, settings: RelionSettings, *, series="TS_01", **kw) -> tuple[SeriesPaths, list[dict]]:
    """What the daemon writes for a finished series: images, stacks, sorted outputs, RELION tables."""
    paths = SeriesPaths.of(out, series)
    rows = [row(z, a, series=series, **kw) for z, a in enumerate(ANGLES)]
    rng = np.random.default_rng(3)
    for r in rows:
        imgs = [rng.normal(r["z"] + 10 * k, 1.0, (16, 20)).astype(np.float32) for k in range(3)]
        if settings.per_tilt_images:
            write_tilt_images(paths.dir, r["path"], imgs, pixel_size_a=1.5)
        append_tilt(paths, r["z"], tuple(imgs), pixel_size_a=1.5)
    write_sorted(paths, rows, 0.2, pixel_size_a=1.5)
    _, kept = records_of(rows, 0.2)
    atomic_write_text(paths.star, series_table(series, paths.dir, kept, settings))
    entry = GlobalRow(series=series, series_star=paths.star, voltage_kv=300.0, pixel_size_a=1.5, tilt_series_pixel_size_a=1.5)
    atomic_write_text(out / GLOBAL_TABLE, global_table([entry], settings))
    return paths, rows


def read_as_relion(project: Path, out: Path):
    """starfile from the project directory, the way RELION's jobs open the files (cwd = project)."""
    here = os.getcwd()
    os.chdir(project)
    try:
        ts_set = os.path.relpath(out / GLOBAL_TABLE, project)
        glob = starfile.read(ts_set, always_dict=True)["global"]
        series = {}
        for _, g in glob.iterrows():
            blocks = starfile.read(g["rlnTomoTiltSeriesStarFile"], always_dict=True)
            assert list(blocks) == [g["rlnTomoName"]]  # RELION reads the block named after the tomogram
            df = blocks[g["rlnTomoName"]]
            images = {}
            for col in ("rlnMicrographName", "rlnMicrographNameEven", "rlnMicrographNameOdd"):
                if col in df:
                    assert not any(os.path.isabs(p) or "@" in p for p in df[col])
                    images[col] = []
                    for p in df[col]:
                        with mrcfile.open(p) as m:  # relative to the project directory
                            assert m.data.ndim == 2, (p, m.data.shape)
                            assert m.voxel_size.x == pytest.approx(1.5)
                            images[col].append(m.data.copy())
            series[g["rlnTomoName"]] = (g, df, images)
        return glob, series
    finally:
        os.chdir(here)


@pytest.mark.parametrize("where", ["out", "parent"], ids=["project=OUT", "project=parent-of-OUT"])
def test_finished_series_as_relion_reads_it(tmp_path, where):
    project = tmp_path / "relion"
    out = project / "framewatch" / "out" if where == "parent" else tmp_path / "out"
    out.mkdir(parents=True)
    settings = RelionSettings(project_dir=project if where == "parent" else out)
    paths, rows = write_series(out, settings)
    glob, series = read_as_relion(settings.project_dir, out)
    assert GLOBAL_COLUMNS <= set(glob.columns)
    assert len(glob) == 1 and glob["rlnTomoName"][0] == "TS_01"
    g, df, images = series["TS_01"]
    assert not os.path.isabs(g["rlnTomoTiltSeriesStarFile"])
    assert (g["rlnVoltage"], g["rlnSphericalAberration"], g["rlnAmplitudeContrast"], g["rlnTomoHand"]) == (300.0, 2.7, 0.1, -1.0)
    assert g["rlnTomoTiltSeriesPixelSize"] == 1.5 and g["rlnOpticsGroupName"] == "TS_01"
    assert SERIES_COLUMNS | {"rlnTomoNominalTiltAxisAngle", "rlnTomoNominalDefocus"} <= set(df.columns)
    # rows: the kept tilts (not the superseded +3 at z=1) in acquisition order
    assert list(df["rlnTomoNominalStageTiltAngle"]) == [0.0, -3.0, -6.0, 3.0, 6.0]
    assert list(df["rlnMicrographPreExposure"]) == [0.0, 6.0, 9.0, 12.0, 15.0]
    assert set(df["rlnTomoNominalTiltAxisAngle"]) == {85.3}  # from the mdoc title
    assert set(df["rlnTomoNominalDefocus"]) == {-4.0}  # TargetDefocus, micrometres
    assert list(df["rlnAccumMotionTotal"]) == [1.0, 3.0, 4.0, 5.0, 6.0]
    assert list(df["rlnAccumMotionEarly"]) == [0.5, 0.0, 0.0, 0.0, 0.0]  # RELION's rule, prior dose included
    assert set(df["rlnTomoTiltMovieFrameCount"]) == {8}
    movies = [os.path.normpath(os.path.join(settings.project_dir, p)) for p in df["rlnMicrographMovieName"]]
    assert movies == [f"/acq/frames/TS_01_{z:03d}_{a:.1f}.tif" for z, a in ((0, 0.0), (2, -3.0), (3, -6.0), (4, 3.0), (5, 6.0))]
    # every image equals its section of the sorted stacks (sorted by angle)
    for col, stack in (("rlnMicrographName", paths.sorted_stack), ("rlnMicrographNameEven", paths.sorted_evn),
                       ("rlnMicrographNameOdd", paths.sorted_odd)):
        with mrcfile.open(stack) as m:
            sorted_data = m.data.copy()
        order = sorted(range(len(df)), key=lambda i: df["rlnTomoNominalStageTiltAngle"][i])
        for k, i in enumerate(order):
            np.testing.assert_array_equal(images[col][i], sorted_data[k])
    for p in paths.dir.glob("tilts/*.mrc"):
        assert mrcfile.validate(str(p), print_file=open(os.devnull, "w"))


def test_unknown_defocus_and_axis_leave_the_columns_out(tmp_path):
    out = tmp_path / "out"
    settings = RelionSettings(project_dir=out)
    write_series(out, settings, axis=None, defocus=None)
    _, series = read_as_relion(out, out)
    _, df, _ = series["TS_01"]
    assert "rlnTomoNominalDefocus" not in df and "rlnTomoNominalTiltAxisAngle" not in df
    assert SERIES_COLUMNS <= set(df.columns)
    text = (out / "TS_01" / "TS_01.star").read_text()
    assert "rlnTomoNominalDefocus left out" in text and "tilt_axis_deg is not set" in text


def test_zero_defocus_counts_as_unknown_and_the_configured_axis_is_used(tmp_path):
    out = tmp_path / "out"
    settings = RelionSettings(project_dir=out, tilt_axis_deg=-94.5, optics_group="opticsGroup1", tomo_hand=1,
                              spherical_aberration_mm=0.01, amplitude_contrast=0.07)
    write_series(out, settings, axis=None, defocus=0.0)
    glob, series = read_as_relion(out, out)
    g, df, _ = series["TS_01"]
    assert "rlnTomoNominalDefocus" not in df
    assert set(df["rlnTomoNominalTiltAxisAngle"]) == {-94.5}
    assert (g["rlnOpticsGroupName"], g["rlnTomoHand"], g["rlnSphericalAberration"], g["rlnAmplitudeContrast"]) == (
        "opticsGroup1", 1.0, 0.01, 0.07)


def test_without_per_tilt_images_no_stack_sections_are_named(tmp_path):
    out = tmp_path / "out"
    settings = RelionSettings(project_dir=out, per_tilt_images=False)
    paths, _ = write_series(out, settings)
    _, series = read_as_relion(out, out)
    _, df, images = series["TS_01"]
    assert images == {} and "@" not in paths.star.read_text()
    assert not (paths.dir / "tilts").exists()


def test_awkward_series_and_movie_names(tmp_path):
    """A series named by a movie like q"x y_001_0.0.tif: paths with a quote and a space are quoted,
    the block name (rlnTomoName) is made safe, and everything still opens from the project."""
    out = tmp_path / "out"
    settings = RelionSettings(project_dir=out)
    series = 'q"x y'
    paths, rows = write_series(out, settings, series=series, acq=str(tmp_path / "acq #1"))
    glob, got = read_as_relion(out, out)
    name = tomo_name(series)
    assert name == "q_x_y" and list(got) == [name]
    g, df, images = got[name]
    assert g["rlnTomoTiltSeriesStarFile"] == 'q"x y/q"x y.star'
    assert [os.path.basename(p) for p in df["rlnMicrographMovieName"]][0] == 'q"x y_000_0.0.tif'
    assert len(images["rlnMicrographName"]) == 5
    assert tilt_image_paths(paths.dir, rows[0]["path"])[0].name == "q_x_y_000_0_0.mrc"
    assert math.isclose(df["rlnTomoNominalStageTiltAngle"][1], -3.0)
