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

import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from framewatch.core.decode_limits import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_MOVIE_BYTES_DECODED,
    DecodeLimits,
)
from framewatch.core.errors import SettingsError
from framewatch.core.movie_io.registry import watch_patterns
from framewatch.daemon.config.config_ranges import check_range
from framewatch.daemon.config.dask_options import BACKENDS, DaskOptions, dask_options_from_table

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

# [processing] is read by processing_options.py (shared with `framewatch correct`); its keys and
# types are checked here too, so a typo there is found by check-config and at start-up alike
PROCESSING_KEYS: dict[str, tuple[type, ...]] = {
    "pixel_size_a": (float,),
    "dose_per_frame_e_per_a2": (float,),
    "dose_per_tilt_e_per_a2": (float,),
    "prior_dose_e_per_a2": (float,),
    "voltage_kv": (float,),
    "gain": (str,),
    "gain_rot": (int,),
    "gain_flip": (str,),
    "gain_invert": (bool,),
    "defects": (str,),
    "patches": (list,),
    "local_force": (bool,),
    "threads": (int,),
    "gain_orientation": (str,),
    "fourier_bin": (int,),
    "eer_fraction_dose_e_per_a2": (float,),
    "eer_group_frames": (int,),
    "eer_upsampling": (int,),
}

# what a SIGHUP changes without a restart ("table.key"; "table.*" = every key of the table)
RELOADABLE = frozenset({
    "watch.scan_period_s", "watch.settle_s", "watch.tiff_stable_s", "watch.mdoc_wait_s", "watch.max_attempts",
    "watch.retry_backoff_s", "watch.max_interruptions",
    "series.idle_s", "series.mdoc_quiet_s", "series.expected_tilts", "series.angle_tolerance_deg",
    "scheduler.newest_first_backlog", "scheduler.backlog_log_s",
    "thresholds.*", "service.shutdown_timeout_s", "service.stuck_movie_s", "disk.*", "plots.*",
})


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(sorted(choices))}"


def _type_name(v) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return names.get(type(v), type(v).__name__)


def _check_value(where: str, key: str, hint, v, src):
    """The TOML value ``v`` as the type ``hint`` wants, or a SettingsError naming the key."""
    def bad(expected: str):
        return SettingsError(f"{where} {key} = {v!r}: expected {expected}, got a {_type_name(v)}", path=src)

    if hint is bool:
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad("an integer")
        return v
    if hint == (float | None):  # optional: leaving the key out means None
        hint = float
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad("a number")
        if not math.isfinite(v):
            raise SettingsError(f"{where} {key} = {v!r}: expected a finite number", path=src)
        return float(v)
    if hint is str:
        if not isinstance(v, str):
            raise bad("a string")
        return v
    if hint == tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad("an array of strings")
        return tuple(v)
    if hint is tuple:
        if not isinstance(v, list):
            raise bad("an array")
        return tuple(v)
    return v


def _coerce(cls, table, name: str, src=None):
    if not isinstance(table, dict):
        raise SettingsError(f"[{name}] must be a table, got a {_type_name(table)}", path=src,
                            fix=f"write it as [{name}] with keys below it")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for k in table:
        if k not in known:
            raise SettingsError(f"unknown key {k!r} in [{name}]", path=src, fix=_suggest(k, known))
    values = {k: _check_value(f"[{name}]", k, hints[k], v, src) for k, v in table.items()}
    return cls(**values)


def _check_processing(doc: dict, src) -> None:
    table = doc.get("processing", {})
    if not isinstance(table, dict):
        raise SettingsError(f"[processing] must be a table, got a {_type_name(table)}", path=src)
    for k, v in table.items():
        if k not in PROCESSING_KEYS:
            raise SettingsError(f"unknown key {k!r} in [processing]", path=src, fix=_suggest(k, PROCESSING_KEYS))
        want = PROCESSING_KEYS[k]
        if want == (float,):
            _check_value("[processing]", k, float, v, src)
        elif want == (list,):
            if k == "patches" and v == "auto":
                continue
            if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                expected = 'two integers [NX, NY] or "auto"' if k == "patches" else "two integers [NX, NY]"
                raise SettingsError(f"[processing] {k} = {v!r}: expected {expected}", path=src)
        else:
            _check_value("[processing]", k, want[0], v, src)
        check_range("processing", k, v, src)
    if "dose_per_frame_e_per_a2" in table and "dose_per_tilt_e_per_a2" in table:
        raise SettingsError("[processing] has both dose_per_frame_e_per_a2 and dose_per_tilt_e_per_a2", path=src,
                            fix="give only one of them")
    for k in ("gain", "defects"):
        v = table.get(k)
        if v and not Path(v).expanduser().is_file():
            raise SettingsError(f"[processing] {k} = {v!r}: no such file", path=src, fix=f"check the path of the {k} file")
    if table.get("gain_flip") is not None and table["gain_flip"] not in ("none", "x", "y"):
        raise SettingsError(f"[processing] gain_flip = {table['gain_flip']!r}: expected \"none\", \"x\" or \"y\"", path=src)
    if table.get("gain_orientation") is not None and table["gain_orientation"] not in ("given", "auto"):
        raise SettingsError(f"[processing] gain_orientation = {table['gain_orientation']!r}: expected \"given\" or \"auto\"",
                            path=src)
    if table.get("fourier_bin") is not None and table["fourier_bin"] not in (1, 2, 3, 4):
        raise SettingsError(f"[processing] fourier_bin = {table['fourier_bin']!r}: expected 1, 2, 3 or 4", path=src)
    if table.get("eer_upsampling") is not None and table["eer_upsampling"] not in (1, 2):
        raise SettingsError(f"[processing] eer_upsampling = {table['eer_upsampling']!r}: expected 1 (4K) or 2 (8K)", path=src)
    if table.get("eer_group_frames") is not None and table["eer_group_frames"] < 1:
        raise SettingsError(f"[processing] eer_group_frames = {table['eer_group_frames']!r}: expected a positive count", path=src)
    if "eer_group_frames" in table and "eer_fraction_dose_e_per_a2" in table:
        raise SettingsError("[processing] has both eer_group_frames and eer_fraction_dose_e_per_a2", path=src,
                            fix="give only one of them")
    if table.get("gain_rot") is not None and table["gain_rot"] not in (0, 1, 2, 3):
        raise SettingsError(f"[processing] gain_rot = {table['gain_rot']!r}: expected 0, 1, 2 or 3 quarter turns", path=src)


def config_from_dict(doc: dict, *, source: str | Path | None = None) -> DaemonConfig:
    src = None if source is None else Path(source)
    for name in doc:
        if name not in _TABLES and name not in ("processing", "dask"):
            raise SettingsError(f"unknown table [{name}]", path=src, fix=_suggest(name, [*_TABLES, "processing", "dask"]))
    _check_processing(doc, src)
    parts = {name: _coerce(cls, doc.get(name, {}), name, src) for name, cls in _TABLES.items()}
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


def validate(cfg: DaemonConfig) -> None:
    """Ranges and paths; each error names its key."""
    src = None if cfg.source is None else Path(cfg.source)

    def need(ok: bool, key: str, what: str, fix: str | None = None):
        if not ok:
            raise SettingsError(f"{key} {what}", path=src, fix=fix)

    w, s, q, sv, d, pl = cfg.watch, cfg.series, cfg.scheduler, cfg.service, cfg.disk, cfg.plots
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
    need(q.workers >= 1, "[scheduler] workers", "must be >= 1")
    need(q.queue_size >= 1, "[scheduler] queue_size", "must be >= 1")
    need(q.newest_first_backlog >= 0, "[scheduler] newest_first_backlog", "must be >= 0 (0 = off)")
    need(q.backlog_log_s > 0, "[scheduler] backlog_log_s", "must be > 0 (seconds)")
    need(q.backend in BACKENDS, "[scheduler] backend", f"= {q.backend!r}: expected \"local\" or \"dask\"")
    need(q.backend != "dask" or bool(cfg.dask.address or cfg.dask.cluster), "[scheduler] backend",
         "= \"dask\" needs a scheduler", "give --dask-address tcp://HOST:8786, or [dask] address, or [dask] cluster")
    need(s.idle_s > 0, "[series] idle_s", "must be > 0 (seconds)")
    need(s.mdoc_quiet_s >= 0, "[series] mdoc_quiet_s", "must be >= 0 (seconds)")
    need(s.expected_tilts >= 0, "[series] expected_tilts", "must be >= 0 (0 = not used)")
    need(s.angle_tolerance_deg >= 0, "[series] angle_tolerance_deg", "must be >= 0 (degrees)")
    for k in ("total_motion_a", "max_frame_shift_a", "early_motion_a", "late_motion_a", "frc_0_143_a", "patch_residual_px"):
        need(getattr(cfg.thresholds, k) >= 0, f"[thresholds] {k}", "must be >= 0 (0 = not checked)")
    need(sv.shutdown_timeout_s >= 0, "[service] shutdown_timeout_s", "must be >= 0 (seconds)")
    need(sv.stuck_movie_s >= 0, "[service] stuck_movie_s", "must be >= 0 (seconds; 0 = never)")
    for k in ("warn_below_gb", "floor_gb", "resume_margin_gb"):
        need(getattr(d, k) >= 0, f"[disk] {k}", "must be >= 0 (GB)")
    need(d.floor_gb <= d.warn_below_gb,
         "[disk] floor_gb", f"= {d.floor_gb:g} must not be above warn_below_gb = {d.warn_below_gb:g}")
    need(d.check_period_s > 0, "[disk] check_period_s", "must be > 0 (seconds)")
    need(pl.latest_trajectories >= 0, "[plots] latest_trajectories", "must be >= 0")
    try:
        DecodeLimits(**{f.name: getattr(cfg.limits, f.name) for f in fields(LimitsOptions)})
    except SettingsError as err:
        raise SettingsError(err.what.replace("decode limit ", "[limits] "), path=src, fix=err.fix) from None
    for name in _TABLES:  # plausible ranges (config_ranges.py)
        for f in fields(getattr(cfg, name)):
            check_range(name, f.name, getattr(getattr(cfg, name), f.name), src)
    o = cfg.output
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
    need(cfg.log.format in ("auto", "json", "console"), "[log] format",
         f"= {cfg.log.format!r}: expected \"auto\", \"json\" or \"console\"")
    if cfg.metrics.address:
        from framewatch.daemon.config.addresses import parse_address

        try:
            parse_address(cfg.metrics.address)
        except SettingsError as err:
            raise SettingsError(err.what, path=src, fix=err.fix) from None


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
