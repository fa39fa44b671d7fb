"""The defensive mdoc parser on the real SerialEM files and on damaged / growing text."""
import datetime as dt
from pathlib import Path

import pytest

from framewatch.daemon.intake.mdoc import frame_mdoc_for, parse_datetime, parse_mdoc_text, read_mdoc, series_name_from_mdoc_path

DATA = Path(__file__).parent.parent / "data" / "mdoc"


def test_real_tilt_series_mdoc():
    m = read_mdoc(DATA / "tilt_series.mdoc")
    assert m.kind == "tilt_series"
    assert m.warnings == ()
    z = m.tilt_sections
    assert len(z) == 41
    assert [s.index for s in z] == list(range(41))
    first = z[0]
    # Windows SubFramePath: only the file name is used
    assert first.values["SubFramePath"].startswith("D:\\DATA\\")
    assert first.sub_frame_name == "TS_01_000_0.0.mrc"
    assert z[40].sub_frame_name == "TS_01_040_60.0.mrc"
    # ExposureDose = 0 means unknown (the dose must come from the configuration)
    assert all(s.exposure_dose_e_per_a2 == 0 for s in z)
    assert all(s.prior_record_dose_e_per_a2 is None for s in z)
    assert first.num_sub_frames == 8
    # two-digit year
    assert first.datetime == dt.datetime(2015, 11, 30, 15, 21, 38)
    assert z[1].tilt_angle_deg == pytest.approx(3.00113)
    assert m.tilt_axis_angle_deg == pytest.approx(85.3)
    assert m.header["ImageFile"] == "TS_01.mrc"
    assert m.series_name == "tilt_series"
    # DateTime order is the acquisition order (dose-symmetric: angles alternate)
    times = [s.datetime for s in z]
    assert times == sorted(times)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("frame_set_single.mdoc", "frame_set"),
        ("frame_set_multiple.mdoc", "frame_set"),
        ("montage_section.mdoc", "montage"),
        ("montage_section_multiple.mdoc", "montage"),
    ],
)
def test_frame_set_and_montage_mdocs_are_not_tilt_series(name, kind):
    m = read_mdoc(DATA / name)
    assert m.kind == kind
    assert m.tilt_sections == ()  # nothing to group movies by


def test_frame_set_single_fields():
    m = read_mdoc(DATA / "frame_set_single.mdoc")
    (fs,) = m.sections_of("FrameSet")
    assert fs.num_sub_frames == 12
    assert fs.sub_frame_name == "s_mmm_00993_33.0_Oct08_07.39.05.tif"
    assert fs.frame_dose_e_per_a2 == pytest.approx(0.63824)
    assert fs.pixel_spacing_a == pytest.approx(1.2827)
    assert m.voltage_kv == 300
    assert fs.datetime == dt.datetime(2021, 10, 8, 7, 39, 8)


def test_frame_set_multiple_has_prior_record_dose():
    m = read_mdoc(DATA / "frame_set_multiple.mdoc")
    zs = m.sections_of("ZValue")
    assert len(zs) == 20
    assert zs[1].prior_record_dose_e_per_a2 == pytest.approx(7.66184)


def test_datetime_formats():
    assert parse_datetime("06-Nov-2024  23:53:01") == dt.datetime(2024, 11, 6, 23, 53, 1)
    assert parse_datetime("30-Nov-15 15:21:38") == dt.datetime(2015, 11, 30, 15, 21, 38)
    assert parse_datetime("") is None
    assert parse_datetime(None) is None
    assert parse_datetime("31-Foo-15  15:21:38") is None
    assert parse_datetime("31-Feb-15  15:21:38") is None


def test_growing_mdoc_last_line_incomplete():
    text = (DATA / "tilt_series.mdoc").read_text()
    cut = text[: text.index("[ZValue = 3]") + len("[ZValue = 3]\nTiltAngle = -5.9")]
    m = parse_mdoc_text(cut)
    assert m.kind == "tilt_series"
    assert not m.complete_text
    assert len(m.tilt_sections) == 4
    assert "TiltAngle" not in m.tilt_sections[3].values  # the cut value is not trusted
    assert any("incomplete" in w for w in m.warnings)
    assert m.tilt_sections[2].sub_frame_name == "TS_01_002_-3.0.mrc"


def test_broken_text_never_raises():
    text = "garbage line\n[ZValue = x]\nTiltAngle = abc\n[Weird = 1]\n= 5\n\x00\x00\n[ZValue = 1\nTiltAngle = 3\n"
    m = parse_mdoc_text(text)
    assert m.warnings
    assert all(isinstance(w, str) for w in m.warnings)
    for s in m.sections:
        s.tilt_angle_deg  # noqa: B018 - must not raise
        s.datetime  # noqa: B018


def test_header_only_is_empty():
    m = parse_mdoc_text("PixelSpacing = 5.4\nImageFile = TS_01.mrc\n\n[T = SerialEM: x]\n")
    assert m.kind == "empty"


def test_binary_garbage_file(tmp_path):
    p = tmp_path / "TS_09.mrc.mdoc"
    p.write_bytes(b"\xff\xfe\x00junk\x80\x81\n[ZValue = 0]\nTiltAngle = 1\n")
    m = read_mdoc(p)
    assert m.kind == "tilt_series"
    assert any("UTF-8" in w for w in m.warnings)


def test_series_name_and_frame_mdoc(tmp_path):
    assert series_name_from_mdoc_path("/x/TS_07.mrc.mdoc") == "TS_07"
    assert series_name_from_mdoc_path("Position_1.mdoc") == "Position_1"
    movie = tmp_path / "a.tif"
    movie.write_bytes(b"")
    assert frame_mdoc_for(movie) is None
    (tmp_path / "a.mdoc").write_text("x")
    assert frame_mdoc_for(movie) == tmp_path / "a.mdoc"
    (tmp_path / "a.tif.mdoc").write_text("x")
    assert frame_mdoc_for(movie) == tmp_path / "a.tif.mdoc"
