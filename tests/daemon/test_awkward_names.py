"""Hardening (issue 14): file names with quotes, spaces, control characters, escape sequences and
line separators never split a tilt-table row, come back unchanged from the table's reader (and
``framewatch plot``'s), and ``framewatch tail`` never prints a control character from them."""
import json

import numpy as np

from framewatch.daemon.commands import tail as cmd_tail
from framewatch.daemon.commands.cli import main
from framewatch.daemon.outputs.plots import load_series
from framewatch.daemon.outputs.tilt_table import escape_field, read_tsv, tsv_text, unescape_field

NAMES = ['q"x y_001_0.0.tif', "\x1b[2J\rTS_01_002_-3.0.tif", "tab\there_003_3.0.tif", "line\nfeed_004_6.0.tif",
         "sep\u2028para\u2029nel\x85_005_9.0.tif", "back\\slash\\n_006_12.0.tif", "vt\x0bff\x0cfs\x1c_007_15.0.tif"]


def records():
    return [{"z": z, "movie": name, "movie_path": f"/acq/{name}", "tilt_angle_deg": 3.0 * z, "acquisition_index": z,
             "total_motion_a": 1.0 + z, "early_motion_a": 0.5, "late_motion_a": 0.5 + z, "flags": [f"note {name}"]}
            for z, name in enumerate(NAMES)]


def test_escape_round_trip():
    for name in NAMES:
        esc = escape_field(name)
        assert not any(c in esc for c in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x1b")
        assert unescape_field(esc) == name
    assert escape_field("a\\nb") == "a\\\\nb" and unescape_field("a\\\\nb") == "a\\nb"


def test_tilt_table_rows_stay_rows_and_read_back(tmp_path):
    series_dir = tmp_path / "TS_01"
    series_dir.mkdir()
    path = series_dir / "TS_01.tilts.tsv"
    path.write_text(tsv_text(records()), encoding="utf-8")
    raw = path.read_bytes().decode("utf-8")
    assert len(raw.splitlines()) == len(NAMES) + 1  # str.splitlines splits on every line separator: none inside a row
    back = read_tsv(path)
    assert [r["movie"] for r in back] == NAMES
    assert [r["movie_path"] for r in back] == [f"/acq/{n}" for n in NAMES]
    assert [r["flags"] for r in back] == [f"note {n}" for n in NAMES]
    # framewatch plot (and the daemon's re-plot at start-up) reads the table through the same reader
    data = load_series(series_dir)
    assert [r["movie"] for r in data.records] == NAMES
    np.testing.assert_allclose([r["total_motion_a"] for r in data.records], [1.0 + z for z in range(len(NAMES))])


def test_tail_renders_control_characters_visibly(tmp_path, capsys):
    log = tmp_path / "framewatch.jsonl"
    lines = [{"event": "tilt_corrected", "series": "\x1b[2J\rTS", "z": 1, "tilt_angle_deg": -3.0, "total_motion_a": 1.0,
              "early_motion_a": 0.5, "late_motion_a": 0.5, "max_frame_shift_a": 0.2, "frc_0_143_a": 8.0,
              "flags": ["reacquired \x1b]0;owned\x07", "bidi \u202egnp.exe"]},
             {"event": "movie_failed", "series": 'q"x y', "movie": "/acq/\x1b[2J\rTS_01_002_-3.0.tif", "reason": "bad\nline"},
             {"event": "series_completed", "series": "line\u2028sep", "reason": "mdoc", "n_tilts": 2,
              "sorted_stack": "/o/\x9b31m.mrc"}]
    log.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert main(["tail", str(tmp_path), "--once"]) == 0
    out = capsys.readouterr().out
    body = out.split("\n", 1)[1]
    assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029\u202e" for c in body), repr(body)
    rows = body.rstrip("\n").split("\n")
    assert len(rows) == 3  # one row per event: nothing split a row
    assert rows[0].startswith("\\x1b[2J\\x0dT")  # the series column is 12 characters wide
    assert "\\x1b]0;owned\\x07" in rows[0] and "\\u202egnp.exe" in rows[0]
    assert "failed: \\x1b[2J\\x0dTS_01_002_-3.0.tif: bad\\x0aline" in rows[1] and rows[1].startswith('q"x y')
    assert "line\\u2028sep" in rows[2] and "\\x9b31m.mrc" in rows[2]
    # with colours, only framewatch's own escape sequences are there
    colored = cmd_tail.format_line(lines[1], color=True)
    assert colored.count("\x1b") == 2 and colored.startswith(cmd_tail.RED) and colored.endswith(cmd_tail.RESET)
