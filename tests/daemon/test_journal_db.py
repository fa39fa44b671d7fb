"""The SQLite journal: one row per movie version, series, output sets, one process per STATE."""
import sqlite3

import pytest

from framewatch.core.errors import SettingsError
from framewatch.daemon.state.journal import Journal, JournalLocked


def test_rows_states_and_reopen(tmp_path):
    j = Journal(tmp_path / "state", tmp_path / "out")
    assert (tmp_path / "state" / "framewatch.sqlite").exists()
    assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    out_rel, new = j.output_set("h1", {"pixel_size_a": 1})
    assert (out_rel, new) == ("", True)
    assert j.output_set("h1") == ("", False)
    s, new = j.series_for("h1", "TS_01", "/acq", out_rel)
    assert new and s["out_rel"] == "TS_01"
    r = j.add("/acq/a.tif", 10, 111, "h1")
    assert r["state"] == "seen" and r["attempts"] == 0
    j.update(r["id"], state="processing", series_id=s["id"], info_json={"x": [1, 2]})
    j.mark_done(r["id"], z=0, stats={"total_motion_a": 1.5}, flags=["f"], timings={"correct_s": 0.1}, info={"y": 1}, now=5.0)
    with pytest.raises(sqlite3.IntegrityError):  # same path + size + mtime + settings
        j.add("/acq/a.tif", 10, 111, "h1")
    j.add("/acq/a.tif", 10, 111, "h2")  # other settings: another row
    j.close()
    j = Journal(tmp_path / "state", tmp_path / "out")
    row = j.latest("/acq/a.tif", "h1")
    assert row["state"] == "done" and row["z"] == 0 and row["stats"] == {"total_motion_a": 1.5} and row["flags"] == ["f"]
    assert j.n_sections(s["id"]) == 1 and j.sections(s["id"])[0]["info"] == {"y": 1}
    assert j.counts("h1") == {"done": 1}
    j.close()


def test_changed_settings_get_their_own_output_set(tmp_path):
    j = Journal(tmp_path / "s", tmp_path / "o")
    assert j.output_set("aaaa1111bbbb2222")[0] == ""
    rel, new = j.output_set("cccc3333dddd4444")
    assert new and rel == "settings-cccc3333"
    s, _ = j.series_for("cccc3333dddd4444", "TS_01", "/acq", rel)
    assert s["out_rel"] == "settings-cccc3333/TS_01"
    # the same series name from another directory does not share outputs
    s2, _ = j.series_for("cccc3333dddd4444", "TS_01", "/acq/grid2", rel)
    assert s2["out_rel"] == "settings-cccc3333/TS_01_2"
    j.close()


def test_one_process_per_state_dir(tmp_path):
    j = Journal(tmp_path / "s", tmp_path / "o")
    with pytest.raises(JournalLocked):
        Journal(tmp_path / "s", tmp_path / "o")
    j.close()
    Journal(tmp_path / "s", tmp_path / "o").close()


def test_state_belongs_to_one_out_dir(tmp_path):
    Journal(tmp_path / "s", tmp_path / "o").close()
    with pytest.raises(SettingsError) as e:
        Journal(tmp_path / "s", tmp_path / "other")
    assert "--state" in str(e.value)
