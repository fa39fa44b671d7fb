"""The daemon as a service: systemd notifications, health, signals, disk space, metrics, plots.

:class:`Service` is what the main loop of :class:`~framewatch.daemon.service.daemon.Daemon` calls; it
keeps the lifecycle rules in one place:

- ``READY=1`` only after the kernels are compiled (the caller runs the warm-up first);
- every turn of the loop: the output disk is probed (every ``[disk] check_period_s``), the metrics
  gauges are set, ``STATUS=`` says the queue and the last tilt, and ``WATCHDOG=1`` is sent **only
  while healthy**: no worker pool broken, no movie in a worker for longer than
  ``[service] stuck_movie_s``. A daemon that stops being healthy stops pinging; systemd then kills
  and restarts it (``WatchdogSec=``, ``Restart=on-failure``) and the journal resumes the work;
- below the disk floor no new movie is handed to a worker (:attr:`Service.paused`); watching and
  journaling go on, and work resumes by itself when space returns;
- ``STOPPING=1`` when a stop is requested.

:class:`SignalInbox` is the signal side: handlers only record the signal number and wake the main
loop (no logging, no I/O in a handler); the loop decides what to do.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from collections import deque
from pathlib import Path

from framewatch.daemon.service.disk_space import FLOOR, GB, LOW, OK, DiskGuard
from framewatch.daemon.service.notify import Notifier

STATUS_MIN_PERIOD_S = 1.0


class SignalInbox:
    """Collects SIGTERM, SIGINT and SIGHUP for the main loop."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self, wake: threading.Event | None = None):
        self._pending: deque[int] = deque()
        self.wake = wake
        self._previous: dict[int, object] = {}

    def install(self) -> "SignalInbox":
        """Install the handlers (again: a no-op; :meth:`restore` puts back those found the first time)."""
        if self._previous:
            return self
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handler)
        return self

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()

    def _handler(self, signum, _frame) -> None:
        self._pending.append(signum)  # deque.append is atomic; nothing else happens here
        if self.wake is not None:
            self.wake.set()

    def drain(self) -> list[int]:
        out = []
        while self._pending:
            out.append(self._pending.popleft())
        return out


def _fmt_gb(n: int) -> str:
    return f"{n / GB:.1f} GB"


class Service:
    """Notifications, health, disk guard, metrics and plots of one daemon run."""

    def __init__(self, *, log, out_dir: str | Path, disk_cfg, service_cfg, metrics=None, plots=None,
                 notifier: Notifier | None = None, disk_probe=None):
        from framewatch.daemon.service.metrics import NullMetrics

        self.log = log
        self.out_dir = Path(out_dir)
        self.notifier = notifier if notifier is not None else Notifier()
        self.metrics = metrics if metrics is not None else NullMetrics()
        self.plots = plots
        self.service_cfg = service_cfg
        kw = {} if disk_probe is None else {"probe": disk_probe}
        self.disk = DiskGuard(
            self.out_dir,
            warn_below_bytes=int(disk_cfg.warn_below_gb * GB),
            floor_bytes=int(disk_cfg.floor_gb * GB),
            resume_margin_bytes=int(disk_cfg.resume_margin_gb * GB),
            check_period_s=disk_cfg.check_period_s,
            **kw,
        )
        self.ready_sent = False
        self.last_tilt: str | None = None
        self.unhealthy: str | None = None
        self._last_status_at = 0.0
        self._notify_error_logged = False

    # --- configuration reload ---------------------------------------------------------------------
    def apply_config(self, disk_cfg, service_cfg) -> None:
        self.service_cfg = service_cfg
        self.disk.warn_below_bytes = int(disk_cfg.warn_below_gb * GB)
        self.disk.floor_bytes = int(disk_cfg.floor_gb * GB)
        self.disk.resume_margin_bytes = int(disk_cfg.resume_margin_gb * GB)
        self.disk.check_period_s = disk_cfg.check_period_s
        self.disk.last = None  # probe again at the next turn, with the new thresholds

    # --- start-up ---------------------------------------------------------------------------------
    def starting(self, text: str) -> None:
        self.notifier.status(text)
        self._check_notify()

    def ready(self, status: str) -> None:
        self.notifier.ready(status)
        self.ready_sent = True
        self._check_notify()

    @property
    def paused(self) -> bool:
        """No new work: the output disk is below the floor."""
        return self.disk.paused

    # --- every turn of the main loop ------------------------------------------------------------
    def tick(self, *, queued: int, processing: int, watching: int, oldest_wait_s: float | None,
             pool_broken: bool = False, in_flight_since: dict | None = None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._check_disk()
        self.metrics.set_queue(queued=queued, processing=processing, oldest_wait_s=oldest_wait_s)
        reason = self._health(pool_broken, in_flight_since or {}, now)
        if reason != self.unhealthy:
            if reason is not None:
                self.log.event("daemon_unhealthy", level="error", reason=reason,
                               note="no WATCHDOG=1 is sent while this lasts; systemd restarts the daemon after WatchdogSec")
            else:
                self.log.event("daemon_healthy", previous=self.unhealthy)
            self.unhealthy = reason
        if reason is None and self.ready_sent:
            self.notifier.watchdog()
        if time.monotonic() - self._last_status_at >= STATUS_MIN_PERIOD_S:
            self._last_status_at = time.monotonic()
            self.notifier.status(self.status_text(queued, processing, watching))
        self._check_notify()

    def _health(self, pool_broken: bool, in_flight_since: dict, now: float) -> str | None:
        if pool_broken:
            return "the worker pool is broken"
        stuck = self.service_cfg.stuck_movie_s
        if stuck and in_flight_since:
            oldest = min(in_flight_since.values())
            if now - oldest > stuck:
                return f"a movie has been in a worker for {now - oldest:.0f} s (> stuck_movie_s = {stuck:g} s)"
        return None

    def status_text(self, queued: int, processing: int, watching: int) -> str:
        parts = []
        if self.unhealthy:
            parts.append(f"UNHEALTHY: {self.unhealthy}")
        if self.disk.paused and self.disk.last is not None:
            parts.append(f"PAUSED: output disk {_fmt_gb(self.disk.last.free_bytes)} free "
                         f"< floor {_fmt_gb(self.disk.floor_bytes)}")
        parts.append(f"{queued} queued, {processing} processing, {watching} watching")
        parts.append(self.last_tilt or "no tilt yet")
        return "; ".join(parts)

    def _check_disk(self, *, force: bool = False) -> None:
        r = self.disk.check(force=force)
        if r is None:
            return
        if self.disk.error:
            self.log.event("disk_check_failed", level="warning", path=str(self.out_dir), reason=self.disk.error)
            return
        self.metrics.set_free_bytes(r.free_bytes)
        self.metrics.set_paused(self.disk.paused)
        if not r.changed and not (force and r.level != OK):
            return
        kw = dict(path=str(self.out_dir), free_bytes=r.free_bytes, warn_below_bytes=self.disk.warn_below_bytes,
                  floor_bytes=self.disk.floor_bytes)
        if r.level == FLOOR:
            self.log.event("disk_floor", level="error", **kw,
                           note="no new movie is corrected until space returns; watching and the journal go on")
            return
        if r.previous == FLOOR:
            self.log.event("disk_resumed", **kw, note="free space is back: new movies are corrected again")
        if r.level == LOW and r.previous != LOW:
            self.log.event("disk_low", level="warning", **kw)
        elif r.level == OK and r.previous == LOW:
            self.log.event("disk_ok", **kw)

    def initial_disk_check(self) -> None:
        """Probe at start (a low or full disk is logged at once)."""
        self._check_disk(force=True)

    # --- events and tilts -------------------------------------------------------------------------
    def on_event(self, name: str, fields: dict) -> None:
        """Every drift-log event passes here (metrics, the last tilt of STATUS)."""
        self.metrics.observe_event(name, fields)
        if name == "tilt_corrected":
            total = fields.get("total_motion_a")
            angle = fields.get("tilt_angle_deg")
            bits = [f"last {fields.get('series')} z={fields.get('z')}"]
            if isinstance(angle, (int, float)):
                bits.append(f"{angle:+.1f} deg")
            if isinstance(total, (int, float)) and math.isfinite(total):
                bits.append(f"total {total:.1f} A")
            if fields.get("flags"):
                bits.append("flagged")
            self.last_tilt = " ".join(bits)

    def tilt_appended(self, series_dir: Path, records: list[dict], trajectories: dict, thresholds, latest: int) -> None:
        """Redraw the series' plot in the background (only the latest request per series)."""
        if self.plots is None:
            return
        from framewatch.daemon.outputs.plots import SeriesPlotData, normalise_record, plot_path, render_series_plot

        data = SeriesPlotData(Path(series_dir).name, [normalise_record(r) for r in records], dict(trajectories))
        target = plot_path(series_dir)
        self.plots.submit(str(series_dir), lambda: render_series_plot(data, target, thresholds=thresholds, latest=latest))

    # --- stopping ---------------------------------------------------------------------------------
    def stopping(self, reason: str, in_flight: int) -> None:
        self.notifier.stopping(f"stopping ({reason}): {in_flight} movie(s) in the workers")

    def close(self, timeout_s: float = 10.0) -> None:
        if self.plots is not None:
            self.plots.close(timeout_s)
        close = getattr(self.metrics, "close", None)
        if close is not None:
            close()

    def _check_notify(self) -> None:
        if self.notifier.last_error and not self._notify_error_logged:
            self._notify_error_logged = True
            self.log.event("notify_failed", level="warning", reason=self.notifier.last_error)
