"""One daemon per state directory: the flock on STATE/framewatch.lock."""
from __future__ import annotations

import subprocess
import sys

import pytest

from framewatch.daemon.state.instance_lock import InstanceLock, InstanceLockedError, holder_pid

HOLD = """
import sys, time
from framewatch.daemon.state.instance_lock import InstanceLock
lock = InstanceLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.readline()
"""


class TestInstanceLock:
    def test_second_process_is_refused_naming_pid_and_directory(self, tmp_path):
        """Another process holding the lock: a clear error with its pid and the directory."""
        state = tmp_path / "state"
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(state)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "locked"
            with pytest.raises(InstanceLockedError) as exc:
                InstanceLock(state).acquire()
            msg = str(exc.value)
            assert f"pid {p.pid}" in msg and str(state) in msg and "--state" in msg
            assert exc.value.holder_pid == p.pid
        finally:
            p.stdin.close()
            p.wait(10)
        # the holder is gone (its lock died with it): the lock is free again
        with InstanceLock(state) as lock:
            assert lock.held
            assert holder_pid(state) is not None

    def test_same_process_twice_is_refused(self, tmp_path):
        """flock is per open file: a second lock object in one process is refused too."""
        with InstanceLock(tmp_path):
            with pytest.raises(InstanceLockedError):
                InstanceLock(tmp_path).acquire()

    def test_release_and_reacquire(self, tmp_path):
        """Released, the pid is cleared and the lock can be taken again."""
        import os

        lock = InstanceLock(tmp_path / "s").acquire()
        assert holder_pid(tmp_path / "s") == os.getpid()
        lock.release()
        assert holder_pid(tmp_path / "s") is None
        InstanceLock(tmp_path / "s").acquire().release()

    def test_unwritable_state_directory(self, tmp_path):
        """A state path that cannot be a directory gives one message naming the file."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(Exception) as exc:
            InstanceLock(blocker / "state").acquire()
        assert "framewatch.lock" in str(exc.value)
