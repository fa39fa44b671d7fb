"""Drift statistics of one movie from its whole-frame trajectory.

Two counts of early and late motion are kept, and named so:

- per tilt (``early_motion_*`` / ``late_motion_*``, what the live outputs show): a step into frame
  ``f`` is early when the dose of *this tilt's own exposure* up to the end of frame ``f`` is at most
  the per-tilt cutoff ``min(4 e/A^2, a third of the tilt's own dose)`` -- the beam-induced jump at
  the start of every exposure, whatever dose the area received before. RELION's 4 e/A^2 alone
  would make every step of a 2-4 e/A^2 tilt early (early = total, late = 0: as uninformative as
  RELION's rule with the prior dose, which gives early = 0); for a movie of more than 12 e/A^2 the
  cutoff is RELION's 4 e/A^2 counted from the start of the exposure;
- RELION's rule (``relion_early_motion_*`` / ``relion_late_motion_*``, written only to the
  ``rlnAccumMotionEarly/Late`` columns): the same cutoff on the accumulated dose *including* the
  prior (pre-)exposure, so after the first tilt or two of a series every step is late.

``total`` is the same for both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARLY_DOSE_CUTOFF_E_PER_A2 = 4.0  # RELION's
EARLY_FRACTION_OF_TILT = 1.0 / 3.0  # per tilt: at most this fraction of the tilt's own dose is early


def per_tilt_early_cutoff_e_per_a2(tilt_dose_e_per_a2: float) -> float:
    """The per-tilt early cutoff: ``min(4 e/A^2, tilt dose / 3)``, counted from the exposure's start."""
    return min(EARLY_DOSE_CUTOFF_E_PER_A2, EARLY_FRACTION_OF_TILT * float(tilt_dose_e_per_a2))


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
    """Total, early and late motion from ``shifts_px`` ``(n, 2)``.

    The step from frame f-1 into frame f (0-based, f >= 1) is early when
    ``accumulated_dose_e_per_a2[f]`` (``(n,)``, the dose at the end of frame f counted the way the
    caller chooses) is at most the cutoff.
    """
    s = np.asarray(shifts_px, dtype=np.float64)
    if s.shape[0] < 2:
        return AccumulatedMotion(0.0, 0.0, 0.0, 0.0)
    steps = np.linalg.norm(np.diff(s, axis=0), axis=1)
    # at most the cutoff, with a rounding margin (prior + (f + 1) * dose - prior is not exact)
    early = np.asarray(accumulated_dose_e_per_a2)[1:] <= early_cutoff_e_per_a2 + 1e-9 * max(1.0, abs(early_cutoff_e_per_a2))
    return AccumulatedMotion(
        total_px=float(steps.sum()),
        early_px=float(steps[early].sum()),
        late_px=float(steps[~early].sum()),
        max_step_px=float(steps.max()),
    )


@dataclass(frozen=True)
class TiltMotion:
    """Early/late counted from the start of this tilt's exposure (``per_tilt``, with the cutoff
    ``per_tilt_cutoff_e_per_a2``) and by RELION's rule with the prior dose (``relion``, 4 e/A^2)."""

    per_tilt: AccumulatedMotion
    relion: AccumulatedMotion
    per_tilt_cutoff_e_per_a2: float


def tilt_motion(
    shifts_px: np.ndarray,
    accumulated_dose_e_per_a2: np.ndarray,
    *,
    prior_dose_e_per_a2: float,
) -> TiltMotion:
    """Both counts for one movie; ``accumulated_dose_e_per_a2`` ``(n,)`` includes the prior dose."""
    dose = np.asarray(accumulated_dose_e_per_a2, dtype=np.float64)
    own = dose - float(prior_dose_e_per_a2)
    cutoff = per_tilt_early_cutoff_e_per_a2(own[-1]) if own.size else EARLY_DOSE_CUTOFF_E_PER_A2
    return TiltMotion(
        per_tilt=accumulated_motion(shifts_px, own, early_cutoff_e_per_a2=cutoff),
        relion=accumulated_motion(shifts_px, dose),
        per_tilt_cutoff_e_per_a2=cutoff,
    )
