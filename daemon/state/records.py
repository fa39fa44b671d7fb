"""Records that several daemon layers pass between them (defined below them, so none imports another).

- :class:`QueueItem`: one movie that intake found complete, waiting in
  :class:`framewatch.daemon.processing.scheduler.ReadyQueue` (intake puts it, dispatch puts it back
  after a full disk, the queue orders it: oldest acquisition first).
- :class:`CorrectionJob`: what the service submits to a worker pool (processing/pool.py).
- :class:`CorrectionOutcome`: what a pool hands back for a job: the three sums and the statistics,
  or the error (retryable or not), or the loss of the place it ran in (``interrupted``).
- :class:`DefectMask`: the pixels a correction replaced, handed back with the outcome and given to
  the next streaming job of the same camera (state/defect_masks.py keeps it across restarts).
- :class:`TiltRecord`: one corrected tilt as the tilt table, the RELION tables, the angle files,
  the drift log and the plots read it; made from a journal row (:meth:`TiltRecord.from_row`), so
  journals of every earlier version are read as they are.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from framewatch.daemon.state.name_escape import shown

# the drift statistics of core.result.DriftStatistics, as they appear in tilt events and the tilt table
STAT_KEYS = (
    "total_motion_px",
    "early_motion_px",
    "late_motion_px",
    "total_motion_a",
    "early_motion_a",
    "late_motion_a",
    "max_frame_shift_px",
    "alignment_residual_px",
    "frc_0_5_a",
    "frc_0_25_a",
    "frc_0_143_a",
    "early_dose_cutoff_e_per_a2",
    "patch_residual_mean_px",
    "patch_residual_max_px",
    "patches_rejected_fraction",
    "local_motion",  # "applied" / "forced (...)" / "declined (reason)" / "off (reason)" (core.local_motion)
    "local_patches",
    "local_evidence_z",
    "local_evidence_gain_fraction",
    "local_field_rms_px",
    "local_field_uncertainty_px",
    # RELION's early/late (prior dose included): the rlnAccumMotionEarly/Late columns of the RELION tables
    "relion_early_motion_px",
    "relion_late_motion_px",
    "relion_early_motion_a",
    "relion_late_motion_a",
    # whole-frame trajectory smoothing (core.trajectory) and the frames' median measurement error per axis
    "trajectory_smoothing",
    "shift_precision_px",
)
# the first keys of a tilt, in the tilt table and in the ``tilt_corrected`` line alike
TILT_PLACE_KEYS = ("z", "movie", "tilt_angle_deg", "acquisition_index", "acquisition_time", "n_frames")
TIMING_KEYS = ("wait_s", "correct_s", "append_s", "latency_s")


@dataclass(order=True)
class QueueItem:
    """A ready movie: its journal id, acquisition and ready times (s since the epoch), its series id."""

    acq_time: float
    movie_id: int
    ready_at: float = field(compare=False)
    series_id: int = field(compare=False)


@dataclass(frozen=True)
class StreamChannel:
    """Where a streaming job hears from the daemon (its movie is complete, or it should stop):
    ``kind`` ``"files"``, ``where`` the daemon's signal directory (a local worker,
    processing/stream_signals.py); or ``kind`` ``"dask"``, ``where`` the prefix of the Dask variables
    (a Dask worker, processing/dask_stream_signals.py)."""

    kind: str
    where: str


@dataclass(frozen=True, eq=False)
class DefectMask:
    """The final defect mask of a movie (every pixel its correction replaced: known defects, bad gain,
    dead and hot pixels): ``shape`` ``(ny, nx)`` movie pixels of one frame, ``flat`` the sorted flat
    indices (int64) of the pixels in it. Plain data: it crosses to worker processes and Dask workers."""

    shape: tuple[int, int]
    flat: np.ndarray

    @classmethod
    def from_coordinates_xy(cls, coordinates_xy, shape) -> "DefectMask":
        """From ``(n, 2)`` (x, y) pixel coordinates (core's ``MovieResult.replaced_pixels``)."""
        ny, nx = (int(v) for v in shape)
        xy = np.asarray(coordinates_xy, dtype=np.int64).reshape(-1, 2)
        return cls((ny, nx), np.unique(xy[:, 1] * nx + xy[:, 0]))

    def as_array(self) -> np.ndarray:
        """The mask as bool ``(ny, nx)``."""
        mask = np.zeros(self.shape, dtype=bool)
        mask.ravel()[self.flat] = True
        return mask

    def same_as(self, other: "DefectMask | None") -> bool:
        return other is not None and self.shape == other.shape and np.array_equal(self.flat, other.flat)


@dataclass(frozen=True)
class CorrectionJob:
    """One movie to correct (plain data, picklable: it crosses to worker processes and Dask workers).

    ``settings``: the :class:`framewatch.core.settings.CorrectionSettings` resolved for this movie;
    ``gain`` / ``defects``: file paths or None; ``expected_frames``: the frame count it was found
    complete with (a different count is a retryable error); ``movie_dose_e_per_a2``: the dose of
    the whole movie (EER: groups the raw frames by dose). ``stream``: set for a streaming job,
    which follows a movie still being written and finishes with the final job the daemon sends
    through that channel (processing/stream_signals.py); its ``settings`` are provisional until then.
    ``expected_mask``: a streaming job's hint, the final defect mask of the last movie of its camera
    (:attr:`camera`): the stream corrects its first frames with it before its own mask is known."""

    movie_id: int
    movie: str
    settings: Any = None
    gain: str | None = None
    defects: str | None = None
    expected_frames: int | None = None
    movie_dose_e_per_a2: float | None = None
    stream: StreamChannel | None = None
    sums_dir: str | None = None  # a local worker hands its sums over through a file here (sums_handover.py)
    expected_mask: DefectMask | None = None

    @property
    def camera(self) -> str:
        """What a defect mask belongs to: the gain and defect files, the gain's orientation and the
        binning (movies of one camera mode share their hot pixels)."""
        s = self.settings
        return repr((self.gain, self.defects, str(getattr(s, "gain_orientation", None)), getattr(s, "fourier_bin", None)))


@dataclass(frozen=True)
class CorrectionOutcome:
    """What a pool hands back for one :class:`CorrectionJob`.

    A correction: ``dose_weighted_sum``, ``even_sum``, ``odd_sum`` -- ``(ny, nx)`` float32 arrays --,
    ``statistics`` (core.result.DriftStatistics as a dict), ``shifts_px`` (``n_frames`` x 2, px),
    ``n_frames`` (EER: fractions) and ``n_raw_frames`` (EER only), timings. An error: ``error`` and
    ``kind`` (the exception's class name), ``retryable`` when reading again may succeed. A lost
    place (a worker process or Dask worker died with the job): ``interrupted`` with ``kind``. A
    streaming job that stopped before its movie was complete (cancelled, or the file was truncated or
    replaced while written): ``dropped`` with ``error`` the reason; nothing of it is appended and the
    movie goes on by the normal path. ``streamed_frames``: frames a streaming job had taken before the
    movie was found complete (``None`` for a job on a complete movie). ``fallback``: why a streaming
    job dropped what it had streamed after the movie was complete (the file was replaced or rewritten
    meanwhile, the final settings changed the first pass): it then read the finished file afresh.
    ``defect_mask``: the pixels the correction replaced (:class:`DefectMask`); ``mask_hint_pixels``:
    the size of the expected mask a streaming job started with (``None``: it had none)."""

    job: CorrectionJob
    dose_weighted_sum: Any = None
    even_sum: Any = None
    odd_sum: Any = None
    statistics: Mapping = field(default_factory=dict)
    shifts_px: list | None = None
    n_frames: int | None = None
    n_raw_frames: int | None = None
    dose_per_frame_e_per_a2: float | None = None
    n_replaced_pixels: int | None = None
    engine_timings_s: Mapping = field(default_factory=dict)
    notes: tuple = ()
    worker_s: float = 0.0
    pid: int | None = None
    worker: str | None = None  # where it ran: local:PID or a Dask worker's address
    error: str | None = None
    kind: str | None = None
    retryable: bool = False
    interrupted: bool = False
    dropped: bool = False
    streamed_frames: int | None = None
    fallback: str | None = None
    sums_file: str | None = None  # the sums are in this hand-over file instead (processing/sums_handover.py) ...
    sums_shape: tuple | None = None  # ... each (ny, nx)
    defect_mask: DefectMask | None = None
    mask_hint_pixels: int | None = None

    @classmethod
    def failed(cls, job: CorrectionJob, error: str, kind: str, *, retryable: bool, worker: str | None = None
               ) -> "CorrectionOutcome":
        return cls(job, error=error, kind=kind, retryable=retryable, worker=worker)

    @classmethod
    def lost(cls, job: CorrectionJob, err: BaseException) -> "CorrectionOutcome":
        """The place the job ran in died (``BrokenProcessPool``, ``KilledWorker``, ...)."""
        return cls(job, error=f"{type(err).__name__}: {err}", kind=type(err).__name__, interrupted=True)

    @classmethod
    def stream_dropped(cls, job: CorrectionJob, reason: str, *, worker: str | None = None) -> "CorrectionOutcome":
        """A streaming job stopped before its movie was complete (see the class docstring)."""
        return cls(job, error=reason, kind="StreamDropped", dropped=True, worker=worker)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted and not self.dropped

    @property
    def sums(self) -> tuple:
        """(dose-weighted, even, odd), each ``(ny, nx)`` float32."""
        return self.dose_weighted_sum, self.even_sum, self.odd_sum


def _iso(t) -> str:
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(float(t)).isoformat(timespec="seconds")


@dataclass(frozen=True)
class TiltRecord:
    """One corrected tilt (a ``done`` journal row) as every per-series output reads it.

    Attributes are typed; ``record["key"]`` / ``record.get("key")`` / iteration read its flat view
    (:meth:`as_dict`: the tilt table's columns, every statistic, and a few more), for the writers that
    go through columns. ``flags`` carry the reacquisition marks (tilt_table.mark_reacquired);
    ``journal_flags`` are the row's own (the movie's and the thresholds')."""

    z: int | None
    movie_path: str
    tilt_angle_deg: float | None = None
    acquisition_index: int | None = None
    acquisition_time_s: float | None = None
    n_frames: int | None = None
    dose_e_per_a2: float | None = None
    dose_per_frame_e_per_a2: float | None = None
    prior_dose_e_per_a2: float | None = None
    prior_dose_rule: str | None = None
    pixel_size_a: float | None = None
    voltage_kv: float | None = None
    sources: Mapping = field(default_factory=dict)  # resolved value -> where it came from
    angle_source: str | None = None
    order_source: str | None = None
    index_source: str | None = None
    tilt_axis_angle_deg: float | None = None
    defocus_um: float | None = None
    statistics: Mapping = field(default_factory=dict)
    journal_flags: tuple = ()
    flags: tuple = ()
    complete_signal: str | None = None
    timings: Mapping = field(default_factory=dict)
    worker: str | None = None
    shifts_px: list | None = None
    series: str | None = None  # the series' own name, for the table's column (set by the writer)

    @classmethod
    def from_row(cls, row: Mapping) -> "TiltRecord":
        """The record of a journal row (``info`` / ``stats`` / ``flags`` / ``timings`` decoded)."""
        info = row.get("info") or {}
        tilt = info.get("tilt", {})
        res = info.get("resolved", {})
        worker = info.get("worker") or {}
        flags = tuple(row.get("flags") or [])
        return cls(z=row.get("z"), movie_path=row["path"], tilt_angle_deg=row.get("angle_deg"),
                   acquisition_index=row.get("acq_index"), acquisition_time_s=row.get("acq_time"),
                   n_frames=row.get("n_frames"), dose_e_per_a2=res.get("dose_e_per_a2"),
                   dose_per_frame_e_per_a2=res.get("dose_per_frame_e_per_a2"),
                   prior_dose_e_per_a2=res.get("prior_dose_e_per_a2"), prior_dose_rule=res.get("prior_dose_rule"),
                   pixel_size_a=res.get("pixel_size_a"), voltage_kv=res.get("voltage_kv"), sources=res.get("sources", {}),
                   angle_source=tilt.get("angle_source"), order_source=tilt.get("order_source"),
                   index_source=tilt.get("index_source"), tilt_axis_angle_deg=tilt.get("tilt_axis_angle_deg"),
                   defocus_um=tilt.get("defocus_um"), statistics=row.get("stats") or {}, journal_flags=flags, flags=flags,
                   complete_signal=info.get("complete_signal"), timings=row.get("timings") or {},
                   worker=worker.get("where"), shifts_px=worker.get("shifts_px"))

    def with_flags(self, flags) -> "TiltRecord":
        return dataclasses.replace(self, flags=tuple(flags))

    @property
    def movie(self) -> str:
        """The movie's file name (undecodable bytes as ``\\xNN``, name_escape.py)."""
        return shown(Path(self.movie_path).name)

    @property
    def acquisition_time(self) -> str:
        """Local ISO 8601 time, to the second ("" when unknown)."""
        return _iso(self.acquisition_time_s)

    @property
    def max_frame_shift_a(self) -> float | None:
        mfs = self.statistics.get("max_frame_shift_px")
        return None if mfs is None or self.pixel_size_a is None else mfs * self.pixel_size_a

    @cached_property
    def _flat(self) -> dict:
        s = self.sources
        rec = {
            "z": self.z, "movie": self.movie, "movie_path": shown(self.movie_path), "tilt_angle_deg": self.tilt_angle_deg,
            "acquisition_index": self.acquisition_index, "acquisition_time": self.acquisition_time, "n_frames": self.n_frames,
            "dose_e_per_a2": self.dose_e_per_a2, "dose_per_frame_e_per_a2": self.dose_per_frame_e_per_a2,
            "prior_dose_e_per_a2": self.prior_dose_e_per_a2, "prior_dose_rule": self.prior_dose_rule,
            "pixel_size_a": self.pixel_size_a, "voltage_kv": self.voltage_kv, "angle_source": self.angle_source,
            "order_source": self.order_source, "index_source": self.index_source, "dose_source": s.get("dose"),
            "pixel_size_source": s.get("pixel_size_a"), "voltage_source": s.get("voltage_kv"),
            "tilt_axis_angle_deg": self.tilt_axis_angle_deg, "defocus_um": self.defocus_um, "flags": list(self.flags),
            "complete_signal": self.complete_signal, **{k: self.timings.get(k) for k in TIMING_KEYS},
        }
        for k in STAT_KEYS:
            rec[k] = self.statistics.get(k)
        for k, v in self.statistics.items():  # statistics added to the engine later appear too
            rec.setdefault(k, v)
        rec["max_frame_shift_a"] = self.max_frame_shift_a
        if self.series is not None:
            rec["series"] = self.series
        return rec

    def as_dict(self) -> dict:
        """The flat view: the tilt table's columns (TSV_COLUMNS), every statistic, axis and defocus."""
        return dict(self._flat)

    def __getitem__(self, key: str):
        return self._flat[key]

    def get(self, key: str, default=None):
        return self._flat.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat)

    def keys(self):
        return self._flat.keys()
