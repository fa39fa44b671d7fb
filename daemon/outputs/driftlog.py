"""The drift log ``OUT/framewatch.jsonl``: one JSON object per line, written by structlog and
flushed after every line, so ``tail -f`` and ``framewatch tail`` see each tilt at once.

Every line has ``timestamp`` (ISO 8601, UTC), ``level`` and ``event``; the other keys of each
event are listed in :data:`EVENT_KEYS` (required keys; some events add optional ones). Keys carry
their unit: ``_a`` Angstrom, ``_px`` pixels, ``_deg`` degrees, ``_s`` seconds, ``_e_per_a2``
electrons per square Angstrom, ``_kv`` kilovolts.

Every line also goes to the operational log on stdout (journald), which is JSON when stdout is
not a terminal and human-readable when it is.

The file only ever holds whole lines. A line that cannot be written (the output disk is full, an
I/O error) is cut back if it was written in part, kept -- with every later line, in order -- in
the spill file ``STATE/framewatch.jsonl.pending`` and written to the log as soon as a write
succeeds again, at the latest by the next start. Logging never raises.
"""
from __future__ import annotations

import collections
import json
import math
import os
import sys
import threading
from pathlib import Path

import structlog

from framewatch.daemon.state.name_escape import shown
from framewatch.daemon.state.records import STAT_KEYS, TILT_PLACE_KEYS

__all__ = ["EVENT_KEYS", "STAT_KEYS", "TILT_KEYS", "DriftLog", "missing_keys", "operational_logger"]

TILT_KEYS = (
    "series",
    "output_dir",
    *TILT_PLACE_KEYS,
    "pixel_size_a",
    "voltage_kv",
    "dose_e_per_a2",
    "dose_per_frame_e_per_a2",
    "prior_dose_e_per_a2",
    "prior_dose_rule",
    "sources",
    *STAT_KEYS,
    "max_frame_shift_a",
    "flags",
    "reacquired",
    "complete_signal",
    "wait_s",
    "correct_s",
    "append_s",
    "latency_s",
    "worker",
)

EVENT_KEYS: dict[str, tuple[str, ...]] = {
    "daemon_started": ("version", "pid", "watch_dir", "out_dir", "state_dir", "backend", "scan_period_s", "workers",
                       "settings_hash", "output_dir"),
    "daemon_ready": ("warmup_s", "known_movies", "resumed_movies", "backend", "scan_period_s"),
    "daemon_stopping": ("reason", "in_flight"),
    "daemon_stopped": ("reason", "uptime_s"),
    "output_set": ("settings_hash", "output_dir", "new"),
    "stack_repaired": ("series", "stack", "sections", "action"),
    "movie_interrupted": ("movie", "interruptions", "redo"),
    "series_started": ("series", "output_dir", "grouping", "mdoc"),
    "tilt_corrected": TILT_KEYS,
    "tilt_flagged": ("series", "output_dir", "z", "movie", "tilt_angle_deg", "reasons"),
    "movie_retry": ("movie", "attempt", "retry_in_s", "reason"),
    "movie_failed": ("movie", "series", "stage", "reason", "attempts"),
    "gain_orientation_chosen": ("orientation", "margin", "best_z", "n_movies"),
    "gain_orientation_refused": ("reason", "n_movies", "best_z", "margin"),
    "gain_orientation_skipped": ("movie", "reason"),
    "movie_changed_after_done": ("movie", "series", "z"),
    "mdoc_warning": ("mdoc", "warnings"),
    "series_completed": ("series", "output_dir", "reason", "n_tilts", "n_sorted", "sorted_stack", "duration_s"),
    "series_reopened": ("series", "output_dir", "n_tilts"),
    "backlog": ("queued", "processing", "watching", "oldest_wait_s"),
    "inotify_unavailable": ("reason",),
    "warmup_failed": ("reason",),
    "journal_conflict": ("movie", "reason"),
    "output_write_failed": ("series", "what", "reason"),
    # the service (service.py, pipeline.py): warm-up, notifications, signals, disk, health
    "numba_cache": ("directory", "source", "writable", "message"),
    "kernels_warmed": ("warmup_s", "steps_s", "workers"),
    "movie_abandoned": ("movie", "series", "in_worker_s", "reason"),
    "stream_started": ("movie", "frames_on_disk"),  # a worker follows a movie while it is written
    "stream_dropped": ("movie", "reason"),  # ... and stopped before it was complete (nothing appended)
    "config_reloaded": ("config", "changed", "needs_restart"),
    "config_reload_failed": ("config", "reason"),
    "disk_low": ("path", "free_bytes", "warn_below_bytes", "floor_bytes"),
    "disk_floor": ("path", "free_bytes", "warn_below_bytes", "floor_bytes"),
    "disk_resumed": ("path", "free_bytes", "warn_below_bytes", "floor_bytes"),
    "disk_ok": ("path", "free_bytes", "warn_below_bytes", "floor_bytes"),
    "disk_check_failed": ("path", "reason"),
    "daemon_unhealthy": ("reason",),
    "daemon_healthy": ("previous",),
    "notify_failed": ("reason",),
    "metrics_serving": ("address", "port"),
    "plot_failed": ("series_dir", "reason"),
    # the watch directory (file_isolation.py, watcher.py)
    "file_rejected": ("path", "stage", "reason"),
    "file_ignored": ("path", "rule"),
    # the Dask backend (dask_pool.py) and `framewatch batch` (batch.py)
    "dask_connected": ("scheduler", "address", "workers", "ready_workers", "reconnected"),
    "dask_unreachable": ("scheduler", "reason", "retry_in_s"),
    "dask_disconnected": ("scheduler",),
    "dask_worker_ready": ("worker", "worker_name", "nthreads", "warmup_s", "versions"),
    "dask_worker_refused": ("worker", "worker_name", "reason", "worker_versions"),
    "dask_worker_left": ("worker", "worker_name"),
    "dask_task_resubmitted": ("movie", "reason"),
    "dask_stream_signal_failed": ("variable", "reason"),
    "batch_finished": ("movies", "done", "already_done", "failed", "failed_movies", "duration_s"),
    "tilt_image_removed": ("path", "reason"),
    "tilt_images_rewritten": ("movie", "z", "paths", "reason"),
}


def _clean(value):
    """JSON-safe values: numpy scalars to Python, NaN/inf to None, paths to strings; a name with
    bytes that are not UTF-8 shown as ``\\xNN`` (name_escape.py)."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return shown(str(value))
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean_processor(logger, method_name, event_dict):
    return {k: _clean(v) for k, v in event_dict.items()}


def _renderer(json: bool):
    if json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def operational_logger(stream=None, *, json: bool | None = None):
    """A structlog logger to stdout: JSON unless the stream is a terminal."""
    stream = stream or sys.stdout
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    return structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _clean_processor,
            _renderer(json),
        ],
    )


class _LineSink:
    """The file structlog's WriteLogger writes to: whole lines, in order, or none (module docstring)."""

    MAX_PENDING = 100_000  # lines held in memory when the spill file cannot be written either

    def __init__(self, path: Path, spill: Path | None):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        self.spill = spill
        self.pending: collections.deque[bytes] = collections.deque()
        self.spilled = spill is not None  # every pending line is also in the spill file
        self.dropped = 0
        self.error: str | None = None
        if spill is not None:
            try:
                data = spill.read_bytes()
            except OSError:
                data = b""
            for line in data.split(b"\n"):
                try:
                    json.loads(line)
                except ValueError:  # empty, or cut short when a run was killed while writing it
                    continue
                self.pending.append(line + b"\n")

    def write(self, text: str) -> None:
        line = text.encode("utf-8")
        if self.pending or not self._write(line):  # earlier lines wait: this one goes behind them
            self._keep(line)

    def flush(self) -> None:
        """Write the waiting lines (oldest first) while writes succeed."""
        while self.pending:
            if not self._write(self.pending[0]):
                return
            self.pending.popleft()
            if not self.pending:
                self._clear_spill()

    def _write(self, line: bytes) -> bool:
        try:
            size = os.fstat(self.fd).st_size
            n = os.write(self.fd, line)
        except OSError as err:
            self.error = f"{type(err).__name__}: {err}"
            return False
        if n == len(line):
            self.error = None
            return True
        try:  # a part of the line went in: take it out again
            os.ftruncate(self.fd, size)
        except OSError:
            pass
        self.error = f"short write ({n} of {len(line)} bytes)"
        return False

    def _keep(self, line: bytes) -> None:
        self.pending.append(line)
        if len(self.pending) > self.MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
            self.spilled = False
        if self.spill is not None and self.spilled:
            try:
                fd = os.open(self.spill, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    if os.write(fd, line) != len(line):
                        raise OSError("short write")
                finally:
                    os.close(fd)
            except OSError:
                self.spilled = False  # from now on only in memory (until the log takes them all)

    def _clear_spill(self) -> None:
        if self.spill is None:
            return
        try:
            os.unlink(self.spill)
        except FileNotFoundError:
            pass
        except OSError:
            return
        self.spilled = True

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


class DriftLog:
    """Appends events to ``path`` (JSON lines, flushed per line) and echoes them to ``echo``.

    ``spill``: where lines wait that cannot be written to ``path`` now (module docstring); without
    it they wait in memory only."""

    def __init__(self, path: str | Path, *, echo=None, spill: str | Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _LineSink(self.path, None if spill is None else Path(spill))
        self._lock = threading.Lock()
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
                _clean_processor,
                structlog.processors.JSONRenderer(),
            ],
        )
        self._echo = echo
        self.listeners: list = []  # callables (event name, fields), e.g. the metrics
        with self._lock:
            self._file.flush()  # lines a previous run could not write

    @property
    def pending(self) -> int:
        """Lines waiting to be written (the output disk was full)."""
        return len(self._file.pending)

    @property
    def write_error(self) -> str | None:
        return self._file.error

    def flush(self) -> int:
        """Try again to write the waiting lines; returns how many still wait."""
        if self._file.pending:
            with self._lock:
                self._file.flush()
        return len(self._file.pending)

    def recent_lines(self, tail_bytes: int = 1 << 20) -> list[dict]:
        """The events of the log's last ``tail_bytes`` and of the lines still waiting to be written."""
        out = []
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - tail_bytes))
                data = f.read()
        except OSError:
            data = b""
        lines = data.split(b"\n")
        if len(data) >= tail_bytes:
            lines = lines[1:]  # the first may be cut
        for line in [*lines, *self._file.pending]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def event(self, name: str, *, level: str = "info", echo: bool = True, **kw) -> bool:
        """Log one event; True when its line is in the log (or, with a spill file, kept there
        to be written as soon as it can be)."""
        with self._lock:
            getattr(self._log, level)(name, **kw)
            kept = not self._file.pending or self._file.spilled
        if echo and self._echo is not None:
            short = {k: v for k, v in kw.items() if k not in ("sources", "shifts_px")}
            getattr(self._echo, level)(name, **short)
        for listener in self.listeners:
            listener(name, kw)
        return kept

    def close(self) -> None:
        with self._lock:
            self._file.close()


def missing_keys(line: dict) -> list[str]:
    """Required keys of the line's event that the line lacks (for tests and ``tail``)."""
    keys = EVENT_KEYS.get(line.get("event"), ())
    return [k for k in ("timestamp", "level", "event", *keys) if k not in line]
