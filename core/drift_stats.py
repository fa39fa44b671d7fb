"""Drift statistics of one movie from its whole-frame trajectory (RELION's definitions)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARLY_DOSE_CUTOFF_E_PER_A2 = 4.0


@dataclass(frozen=True)
class AccumulatedMotion:
    """Sums of frame-to-frame shift lengths, in movie pixels."""

    total_px: float
    early_px: float
    late_px: float
    max_step_px: float


def accumulated_motion(
    shifts_px: np.ndarray, accumulated_dose_e_per_a2: np.ndarray, *, early_cutoff_e_per_a2: float = EARLY_DOSE_CUTOFF_E_PER_A2
) -> AccumulatedMotion:
    """RELION's ``rlnAccumMotionTotal/Early/Late`` from ``shifts_px`` ``(n, 2)``.

    The step from frame f-1 into frame f (0-based, f >= 1) is early when the accumulated dose at
    the end of frame f, prior dose included (``accumulated_dose_e_per_a2[f]``), is at most the cutoff.
    """
    s = np.asarray(shifts_px, dtype=np.float64)
    if s.shape[0] < 2:
        return AccumulatedMotion(0.0, 0.0, 0.0, 0.0)
    steps = np.linalg.norm(np.diff(s, axis=0), axis=1)
    early = np.asarray(accumulated_dose_e_per_a2)[1:] <= early_cutoff_e_per_a2
    return AccumulatedMotion(
        total_px=float(steps.sum()),
        early_px=float(steps[early].sum()),
        late_px=float(steps[~early].sum()),
        max_step_px=float(steps.max()),
    )
