"""Grouping movies into series, acquisition order, doses and the prior-dose rule with provenance."""
import argparse
import shutil
from pathlib import Path

import pytest

from framewatch.daemon.commands.simulated_acquisition import write_frame_mdoc
from framewatch.daemon.config.processing_options import add_processing_arguments, processing_options_from_args
from framewatch.daemon.intake.dose_precedence import RULE_INDEX, RULE_PRIOR_RECORD, RULE_SUM, resolve
from framewatch.daemon.intake.series_grouping import SeriesIndex

DATA = Path(__file__).parent.parent / "data" / "mdoc"


def opts(*argv, config=None):
    p = argparse.ArgumentParser()
    add_processing_arguments(p)
    return processing_options_from_args(p.parse_args(list(argv)), config)


@pytest.fixture
def real_series(tmp_path):
    """The real 41-tilt mdoc as TS_01.mrc.mdoc, its movies in frames/ (SerialEM's layout)."""
    shutil.copy(DATA / "tilt_series.mdoc", tmp_path / "TS_01.mrc.mdoc")
    (tmp_path / "frames").mkdir()
    idx = SeriesIndex()
    assert idx.note_mdoc(tmp_path / "TS_01.mrc.mdoc", now=0.0) is not None
    return tmp_path, idx


def test_grouped_by_real_mdoc(real_series):
    root, idx = real_series
    info = idx.tilt_info(root / "frames" / "TS_01_002_-3.0.mrc", mtime=123.0)
    assert info.series == "TS_01" and info.grouping == "mdoc" and info.zvalue == 2
    assert info.tilt_angle_deg == pytest.approx(-2.99863) and info.angle_source == "mdoc"
    assert info.acquisition_index == 2 and info.order_source == "mdoc DateTime"
    assert info.expected_frames == 8
    assert info.mdoc_exposure_dose_e_per_a2 is None  # ExposureDose = 0 is "unknown"
    assert info.tilt_axis_angle_deg == pytest.approx(85.3)
    assert info.source_dir == str(root)
    # a file of another series is grouped by its name
    other = idx.tilt_info(root / "frames" / "TS_02_003_-6.0.mrc", mtime=5.0)
    assert other.series == "TS_02" and other.grouping == "file name" and other.acquisition_index == 3


def test_real_mdoc_needs_a_configured_dose(real_series):
    root, idx = real_series
    info = idx.tilt_info(root / "frames" / "TS_01_004_6.0.mrc", mtime=0.0)
    r = resolve(info, opts("--pixel-size-a", "1.35"), n_frames=8)
    assert r.problem and "no dose" in r.problem
    r = resolve(info, opts("--pixel-size-a", "1.35", "--dose-per-tilt", "3"), n_frames=8)
    assert r.problem is None
    assert r.prior_dose_e_per_a2 == pytest.approx(4 * 3.0) and r.prior_dose_rule == RULE_INDEX
    assert r.dose_per_frame_e_per_a2 == pytest.approx(3 / 8) and r.sources["dose"] == "command line"
    assert r.sources["pixel_size_a"] == "command line"
    r = resolve(info, opts("--dose-per-tilt", "3"), n_frames=8)
    assert "pixel size" in r.problem


def write_mdoc(path, sections, header="Voltage = 200\n\n[T = SerialEM: test    Tilt axis angle = -86.5, binning = 1]\n\n"):
    text = header
    for z, values in enumerate(sections):
        text += f"[ZValue = {z}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
    path.write_text(text)


def sec(name, angle, when, dose=None, prior=None, frames=10):
    d = {"TiltAngle": angle, "SubFramePath": f"X:\\data\\{name}", "NumSubFrames": frames, "DateTime": when}
    if dose is not None:
        d["ExposureDose"] = dose
    if prior is not None:
        d["PriorRecordDose"] = prior
    return d


def test_acquisition_order_by_datetime_not_zvalue(tmp_path):
    # ZValue order differs from DateTime order (four-digit years)
    write_mdoc(tmp_path / "ts.mdoc", [
        sec("a.tif", 0, "14-Mar-2025  09:02:00", dose=2.0),
        sec("b.tif", 3, "14-Mar-2025  09:00:00", dose=3.0),
        sec("c.tif", -3, "14-Mar-2025  09:01:00", dose=4.0),
    ])
    idx = SeriesIndex()
    idx.note_mdoc(tmp_path / "ts.mdoc", 0.0)
    o = opts("--pixel-size-a", "1")
    got = {}
    for name in ("a.tif", "b.tif", "c.tif"):
        info = idx.tilt_info(tmp_path / name, mtime=0.0)
        got[name] = (info.acquisition_index, resolve(info, o, n_frames=10))
    assert [got[n][0] for n in ("b.tif", "c.tif", "a.tif")] == [0, 1, 2]
    # rule 2: sum of the ExposureDose of earlier tilts in acquisition order, not this one
    assert got["b.tif"][1].prior_dose_e_per_a2 == 0.0
    assert got["c.tif"][1].prior_dose_e_per_a2 == pytest.approx(3.0)
    assert got["a.tif"][1].prior_dose_e_per_a2 == pytest.approx(7.0)
    assert {r.prior_dose_rule for _, r in got.values()} == {RULE_SUM}
    # dose from the mdoc, voltage from the mdoc
    r = got["a.tif"][1]
    assert r.dose_per_frame_e_per_a2 == pytest.approx(0.2) and r.sources["dose"] == "mdoc ExposureDose"
    assert r.voltage_kv == 200 and r.sources["voltage_kv"] == "mdoc"
    # explicit wins over the mdoc; --prior-dose is the dose before the series
    r = resolve(idx.tilt_info(tmp_path / "a.tif", mtime=0.0),
                opts("--pixel-size-a", "1", "--dose-per-frame", "0.5", "--voltage-kv", "300", "--prior-dose", "10"), n_frames=10)
    assert r.dose_per_frame_e_per_a2 == 0.5 and r.voltage_kv == 300 and r.sources["voltage_kv"] == "command line"
    assert r.prior_dose_e_per_a2 == pytest.approx(17.0) and r.prior_dose_rule == RULE_SUM + " + --prior-dose"


def test_prior_record_dose_wins(tmp_path):
    write_mdoc(tmp_path / "ts.mdoc", [sec("a.tif", 0, "14-Mar-25  09:00:00", dose=3, prior=0),
                                      sec("b.tif", 3, "14-Mar-25  09:01:00", dose=3, prior=5.5)])
    idx = SeriesIndex()
    idx.note_mdoc(tmp_path / "ts.mdoc", 0.0)
    r = resolve(idx.tilt_info(tmp_path / "b.tif", mtime=0.0), opts("--pixel-size-a", "1"), n_frames=10)
    assert r.prior_dose_e_per_a2 == 5.5 and r.prior_dose_rule == RULE_PRIOR_RECORD


def test_growing_mdoc_is_reread(tmp_path):
    p = tmp_path / "TS_05.mrc.mdoc"
    p.write_text("PixelSpacing = 4\n\n")
    idx = SeriesIndex()
    idx.note_mdoc(p, 0.0)
    assert idx.entry_for(tmp_path / "TS_05_000_0.0.tif") is None
    assert idx.sibling_mdoc_pending(tmp_path / "TS_05_000_0.0.tif") == str(p)  # worth waiting for
    with open(p, "a") as f:
        f.write("[ZValue = 0]\nTiltAngle = 0.01\nSubFramePath = D:\\x\\TS_05_000_0.0.tif\nNumSubFrames = 6\n\n")
    assert idx.note_mdoc(p, 1.0) is not None
    info = idx.tilt_info(tmp_path / "TS_05_000_0.0.tif", mtime=0.0)
    assert info.grouping == "mdoc" and info.series == "TS_05" and info.expected_frames == 6
    assert idx.note_mdoc(p, 2.0) is None  # unchanged: not read again


def test_broken_mdoc_gives_warnings_and_name_grouping(tmp_path):
    p = tmp_path / "TS_03.mrc.mdoc"
    p.write_bytes(b"\x00\x01garbage\n[ZValue = ]\nTiltAngle == ?\n")
    idx = SeriesIndex()
    idx.note_mdoc(p, 0.0)
    assert idx.warnings and idx.warnings[0][0] == str(p)
    info = idx.tilt_info(tmp_path / "TS_03_001_3.0.tif", mtime=0.0)
    assert info.grouping == "file name" and info.series == "TS_03" and info.tilt_angle_deg == 3.0


def test_file_name_grouping_and_frame_mdoc(tmp_path):
    movie = tmp_path / "TS_09_004_12.0.tif"
    movie.write_bytes(b"x")
    write_frame_mdoc(movie, 10, angle=12.0, pixel_size_a=0.83, dose_per_frame=0.25)
    idx = SeriesIndex()
    info = idx.tilt_info(movie, mtime=42.0)
    assert (info.series, info.acquisition_index, info.tilt_angle_deg, info.acquisition_time) == ("TS_09", 4, 12.0, 42.0)
    r = resolve(info, opts(), n_frames=10)
    assert r.pixel_size_a == 0.83 and r.sources["pixel_size_a"] == "frame mdoc"
    assert r.dose_per_frame_e_per_a2 == 0.25 and r.sources["dose"] == "mdoc FrameDosesAndNumber"
    assert r.prior_dose_e_per_a2 == pytest.approx(4 * 2.5) and r.prior_dose_rule == RULE_INDEX
    assert r.voltage_kv == 300
    r = resolve(info, opts("--pixel-size-a", "1.0", "--dose-per-tilt", "4"), n_frames=10)
    assert r.pixel_size_a == 1.0 and r.prior_dose_e_per_a2 == pytest.approx(16.0)


def test_unknown_names(tmp_path):
    info = SeriesIndex().tilt_info(tmp_path / "whatever.mrc", mtime=1.0)
    assert info.series == "whatever" and info.grouping == "none" and "angle_unknown" in info.flags
