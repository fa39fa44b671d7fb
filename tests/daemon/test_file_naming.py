"""Series, acquisition index and angle from file names (SerialEM and Thermo Tomography 5)."""
import pytest

from framewatch.core.errors import SettingsError
from framewatch.daemon.intake.naming import parse_movie_name, patterns_from_config


@pytest.mark.parametrize(
    "name, series, index, angle",
    [
        ("TS_07_012_-21.0.tif", "TS_07", 12, -21.0),
        ("TS_01_000_0.0.mrc", "TS_01", 0, 0.0),
        ("TS_01_040_60.0.mrc", "TS_01", 40, 60.0),
        ("s_mmm_00993_33.0_Oct08_07.39.05.tif", "s_mmm", 993, 33.0),
        ("TS_07_012_-21.tif", "TS_07", 12, -21.0),
        # Thermo Tomography 5 counts tilts from 1
        ("Position_1_003[-21.00]_fractions.tiff", "Position_1", 2, -21.0),
        ("Position_1_001_[30.0]_20240101_120000_fractions.tiff", "Position_1", 0, 30.0),
        ("Position_1_003_-21.00_20240101_123456_fractions.tiff", "Position_1", 2, -21.0),
        ("Position_2_2_010_45.00_20240101_123456_EER.eer", "Position_2_2", 9, 45.0),
    ],
)
def test_default_patterns(name, series, index, angle):
    info = parse_movie_name(name)
    assert info is not None
    assert (info.series, info.acquisition_index, info.tilt_angle_deg) == (series, index, angle)


def test_no_match():
    assert parse_movie_name("random_movie.tif") is None


def test_configured_pattern():
    pats = patterns_from_config([{"regex": r"^grid(?P<series>\d+)-t(?P<index>\d+)-a(?P<angle>[-\d.]+)$", "index_base": 1}])
    info = parse_movie_name("/x/grid3-t05-a-12.5.tif", pats)
    assert (info.series, info.acquisition_index, info.tilt_angle_deg) == ("3", 4, -12.5)
    pats = patterns_from_config([r"^(?P<series>[a-z]+)_\d+$"])
    assert parse_movie_name("abc_17.mrc", pats).acquisition_index is None


@pytest.mark.parametrize("bad", [[r"(unclosed"], [r"^(?P<index>\d+)$"], [{"no_regex": 1}]])
def test_bad_patterns(bad):
    with pytest.raises(SettingsError):
        patterns_from_config(bad)
