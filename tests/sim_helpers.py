"""Shared helpers: simulated movies with known ground truth (framewatch's own simulator)."""
import functools

import numpy as np
import scipy.fft

from framewatch.core.frc import band_averaged_frc, frc_curve
from framewatch.core.simulate import SimulationSpec, simulate_movie


@functools.lru_cache(maxsize=8)
def simulated(**spec):
    """Cached simulation (tests only read it)."""
    return simulate_movie(SimulationSpec(**spec))


def trajectory_rmse_px(estimated: np.ndarray, truth: np.ndarray) -> float:
    """RMSE of per-frame (x, y) shifts after removing the best constant offset (DESIGN.md)."""
    err = np.asarray(estimated) - np.asarray(truth)
    err -= err.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(err**2, axis=1))))


def quarter_band_frc(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """FRC of ``image`` against ``reference`` averaged over the four quarter bands to Nyquist."""
    freq, frc = frc_curve(scipy.fft.rfft2(image), scipy.fft.rfft2(reference), image.shape)
    return band_averaged_frc(freq, frc)
