"""The processing options shared by `correct` and `watch`: flags, [processing] table, precedence."""
import argparse

import pytest

from framewatch.core.errors import SettingsError
from framewatch.daemon.config.processing_options import (
    add_processing_arguments,
    dose_per_frame_for,
    processing_options_from_args,
    settings_from_args,
)


def parse(*argv):
    p = argparse.ArgumentParser()
    add_processing_arguments(p)
    return p.parse_args(list(argv))


def test_all_flags():
    a = parse("--pixel-size-a", "1.1", "--dose-per-frame", "0.5", "--prior-dose", "6", "--voltage-kv", "200",
              "--gain", "g.mrc", "--gain-rot", "3", "--gain-flip", "x", "--gain-invert", "--defects", "d.txt",
              "--patches", "5", "4", "--threads", "2")
    s = settings_from_args(a)
    assert (s.pixel_size_a, s.dose_per_frame_e_per_a2, s.prior_dose_e_per_a2, s.voltage_kv) == (1.1, 0.5, 6.0, 200.0)
    assert (s.gain_orientation.rotate_ccw_90, s.gain_orientation.flip, s.gain_orientation.invert) == (3, "x", True)
    assert s.patches == (5, 4) and s.threads == 2
    o = processing_options_from_args(a)
    assert str(o.gain) == "g.mrc" and str(o.defects) == "d.txt"


def test_defaults():
    s = settings_from_args(parse("--pixel-size-a", "1", "--dose-per-frame", "1"))
    assert (s.prior_dose_e_per_a2, s.voltage_kv, s.patches, s.threads) == (0.0, 300.0, "auto", 0)
    assert s.local_force is False
    assert s.gain_orientation.rotate_ccw_90 == 0 and s.gain_orientation.flip == "none" and not s.gain_orientation.invert


@pytest.mark.parametrize(("argv", "config", "patches", "force"), [
    (("--patches", "auto"), None, "auto", False),
    (("--patches", "0", "0"), None, (0, 0), False),
    (("--patches", "3", "2", "--local-force"), None, (3, 2), True),
    ((), {"processing": {"patches": "auto", "local_force": True}}, "auto", True),
    ((), {"processing": {"patches": [0, 0]}}, (0, 0), False),
])
def test_patches_auto_off_or_forced(argv, config, patches, force):
    s = settings_from_args(parse("--pixel-size-a", "1", "--dose-per-frame", "1", *argv), config=config)
    assert s.patches == patches and s.local_force is force


@pytest.mark.parametrize("argv", [("--patches", "3"), ("--patches", "automatic"), ("--patches", "3", "x")])
def test_bad_patches_say_what_to_give(argv):
    with pytest.raises(SettingsError) as e:
        settings_from_args(parse("--pixel-size-a", "1", "--dose-per-frame", "1", *argv))
    assert "--patches auto" in str(e.value)


def test_dose_per_tilt_needs_frame_count():
    a = parse("--pixel-size-a", "1", "--dose-per-tilt", "3")
    assert dose_per_frame_for(a, 10) == pytest.approx(0.3)
    assert settings_from_args(a, n_frames=6).dose_per_frame_e_per_a2 == pytest.approx(0.5)
    with pytest.raises(SettingsError):
        settings_from_args(a)


def test_dose_flags_exclusive():
    with pytest.raises(SystemExit):
        parse("--dose-per-frame", "1", "--dose-per-tilt", "3")


@pytest.mark.parametrize("argv", [("--dose-per-frame", "1"), ("--pixel-size-a", "1")])
def test_missing_values_explained(argv):
    with pytest.raises(SettingsError) as e:
        settings_from_args(parse(*argv))
    assert "--" in str(e.value)


def test_config_and_precedence():
    cfg = {"processing": {"pixel_size_a": 2.0, "dose_per_tilt_e_per_a2": 4.0, "voltage_kv": 200, "patches": [3, 3],
                          "gain_flip": "y"}}
    o = processing_options_from_args(parse(), cfg)
    assert o.pixel_size_a == 2.0 and o.dose_per_frame_for(8) == pytest.approx(0.5) and o.patches == (3, 3)
    assert o.source_of("pixel_size_a") == "config"
    # the command line wins, also across dose per frame / per tilt
    o = processing_options_from_args(parse("--pixel-size-a", "1.5", "--dose-per-frame", "0.2"), cfg)
    assert o.pixel_size_a == 1.5 and o.dose_per_frame_for(8) == pytest.approx(0.2) and o.dose_per_tilt_e_per_a2 is None
    assert o.source_of("pixel_size_a") == "command line" and o.source_of("voltage_kv") == "config"


@pytest.mark.parametrize(
    "table",
    [{"pixel_size": 1}, {"pixel_size_a": -1}, {"dose_per_frame_e_per_a2": 0},
     {"dose_per_frame_e_per_a2": 1, "dose_per_tilt_e_per_a2": 2},
     {"threads": -1}, {"gain_rot": 5}, {"gain_flip": "z"}, {"pixel_size_a": "abc"}],
)
def test_bad_config(table):
    with pytest.raises(SettingsError):
        processing_options_from_args(parse(), {"processing": table})


def test_settings_hash_tracks_what_changes_numbers(tmp_path):
    base = processing_options_from_args(parse("--pixel-size-a", "1", "--threads", "1"))
    same = processing_options_from_args(parse("--pixel-size-a", "1", "--threads", "4"))
    other = processing_options_from_args(parse("--pixel-size-a", "1.1"))
    assert base.settings_hash() == same.settings_hash() != other.settings_hash()
    g = tmp_path / "gain.mrc"
    g.write_bytes(b"1")
    a = processing_options_from_args(parse("--pixel-size-a", "1", "--gain", str(g))).settings_hash()
    g.write_bytes(b"22")  # a new gain reference under the same name
    b = processing_options_from_args(parse("--pixel-size-a", "1", "--gain", str(g))).settings_hash()
    assert a != b
