"""Issue 14, rows 11 (configuration part) and 12: only finite, plausible numbers in the
configuration; a file that is not UTF-8 is a clear error in `check-config` and at start, and on
SIGHUP the daemon logs `config_reload_failed` and keeps running on the old configuration;
`check-config` validates `[series]` patterns exactly as start-up does."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from daemon_helpers import TEST_CONFIG

from framewatch.daemon.commands.cli import main as cli_main
from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.config.config_ranges import RANGES


def check(tmp_path, text: str | bytes, capsys) -> tuple[int, str]:
    cfg = tmp_path / "fw.toml"
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = cli_main(["check-config", "--no-dirs", str(cfg)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("table,line,allowed", [
    ("processing", "voltage_kv = 1e300", "60 to 400 kV"),
    ("processing", "voltage_kv = 20", "60 to 400 kV"),
    ("processing", "patches = [100000, 100000]", "0 to 64"),
    ("processing", "pixel_size_a = 1e-300", "0.1 to 50"),
    ("processing", "pixel_size_a = 1e300", "0.1 to 50"),
    ("processing", "dose_per_tilt_e_per_a2 = 1e6", "above 0 to 1000"),
    ("processing", "dose_per_frame_e_per_a2 = 0", "above 0 to 100"),
    ("processing", "prior_dose_e_per_a2 = -1", "0 to 10000"),
    ("processing", "threads = 100000", "0 to 1024"),
    ("scheduler", "workers = 100000", "1 to 64"),
    ("scheduler", "queue_size = 10000000", "1 to 100000"),
    ("watch", "scan_period_s = 1e9", "above 0 to 3600"),
    ("watch", "settle_s = 1e300", "0 to 3600"),
    ("watch", "max_attempts = 1000000", "1 to 10000"),
    ("series", "idle_s = 1e12", "above 0 to 604800"),
    ("series", "angle_tolerance_deg = 90", "0 to 10"),
    ("disk", "check_period_s = 1e300", "above 0 to 3600"),
    ("service", "shutdown_timeout_s = 1e300", "0 to 86400"),
])
def test_out_of_range_values_name_the_key_and_the_range(tmp_path, capsys, table, line, allowed):
    code, err = check(tmp_path, f"[{table}]\n{line}\n", capsys)
    key = line.split(" =")[0]
    assert code == 2, err
    assert f"[{table}] {key} = " in err and "is out of range" in err and f"allowed {allowed}" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("text", ["[processing]\nvoltage_kv = inf\n", "[processing]\npixel_size_a = nan\n",
                                  "[watch]\nsettle_s = -inf\n"])
def test_non_finite_values_are_refused(tmp_path, capsys, text):
    code, err = check(tmp_path, text, capsys)
    assert code == 2 and "finite" in err, err


def test_plausible_values_pass(tmp_path, capsys):
    text = ("[processing]\nvoltage_kv = 300\npixel_size_a = 0.83\ndose_per_tilt_e_per_a2 = 3.5\npatches = [5, 5]\n"
            "[scheduler]\nworkers = 4\n[watch]\nsettle_s = 10\n")
    code, err = check(tmp_path, text, capsys)
    assert code == 0, err
    # every range is written as the message shows it, and its bounds are ordered
    for key, rng in RANGES.items():
        assert rng.lo < rng.hi, key
        assert rng.allows(rng.hi) and rng.allows(rng.lo) != rng.lo_open, key


def test_a_config_that_is_not_utf8_is_one_clear_error(tmp_path, capsys):
    code, err = check(tmp_path, b"[watch]\nsettle_s = 2\n# \xc5ngstr\xf6m\n", capsys)
    assert code == 2
    assert "not UTF-8" in err and "line 3" in err and "0xc5" in err, err


@pytest.mark.parametrize("patterns,expect", [
    ('[[series.patterns]]\nregex = "^(?P<series>.+)_(?P<index>\\\\d+)$"\nindex_base = "abc"\n', "index_base = 'abc'"),
    ('[[series.patterns]]\nregex = "^(?P<series>.+)_(?P<index>\\\\d+)$"\nindex_base = 1.5\n', "index_base = 1.5"),
    ('[[series.patterns]]\nregex = "^(?P<series>.+"\n', "is not a regular expression"),
    ('[[series.patterns]]\nregex = "^(?P<stem>.+)$"\n', "has no (?P<series>...) group"),
    ('[series]\npatterns = [3]\n', "must be a string or a table"),
    ('[series]\npatterns = [["a"]]\n', "must be a string or a table"),
    ('[[series.patterns]]\nregex = "^(?P<series>.+)$"\nindexbase = 1\n', "unknown key"),
])
def test_check_config_validates_series_patterns_as_start_up_does(tmp_path, capsys, patterns, expect):
    code, err = check(tmp_path, patterns, capsys)
    assert code == 2, err
    assert "[series] patterns[0]" in err and expect in err, err
    # start-up says the same, without a traceback
    (tmp_path / "w").mkdir()
    p = subprocess.run([sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(tmp_path / "w"),
                        "--out", str(tmp_path / "o"),
                        "--state", str(tmp_path / "s"), "--config", str(tmp_path / "fw.toml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and expect in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_start_with_a_config_that_is_not_utf8(daemon):
    d = daemon
    d.config.write_bytes(TEST_CONFIG.encode() + b"# \xc5\n")
    d.start()
    assert d.proc.wait(60) == 2
    out = d.output()
    assert "not UTF-8" in out and "Traceback" not in out, out


def test_sighup_with_a_config_that_is_not_utf8_keeps_the_daemon_running(daemon):
    d = daemon
    acq = Acquisition(d.acq, n_tilts=2, shape=(96, 96), n_frames=4, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    d.start()
    d.wait_ready()
    acq.write_tilt(0)
    d.wait_event(lambda e: e["event"] == "tilt_corrected")
    with open(d.config, "ab") as f:
        f.write(b"# \xc5\n")
    n = len(d.events())
    os.kill(d.proc.pid, signal.SIGHUP)
    ev = d.wait_event(lambda e: e["event"] == "config_reload_failed", after=n)
    assert "not UTF-8" in ev["reason"], ev
    # still running on the old configuration: the next movie is corrected
    acq.write_tilt(1)
    d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["z"] == 1)
    # a bad [series] pattern by SIGHUP is refused the same way
    d.config.write_text(TEST_CONFIG + '\n[[series.patterns]]\nregex = "^(?P<series>.+)$"\nindex_base = "abc"\n')
    n = len(d.events())
    os.kill(d.proc.pid, signal.SIGHUP)
    ev = d.wait_event(lambda e: e["event"] == "config_reload_failed", after=n)
    assert "index_base" in ev["reason"], ev
    assert d.proc.poll() is None
    assert d.stop() == 0
