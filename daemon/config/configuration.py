"""Configuration of ``framewatch watch``: a TOML file plus command-line overrides.

Every table and key, with its unit and default, is documented in ``config.example.toml`` at the
top of the repository (a test keeps the two in step). The file is read once with ``tomllib`` into
frozen dataclasses and validated before anything starts; each problem stops start-up with one
message naming the key:

- an unknown table or key (with the closest valid name, for a typo);
- a value of the wrong type (``settle_s = "ten"``; an integer key given ``2.5``; a boolean given
  ``"yes"``);
- a value out of range (``scan_period_s = 0``);
- a missing required value (``[watch] dir`` and ``[output] dir``, unless given on the command line);
- a path that does not exist (``[watch] dir``, ``[processing] gain``, ``[processing] defects``).

``framewatch check-config FILE`` runs the same validation without starting. Command-line options
override the file (:func:`with_overrides`). On SIGHUP the daemon reads the file again; see
:data:`RELOADABLE` for what takes effect without a restart.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from framewatch.core.decode_limits import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_MOVIE_BYTES_DECODED,
)
from framewatch.core.errors import SettingsError
from framewatch.core.movie_io.registry import watch_patterns
from framewatch.daemon.config.config_checks import validate
from framewatch.daemon.config.dask_options import DaskOptions, dask_options_from_table
from framewatch.daemon.config.processing_checks import check_processing_table
from framewatch.daemon.config.processing_table import PROCESSING_KEYS
from framewatch.daemon.config.toml_values import coerce_table, suggest

DEFAULT_PATTERNS = watch_patterns()  # every movie suffix of core's format registry


@dataclass(frozen=True)
class WatchOptions:
    dir: str = ""
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
    mdoc_max_mb: float = 16.0  # a larger mdoc is not read (one mdoc_warning): 10^6 bytes
    mdoc_warning_lines: int = 10  # sample lines in one mdoc_warning (the count is always given)


@dataclass(frozen=True)
class OutputOptions:
    dir: str = ""
    state_dir: str = ""
    # the per-tilt images and RELION 5 tables (relion_tables.py); RELION's defaults
    per_tilt_images: bool = True
    relion_project_dir: str = ""  # "" = OUT itself
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    tomo_hand: int = -1
    tilt_axis_deg: float | None = None  # None = not given: the mdoc title's "Tilt axis angle" only
    optics_group: str = ""  # "" = the series name


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
    backend: str = "local"  # "local" worker processes or "dask" (the [dask] table)
    streaming: bool = True  # a free worker (local or Dask) follows a movie while it is written


@dataclass(frozen=True)
class Thresholds:
    total_motion_a: float = 15.0
    max_frame_shift_a: float = 10.0
    early_motion_a: float = 0.0
    late_motion_a: float = 0.0
    frc_0_143_a: float = 0.0
    patch_residual_px: float = 0.0


@dataclass(frozen=True)
class ServiceOptions:
    warmup: bool = True
    warmup_full_size: bool = True  # with warmup: one synthetic movie of the last movie's size before READY
    shutdown_timeout_s: float = 60.0
    stuck_movie_s: float = 900.0


@dataclass(frozen=True)
class DiskOptions:
    warn_below_gb: float = 50.0
    floor_gb: float = 5.0
    resume_margin_gb: float = 1.0
    check_period_s: float = 10.0


@dataclass(frozen=True)
class MetricsOptions:
    address: str = ""


@dataclass(frozen=True)
class PlotOptions:
    enabled: bool = True
    latest_trajectories: int = 5


@dataclass(frozen=True)
class LogOptions:
    format: str = "auto"


@dataclass(frozen=True)
class LimitsOptions:
    """Decode limits (framewatch.core.decode_limits; read into the settings by config/limits_options.py)."""
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_movie_bytes_decoded: int = DEFAULT_MAX_MOVIE_BYTES_DECODED
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO


@dataclass(frozen=True)
class DaemonConfig:
    watch: WatchOptions = field(default_factory=WatchOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    series: SeriesOptions = field(default_factory=SeriesOptions)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    thresholds: Thresholds = field(default_factory=Thresholds)
    service: ServiceOptions = field(default_factory=ServiceOptions)
    disk: DiskOptions = field(default_factory=DiskOptions)
    metrics: MetricsOptions = field(default_factory=MetricsOptions)
    plots: PlotOptions = field(default_factory=PlotOptions)
    log: LogOptions = field(default_factory=LogOptions)
    limits: LimitsOptions = field(default_factory=LimitsOptions)
    dask: DaskOptions = field(default_factory=DaskOptions)  # [dask], parsed by dask_options.py
    raw: dict = field(default_factory=dict)  # the whole TOML document (for [processing])
    source: str | None = None  # the file it came from


_TABLES = {
    "watch": WatchOptions,
    "output": OutputOptions,
    "series": SeriesOptions,
    "scheduler": SchedulerOptions,
    "thresholds": Thresholds,
    "service": ServiceOptions,
    "disk": DiskOptions,
    "metrics": MetricsOptions,
    "plots": PlotOptions,
    "log": LogOptions,
    "limits": LimitsOptions,
}

# [processing] is read by processing_options.py (shared with `framewatch correct`); its keys, types
# and ranges (processing_table.py) are checked here too, so a typo there is found by check-config
# and at start-up alike
__all__ = ["PROCESSING_KEYS", "RELOADABLE", "DaemonConfig", "config_from_dict", "load_config", "reload_merge",
           "require_dirs", "validate", "with_overrides"]

# what a SIGHUP changes without a restart ("table.key"; "table.*" = every key of the table)
RELOADABLE = frozenset({
    "watch.scan_period_s", "watch.settle_s", "watch.tiff_stable_s", "watch.mdoc_wait_s", "watch.max_attempts",
    "watch.retry_backoff_s", "watch.max_interruptions",
    "series.idle_s", "series.mdoc_quiet_s", "series.expected_tilts", "series.angle_tolerance_deg",
    "scheduler.newest_first_backlog", "scheduler.backlog_log_s",
    "thresholds.*", "service.shutdown_timeout_s", "service.stuck_movie_s", "disk.*", "plots.*",
})


def config_from_dict(doc: dict, *, source: str | Path | None = None) -> DaemonConfig:
    src = None if source is None else Path(source)
    for name in doc:
        if name not in _TABLES and name not in ("processing", "dask"):
            raise SettingsError(f"unknown table [{name}]", path=src, fix=suggest(name, [*_TABLES, "processing", "dask"]))
    check_processing_table(doc, src)
    parts = {name: coerce_table(cls, doc.get(name, {}), name, src) for name, cls in _TABLES.items()}
    cfg = DaemonConfig(**parts, dask=dask_options_from_table(doc.get("dask", {}), source=src), raw=doc,
                       source=None if src is None else str(src))
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
    except IsADirectoryError:
        raise SettingsError("is a directory, not a configuration file", path=p) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"not valid TOML: {err}", path=p) from None
    except UnicodeDecodeError as err:  # TOML is UTF-8 (e.g. a Latin-1 "Å" in a comment)
        line = err.object[: err.start].count(b"\n") + 1
        raise SettingsError(f"not UTF-8 text: byte 0x{err.object[err.start]:02x} on line {line} cannot be decoded", path=p,
                            fix="save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    except OSError as err:
        raise SettingsError(f"cannot read the configuration: {err.strerror}", path=p) from None
    return config_from_dict(doc, source=p)


def with_overrides(cfg: DaemonConfig, **over) -> DaemonConfig:
    """Apply command-line overrides given as ``table__key=value`` (None = not given)."""
    tables = {name: getattr(cfg, name) for name in _TABLES}
    tables["dask"] = cfg.dask
    for k, v in over.items():
        if v is None:
            continue
        table, key = k.split("__", 1)
        if table == "dask" and key == "address":  # --dask-address: a running scheduler, instead of a cluster to start
            tables["dask"] = replace(tables["dask"], address=v, cluster="")
            continue
        tables[table] = replace(tables[table], **{key: v})
    out = DaemonConfig(**tables, raw=cfg.raw, source=cfg.source)
    validate(out)
    return out


def require_dirs(cfg: DaemonConfig) -> None:
    """The watch and output directories must be known (from the file or the command line)."""
    src = None if cfg.source is None else Path(cfg.source)
    if not cfg.watch.dir:
        raise SettingsError("missing required value [watch] dir (the directory the microscope writes movies to)", path=src,
                            fix="set it in the configuration or give WATCH_DIR on the command line")
    if not cfg.output.dir:
        raise SettingsError("missing required value [output] dir (where the stacks and the drift log go)", path=src,
                            fix="set it in the configuration or give --out on the command line")


def reload_merge(old: DaemonConfig, new: DaemonConfig) -> tuple[DaemonConfig, list[str], list[str]]:
    """The configuration to run on after a SIGHUP: ``new``'s reloadable values, ``old``'s others.

    Returns (config, changed keys applied, changed keys that need a restart and were not applied).
    ``[processing]`` changes need a restart (they change the settings of the outputs)."""
    applied, restart = [], []
    tables = {}
    for name in _TABLES:
        o, n = getattr(old, name), getattr(new, name)
        keep = {}
        for f in fields(o):
            ov, nv = getattr(o, f.name), getattr(n, f.name)
            if ov == nv:
                continue
            key = f"{name}.{f.name}"
            if key in RELOADABLE or f"{name}.*" in RELOADABLE:
                applied.append(key)
            else:
                restart.append(key)
                keep[f.name] = ov
        tables[name] = replace(n, **keep)
    raw = dict(new.raw)
    if old.raw.get("processing", {}) != new.raw.get("processing", {}):
        restart.append("processing")
        raw["processing"] = old.raw.get("processing", {})
    if old.dask != new.dask:
        restart.append("dask")
    return DaemonConfig(**tables, dask=old.dask, raw=raw, source=new.source), applied, restart
