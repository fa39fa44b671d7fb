"""The one table of processing options (daemon/config/processing_table.py) and what derives from it."""
import argparse
import dataclasses

import pytest

from framewatch.core.errors import SettingsError
from framewatch.daemon.config.configuration import config_from_dict
from framewatch.daemon.config.processing_options import ProcessingOptions, processing_options_from_args
from framewatch.daemon.config.processing_table import PROCESSING_OPTIONS, add_processing_arguments


def parser():
    p = argparse.ArgumentParser()
    add_processing_arguments(p)
    return p


def test_every_row_names_a_flag_a_key_and_a_field():
    dests = {a.dest for a in parser()._actions}
    fields = {f.name for f in dataclasses.fields(ProcessingOptions)}
    keys = [row.key for row in PROCESSING_OPTIONS]
    assert len(set(keys)) == len(keys)
    for row in PROCESSING_OPTIONS:
        assert row.dest in dests, row.flag
        assert row.field_name in fields, row.field
        if row.toml_range is not None:
            rng = row.toml_range
            assert rng.lo < rng.hi and rng.allows(rng.hi) and rng.allows(rng.lo) != rng.lo_open, row.key
        if row.core_range is not None and row.toml_range is not None:  # the file's upper bound is within the engine's
            assert row.toml_range.hi <= row.core_range.high, row.key


@pytest.mark.parametrize("row", [r for r in PROCESSING_OPTIONS if r.key != "gain_orientation"], ids=lambda r: r.key)
def test_a_key_and_its_flag_give_the_same_options(row, tmp_path):
    """Each row, given in [processing] or on the command line, sets the same field (the source differs).
    gain_orientation needs a gain as well: test_automatic_gain_orientation_needs_a_gain covers it."""
    value = {float: 2.0, int: 2, bool: True, tuple: [3, 3]}.get(row.kind)
    if row.toml_range is not None and row.kind in (float, int):  # the largest value the file takes
        value = row.kind(row.toml_range.hi)
    if row.choices:
        value = row.choices[-1]
    if value is None:  # a file
        value = str(tmp_path / "gain.mrc")
        (tmp_path / "gain.mrc").write_bytes(b"1")
    argv = [row.flag] if row.kind is bool else [row.flag, *map(str, value if isinstance(value, list) else [value])]
    from_flag = processing_options_from_args(parser().parse_args(argv))
    config = {"processing": {row.key: value}}
    config_from_dict(config)  # the file's checks take it
    from_key = processing_options_from_args(parser().parse_args([]), config)
    assert getattr(from_flag, row.field_name) == getattr(from_key, row.field_name) != getattr(ProcessingOptions(), row.field_name)
    assert from_flag.source_of(row.source_name) == "command line" and from_key.source_of(row.source_name) == "config"


def test_automatic_gain_orientation_needs_a_gain(tmp_path):
    with pytest.raises(SettingsError, match="needs a gain reference"):
        processing_options_from_args(parser().parse_args(["--gain-orientation", "auto"]))
    g = tmp_path / "g.mrc"
    g.write_bytes(b"1")
    o = processing_options_from_args(parser().parse_args(["--gain-orientation", "auto", "--gain", str(g)]))
    assert o.gain_orientation_auto and o.gain_orientation_mode == "auto"


@pytest.mark.parametrize(("table", "message"), [
    ({"gain_rot": 4}, "[processing] gain_rot = 4: expected 0, 1, 2 or 3 quarter turns"),
    ({"fourier_bin": 5}, "[processing] fourier_bin = 5: expected 1, 2, 3 or 4"),
    ({"eer_upsampling": 3}, "[processing] eer_upsampling = 3: expected 1 (4K) or 2 (8K)"),
    ({"gain_orientation": "maybe"}, "[processing] gain_orientation = 'maybe': expected \"given\" or \"auto\""),
    ({"eer_group_frames": 10, "eer_fraction_dose_e_per_a2": 0.3},
     "[processing] has both eer_group_frames and eer_fraction_dose_e_per_a2"),
    ({"eer_group_frames": 0}, "[processing] eer_group_frames = 0 is out of range: allowed 1 to 10000 raw frames"),
    ({"patches": "some"}, "[processing] patches = 'some': expected two integers [NX, NY] or \"auto\""),
])
def test_configuration_messages(table, message):
    with pytest.raises(SettingsError) as e:
        config_from_dict({"processing": table})
    assert message in str(e.value)
