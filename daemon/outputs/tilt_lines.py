"""The drift-log lines of one corrected tilt, from its :class:`TiltRecord`: ``tilt_corrected``
(every key of driftlog.TILT_KEYS, the frame trajectory ``shifts_px`` when there is one) and, for a
flagged or re-acquired tilt, ``tilt_flagged``."""
from __future__ import annotations

from framewatch.daemon.state.records import STAT_KEYS, TIMING_KEYS, TiltRecord


def tilt_corrected_fields(rec: TiltRecord, *, series: str, output_dir: str, replayed: bool = False) -> dict:
    """The fields of the ``tilt_corrected`` line (``replayed``: written again after a crash)."""
    stats = rec.statistics
    flags = list(rec.flags)
    kw = dict(
        series=series,
        output_dir=output_dir,
        z=rec.z,
        movie=rec.movie_path,
        tilt_angle_deg=rec.tilt_angle_deg,
        acquisition_index=rec.acquisition_index,
        acquisition_time=rec.acquisition_time,
        n_frames=rec.n_frames,
        pixel_size_a=rec.pixel_size_a,
        voltage_kv=rec.voltage_kv,
        dose_e_per_a2=rec.dose_e_per_a2,
        dose_per_frame_e_per_a2=rec.dose_per_frame_e_per_a2,
        prior_dose_e_per_a2=rec.prior_dose_e_per_a2,
        prior_dose_rule=rec.prior_dose_rule,
        sources={**rec.sources, "tilt_angle": rec.angle_source, "acquisition_order": rec.order_source},
        **{k: stats.get(k) for k in dict.fromkeys([*STAT_KEYS, *stats])},
        max_frame_shift_a=rec.max_frame_shift_a,
        flags=flags,
        reacquired=reacquired(rec),
        complete_signal=rec.complete_signal,
        **{k: rec.timings.get(k) for k in TIMING_KEYS},
        worker=rec.worker,
    )
    if rec.shifts_px:  # the frame trajectory (x, y px per frame; frame 0 = origin), for plots
        kw["shifts_px"] = [[round(float(x), 3), round(float(y), 3)] for x, y in rec.shifts_px]
    if rec.timings.get("streamed_frames") is not None:  # corrected while written: frames in before it was complete
        kw["streamed_frames"] = rec.timings["streamed_frames"]
    if replayed:
        kw["replayed"] = True
    return kw


def reacquired(rec: TiltRecord) -> bool:
    return any(f.startswith("reacquired") for f in rec.flags)


def tilt_flagged_fields(rec: TiltRecord, *, series: str, output_dir: str) -> dict | None:
    """The fields of the ``tilt_flagged`` line, or None when the tilt is neither flagged by a
    threshold nor re-acquired."""
    threshold_flags = [f for f in rec.journal_flags if f not in ("angle_unknown",)]
    if not (threshold_flags or reacquired(rec)):
        return None
    return dict(series=series, output_dir=output_dir, z=rec.z, movie=rec.movie_path, tilt_angle_deg=rec.tilt_angle_deg,
                reasons=[f for f in rec.flags if f != "angle_unknown"])
