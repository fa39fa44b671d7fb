"""Shared helpers: simulated movies with known ground truth (framewatch's own simulator)."""
import functools

import numpy as np
import scipy.fft

from framewatch.core.frc import band_averaged_frc, frc_curve
from framewatch.core.simulate import SimulationSpec, oracle_correction, simulate_movie


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


@functools.lru_cache(maxsize=8)
def oracle_frc(**spec):
    """Quarter-band FRC ``(4,)`` of the oracle sum of ``simulated(**spec)`` (true global and local
    motion, :func:`framewatch.core.simulate.oracle_correction`) against its ideal image; cached."""
    sim = simulated(**spec)
    return quarter_band_frc(oracle_correction(sim).dose_weighted_sum, sim.ideal)


def frc_over_oracle(result, **spec) -> np.ndarray:
    """Per quarter band: FRC of ``result.dose_weighted_sum`` against the ideal of ``simulated(**spec)``,
    over the oracle's (the accuracy score of issue 12: 1.0 = as good as knowing the motion)."""
    sim = simulated(**spec)
    return quarter_band_frc(result.dose_weighted_sum, sim.ideal) / oracle_frc(**spec)
