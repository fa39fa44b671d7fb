"""Temporal regularisation of a measured whole-frame trajectory.

Measured per-frame positions ``m`` (``(n_frames, 2)``) are replaced by the minimiser of
``sum_i w_i |s_i - m_i|^2 + lam * sum_i |s_{i+1} - 2 s_i + s_{i-1}|^2``: a penalty on acceleration
whose weight grows as the dose per frame falls, because a frame with little dose gives a noisy
measurement and cannot move independently of its neighbours. The rule is
``lam = 0.0025 * (0.3 e/A^2 / dose_per_frame)^2``: negligible at the 0.3 e/A^2 frames of a
3 e/A^2, 10-frame tilt (a 2.5 px early jump keeps its shape to < 0.02 px), strong for the
0.03 e/A^2 fractions of a finely sliced movie. Frames whose measurement lies further than
``max(4 * robust sigma, outlier_floor)`` from the smooth trajectory get weight 0 (two passes), so an
outlier frame takes the position its neighbours imply.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_DOSE_E_PER_A2 = 0.3
BASE_SMOOTHING = 0.0025


@dataclass(frozen=True)
class SmoothedTrajectory:
    """``positions`` ``(n, 2)`` smoothed; ``residuals`` ``(n,)`` |measured - smoothed|; ``outliers`` bool ``(n,)``."""

    positions: np.ndarray
    residuals: np.ndarray
    outliers: np.ndarray
    smoothing: float


def smoothing_for_dose(dose_per_frame_e_per_a2: float) -> float:
    return BASE_SMOOTHING * (REFERENCE_DOSE_E_PER_A2 / dose_per_frame_e_per_a2) ** 2


MIN_PEAK_FRACTION = 0.25


def regularise_trajectory(
    measured: np.ndarray,
    *,
    dose_per_frame_e_per_a2: float,
    outlier_floor: float,
    peak_heights: np.ndarray | None = None,
) -> SmoothedTrajectory:
    """Smooth ``measured`` ``(n, 2)`` (any length unit; ``outlier_floor`` in the same unit).

    ``peak_heights`` ``(n,)``: correlation peak height of each frame's measurement (optional).
    """
    m = np.asarray(measured, dtype=np.float64)
    n = m.shape[0]
    lam = smoothing_for_dose(dose_per_frame_e_per_a2)
    if n < 3:
        return SmoothedTrajectory(m.copy(), np.zeros(n), np.zeros(n, dtype=bool), lam)
    d = np.zeros((n - 2, n))
    idx = np.arange(n - 2)
    d[idx, idx], d[idx, idx + 1], d[idx, idx + 2] = 1.0, -2.0, 1.0
    penalty = lam * d.T @ d
    w = np.ones(n)
    if peak_heights is not None:
        h = np.asarray(peak_heights, dtype=np.float64)
        weak = h < MIN_PEAK_FRACTION * float(np.median(h))
        if weak.sum() <= n // 2:
            w[weak] = 0.0
    for _ in range(3):
        s = np.linalg.solve(np.diag(w) + penalty + 1e-9 * np.eye(n), w[:, None] * m)
        r = np.linalg.norm(m - s, axis=1)
        good = r[w > 0]
        sigma = 1.4826 * float(np.median(good)) if good.size else 0.0
        limit = max(4.0 * sigma, outlier_floor)
        new_w = (r <= limit).astype(np.float64)
        if new_w.sum() < max(3, n // 2):  # never reject most frames
            break
        if np.array_equal(new_w, w):
            break
        w = new_w
    s = np.linalg.solve(np.diag(w) + penalty + 1e-9 * np.eye(n), w[:, None] * m)
    r = np.linalg.norm(m - s, axis=1)
    return SmoothedTrajectory(s, r, w == 0, lam)
