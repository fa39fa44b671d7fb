"""A drift overview per tilt series: ``OUT/SERIES/SERIES.drift.png`` (matplotlib, Agg).

Four panels, redrawn after every tilt:

1. total, early and late motion (Angstrom, as RELION's ``rlnAccumMotion*``) against the tilt angle;
2. the same against the acquisition order, so drift that grows during the session shows;
3. the frame trajectories of the latest tilts (specimen position relative to frame 0, Angstrom;
   a circle marks frame 0);
4. the largest frame-to-frame jump (Angstrom) against the acquisition order, and the even/odd FRC
   0.143 crossing (Angstrom, right axis).

Configured thresholds (``[thresholds]``; 0 = off) are drawn as dashed lines; flagged tilts are
ringed in red. The numbers come from the series' tilt table ``SERIES.tilts.tsv`` and the
trajectories from the ``tilt_corrected`` lines of the drift log ``OUT/framewatch.jsonl``
(``shifts_px``), which is what ``framewatch plot OUT/SERIES`` reads; the daemon hands the same
records over directly. Rendering uses matplotlib's object API with the Agg canvas (no pyplot, no
display, safe in a background thread); the PNG is written to a temporary name and renamed, so a
viewer never sees half a file.
"""
from __future__ import annotations

import json
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framewatch.core.atomic_write import atomic_path
from framewatch.daemon.outputs.no_follow import check_not_link

__all__ = ["PlotWorker", "SeriesPlotData", "load_series", "plot_path", "render_series_plot"]

LATEST_TRAJECTORIES = 5
PLOT_SUFFIX = ".drift.png"


def plot_path(series_dir: str | Path) -> Path:
    d = Path(series_dir)
    return d / f"{d.name}{PLOT_SUFFIX}"


@dataclass
class SeriesPlotData:
    """What one plot shows. ``records``: one dict per section with float values (NaN when unknown)
    for ``z``, ``tilt_angle_deg``, ``acquisition_index``, ``total_motion_a``, ``early_motion_a``,
    ``late_motion_a``, ``max_frame_shift_a``, ``frc_0_143_a``, ``pixel_size_a`` and a list ``flags``;
    ``trajectories``: z -> ``(n_frames, 2)`` (x, y) shifts in pixels."""

    name: str
    records: list[dict]
    trajectories: dict[int, np.ndarray] = field(default_factory=dict)


_NUMERIC = ("z", "tilt_angle_deg", "acquisition_index", "total_motion_a", "early_motion_a", "late_motion_a",
            "max_frame_shift_a", "frc_0_143_a", "pixel_size_a")


def _float(v) -> float:
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def normalise_record(rec: dict) -> dict:
    """A tilt-table row (strings from the TSV, or values from the journal) as plot values."""
    out = {k: _float(rec.get(k)) for k in _NUMERIC}
    flags = rec.get("flags") or []
    if isinstance(flags, str):
        flags = [f.strip() for f in flags.split(";") if f.strip()]
    out["flags"] = [f for f in flags if f != "angle_unknown"]
    out["movie"] = rec.get("movie") or ""
    return out


def _find_log(series_dir: Path) -> Path | None:
    for d in (series_dir.parent, series_dir.parent.parent):  # OUT/SERIES or OUT/settings-HASH/SERIES
        p = d / "framewatch.jsonl"
        if p.is_file():
            return p
    return None


def trajectories_from_log(log_path: str | Path, series_dir: str | Path) -> dict[int, np.ndarray]:
    """z -> shifts (px) from the ``tilt_corrected`` lines of this series (the latest line of a z wins)."""
    series_dir = Path(series_dir)
    want = {str(series_dir), str(series_dir.resolve())}
    out: dict[int, np.ndarray] = {}
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            if '"tilt_corrected"' not in line or '"shifts_px"' not in line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line being written
            if ev.get("event") != "tilt_corrected" or ev.get("output_dir") not in want:
                continue
            shifts = ev.get("shifts_px")
            if ev.get("z") is None or not shifts:
                continue
            arr = np.asarray(shifts, dtype=np.float64)
            if arr.ndim == 2 and arr.shape[1] == 2:
                out[int(ev["z"])] = arr
    return out


def load_series(series_dir: str | Path, *, log_path: str | Path | None = None) -> SeriesPlotData:
    """Read ``SERIES.tilts.tsv`` (and the drift log for trajectories) of ``series_dir``."""
    from framewatch.core.errors import FramewatchError
    from framewatch.daemon.outputs.tilt_table import read_tsv

    series_dir = Path(series_dir)
    tsv = series_dir / f"{series_dir.name}.tilts.tsv"
    if not tsv.is_file():
        raise FramewatchError("no tilt table here", path=tsv,
                              fix="give a series directory OUT/SERIES written by `framewatch watch`")
    records = [normalise_record(r) for r in read_tsv(tsv)]
    log = Path(log_path) if log_path else _find_log(series_dir)
    trajectories = trajectories_from_log(log, series_dir) if log is not None and log.is_file() else {}
    return SeriesPlotData(series_dir.name, records, trajectories)


def _threshold(thresholds, name: str) -> float:
    if thresholds is None:
        return 0.0
    v = thresholds.get(name) if isinstance(thresholds, dict) else getattr(thresholds, name, 0.0)
    return float(v or 0.0)


def render_series_plot(data: SeriesPlotData, path: str | Path, *, thresholds=None, latest: int = LATEST_TRAJECTORIES,
                       dpi: int = 90) -> Path:
    """Draw ``data`` to the PNG ``path`` (atomically); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    recs = sorted(data.records, key=lambda r: r["z"])
    fig = Figure(figsize=(12, 8.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    (ax_angle, ax_order), (ax_traj, ax_jump) = fig.subplots(2, 2)
    n_flagged = sum(1 for r in recs if r["flags"])
    fig.suptitle(f"{data.name}: {len(recs)} tilts, {n_flagged} flagged", fontsize=13)
    order = np.array([r["acquisition_index"] if math.isfinite(r["acquisition_index"]) else r["z"] for r in recs])
    _draw_motion_panels(ax_angle, ax_order, recs, order, thresholds)
    _draw_trajectories(ax_traj, recs, data.trajectories, latest)
    _draw_jump_and_frc(ax_jump, recs, order, thresholds)
    _save_png(fig, path)
    return path


_MOTION_SERIES = (("total_motion_a", "total", "C0", "o"), ("early_motion_a", "early", "C1", "s"),
                  ("late_motion_a", "late", "C2", "^"))


def _draw_motion_panels(ax_angle, ax_order, recs: list[dict], order: np.ndarray, thresholds) -> None:
    """Panels 1 and 2: total, early and late motion (Angstrom) against the tilt angle (points) and
    the acquisition order (``order``, joined), with their limits; flagged tilts ringed in red."""
    angle = np.array([r["tilt_angle_deg"] for r in recs])
    flagged = np.array([bool(r["flags"]) for r in recs], dtype=bool)
    for ax, x, xlabel, join in ((ax_angle, angle, "tilt angle (deg)", False), (ax_order, order, "acquisition order", True)):
        for key, label, color, marker in _MOTION_SERIES:
            y = np.array([r[key] for r in recs])
            if join:
                ax.plot(x, y, color=color, marker=marker, ms=4, lw=1, label=label)
            else:
                ax.scatter(x, y, color=color, marker=marker, s=18, label=label)
            lim = _threshold(thresholds, key)
            if lim > 0:
                ax.axhline(lim, color=color, ls="--", lw=1, alpha=0.8)
                ax.annotate(f"{label} limit {lim:g} Å", (1.0, lim), xycoords=("axes fraction", "data"), ha="right",
                            va="bottom", fontsize=8, color=color)
        if flagged.any():
            y = np.array([r["total_motion_a"] for r in recs])
            ax.scatter(x[flagged], y[flagged], s=120, facecolors="none", edgecolors="red", linewidths=1.5, label="flagged")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("motion (Å)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    ax_angle.set_title("per-tilt motion vs tilt angle", fontsize=10)
    ax_order.set_title("per-tilt motion vs acquisition order", fontsize=10)


def _draw_trajectories(ax_traj, recs: list[dict], trajectories: dict[int, np.ndarray], latest: int) -> None:
    """Panel 3: the frame trajectories (``(n_frames, 2)`` shifts in pixels, drawn in Angstrom) of
    the ``latest`` tilts in z order (= order processed)."""
    latest_z = [int(r["z"]) for r in recs if int(r["z"]) in trajectories][-latest:] if latest > 0 else []
    by_z = {int(r["z"]): r for r in recs}
    for i, z in enumerate(latest_z):
        r = by_z[z]
        px = r["pixel_size_a"] if math.isfinite(r["pixel_size_a"]) else 1.0
        t = trajectories[z] * px
        color = f"C{i % 10}"
        ax_traj.plot(t[:, 0], t[:, 1], color=color, marker=".", ms=4, lw=1,
                     label=f"z={z}  {r['tilt_angle_deg']:+.1f}°" + ("  (flagged)" if r["flags"] else ""))
        ax_traj.plot(t[:1, 0], t[:1, 1], "o", color=color, mfc="none", ms=8)
    ax_traj.set_title(f"frame trajectories of the latest {len(latest_z)} tilts (○ = frame 0)" if latest_z
                      else "frame trajectories (none logged yet)", fontsize=10)
    ax_traj.set_xlabel("x (Å)")
    ax_traj.set_ylabel("y (Å)")
    ax_traj.set_aspect("equal", adjustable="datalim")
    ax_traj.grid(alpha=0.3)
    if latest_z:
        ax_traj.legend(fontsize=8)


def _draw_jump_and_frc(ax_jump, recs: list[dict], order: np.ndarray, thresholds) -> None:
    """Panel 4: the largest frame-to-frame jump (Angstrom) and, on the right axis, the even/odd FRC
    0.143 crossing (Angstrom) against the acquisition order, with their limits."""
    jump = np.array([r["max_frame_shift_a"] for r in recs])
    ax_jump.plot(order, jump, color="C3", marker="o", ms=4, lw=1, label="largest frame jump")
    lim = _threshold(thresholds, "max_frame_shift_a")
    if lim > 0:
        ax_jump.axhline(lim, color="C3", ls="--", lw=1)
        ax_jump.annotate(f"limit {lim:g} Å", (1.0, lim), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                         fontsize=8, color="C3")
    ax_jump.set_xlabel("acquisition order")
    ax_jump.set_ylabel("largest frame-to-frame jump (Å)", color="C3")
    ax_jump.grid(alpha=0.3)
    frc = np.array([r["frc_0_143_a"] for r in recs])
    ax_frc = ax_jump.twinx()
    ax_frc.plot(order, frc, color="C4", marker="d", ms=4, lw=1, ls=":", label="FRC 0.143 (even/odd)")
    flim = _threshold(thresholds, "frc_0_143_a")
    if flim > 0:
        ax_frc.axhline(flim, color="C4", ls="--", lw=1)
    ax_frc.set_ylabel("even/odd FRC 0.143 crossing (Å)", color="C4")
    ax_jump.set_title("largest jump and FRC crossing vs acquisition order", fontsize=10)


def _save_png(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` through the one atomic writer (core/atomic_write.py: ``.NAME.tmp``,
    fsync, rename, fsync of the directory), so a viewer never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_not_link(path.parent)  # a link planted at the series directory: never draw through it
    with atomic_path(path) as tmp:  # on an error (e.g. the output disk is full) the temporary goes
        tmp.unlink(missing_ok=True)  # a link planted at the working name is removed, never written through
        fig.savefig(tmp, format="png")


class PlotWorker:
    """Renders plots in one background thread so the main loop never waits for matplotlib.

    :meth:`submit` takes a key (the series) and a callable; a request not yet started is replaced
    by a newer one of the same key (only the latest state of a series is drawn). Errors are handed
    to ``on_error(key, exception)``."""

    def __init__(self, *, on_error: Callable[[str, BaseException], None] | None = None):
        self._pending: dict[str, Callable[[], object]] = {}
        self._lock = threading.Lock()
        self._wake: queue.Queue = queue.Queue()
        self._on_error = on_error
        self._stop = False
        self.rendered = 0
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="framewatch-plots", daemon=True)
        self._thread.start()

    def submit(self, key: str, fn: Callable[[], object]) -> None:
        with self._lock:
            self._pending[key] = fn
            self._idle.clear()
        self._wake.put(None)

    def _run(self) -> None:
        while True:
            self._wake.get()
            while True:
                with self._lock:
                    if not self._pending:
                        self._idle.set()
                        break
                    key = next(iter(self._pending))
                    fn = self._pending.pop(key)
                try:
                    fn()
                    self.rendered += 1
                except Exception as err:  # noqa: BLE001 - a plot must never stop the daemon
                    if self._on_error is not None:
                        self._on_error(key, err)
            if self._stop:
                return

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is pending (up to ``timeout`` seconds) and stop the thread."""
        self._stop = True
        self._wake.put(None)
        self._thread.join(timeout)
