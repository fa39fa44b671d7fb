"""Temporal regularisation of a measured whole-frame trajectory.

Measured per-frame positions ``m`` (``(n_frames, 2)``) are replaced by the minimiser of
``sum_i w_i |s_i - m_i|^2 + lam * sum_{i >= k+1} |s_{i+1} - 2 s_i + s_{i-1}|^2``: a penalty on
acceleration, except over the first ``k`` frames (``free_start``), where beam-induced motion is fast.

How strongly, two rules:

- **From the measurement noise** (when each frame's measurement variance is known, as whole-frame
  alignment estimates it from each correlation peak, :mod:`framewatch.core.peak_precision`): ``w_i``
  is the inverse variance and ``(lam, k)`` minimise Stein's unbiased estimate of the risk
  ``sum_i w_i |m_i - s_i|^2 + 2 * 2 * tr(H) - const`` (``H`` the hat matrix of the smoother, per axis)
  over ``lam`` from the dose rule's value up to a straight line and ``k`` in 0-3, and only when the
  estimated gain over the dose rule's smoothing (below) is at least 10 % of its risk and twice the
  estimate's own standard deviation (the residual terms are non-central chi^2 variables, whose spread
  the data give): a small gain in a noisy estimate is no gain in fact. Without that guard, on
  trajectories with frame-to-frame jitter as large as the measurement noise (a drift with 0.05 px of
  independent jitter per frame), the rule took estimated gains of 10-16 % that were real losses of up
  to 2.6x in the middle frame's error. A trajectory
  whose frames move independently (a random walk, stage jitter) keeps its shape, because smoothing
  it raises the residual faster than it lowers the trace; a smooth one is smoothed as far as its
  shape allows. The variance estimate errs low (see peak_precision), which makes the rule choose
  less smoothing, not more.
- **From the dose** (no variances, and the first, coarse, iteration): ``lam = 0.0025 * (0.3 e/A^2 /
  dose_per_frame)^2``, ``k = 0``: negligible at the 0.3 e/A^2 frames of a 3 e/A^2, 10-frame tilt,
  strong for the 0.03 e/A^2 fractions of a finely sliced movie. With variances this is the least
  smoothing the noise rule may choose.

Frames whose measurement lies further than ``max(4 * robust sigma, outlier_floor)`` from the smooth
trajectory get weight 0 (two passes), so an outlier frame takes the position its neighbours imply.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_DOSE_E_PER_A2 = 0.3
BASE_SMOOTHING = 0.0025
MAX_FREE_START = 3  # frames at the start the noise rule may leave free of the acceleration penalty
SMOOTHING_DECADES = 9.0  # the noise rule's candidates: the dose rule's lam times 10^0 ... 10^9
SMOOTHING_STEPS_PER_DECADE = 4
MIN_RISK_GAIN = 0.1  # the noise rule smooths only when it expects to cut the risk by 10 % at least
RISK_GAIN_SPREADS = 2.0  # ... and by twice the standard deviation of the risk estimate
WEIGHT_RANGE = 10.0  # a frame's weight stays within 1/10 ... 10 of the median frame's
MIN_PEAK_FRACTION = 0.25
REJECTED_WEIGHT = 1e-6  # small enough to carry no weight, large enough to keep eigh's small eigenvalues exact
MAX_SMOOTHING = 1e7  # beyond this a 10 ... 100-frame trajectory is a straight line anyway


@dataclass(frozen=True)
class SmoothedTrajectory:
    """``positions`` ``(n, 2)`` smoothed; ``residuals`` ``(n,)`` |measured - smoothed|; ``outliers``
    bool ``(n,)``; ``smoothing`` the penalty weight ``lam`` and ``free_start`` ``k`` used; ``rule``
    ``"measurement noise"``, ``"dose"``, or ``"dose (measurement noise: no clear gain)"`` when the
    noise rule was asked for and declined."""

    positions: np.ndarray
    residuals: np.ndarray
    outliers: np.ndarray
    smoothing: float
    free_start: int = 0
    rule: str = "dose"


def smoothing_for_dose(dose_per_frame_e_per_a2: float) -> float:
    return BASE_SMOOTHING * (REFERENCE_DOSE_E_PER_A2 / dose_per_frame_e_per_a2) ** 2


def regularise_trajectory(
    measured: np.ndarray,
    *,
    dose_per_frame_e_per_a2: float,
    outlier_floor: float,
    peak_heights: np.ndarray | None = None,
    variances: np.ndarray | None = None,
) -> SmoothedTrajectory:
    """Smooth ``measured`` ``(n, 2)`` (any length unit; ``outlier_floor`` in the same unit).

    ``peak_heights`` ``(n,)``: correlation peak height of each frame's measurement (optional).
    ``variances`` ``(n,)``: each measurement's variance per axis (the unit squared; optional, all
    finite and positive): the smoothing is then chosen from them (module docstring).
    """
    m = np.asarray(measured, dtype=np.float64)
    n = m.shape[0]
    lam = smoothing_for_dose(dose_per_frame_e_per_a2)
    if n < 3:
        return SmoothedTrajectory(m.copy(), np.zeros(n), np.zeros(n, dtype=bool), lam)
    precision = _precision(variances, n)
    penalty = lam * _acceleration_penalty(n, 0)
    w = np.ones(n)
    if peak_heights is not None:
        h = np.asarray(peak_heights, dtype=np.float64)
        weak = h < MIN_PEAK_FRACTION * float(np.median(h))
        if weak.sum() <= n // 2:
            w[weak] = 0.0
    for _ in range(3):
        s = _smooth(m, w * precision, penalty)
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
    free, rule = 0, "dose"
    if variances is not None and w.sum() >= 4:
        chosen = _least_risk(m, w * precision, float(np.median(variances)), lam)
        if chosen is None:
            rule = "dose (measurement noise: no clear gain)"
        else:
            lam, free = chosen
            penalty, rule = lam * _acceleration_penalty(n, free), "measurement noise"
    s = _smooth(m, w * precision, penalty)
    r = np.linalg.norm(m - s, axis=1)
    return SmoothedTrajectory(s, r, w == 0, lam, free, rule)


def _precision(variances: np.ndarray | None, n: int) -> np.ndarray:
    """Each frame's weight relative to the median frame's (ones without variances)."""
    if variances is None:
        return np.ones(n)
    v = np.asarray(variances, dtype=np.float64)
    if v.shape != (n,) or not np.all(np.isfinite(v)) or not np.all(v > 0):
        raise ValueError(f"variances must be {n} finite positive values, got {v!r}")
    return np.clip(float(np.median(v)) / v, 1.0 / WEIGHT_RANGE, WEIGHT_RANGE)


def _acceleration_penalty(n: int, free_start: int) -> np.ndarray:
    """``D^T D`` ``(n, n)`` of the second differences centred on frames ``free_start + 1 ... n - 2``."""
    d = np.zeros((n - 2, n))
    idx = np.arange(n - 2)
    d[idx, idx], d[idx, idx + 1], d[idx, idx + 2] = 1.0, -2.0, 1.0
    d = d[free_start:]
    return d.T @ d


def _smooth(m: np.ndarray, weights: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    n = m.shape[0]
    return np.linalg.solve(np.diag(weights) + penalty + 1e-9 * np.eye(n), weights[:, None] * m)


def _least_risk(m: np.ndarray, weights: np.ndarray, variance: float, least: float) -> tuple[float, int] | None:
    """``(lam, free_start)`` minimising Stein's unbiased risk estimate of the smoother over both axes,
    or ``None`` when that risk is not below ``1 - MIN_RISK_GAIN`` times the risk of ``(least, 0)``.

    ``weights`` ``(n,)``: inverse variances relative to ``variance`` (0 for a rejected frame, which
    then counts in neither the residual nor the trace: its weight is taken as ``REJECTED_WEIGHT``,
    which puts its eigenvector's ``mu`` beyond any candidate ``lam``'s reach). With ``W`` the weights and ``P`` the
    penalty, ``A = W^-1/2 P W^-1/2 = U diag(mu) U^T`` makes the smoother diagonal: with ``z = U^T
    W^1/2 m`` the weighted residual is ``sum_j (lam mu_j / (1 + lam mu_j))^2 |z_j|^2`` and the trace
    ``sum_j 1 / (1 + lam mu_j)``, so each candidate costs O(n)."""
    n = m.shape[0]
    root = np.sqrt(np.where(weights > 0, weights, REJECTED_WEIGHT))
    lams = least * 10.0 ** (np.arange(int(SMOOTHING_DECADES * SMOOTHING_STEPS_PER_DECADE) + 1)
                            / SMOOTHING_STEPS_PER_DECADE)
    lams = lams[lams <= max(least, MAX_SMOOTHING)]
    best = (np.inf, least, 0, 0.0)
    baseline = None
    for free in range(min(MAX_FREE_START, n - 3) + 1):
        mu, u = np.linalg.eigh(_acceleration_penalty(n, free) / np.outer(root, root))
        mu = np.maximum(mu, 0.0)
        z = u.T @ (root[:, None] * m)
        z2 = np.sum(z * z, axis=1) / variance
        for lam in lams:
            shrink = 1.0 / (1.0 + lam * mu)
            risk = float(np.sum((1.0 - shrink) ** 2 * z2)) + 4.0 * float(np.sum(shrink))
            baseline = risk if baseline is None else baseline
            if risk < best[0] - 1e-12:
                # the spread of the risk estimate: |z_j|^2 / variance is a non-central chi^2 with 2 degrees
                # of freedom, variance 4 + 4 * (its non-centrality), the non-centrality estimated as |z_j|^2 - 2
                spread = float(np.sqrt(np.sum((1.0 - shrink) ** 4 * (4.0 + 4.0 * np.maximum(z2 - 2.0, 0.0)))))
                best = (risk, float(lam), free, spread)
    gain = baseline - best[0]
    if gain < MIN_RISK_GAIN * baseline or gain < RISK_GAIN_SPREADS * best[3]:
        return None
    return best[1], best[2]
