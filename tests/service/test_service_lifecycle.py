"""The Service layer without a daemon: health and WATCHDOG, STATUS, the disk floor with a patched
probe, signals recorded for the main loop."""
from __future__ import annotations

import os
import signal
import socket
import threading
from types import SimpleNamespace

import pytest

from framewatch.daemon.service.disk_space import GB
from framewatch.daemon.service.lifecycle import Service, SignalInbox
from framewatch.daemon.service.notify import Notifier


class FakeLog:
    def __init__(self):
        self.events = []

    def event(self, name, level="info", **kw):
        self.events.append((name, level, kw))

    def names(self):
        return [e[0] for e in self.events]


@pytest.fixture
def sock(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "n.sock"))
    s.setblocking(False)
    yield s, str(tmp_path / "n.sock")
    s.close()


def received(s) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(4096).decode())
        except BlockingIOError:
            return out


DISK = SimpleNamespace(warn_below_gb=50.0, floor_gb=5.0, resume_margin_gb=1.0, check_period_s=0.0)
SVC = SimpleNamespace(stuck_movie_s=60.0)


def make(tmp_path, sock_path=None, free=100 * GB):
    probe = {"free": free}
    env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000"} if sock_path else {}
    svc = Service(log=FakeLog(), out_dir=tmp_path, disk_cfg=DISK, service_cfg=SVC, notifier=Notifier(env),
                  disk_probe=lambda p: probe["free"])
    return svc, probe


class TestService:
    def test_ready_status_watchdog(self, tmp_path, sock):
        """No WATCHDOG before READY; after it, STATUS with the queue and last tilt, and WATCHDOG."""
        s, path = sock
        svc, _ = make(tmp_path, path)
        svc.tick(queued=0, processing=0, watching=0, oldest_wait_s=None)
        assert not any(m == "WATCHDOG=1" for m in received(s))
        svc.ready("ready")
        svc.on_event("tilt_corrected", {"series": "TS_07", "z": 12, "tilt_angle_deg": -21.0, "total_motion_a": 4.21, "flags": []})
        svc._last_status_at = 0.0
        svc.tick(queued=3, processing=1, watching=2, oldest_wait_s=5.0)
        msgs = received(s)
        assert msgs[0] == "READY=1\nSTATUS=ready"
        assert "WATCHDOG=1" in msgs
        assert "STATUS=3 queued, 1 processing, 2 watching; last TS_07 z=12 -21.0 deg total 4.2 A" in msgs

    def test_unhealthy_stops_watchdog(self, tmp_path, sock):
        """A movie stuck in a worker: no WATCHDOG, an event and a STATUS saying so; then healthy again."""
        s, path = sock
        svc, _ = make(tmp_path, path)
        svc.ready("ready")
        received(s)
        svc._last_status_at = 0.0
        svc.tick(queued=0, processing=1, watching=0, oldest_wait_s=None, in_flight_since={7: 0.0}, now=100.0)
        msgs = received(s)
        assert "WATCHDOG=1" not in msgs
        assert any(m.startswith("STATUS=UNHEALTHY: a movie has been in a worker for 100 s") for m in msgs)
        assert svc.log.names() == ["daemon_unhealthy"]
        svc.notifier._last_watchdog = -1e9
        svc.tick(queued=0, processing=0, watching=0, oldest_wait_s=None, now=101.0)
        assert "WATCHDOG=1" in received(s)
        assert svc.log.names() == ["daemon_unhealthy", "daemon_healthy"]
        svc.tick(queued=0, processing=0, watching=0, oldest_wait_s=None, pool_broken=True)
        assert svc.unhealthy == "the worker pool is broken"

    def test_disk_floor_pauses_and_resumes(self, tmp_path):
        """Below the warn threshold: a warning; below the floor: paused; space back: resumed."""
        svc, probe = make(tmp_path)
        tick = lambda: svc.tick(queued=0, processing=0, watching=0, oldest_wait_s=None)  # noqa: E731
        svc.initial_disk_check()
        assert svc.log.names() == [] and not svc.paused
        probe["free"] = 20 * GB
        tick()
        assert svc.log.names() == ["disk_low"] and not svc.paused
        probe["free"] = 4 * GB
        tick()
        assert svc.log.names()[-1] == "disk_floor" and svc.paused
        assert "PAUSED: output disk 4.0 GB free < floor 5.0 GB" in svc.status_text(0, 0, 0)
        probe["free"] = int(5.5 * GB)  # above the floor but within the margin
        tick()
        assert svc.paused
        probe["free"] = 70 * GB
        tick()
        assert not svc.paused
        assert svc.log.names() == ["disk_low", "disk_floor", "disk_resumed"]
        name, level, kw = svc.log.events[-1]
        assert kw["free_bytes"] == 70 * GB

    def test_full_disk_at_start(self, tmp_path):
        svc, _ = make(tmp_path, free=1 * GB)
        svc.initial_disk_check()
        assert svc.paused and svc.log.names() == ["disk_floor"]


def test_signal_inbox_only_records():
    """Handlers record the signal and wake the loop; the loop drains them."""
    wake = threading.Event()
    inbox = SignalInbox(wake).install()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        assert wake.wait(2)
        assert inbox.drain() == [signal.SIGHUP, signal.SIGTERM]
        assert inbox.drain() == []
    finally:
        inbox.restore()
