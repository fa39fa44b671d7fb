"""The drift log on a full output disk (found by the torture run): logging never raises, the file
never holds half a line, and lines that could not be written are written later -- also by the next
run, from the spill file in STATE -- in their order, once each."""
import errno
import json
import os

import pytest

from framewatch.daemon.outputs import driftlog
from framewatch.daemon.outputs.driftlog import DriftLog


class FullDisk:
    """os.write of the drift log module: the log file takes ``room`` more bytes, then ENOSPC (a
    write that does not fit goes in in part, as on a real file system)."""

    def __init__(self, monkeypatch, log_path):
        self.room = None  # None: no limit
        self.log_path = str(log_path)
        real = os.write

        def write(fd, data):
            if self.room is not None and os.readlink(f"/proc/self/fd/{fd}") == self.log_path:
                if self.room == 0:
                    raise OSError(errno.ENOSPC, "No space left on device")
                n = real(fd, data[: self.room])
                self.room -= n
                return n
            return real(fd, data)

        monkeypatch.setattr(driftlog.os, "write", write)


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]  # fails on a torn line


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_full_disk_keeps_whole_lines_and_writes_them_later(tmp_path, monkeypatch):
    log_path, spill = tmp_path / "out" / "framewatch.jsonl", tmp_path / "state" / "framewatch.jsonl.pending"
    spill.parent.mkdir()
    disk = FullDisk(monkeypatch, log_path)
    log = DriftLog(log_path, spill=spill)
    assert log.event("tilt_corrected", movie="a", z=0)
    disk.room = 30  # less than a line: the line goes in in part, and must come out again
    assert log.event("movie_failed", movie="b", reason="truncated")  # kept in the spill file
    assert log.event("tilt_corrected", movie="c", z=1)  # behind it, never before it
    assert [e["movie"] for e in lines(log_path)] == ["a"]
    assert log.pending == 2 and log.write_error and spill.exists()
    assert [json.loads(x)["movie"] for x in spill.read_text().splitlines()] == ["b", "c"]
    log.close()  # killed or stopped while the disk is full: the next run writes them
    disk.room = None
    log2 = DriftLog(log_path, spill=spill)
    assert [e["movie"] for e in lines(log_path)] == ["a", "b", "c"]
    assert not spill.exists() and log2.pending == 0
    log2.event("daemon_started")
    log2.close()
    assert [e["event"] for e in lines(log_path)][-1] == "daemon_started"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_waiting_lines_go_out_when_there_is_room_again(tmp_path, monkeypatch):
    log_path = tmp_path / "framewatch.jsonl"
    disk = FullDisk(monkeypatch, log_path)
    log = DriftLog(log_path, spill=tmp_path / "pending")
    disk.room = 0
    for k in range(3):
        log.event("backlog", queued=k)
    assert log_path.read_text() == "" and log.flush() == 3
    disk.room = None
    assert log.flush() == 0
    assert [e["queued"] for e in lines(log_path)] == [0, 1, 2]
    assert not (tmp_path / "pending").exists()
    log.close()


def test_cut_spill_line_is_dropped(tmp_path):
    """A run killed while writing the spill file leaves a cut line: never copied into the log."""
    spill = tmp_path / "pending"
    spill.write_text('{"event": "a", "level": "info"}\n{"event": "b", "le')
    log = DriftLog(tmp_path / "framewatch.jsonl", spill=spill)
    log.close()
    assert [e["event"] for e in lines(tmp_path / "framewatch.jsonl")] == ["a"]
