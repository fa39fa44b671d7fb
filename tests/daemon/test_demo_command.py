"""`framewatch demo`: a simulated acquisition, the daemon on it, the live table, the outputs."""
import subprocess
import sys

import mrcfile
import pytest


@pytest.mark.slow
def test_demo_runs_to_a_complete_series(tmp_path):
    cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "demo", str(tmp_path), "--tilts", "3", "--size", "128",
           "--frames", "6", "--frame-interval", "0.02", "--tilt-interval", "0.3", "--no-color", "--timeout", "120"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["series", "z", "angle"])
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert [r[:3] for r in rows] == [["TS_01", "0", "0.0"], ["TS_01", "1", "3.0"], ["TS_01", "2", "-3.0"]]
    assert any("complete (mdoc), 3 tilts" in line for line in lines)
    out = tmp_path / "out" / "TS_01"
    for name in ("TS_01.mrc", "TS_01_EVN.mrc", "TS_01_ODD.mrc", "TS_01_sorted.mrc", "TS_01.tlt", "TS_01.star", "TS_01.tilts.tsv"):
        assert (out / name).exists(), name
        assert f"TS_01/{name}" in p.stdout
    with mrcfile.open(out / "TS_01_sorted.mrc") as m:
        assert m.data.shape == (3, 128, 128)
    assert (tmp_path / "framewatch.toml").exists()
