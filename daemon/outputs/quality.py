"""Flagging a tilt whose drift statistics cross the configured thresholds (nothing is dropped)."""
from __future__ import annotations

import math

from framewatch.daemon.config.configuration import Thresholds


def flag_reasons(stats: dict, thresholds: Thresholds, *, pixel_size_a: float) -> list[str]:
    """One human-readable reason per threshold crossed; a threshold of 0 is not checked."""
    reasons = []

    def check(value, limit, what, unit="A", larger_is_worse=True):
        if not limit or value is None or not math.isfinite(value):
            return
        if (value > limit) if larger_is_worse else (value < limit):
            reasons.append(f"{what} {value:.2f} {unit} > {limit:g} {unit}")

    check(stats.get("total_motion_a"), thresholds.total_motion_a, "total motion")
    mfs = stats.get("max_frame_shift_px")
    check(None if mfs is None else mfs * pixel_size_a, thresholds.max_frame_shift_a, "largest frame jump")
    check(stats.get("early_motion_a"), thresholds.early_motion_a, "early motion")
    check(stats.get("late_motion_a"), thresholds.late_motion_a, "late motion")
    check(stats.get("frc_0_143_a"), thresholds.frc_0_143_a, "FRC 0.143 crossing")
    check(stats.get("patch_residual_mean_px"), thresholds.patch_residual_px, "mean patch residual", unit="px")
    return reasons
