"""An optional Prometheus endpoint (prometheus-client) for the facility's monitoring.

Configured by ``[metrics] address = "127.0.0.1:9750"`` (``""`` = off, the default); the default
host is 127.0.0.1, so the numbers are not on the network unless asked for. Served at ``/metrics``
by prometheus-client's own HTTP server in a daemon thread, from a registry of our own (not the
process-global one).

The daemon feeds it in two ways: the drift-log events (``tilt_corrected``, ``tilt_flagged``,
``movie_failed``, ``daemon_ready``) through :meth:`Metrics.observe_event`, and gauges the main
loop sets (queue, free disk, intake paused). Metric names and units follow Prometheus's
conventions (``_seconds``, ``_bytes``, ``_angstrom``, counters end in ``_total``):

====================================================  =============================================
``framewatch_movies_seen_total``                      movies found (new files or new versions)
``framewatch_movies_done_total``                      movies corrected and appended
``framewatch_movies_failed_total{stage}``             movies recorded failed, by stage
``framewatch_queue_depth``                            complete movies waiting for a worker
``framewatch_movies_processing``                      movies in the workers now
``framewatch_oldest_waiting_movie_age_seconds``       how long the oldest waiting movie has waited
``framewatch_processing_lag_seconds``                 histogram: movie complete → section appended
``framewatch_correction_seconds``                     histogram: time in the worker per movie
``framewatch_series_tilts_done{series}``              sections in a series' stacks (latest 50 series)
``framewatch_last_tilt_total_motion_angstrom``        the last tilt's total motion (RELION's Total)
``framewatch_last_tilt_early_motion_angstrom``        ... early motion
``framewatch_last_tilt_frc_0_143_angstrom``           ... even/odd FRC 0.143 crossing (NaN: none)
``framewatch_last_tilt_timestamp_seconds``            when the last tilt was appended (Unix time)
``framewatch_tilts_flagged_total``                    tilts flagged by a threshold or re-acquired
``framewatch_output_free_bytes``                      free space of the output file system
``framewatch_intake_paused``                          1 while below the disk floor (no new work)
``framewatch_kernel_warmup_seconds``                  the numba warm-up at start
``framewatch_worker_movies_done_total{worker}``       movies corrected by one worker (``local:PID`` or its
                                                      Dask address; the latest 200 workers)
``framewatch_worker_correction_seconds_total{worker}``  time that worker spent on them
====================================================  =============================================

Without prometheus-client the daemon still runs; only asking for the endpoint is refused, with a
message saying how to install it.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from framewatch.core.errors import SettingsError
from framewatch.daemon.config.addresses import parse_address  # noqa: F401 - the metrics endpoint binds with it

__all__ = ["Metrics", "NullMetrics", "create_metrics", "parse_address"]

MAX_SERIES_LABELS = 50
MAX_WORKER_LABELS = 200  # a batch-system cluster's workers come and go (a new address per job)
CORRECTION_BUCKETS_S = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300)
LAG_BUCKETS_S = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800)


def _import_prometheus():
    try:
        import prometheus_client
    except ImportError:
        raise SettingsError(
            "the metrics endpoint needs the Python package prometheus-client, which is not installed",
            fix="install it (pip install prometheus-client) or remove [metrics] address from the configuration",
        ) from None
    return prometheus_client


class NullMetrics:
    """The same interface doing nothing (no endpoint configured)."""

    address: tuple[str, int] | None = None

    def __getattr__(self, name):
        return lambda *a, **k: None


class Metrics:
    """The metrics of one daemon, in a registry of their own; :meth:`serve` starts the endpoint."""

    def __init__(self):
        pc = _import_prometheus()
        self._pc = pc
        self.registry = reg = pc.CollectorRegistry(auto_describe=True)
        C, G, H = pc.Counter, pc.Gauge, pc.Histogram
        self.seen = C("framewatch_movies_seen", "Movies found (new files or new versions of a file).", registry=reg)
        self.done = C("framewatch_movies_done", "Movies corrected and appended to their series.", registry=reg)
        self.failed = C("framewatch_movies_failed", "Movies recorded failed.", ["stage"], registry=reg)
        self.queue_depth = G("framewatch_queue_depth", "Complete movies waiting for a worker.", registry=reg)
        self.processing = G("framewatch_movies_processing", "Movies being corrected now.", registry=reg)
        self.oldest_age = G("framewatch_oldest_waiting_movie_age_seconds",
                            "How long the oldest complete movie not yet appended has waited (0 when none).", registry=reg)
        self.lag = H("framewatch_processing_lag_seconds", "From a movie found complete to its section appended.",
                     buckets=LAG_BUCKETS_S, registry=reg)
        self.correction = H("framewatch_correction_seconds", "Time a worker spent on one movie (read and correct).",
                            buckets=CORRECTION_BUCKETS_S, registry=reg)
        self.series_tilts = G("framewatch_series_tilts_done", "Sections in the stacks of a tilt series.", ["series"],
                              registry=reg)
        self.last_total = G("framewatch_last_tilt_total_motion_angstrom", "Total motion of the last tilt appended.", registry=reg)
        self.last_early = G("framewatch_last_tilt_early_motion_angstrom", "Early motion of the last tilt appended.", registry=reg)
        self.last_frc = G("framewatch_last_tilt_frc_0_143_angstrom",
                          "Even/odd FRC 0.143 crossing of the last tilt (NaN when it has none).", registry=reg)
        self.last_time = G("framewatch_last_tilt_timestamp_seconds", "When the last tilt was appended (Unix time).", registry=reg)
        self.flagged = C("framewatch_tilts_flagged", "Tilts flagged by a threshold or as re-acquired.", registry=reg)
        self.free_bytes = G("framewatch_output_free_bytes", "Free bytes of the output file system.", registry=reg)
        self.paused = G("framewatch_intake_paused", "1 while no new work is taken (output disk below the floor).", registry=reg)
        self.warmup = G("framewatch_kernel_warmup_seconds", "Time to compile or load the numba kernels at start.", registry=reg)
        self.worker_done = C("framewatch_worker_movies_done", "Movies corrected by one worker (local:PID or its Dask address).",
                             ["worker"], registry=reg)
        self.worker_seconds = C("framewatch_worker_correction_seconds", "Time one worker spent correcting movies.", ["worker"],
                                registry=reg)
        self._worker_order: OrderedDict[str, None] = OrderedDict()
        for g in (self.last_total, self.last_early, self.last_frc):
            g.set(math.nan)
        self._series_order: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self.address: tuple[str, int] | None = None

    # --- serving --------------------------------------------------------------------------------
    def serve(self, address: str) -> tuple[str, int]:
        """Start the HTTP endpoint at ``address`` (see :func:`parse_address`); returns the bound
        (host, port) (port 0 picks a free one)."""
        host, port = parse_address(address)
        try:
            self._server, self._thread = self._pc.start_http_server(port, addr=host, registry=self.registry)
        except OSError as err:
            raise SettingsError(f"[metrics] address {address!r}: cannot listen: {err.strerror or err}",
                                fix="choose a free port, or stop what uses it") from None
        self.address = (host, self._server.server_address[1])
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def render(self) -> bytes:
        """The exposition text (what ``/metrics`` serves)."""
        return self._pc.generate_latest(self.registry)

    # --- what the daemon reports --------------------------------------------------------------------
    def movie_seen(self, n: int = 1) -> None:
        self.seen.inc(n)

    def set_queue(self, *, queued: int, processing: int, oldest_wait_s: float | None) -> None:
        self.queue_depth.set(queued)
        self.processing.set(processing)
        self.oldest_age.set(0.0 if oldest_wait_s is None else max(0.0, oldest_wait_s))

    def set_free_bytes(self, n: int) -> None:
        self.free_bytes.set(n)

    def set_paused(self, paused: bool) -> None:
        self.paused.set(1 if paused else 0)

    def set_series_tilts(self, series: str, n: int) -> None:
        with self._lock:
            self._series_order.pop(series, None)
            self._series_order[series] = None
            self.series_tilts.labels(series=series).set(n)
            while len(self._series_order) > MAX_SERIES_LABELS:  # bounded label cardinality
                old, _ = self._series_order.popitem(last=False)
                try:
                    self.series_tilts.remove(old)
                except KeyError:
                    pass

    def _count_worker(self, worker: str, correct_s) -> None:
        with self._lock:
            self._worker_order.pop(worker, None)
            self._worker_order[worker] = None
            self.worker_done.labels(worker=worker).inc()
            if correct_s is not None:
                self.worker_seconds.labels(worker=worker).inc(float(correct_s))
            while len(self._worker_order) > MAX_WORKER_LABELS:  # bounded label cardinality
                old, _ = self._worker_order.popitem(last=False)
                for m in (self.worker_done, self.worker_seconds):
                    try:
                        m.remove(old)
                    except KeyError:
                        pass

    def observe_event(self, name: str, fields: dict) -> None:
        """Update from one drift-log event (other events are ignored)."""
        if name == "tilt_corrected":
            self.done.inc()
            if not fields.get("replayed"):
                if fields.get("correct_s") is not None:
                    self.correction.observe(float(fields["correct_s"]))
                if fields.get("latency_s") is not None:
                    self.lag.observe(float(fields["latency_s"]))
            if fields.get("series") is not None and fields.get("z") is not None:
                self.set_series_tilts(str(fields["series"]), int(fields["z"]) + 1)
            if not fields.get("replayed") and fields.get("worker"):
                self._count_worker(str(fields["worker"]), fields.get("correct_s"))
            self.last_total.set(_num(fields.get("total_motion_a")))
            self.last_early.set(_num(fields.get("early_motion_a")))
            self.last_frc.set(_num(fields.get("frc_0_143_a")))
            self.last_time.set(time.time())
        elif name == "tilt_flagged":
            self.flagged.inc()
        elif name == "movie_failed":
            self.failed.labels(stage=str(fields.get("stage") or "unknown")).inc()
        elif name == "daemon_ready":
            if fields.get("warmup_s") is not None:
                self.warmup.set(float(fields["warmup_s"]))


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def create_metrics(address: str | None):
    """A serving :class:`Metrics` for a non-empty ``address``, else a :class:`NullMetrics`."""
    if not address:
        return NullMetrics()
    m = Metrics()
    m.serve(address)
    return m
