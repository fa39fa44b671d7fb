"""What a correction reports beside its images: the drift statistics and the notes of one movie."""
from __future__ import annotations

import numpy as np

from .drift_stats import tilt_motion
from .frc import frc_crossing_a
from .global_align import GlobalAlignment
from .result import DriftStatistics

__all__ = ["correction_notes", "drift_statistics"]


def drift_statistics(alignment: GlobalAlignment, local, doses: np.ndarray, freq: np.ndarray, frc: np.ndarray, *,
                     pixel_size_a: float, prior_dose_e_per_a2: float) -> DriftStatistics:
    """The statistics of a movie from its whole-frame ``alignment``, its ``local`` motion (a
    :class:`~framewatch.core.local_motion.LocalMotion` or ``None``), the accumulated ``doses``
    ``(n_frames,)`` and the half-sum FRC (``freq`` in cycles per pixel, ``frc``)."""
    both = tilt_motion(alignment.shifts_px, doses, prior_dose_e_per_a2=prior_dose_e_per_a2)
    motion, relion = both.per_tilt, both.relion
    px = pixel_size_a
    return DriftStatistics(
        total_motion_px=motion.total_px,
        early_motion_px=motion.early_px,
        late_motion_px=motion.late_px,
        total_motion_a=motion.total_px * px,
        early_motion_a=motion.early_px * px,
        late_motion_a=motion.late_px * px,
        max_frame_shift_px=motion.max_step_px,
        alignment_residual_px=alignment.residual_px,
        frc_0_5_a=frc_crossing_a(freq, frc, 0.5, pixel_size_a=px),
        frc_0_25_a=frc_crossing_a(freq, frc, 0.25, pixel_size_a=px),
        frc_0_143_a=frc_crossing_a(freq, frc, 0.143, pixel_size_a=px),
        early_dose_cutoff_e_per_a2=both.per_tilt_cutoff_e_per_a2,
        patch_residual_mean_px=None if local is None else local.residual_mean_px,
        patch_residual_max_px=None if local is None else local.residual_max_px,
        patches_rejected_fraction=None if local is None else local.rejected_fraction,
        relion_early_motion_px=relion.early_px,
        relion_late_motion_px=relion.late_px,
        relion_early_motion_a=relion.early_px * px,
        relion_late_motion_a=relion.late_px * px,
        trajectory_smoothing=_smoothing_label(alignment),
        shift_precision_px=None if alignment.measurement_sd_px is None else float(np.median(alignment.measurement_sd_px)),
        **(local.statistics() if local is not None else {"local_motion": "off (--patches 0 0)"}),
    )


def _smoothing_label(alignment: GlobalAlignment) -> str:
    if alignment.free_start_frames:
        return f"{alignment.smoothing}, first {alignment.free_start_frames} frames free"
    return alignment.smoothing


def correction_notes(input_notes: list[str], alignment: GlobalAlignment, local, *, tolerance_px: float) -> tuple[str, ...]:
    """The notes of a result: those of the input checks, then alignment and local-motion remarks."""
    notes = list(input_notes)
    if not alignment.converged:
        notes.append(f"alignment stopped after {alignment.iterations} iterations without reaching {tolerance_px} px")
    if alignment.outlier_frames:
        notes.append(f"outlier frames placed by their neighbours: {list(alignment.outlier_frames)}")
    if local is not None and local.decision in ("declined", "off"):
        notes.append(f"local_motion: {local.label}; whole-frame only")
    elif local is not None and local.decision == "forced":
        notes.append(f"local_motion: {local.label}")
    return tuple(notes)
