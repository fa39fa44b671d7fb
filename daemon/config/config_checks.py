"""The checks of a whole configuration after its tables are read (ranges, paths, values that depend
on each other): :func:`validate`, one named step per table. Each problem is one SettingsError
naming the key, at start-up, on SIGHUP and in ``check-config`` alike."""
from __future__ import annotations

import dataclasses
from dataclasses import fields
from pathlib import Path

from framewatch.core.decode_limits import DecodeLimits
from framewatch.core.errors import SettingsError
from framewatch.daemon.config.addresses import parse_address
from framewatch.daemon.config.config_ranges import check_range
from framewatch.daemon.config.dask_options import BACKENDS

__all__ = ["validate"]


class _Need:
    """``need(ok, key, what, fix)``: a SettingsError ``"{key} {what}"`` naming the file unless ``ok``."""

    def __init__(self, src: Path | None):
        self.src = src

    def __call__(self, ok: bool, key: str, what: str, fix: str | None = None) -> None:
        if not ok:
            raise SettingsError(f"{key} {what}", path=self.src, fix=fix)


def validate(cfg) -> None:
    """Ranges and paths of a :class:`~framewatch.daemon.config.configuration.DaemonConfig`; each
    error names its key."""
    src = None if cfg.source is None else Path(cfg.source)
    need = _Need(src)
    _check_watch(cfg.watch, need)
    _check_scheduler(cfg, need)
    _check_series_and_thresholds(cfg, need)
    _check_service_disk_plots(cfg, need)
    _check_limits(cfg.limits, src)
    _check_ranges(cfg, src)
    _check_output(cfg.output, need)
    need(cfg.log.format in ("auto", "json", "console"), "[log] format",
         f"= {cfg.log.format!r}: expected \"auto\", \"json\" or \"console\"")
    if cfg.metrics.address:
        try:
            parse_address(cfg.metrics.address)
        except SettingsError as err:
            raise SettingsError(err.what, path=src, fix=err.fix) from None


def _check_watch(w, need: _Need) -> None:
    need(w.scan_period_s > 0, "[watch] scan_period_s", f"= {w.scan_period_s:g} must be > 0 (seconds)")
    for k in ("settle_s", "tiff_stable_s", "mdoc_wait_s", "retry_backoff_s"):
        need(getattr(w, k) >= 0, f"[watch] {k}", f"= {getattr(w, k):g} must be >= 0 (seconds)")
    need(w.max_attempts >= 1, "[watch] max_attempts", "must be >= 1")
    need(w.max_interruptions >= 1, "[watch] max_interruptions", "must be >= 1")
    need(0 < w.mdoc_max_mb <= 4096, "[watch] mdoc_max_mb", f"= {w.mdoc_max_mb:g} must be > 0 and <= 4096 (10^6 bytes)",
         "a 1000-tilt SerialEM mdoc is about 1 MB; 16 is the default")
    need(0 <= w.mdoc_warning_lines <= 1000, "[watch] mdoc_warning_lines", "must be between 0 and 1000")
    need(bool(w.patterns), "[watch] patterns", "is empty", 'e.g. patterns = ["*.tif", "*.mrc", "*.eer"]')
    if w.dir:
        need(Path(w.dir).expanduser().is_dir(), "[watch] dir", f"= {w.dir!r}: no such directory",
             "create it or check the path (or the mount)")


def _check_scheduler(cfg, need: _Need) -> None:
    q = cfg.scheduler
    need(q.workers >= 1, "[scheduler] workers", "must be >= 1")
    need(q.queue_size >= 1, "[scheduler] queue_size", "must be >= 1")
    need(q.newest_first_backlog >= 0, "[scheduler] newest_first_backlog", "must be >= 0 (0 = off)")
    need(q.backlog_log_s > 0, "[scheduler] backlog_log_s", "must be > 0 (seconds)")
    need(q.backend in BACKENDS, "[scheduler] backend", f"= {q.backend!r}: expected \"local\" or \"dask\"")
    need(q.backend != "dask" or bool(cfg.dask.address or cfg.dask.cluster), "[scheduler] backend",
         "= \"dask\" needs a scheduler", "give --dask-address tcp://HOST:8786, or [dask] address, or [dask] cluster")


def _check_series_and_thresholds(cfg, need: _Need) -> None:
    s = cfg.series
    need(s.idle_s > 0, "[series] idle_s", "must be > 0 (seconds)")
    need(s.mdoc_quiet_s >= 0, "[series] mdoc_quiet_s", "must be >= 0 (seconds)")
    need(s.expected_tilts >= 0, "[series] expected_tilts", "must be >= 0 (0 = not used)")
    need(s.angle_tolerance_deg >= 0, "[series] angle_tolerance_deg", "must be >= 0 (degrees)")
    for f in fields(cfg.thresholds):
        need(getattr(cfg.thresholds, f.name) >= 0, f"[thresholds] {f.name}", "must be >= 0 (0 = not checked)")


def _check_service_disk_plots(cfg, need: _Need) -> None:
    sv, d = cfg.service, cfg.disk
    need(sv.shutdown_timeout_s >= 0, "[service] shutdown_timeout_s", "must be >= 0 (seconds)")
    need(sv.stuck_movie_s >= 0, "[service] stuck_movie_s", "must be >= 0 (seconds; 0 = never)")
    for k in ("warn_below_gb", "floor_gb", "resume_margin_gb"):
        need(getattr(d, k) >= 0, f"[disk] {k}", "must be >= 0 (GB)")
    need(d.floor_gb <= d.warn_below_gb,
         "[disk] floor_gb", f"= {d.floor_gb:g} must not be above warn_below_gb = {d.warn_below_gb:g}")
    need(d.check_period_s > 0, "[disk] check_period_s", "must be > 0 (seconds)")
    need(cfg.plots.latest_trajectories >= 0, "[plots] latest_trajectories", "must be >= 0")


def _check_limits(limits, src: Path | None) -> None:
    """The ``[limits]`` table as the engine's DecodeLimits check it, named as configuration keys."""
    try:
        DecodeLimits(**dataclasses.asdict(limits))
    except SettingsError as err:
        raise SettingsError(err.what.replace("decode limit ", "[limits] "), path=src, fix=err.fix) from None


def _check_ranges(cfg, src: Path | None) -> None:
    """The plausible range of every number of every table (config_ranges.py)."""
    for f in fields(cfg):
        part = getattr(cfg, f.name)
        if dataclasses.is_dataclass(part) and f.name != "dask":
            for g in fields(part):
                check_range(f.name, g.name, getattr(part, g.name), src)


def _check_output(o, need: _Need) -> None:
    need(o.spherical_aberration_mm >= 0, "[output] spherical_aberration_mm", f"= {o.spherical_aberration_mm:g} must be >= 0 (mm)")
    need(0 <= o.amplitude_contrast < 1, "[output] amplitude_contrast",
         f"= {o.amplitude_contrast:g} must be >= 0 and < 1 (a fraction)")
    need(o.tomo_hand in (-1, 1), "[output] tomo_hand", f"= {o.tomo_hand} must be -1 or 1 (RELION's rlnTomoHand)")
    need(o.tilt_axis_deg is None or -360 <= o.tilt_axis_deg <= 360, "[output] tilt_axis_deg",
         f"= {o.tilt_axis_deg} must be an angle in degrees (-360 to 360)")
    need(not any(c.isspace() for c in o.optics_group), "[output] optics_group", f"= {o.optics_group!r} must not contain spaces",
         'e.g. optics_group = "opticsGroup1"')
    if o.relion_project_dir:
        need(Path(o.relion_project_dir).expanduser().is_dir(), "[output] relion_project_dir",
             f"= {o.relion_project_dir!r}: no such directory",
             "create the RELION project directory first, or leave the key out (= OUT)")
