"""Fixtures of the service tests; the daemon helpers (a real `framewatch watch` subprocess) are
shared with tests/daemon."""
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))


class NotifyListener(threading.Thread):
    """A fake NOTIFY_SOCKET: a real Unix datagram socket that records (time, message) and calls
    ``on_message`` (in this thread) for each."""

    def __init__(self, on_message=None):
        super().__init__(daemon=True)
        self.dir = Path(tempfile.mkdtemp(prefix="fw-notify-", dir="/tmp"))  # short: sun_path has 108 bytes
        self.path = str(self.dir / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.on_message = on_message
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            msg = data.decode()
            self.messages.append((time.time(), msg))
            if self.on_message is not None:
                self.on_message(msg)

    def wait_for(self, pred, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for t, m in list(self.messages):
                if pred(m):
                    return t, m
            time.sleep(0.05)
        raise AssertionError(f"no such notify message; got {[m for _, m in self.messages][-10:]}")

    def close(self):
        self._halt.set()
        self.join(2)
        self.sock.close()
        Path(self.path).unlink(missing_ok=True)
        self.dir.rmdir()


@pytest.fixture
def notify_socket():
    n = NotifyListener()
    n.start()
    yield n
    n.close()
