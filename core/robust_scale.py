"""A robust scale of residuals: the median absolute deviation scaled to a Gaussian sigma."""
from __future__ import annotations

import numpy as np

__all__ = ["MAD_TO_SIGMA", "mad_sigma"]

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def mad_sigma(values: np.ndarray) -> float:
    """``1.4826 * median(|v - median(v)|)`` of the values ``(n,)`` (NaN for an empty array)."""
    return MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))
