"""The settings hash of the processing options is pinned: the journal and the outputs of a running
session compare it, so a restructuring of how the options are declared must not change it.

The strings below were computed on the code before the processing options moved to one table
(issue 11); gain and defect paths that do not exist keep the file identity free of sizes and times.
"""
import argparse

import pytest

from framewatch.daemon.config.processing_options import (
    ProcessingOptions,
    add_processing_arguments,
    processing_options_from_args,
)


def parse(*argv):
    p = argparse.ArgumentParser()
    add_processing_arguments(p)
    return p.parse_args(list(argv))


_NOWHERE = "/nonexistent/framewatch-pin"

CASES = {
    "parsed_defaults": ((), None, "97b8795a2467be07"),
    "all_flags": (
        ("--pixel-size-a", "1.1", "--dose-per-frame", "0.5", "--prior-dose", "6", "--voltage-kv", "200",
         "--gain", f"{_NOWHERE}/g.mrc", "--gain-rot", "3", "--gain-flip", "x", "--gain-invert",
         "--defects", f"{_NOWHERE}/d.txt", "--patches", "5", "4", "--threads", "2", "--local-force"),
        None, "63bb0130009545e0"),
    "config": (
        (),
        {"processing": {"pixel_size_a": 2.0, "dose_per_tilt_e_per_a2": 4.0, "voltage_kv": 200, "patches": [3, 3],
                        "gain_flip": "y", "fourier_bin": 2, "eer_fraction_dose_e_per_a2": 0.5, "eer_upsampling": 2}},
        "b06a17f931316461"),
    "config_and_flags": (
        ("--pixel-size-a", "0.8", "--dose-per-frame", "0.25", "--eer-group-frames", "20", "--gain-orientation", "auto",
         "--bin", "2", "--patches", "0", "0"),
        {"processing": {"pixel_size_a": 2.0, "dose_per_tilt_e_per_a2": 4.0, "prior_dose_e_per_a2": 12.5,
                        "gain": f"{_NOWHERE}/gain.tif", "gain_rot": 1, "gain_invert": True, "threads": 3}},
        "64907315eb775b05"),
}


def test_default_options_hash_is_pinned():
    assert ProcessingOptions().settings_hash() == "97b8795a2467be07"


@pytest.mark.parametrize("name", sorted(CASES))
def test_settings_hash_is_pinned(name):
    argv, config, expected = CASES[name]
    assert processing_options_from_args(parse(*argv), config).settings_hash() == expected
