"""`framewatch tail`: table rows from the drift log, --once, following a growing log."""
import io
import json
import threading
import time

from framewatch.daemon.commands import tail as cmd_tail
from framewatch.daemon.commands.cli import main

TILT = {"event": "tilt_corrected", "series": "TS_01", "z": 3, "tilt_angle_deg": -6.0011, "total_motion_a": 7.1234,
        "early_motion_a": 0.0, "late_motion_a": 7.1234, "max_frame_shift_a": 2.5, "frc_0_143_a": 8.41, "flags": []}


def test_rows():
    row = cmd_tail.format_line(TILT, color=False)
    assert row.split() == ["TS_01", "3", "-6.0", "7.12", "0.00", "7.12", "2.50", "8.4", "ok"]
    flagged = cmd_tail.format_line({**TILT, "flags": ["total motion 20.00 A > 15 A"]}, color=True)
    assert "\033[31mtotal motion 20.00 A > 15 A\033[0m" in flagged
    assert "failed" in cmd_tail.format_line({"event": "movie_failed", "movie": "/a/b.tif", "reason": "empty file",
                                             "series": "TS_01"}, color=False)
    assert "complete" in cmd_tail.format_line({"event": "series_completed", "series": "TS_01", "reason": "mdoc", "n_tilts": 3},
                                              color=False)
    assert cmd_tail.format_line({"event": "backlog"}, color=False) is None


def test_once_via_cli(tmp_path, capsys):
    log = tmp_path / "framewatch.jsonl"
    # torn last line
    log.write_text(json.dumps({"event": "daemon_ready"}) + "\n" + json.dumps(TILT) + "\n" + '{"event": "tilt_corr')
    assert main(["tail", str(tmp_path), "--once"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["series", "z", "angle"]
    assert len(out) == 2 and out[1].startswith("TS_01")
    assert main(["tail", str(tmp_path / "nothing"), "--once"]) == 1


def test_follows_growing_log(tmp_path):
    log = tmp_path / "framewatch.jsonl"
    stream, stop = io.StringIO(), threading.Event()

    class Args:
        out, once, no_color, series = str(tmp_path), False, True, None

    t = threading.Thread(target=cmd_tail.run, args=(Args,), kwargs={"stream": stream, "stop": stop})
    t.start()
    time.sleep(0.4)  # the log does not exist yet: tail waits for it
    with open(log, "a") as f:
        for z in range(3):
            f.write(json.dumps({**TILT, "z": z}) + "\n")
            f.flush()
            time.sleep(0.2)
    deadline = time.time() + 5
    while stream.getvalue().count("TS_01") < 3 and time.time() < deadline:
        time.sleep(0.05)
    log.write_text(json.dumps({**TILT, "z": 9}) + "\n")  # replaced (truncated): read again from the start
    while "TS_01            9" not in stream.getvalue() and "  9  " not in stream.getvalue() and time.time() < deadline + 5:
        time.sleep(0.05)
    stop.set()
    t.join(5)
    rows = [line.split() for line in stream.getvalue().splitlines()[1:]]
    assert [r[1] for r in rows] == ["0", "1", "2", "9"]
