"""Tilt table, rawtlt, sorted stacks, tlt and STAR from journal rows; re-acquired tilts."""
import mrcfile
import numpy as np
import pytest

from framewatch.daemon.config.configuration import Thresholds
from framewatch.daemon.outputs.quality import flag_reasons
from framewatch.daemon.outputs.series_outputs import SeriesPaths, append_tilt, repair_stacks, rewrite_tables, write_sorted
from framewatch.daemon.outputs.tilt_table import read_tsv


def row(z, angle, *, stats=None):
    return {
        "z": z,
        "path": f"/acq/frames/TS_01_{z:03d}_{angle:.1f}.tif",
        "angle_deg": angle,
        "acq_index": z,
        "acq_time": 1.7e9 + 45 * z,
        "n_frames": 8,
        "info": {
            "tilt": {"angle_source": "mdoc", "order_source": "mdoc DateTime", "index_source": "mdoc DateTime",
                     "tilt_axis_angle_deg": 85.3, "defocus_um": -4.0},
            "resolved": {"dose_e_per_a2": 3.0, "dose_per_frame_e_per_a2": 0.375, "prior_dose_e_per_a2": 3.0 * z,
                         "prior_dose_rule": "sum of earlier ExposureDose", "pixel_size_a": 1.5, "voltage_kv": 300.0,
                         "sources": {"dose": "mdoc ExposureDose", "pixel_size_a": "config", "voltage_kv": "mdoc"}},
            "complete_signal": "mrc_size",
        },
        "stats": stats or {"total_motion_a": 1.0 + z, "early_motion_a": 0.5, "late_motion_a": 0.5 + z, "max_frame_shift_px": 0.4,
                           "frc_0_143_a": 7.0, "new_statistic_px": 9.0},
        "flags": [],
        "timings": {"wait_s": 0.01, "correct_s": 0.3, "append_s": 0.02, "latency_s": 0.35},
    }


ANGLES = [0.0, 3.0, -3.0, -6.0, 3.0, 6.0]  # z=4 re-acquires +3


@pytest.fixture
def series(tmp_path):
    paths = SeriesPaths.of(tmp_path, "TS_01")
    rows = [row(z, a) for z, a in enumerate(ANGLES)]
    for r in rows:
        img = np.full((16, 20), r["z"], np.float32)
        append_tilt(paths, r["z"], (img, img + 100, img + 200), pixel_size_a=1.5)
    return paths, rows


def test_table_and_rawtlt(series):
    paths, rows = series
    rewrite_tables(paths, rows, 0.2)
    t = read_tsv(paths.tsv)
    assert [int(r["z"]) for r in t] == list(range(6))
    assert [float(r["tilt_angle_deg"]) for r in t] == ANGLES
    assert [float(a) for a in paths.rawtlt.read_text().split()] == ANGLES
    assert "superseded (by z=4)" in t[1]["flags"] and "reacquired (earlier z=1)" in t[4]["flags"]
    assert t[2]["prior_dose_rule"] == "sum of earlier ExposureDose" and float(t[2]["prior_dose_e_per_a2"]) == 6.0
    assert t[0]["dose_source"] == "mdoc ExposureDose" and t[0]["pixel_size_source"] == "config"
    assert float(t[0]["max_frame_shift_a"]) == pytest.approx(0.6)
    assert float(t[0]["new_statistic_px"]) == 9.0  # statistics added later to the engine appear too
    for col in ("latency_s", "correct_s", "complete_signal", "movie_path", "frc_0_143_a", "early_motion_a"):
        assert col in t[0]


def test_sorted_outputs_agree(series):
    paths, rows = series
    n = write_sorted(paths, rows, 0.2, pixel_size_a=1.5)
    assert n == 5  # the superseded +3 is left out
    tlt = [float(a) for a in paths.tlt.read_text().split()]
    assert tlt == sorted(tlt) == [-6.0, -3.0, 0.0, 3.0, 6.0]
    expect_z = [3, 2, 0, 4, 5]
    for p, add in ((paths.sorted_stack, 0), (paths.sorted_evn, 100), (paths.sorted_odd, 200)):
        assert mrcfile.validate(str(p), print_file=open("/dev/null", "w"))
        with mrcfile.open(p) as m:
            assert [float(m.data[k, 0, 0]) - add for k in range(5)] == expect_z
            assert m.voxel_size.x == pytest.approx(1.5)
    assert not paths.star.exists()  # the RELION tables are written with the tilt table (test_relion_tables.py)


def read_aretomo_tlt(path):
    """``_TLT.txt`` the way AreTomo3 reads it (``sscanf("%f %d")`` per line), plus the third column."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            rows.append((float(parts[0]), int(parts[1]), float(parts[2])))
    return rows


def test_aretomo_and_imod_angle_files(series):
    """SERIES_sorted_TLT.txt: three columns, angles ascending, 1-based acquisition indices 1..n, the
    dose of each tilt; SERIES_sorted.rawtlt: one angle per section of the sorted stack."""
    paths, rows = series
    n = write_sorted(paths, rows, 0.2, pixel_size_a=1.5)
    tlt = read_aretomo_tlt(paths.sorted_tlt_txt)
    assert len(tlt) == n == 5
    angles = [a for a, _, _ in tlt]
    assert angles == sorted(angles) == [-6.0, -3.0, 0.0, 3.0, 6.0]
    # kept sections z = 3, 2, 0, 4, 5 in angle order; acquired (z order) 0, 2, 3, 4, 5 -> ranks 1..5
    assert [i for _, i, _ in tlt] == [3, 2, 1, 4, 5]
    assert sorted(i for _, i, _ in tlt) == list(range(1, n + 1))
    assert [d for _, _, d in tlt] == [3.0] * 5
    rawtlt = [float(a) for a in paths.sorted_rawtlt.read_text().split()]
    with mrcfile.open(paths.sorted_stack) as m:
        assert len(rawtlt) == m.data.shape[0] == n
    assert rawtlt == angles
    # the growing stack keeps its own .rawtlt (acquisition order)
    rewrite_tables(paths, rows, 0.2)
    assert [float(a) for a in paths.rawtlt.read_text().split()] == ANGLES


def test_repair_keeps_three_stacks_equal(series):
    paths, rows = series
    n, actions = repair_stacks(paths, 4)
    assert n == 4 and len(actions) == 3
    with mrcfile.open(paths.odd) as m:
        assert m.data.shape[0] == 4


def test_flag_reasons():
    stats = {"total_motion_a": 20.0, "max_frame_shift_px": 8.0, "early_motion_a": 1.0, "late_motion_a": 2.0, "frc_0_143_a": 12.0}
    r = flag_reasons(stats, Thresholds(total_motion_a=15, max_frame_shift_a=10, frc_0_143_a=10), pixel_size_a=1.5)
    assert r == ["total motion 20.00 A > 15 A", "largest frame jump 12.00 A > 10 A", "FRC 0.143 crossing 12.00 A > 10 A"]
    assert flag_reasons(stats, Thresholds(total_motion_a=0, max_frame_shift_a=0), pixel_size_a=1.0) == []
