"""The sd_notify sender against a real Unix datagram socket (as systemd's own tests do)."""
from __future__ import annotations

import os
import socket
import uuid

import pytest

from framewatch.daemon.service.notify import Notifier, notify, socket_address, watchdog_interval_s


@pytest.fixture
def sock(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    s.bind(str(path))
    s.settimeout(2.0)
    yield s, str(path)
    s.close()


def recv(s) -> str:
    return s.recv(4096).decode()


class TestNotifier:
    def test_no_socket_does_nothing(self):
        """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
        n = Notifier({})
        assert not n.enabled
        assert n.ready("x") is False and n.status("x") is False and n.watchdog() is False and n.stopping() is False
        assert n.last_error is None

    def test_messages_arrive(self, sock):
        """READY (with STATUS), STATUS, WATCHDOG, RELOADING and STOPPING arrive as sent."""
        s, path = sock
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert n.ready("warm; 0 queued")
        assert recv(s) == "READY=1\nSTATUS=warm; 0 queued"
        assert n.status("3 queued,\n 1 processing")
        assert recv(s) == "STATUS=3 queued, 1 processing"  # one line
        assert n.watchdog(now=100.0)
        assert recv(s) == "WATCHDOG=1"
        assert n.reloading()
        msg = recv(s)
        assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=") and int(msg.rsplit("=", 1)[1]) > 0
        assert n.stopping("draining")
        assert recv(s) == "STOPPING=1\nSTATUS=draining"

    def test_status_and_watchdog_are_rate_limited(self, sock):
        """An unchanged status is not resent; watchdog pings come at half the period at most."""
        s, path = sock
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
        assert n.status("idle") and not n.status("idle")
        assert n.status("idle", force=True)
        assert recv(s) == "STATUS=idle" and recv(s) == "STATUS=idle"
        assert n.watchdog(now=0.0 + 10.0)
        assert not n.watchdog(now=14.0)  # < 5 s later
        assert n.watchdog(now=15.1)
        assert recv(s) == "WATCHDOG=1" and recv(s) == "WATCHDOG=1"

    def test_no_watchdog_without_usec(self, sock):
        """systemd set no watchdog: no pings."""
        _, path = sock
        assert Notifier({"NOTIFY_SOCKET": path}).watchdog() is False

    def test_abstract_socket(self):
        """'@name' is the abstract name with a leading NUL byte."""
        name = f"framewatch-test-{uuid.uuid4().hex}"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(b"\0" + name.encode())
        s.settimeout(2.0)
        try:
            assert notify("READY=1", env={"NOTIFY_SOCKET": "@" + name})
            assert recv(s) == "READY=1"
        finally:
            s.close()

    def test_send_failure_is_reported_not_raised(self, tmp_path):
        """A socket that is gone gives False and a reason, never an exception."""
        n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
        assert n.ready() is False
        assert "gone.sock" in n.last_error

    def test_socket_address_forms(self):
        assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
        assert socket_address("@abc") == b"\0abc"
        assert socket_address("") is None and socket_address(None) is None
        assert socket_address("vsock:2:123") is None
        assert "not a Unix socket" in Notifier({"NOTIFY_SOCKET": "vsock:2:1"}).last_error


class TestWatchdogUsec:
    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            ({}, None),
            ({"WATCHDOG_USEC": "30000000"}, 30.0),
            ({"WATCHDOG_USEC": "500"}, 0.0005),
            ({"WATCHDOG_USEC": "0"}, None),
            ({"WATCHDOG_USEC": "-5"}, None),
            ({"WATCHDOG_USEC": "abc"}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ],
    )
    def test_parse(self, env, expected):
        """WATCHDOG_USEC in microseconds, only for the process WATCHDOG_PID names."""
        assert watchdog_interval_s(env) == expected
