"""Shared helpers: simulated movies with known ground truth (framewatch's own simulator)."""
import functools

import numpy as np
import scipy.fft

from framewatch.core.fourier import rfft2, shift_spectrum
from framewatch.core.frc import band_averaged_frc, frc_curve
from framewatch.core.simulate import SimulationSpec, oracle_correction, simulate_movie
from framewatch.core.spectral_weight import estimate_spectral_snr, shift_bound_px


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


def frame_error_px(estimated: np.ndarray, truth: np.ndarray) -> float:
    """The per-axis rms error of a frame's position against the mean of the others' (``(n, 2)``
    estimated and true positions; :func:`trajectory_rmse_px` per axis times ``n / (n - 1)``): the
    quantity :func:`bound_px` bounds."""
    n = len(truth)
    return trajectory_rmse_px(estimated, truth) / np.sqrt(2.0) * n / (n - 1)


def bound_px(frames: np.ndarray, gain: np.ndarray, truth: np.ndarray, *, threads: int) -> float:
    """:func:`~framewatch.core.spectral_weight.shift_bound_px` of ``frames`` ``(n, ny, nx)`` (raw;
    corrected = raw x ``gain``) registered by their true positions ``truth`` ``(n, 2)`` (x, y)."""
    shape = frames.shape[1:]
    spectra = [shift_spectrum(rfft2((f * gain).astype(np.float32), threads=threads), shape, -dx, -dy)
               for f, (dx, dy) in zip(frames, truth)]
    total = np.sum(spectra, axis=0)
    return shift_bound_px(estimate_spectral_snr(spectra, total, shape), shape)
