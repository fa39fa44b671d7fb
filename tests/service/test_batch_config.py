"""`framewatch batch` checks its configuration as `watch` does, before anything starts: a bad
``[series]`` pattern is one error line naming the file, exit status 2, no daemon event."""
import subprocess
import sys


def test_batch_refuses_a_bad_series_pattern_naming_the_file(tmp_path):
    (tmp_path / "w").mkdir()
    cfg = tmp_path / "fw.toml"
    cfg.write_text('[series]\npatterns = [{regex = "(unclosed"}]\n')
    r = subprocess.run([sys.executable, "-m", "framewatch.daemon.commands.cli", "batch", str(tmp_path / "w"),
                        "--out", str(tmp_path / "out"), "--state", str(tmp_path / "state"), "--pixel-size-a", "1.5",
                        "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(cfg) in lines[0] and "not a regular expression" in lines[0], r.stderr
    assert "daemon_stopped" not in r.stdout + r.stderr
    assert not (tmp_path / "out" / "framewatch.jsonl").exists()
