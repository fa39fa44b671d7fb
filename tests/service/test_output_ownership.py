"""Issue 14, rows 7, 13 and 14 (start-up): one owner per output directory.

- row 7: a second daemon with another STATE on the same OUT is refused, naming the holder (pid and
  state directory); the first goes on undisturbed;
- row 13: OUT = WATCH, WATCH inside OUT, STATE inside OUT or WATCH are refused at start with a
  message naming the directories (exit status 2); `check-config` says the same;
- row 14: an OUT that cannot be created or written at start is one line on stderr, exit status 1,
  no traceback. The tests run as root, which ignores file modes, so the directory is made
  immutable with `chattr +i` (ext4 and tmpfs honour it for root too).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import DaemonProc

from framewatch.daemon.commands.cli import main as cli_main
from framewatch.daemon.commands.simulated_acquisition import Acquisition


def watch(acq: Path, out: Path, state: Path, config: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(acq), "--out", str(out), "--state", str(state),
           "--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.fixture
def daemon(tmp_path):
    d = DaemonProc(tmp_path)
    yield d
    d.cleanup()


def test_second_daemon_on_the_same_out_is_refused(daemon):
    d = daemon
    acq = Acquisition(d.acq, n_tilts=2, shape=(96, 96), n_frames=4, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    d.start()
    d.wait_ready()
    state2 = d.base / "state2"
    p = watch(d.acq, d.out, state2, d.config, timeout=30)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert f"pid {d.proc.pid}" in p.stderr and str(d.state.resolve()) in p.stderr, p.stderr
    assert "output directory" in p.stderr and str(d.out.resolve()) in p.stderr
    assert not (state2 / "framewatch.sqlite").exists()  # refused before it opened a journal
    # the first daemon is undisturbed: both movies once each, in order
    for i in range(acq.n_tilts):
        acq.write_tilt(i)
    d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["z"] == 1)
    assert d.stop() == 0
    tilts = [e for e in d.events() if e["event"] == "tilt_corrected"]
    assert sorted(e["movie"] for e in tilts) == sorted(str(m.path) for m in acq.written)
    # after it stopped, the same second daemon may start (the lock died with the holder)
    d2 = DaemonProc(d.base)
    d2.state = state2
    try:
        d2.start()
        d2.wait_ready()
        assert d2.stop() == 0
    finally:
        d2.cleanup()


@pytest.mark.parametrize("case", ["out_is_watch", "watch_inside_out", "state_inside_out", "state_inside_watch", "state_is_out"])
def test_overlapping_directories_are_refused(tmp_path, case):
    d = DaemonProc(tmp_path)
    acq, out, state = d.acq, d.out, d.state
    if case == "out_is_watch":
        out = acq
    elif case == "watch_inside_out":
        out = acq.parent
    elif case == "state_inside_out":
        state = out / "journal"
    elif case == "state_inside_watch":
        state = acq / ".state"
    elif case == "state_is_out":
        state = out
    p = watch(acq, out, state, d.config, timeout=30)
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    key = {"out_is_watch": "is the watch directory", "watch_inside_out": "lies inside the output directory",
           "state_inside_out": "lies inside the output directory", "state_inside_watch": "lies inside the watch directory",
           "state_is_out": "lies inside the output directory"}[case]
    assert key in p.stderr, p.stderr
    assert not (Path(state) / "framewatch.sqlite").exists()


def test_check_config_refuses_out_equal_to_watch(tmp_path, capsys):
    w = tmp_path / "w"
    w.mkdir()
    cfg = tmp_path / "fw.toml"
    cfg.write_text(f'[watch]\ndir = "{w}"\n[output]\ndir = "{w}/"\n')
    assert cli_main(["check-config", str(cfg)]) == 2
    assert "is the watch directory" in capsys.readouterr().err
    cfg.write_text(f'[watch]\ndir = "{w}"\n[output]\ndir = "{w}/processed"\n')  # OUT inside WATCH: allowed
    assert cli_main(["check-config", str(cfg)]) == 0


def _chattr(flag: str, path: Path) -> str | None:
    exe = shutil.which("chattr")
    if exe is None:
        return "chattr is not installed (e2fsprogs)"
    r = subprocess.run([exe, flag, str(path)], capture_output=True, text=True)
    return None if r.returncode == 0 else f"chattr {flag} failed: {r.stderr.strip()[:200]}"


@pytest.mark.parametrize("exists", [False, True], ids=["out_cannot_be_created", "out_cannot_be_written"])
def test_unwritable_out_at_start_is_one_clear_line(tmp_path, exists):
    d = DaemonProc(tmp_path)
    parent = tmp_path / "locked"
    out = parent / "out"
    out.mkdir(parents=True) if exists else parent.mkdir()
    target = out if exists else parent
    why = _chattr("+i", target)
    if why:
        pytest.skip(f"needs an immutable directory to stand for an unwritable one (root ignores modes): {why}")
    try:
        p = watch(d.acq, out, d.state, d.config, timeout=60)
    finally:
        assert _chattr("-i", target) is None
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert "the output directory cannot be " + ("written" if exists else "created") in lines[0]
    assert str(out) in lines[0] and "lsattr" in lines[0]
