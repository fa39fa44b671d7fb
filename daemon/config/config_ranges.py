"""The plausible range of every number in the configuration, checked at start-up, on SIGHUP and by
``framewatch check-config``: a value outside it stops with one line naming the key, the value and
the allowed range (``[processing] voltage_kv = 1e+300 is out of range: allowed 60 to 400 kV``).

TOML itself already rules out NaN and infinity for these keys (config.py asks for finite numbers);
the ranges below catch what is finite but cannot be meant: a voltage of 1e300 kV, 100 000 x 100 000
patches, 100 000 worker processes, a pixel of 1e-300 Å. They are deliberately wide: a value a
facility could really use is inside them. The table is also the documentation (README, "Security
and limits").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framewatch.core.errors import SettingsError

__all__ = ["RANGES", "Range", "check_range", "check_value_in_range"]

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (``lo < value`` when ``lo_open``), in ``unit``."""

    lo: float
    hi: float
    unit: str
    lo_open: bool = False

    def allows(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        return above and value <= self.hi

    def text(self) -> str:
        lo = f"above {self.lo:g}" if self.lo_open else f"{self.lo:g}"
        return f"{lo} to {self.hi:g} {self.unit}".rstrip()


RANGES: dict[str, Range] = {
    # [watch]
    "watch.scan_period_s": Range(0, HOUR, "seconds", lo_open=True),
    "watch.settle_s": Range(0, HOUR, "seconds"),
    "watch.tiff_stable_s": Range(0, HOUR, "seconds"),
    "watch.mdoc_wait_s": Range(0, HOUR, "seconds"),
    "watch.retry_backoff_s": Range(0, HOUR, "seconds"),
    "watch.max_attempts": Range(1, 10_000, "attempts"),
    "watch.max_interruptions": Range(1, 10_000, "interruptions"),
    # [series]
    "series.idle_s": Range(0, 7 * DAY, "seconds", lo_open=True),
    "series.mdoc_quiet_s": Range(0, DAY, "seconds"),
    "series.expected_tilts": Range(0, 1000, "tilts"),
    "series.angle_tolerance_deg": Range(0, 10, "degrees"),
    # [scheduler]
    "scheduler.workers": Range(1, 64, "worker processes"),
    "scheduler.queue_size": Range(1, 100_000, "movies"),
    "scheduler.newest_first_backlog": Range(0, 100_000, "movies"),
    "scheduler.backlog_log_s": Range(0, DAY, "seconds", lo_open=True),
    # [thresholds] (0 = not checked)
    "thresholds.total_motion_a": Range(0, 10_000, "Å"),
    "thresholds.max_frame_shift_a": Range(0, 10_000, "Å"),
    "thresholds.early_motion_a": Range(0, 10_000, "Å"),
    "thresholds.late_motion_a": Range(0, 10_000, "Å"),
    "thresholds.frc_0_143_a": Range(0, 1000, "Å"),
    "thresholds.patch_residual_px": Range(0, 10_000, "pixels"),
    # [service]
    "service.shutdown_timeout_s": Range(0, DAY, "seconds"),
    "service.stuck_movie_s": Range(0, 7 * DAY, "seconds"),
    # [disk]
    "disk.warn_below_gb": Range(0, 1e6, "GB"),
    "disk.floor_gb": Range(0, 1e6, "GB"),
    "disk.resume_margin_gb": Range(0, 1e6, "GB"),
    "disk.check_period_s": Range(0, HOUR, "seconds", lo_open=True),
    # [plots]
    "plots.latest_trajectories": Range(0, 100, "trajectories"),
    # [processing]: the ranges are in its table (processing_table.py, PROCESSING_OPTIONS' toml_range)
}


def check_range(table: str, key: str, value, src: str | Path | None = None) -> None:
    """Raise :class:`SettingsError` when ``[table] key = value`` is outside its range (a key with
    no range, or a non-numeric value, passes: types are checked elsewhere)."""
    rng = RANGES.get(f"{table}.{key}")
    if rng is not None:
        check_value_in_range(rng, table, key, value, src)


def check_value_in_range(rng: Range, table: str, key: str, value, src: str | Path | None = None) -> None:
    """Raise :class:`SettingsError` when the number ``value`` (or a number of the array ``value``)
    of ``[table] key`` is outside ``rng``; non-numbers pass (types are checked elsewhere)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not rng.allows(v):
            shown = f"{value!r}" if isinstance(value, (list, tuple)) else f"{v:g}"
            raise SettingsError(f"[{table}] {key} = {shown} is out of range: allowed {rng.text()}", path=src,
                                fix="check the value and its unit (every key is documented in config.example.toml)")
