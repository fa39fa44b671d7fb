"""Smoke test of the daemon replay benchmark (benchmarks/daemon_replay.py): a tiny series of two
256^2 tilts through a real ``framewatch watch``, written frame by frame (TIFF) and renamed in whole
(EER); the run must find every tilt corrected (the benchmark exits 1 otherwise)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [("--format", "tiff", "--arrival", "frames"),
                                   ("--format", "eer", "--arrival", "rename", "--patches", "0")])
def test_replay_of_two_small_tilts(tmp_path, extra):
    out = tmp_path / "replay.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.daemon_replay", "--size", "256", "--tilts", "2",
                          "--pace-s", "3", "--frame-interval-s", "0.05", *extra, "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    res = json.loads(out.read_text())
    assert res["problems"] == [] and len(res["per_tilt"]) == 2
    assert res["floor_s"] > 0 and res["latency_median_s"] > 0
    if "frames" in extra:
        assert res["stream_started"] >= 1 and any(t["streamed_frames"] for t in res["per_tilt"])
