"""Configuration of ``framewatch watch``: a TOML file plus command-line overrides.

Tables and keys (all optional; the defaults are below):

.. code-block:: toml

    [processing]            # see processing_options.py; same names as `framewatch correct`
    pixel_size_a = 1.08
    dose_per_tilt_e_per_a2 = 3.0

    [watch]
    patterns = ["*.tif", "*.tiff", "*.mrc", "*.eer"]
    ignore = []             # extra glob patterns to ignore (added to the built-in ones)
    scan_period_s = 3.0     # the periodic scan, always on (network shares raise no events)
    inotify = true          # false: scan only
    settle_s = 10.0         # size, mtime and ctime unchanged this long = complete (last resort)
    tiff_stable_s = 3.0     # TIFF page count and size unchanged this long = complete
    mdoc_wait_s = 10.0      # how long a movie waits for its line in a growing tilt-series mdoc
    max_attempts = 3        # reads/corrections that raise, before the movie is failed
    retry_backoff_s = 2.0   # first retry after this, doubling
    max_interruptions = 2   # daemon deaths while processing one movie, before it is failed

    [series]
    patterns = []           # [{regex = "...", index_base = 0}, ...]; empty = built-in defaults
    idle_s = 300.0          # no new tilt for this long = series complete
    mdoc_quiet_s = 30.0     # every tilt of the mdoc processed and the mdoc unchanged this long
    expected_tilts = 0      # > 0: complete as soon as this many tilts are in
    angle_tolerance_deg = 0.2   # a tilt this close to an earlier angle is a re-acquisition

    [scheduler]
    workers = 1             # worker processes
    queue_size = 64         # movies ready and waiting; more stay watched until there is room
    newest_first_backlog = 0    # > 0: when more than this many wait, take the newest first
    backlog_log_s = 10.0    # how often the backlog is logged while there is one

    [thresholds]            # a tilt beyond any of these is flagged (never dropped)
    total_motion_a = 15.0
    max_frame_shift_a = 10.0
    early_motion_a = 0      # 0 = no check
    late_motion_a = 0
    frc_0_143_a = 0         # flag when the FRC 0.143 crossing is coarser (larger) than this
    patch_residual_px = 0
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from framewatch.core.errors import SettingsError

DEFAULT_PATTERNS = ("*.tif", "*.tiff", "*.mrc", "*.eer")


@dataclass(frozen=True)
class WatchOptions:
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    ignore: tuple[str, ...] = ()
    scan_period_s: float = 3.0
    inotify: bool = True
    settle_s: float = 10.0
    tiff_stable_s: float = 3.0
    mdoc_wait_s: float = 10.0
    max_attempts: int = 3
    retry_backoff_s: float = 2.0
    max_interruptions: int = 2


@dataclass(frozen=True)
class SeriesOptions:
    patterns: tuple = ()
    idle_s: float = 300.0
    mdoc_quiet_s: float = 30.0
    expected_tilts: int = 0
    angle_tolerance_deg: float = 0.2


@dataclass(frozen=True)
class SchedulerOptions:
    workers: int = 1
    queue_size: int = 64
    newest_first_backlog: int = 0
    backlog_log_s: float = 10.0


@dataclass(frozen=True)
class Thresholds:
    total_motion_a: float = 15.0
    max_frame_shift_a: float = 10.0
    early_motion_a: float = 0.0
    late_motion_a: float = 0.0
    frc_0_143_a: float = 0.0
    patch_residual_px: float = 0.0


@dataclass(frozen=True)
class DaemonConfig:
    watch: WatchOptions = field(default_factory=WatchOptions)
    series: SeriesOptions = field(default_factory=SeriesOptions)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    thresholds: Thresholds = field(default_factory=Thresholds)
    raw: dict = field(default_factory=dict)  # the whole TOML document (for [processing])


_TABLES = {"watch": WatchOptions, "series": SeriesOptions, "scheduler": SchedulerOptions, "thresholds": Thresholds}


def _coerce(cls, table: dict, name: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SettingsError(f"unknown key(s) in [{name}]: {', '.join(unknown)}", fix=f"use {', '.join(sorted(known))}")
    values = {}
    defaults = cls()
    for k, v in table.items():
        d = getattr(defaults, k)
        try:
            if isinstance(d, bool):
                if not isinstance(v, bool):
                    raise TypeError
                values[k] = v
            elif isinstance(d, int):
                values[k] = int(v)
            elif isinstance(d, float):
                values[k] = float(v)
            elif isinstance(d, tuple):
                if not isinstance(v, (list, tuple)):
                    raise TypeError
                values[k] = tuple(v)
            else:
                values[k] = v
        except (TypeError, ValueError):
            raise SettingsError(f"[{name}] {k} = {v!r} is not a valid {type(d).__name__}") from None
    return cls(**values)


def config_from_dict(doc: dict) -> DaemonConfig:
    unknown = sorted(set(doc) - set(_TABLES) - {"processing"})
    if unknown:
        raise SettingsError(f"unknown table(s) in the configuration: {', '.join(unknown)}", fix="use [processing], [watch], [series], [scheduler], [thresholds]")
    parts = {name: _coerce(cls, dict(doc.get(name, {})), name) for name, cls in _TABLES.items()}
    cfg = DaemonConfig(**parts, raw=doc)
    validate(cfg)
    return cfg


def load_config(path: str | Path | None) -> DaemonConfig:
    if path is None:
        return DaemonConfig()
    p = Path(path)
    try:
        with open(p, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError("configuration file not found", path=p) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"not valid TOML: {err}", path=p) from None
    return config_from_dict(doc)


def validate(cfg: DaemonConfig) -> None:
    w, s, q = cfg.watch, cfg.series, cfg.scheduler
    if w.scan_period_s <= 0:
        raise SettingsError("[watch] scan_period_s must be > 0")
    if w.settle_s < 0 or w.tiff_stable_s < 0 or w.mdoc_wait_s < 0:
        raise SettingsError("[watch] settle_s, tiff_stable_s and mdoc_wait_s must be >= 0")
    if w.max_attempts < 1 or w.max_interruptions < 1:
        raise SettingsError("[watch] max_attempts and max_interruptions must be >= 1")
    if not w.patterns:
        raise SettingsError("[watch] patterns is empty")
    if q.workers < 1 or q.queue_size < 1:
        raise SettingsError("[scheduler] workers and queue_size must be >= 1")
    if s.idle_s <= 0 or s.mdoc_quiet_s < 0:
        raise SettingsError("[series] idle_s must be > 0 and mdoc_quiet_s >= 0")


def with_overrides(cfg: DaemonConfig, **over) -> DaemonConfig:
    """Apply command-line overrides given as ``table__key=value`` (None = not given)."""
    tables = {name: getattr(cfg, name) for name in _TABLES}
    for k, v in over.items():
        if v is None:
            continue
        table, key = k.split("__", 1)
        tables[table] = replace(tables[table], **{key: v})
    out = DaemonConfig(**tables, raw=cfg.raw)
    validate(out)
    return out
