"""The whole-frame correlation filter from the movie's own spectral signal-to-noise ratio.

Each frame ``F_i`` of an ``n``-frame movie is its specimen signal ``S`` (moved) plus noise ``N_i``
(shot noise, independent between frames). Once the frames are roughly aligned, the cross-power of
one frame with the sum of the others has expectation ``(n - 1) P_S(k)`` (``P_S``: the specimen's
power per frame), and a frame's own power is ``P_S + P_N``. Summed over frames,
``|sum_i F_i|^2 - sum_i |F_i|^2 = sum_{i != j} F_i F_j*`` has expectation ``n (n - 1) P_S``, so

    P_S(k) = <|T|^2 - sum_i |F_i|^2> / (n (n - 1)),    P_N(k) = <sum_i |F_i|^2> / n - P_S(k)

averaged over a ring of ``|k|`` (``T`` the sum; DC and the central cross, where fixed patterns live,
excluded). The cross-power of frame ``i`` with its leave-one-out reference ``R_i = T - F_i`` is
then weighted by the maximum-likelihood (Wiener-like) weight of time-delay estimation (the
generalised cross-correlation of Knapp & Carter, 1976, for a signal seen once in the frame and
``n - 1`` times in the reference):

    W(k) = P_S / (P_N (P_N + (n - 1) P_S))

which is proportional to ``P_S`` where even the reference is noise-dominated (a matched filter of
the specimen's own spectrum) and flattens to ``1 / ((n - 1) P_N)`` where the reference is clean
(whitening). It replaces the constant B-factor ``exp(-B s^2 / 4)``, whose best ``B`` depends on the
specimen's spectrum, contrast and dose (measured: 10 px^2 best for a flat spectrum, 250 px^2 for a
steep one).

Guards. The ring estimates are pooled over bins of ``RING_BIN_WIDTH`` rings, shrunk towards zero by
their standard error (``P_S * P_S^2 / (P_S^2 + SE^2)``, 0 where negative), and interpolated
linearly in ``|k|``. When fewer than ``MIN_SIGNIFICANT_BINS`` bins hold a signal above
``SIGNIFICANCE_Z`` standard errors, there is too little signal to trust the estimate and
:func:`spectral_snr_weight` returns ``None`` (the caller keeps its B-factor filter).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

RING_BIN_WIDTH = 4  # rings (1 / min(ny, nx) cycles per pixel each) per estimation bin
SIGNIFICANCE_Z = 3.0
MIN_SIGNIFICANT_BINS = 3


@dataclass(frozen=True)
class SpectralSNR:
    """Per-bin estimates, each ``(n_bins,)``: ``frequency_cycles_per_px`` (bin centres, in cycles per
    pixel of the image the spectra belong to), ``signal_power`` (``P_S`` per frame, shrunk by its
    standard error, >= 0), ``noise_power`` (``P_N`` per frame), ``signal_se`` (standard error of the
    raw ``P_S``), ``significant`` (bool: raw ``P_S`` > ``SIGNIFICANCE_Z`` standard errors);
    ``n_frames``. Powers are in the units of ``|spectrum|^2``."""

    frequency_cycles_per_px: np.ndarray
    signal_power: np.ndarray
    noise_power: np.ndarray
    signal_se: np.ndarray
    significant: np.ndarray
    n_frames: int

    @property
    def ssnr(self) -> np.ndarray:
        """Per-frame spectral SNR ``P_S / P_N`` per bin ``(n_bins,)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.noise_power > 0, self.signal_power / self.noise_power, 0.0)

    def summary(self) -> dict:
        """JSON-able: the highest frequency (cycles/px) where the sum's SSNR ``n P_S / P_N`` is >= 1,
        and the number of significant bins."""
        above = np.flatnonzero(self.n_frames * self.ssnr >= 1.0)
        edge = float(self.frequency_cycles_per_px[above[-1]]) if above.size else 0.0
        return {"sum_ssnr_1_cycles_per_px": round(edge, 4), "significant_bins": int(self.significant.sum())}


@functools.lru_cache(maxsize=8)
def _bin_index(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bins, radius, weight)`` over the half spectrum of an image ``shape`` (cached, read-only):
    int64 bin (-1 for DC and the central cross), float64 ``|k|`` in cycles per pixel, float64 half-spectrum multiplicity."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny)
    kx = np.fft.rfftfreq(nx)
    radius = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    bins = np.floor(radius * min(ny, nx) / RING_BIN_WIDTH).astype(np.int64)
    bins[0, :] = -1
    bins[:, 0] = -1
    weight = np.full((ny, nx // 2 + 1), 2.0)
    weight[:, 0] = 1.0
    if nx % 2 == 0:
        weight[:, -1] = 1.0
    for arr in (bins, radius, weight):
        arr.setflags(write=False)
    return bins, radius, weight


@numba.njit(cache=True, nogil=True)
def _add_power_kernel(spec, power_sum):  # pragma: no cover - compiled
    """power_sum += |spec|^2, each part converted to float64 before squaring (no fastmath: the same
    values as NumPy's ``re.astype(float64) ** 2 + im.astype(float64) ** 2``)."""
    ny, nkx = spec.shape
    for y in range(ny):
        for x in range(nkx):
            re = np.float64(spec[y, x].real)
            im = np.float64(spec[y, x].imag)
            power_sum[y, x] += re * re + im * im


@numba.njit(cache=True)
def _ring_sums_kernel(power_sum, total, bins, weight, n_frames, sums):  # pragma: no cover - compiled
    """Accumulate, per bin b: sums[b] += (count, sum c, sum c^2, sum power) with weight w, where
    ``c = (|total|^2 - power_sum) / (n (n - 1))`` (one element's cross-power estimate of P_S) and
    ``power = power_sum / n``."""
    ny, nkx = power_sum.shape
    norm = 1.0 / (n_frames * (n_frames - 1.0))
    for y in range(ny):
        for x in range(nkx):
            b = bins[y, x]
            if b < 0:
                continue
            t = total[y, x]
            c = (t.real * t.real + t.imag * t.imag - power_sum[y, x]) * norm
            w = weight[y, x]
            sums[b, 0] += w
            sums[b, 1] += w * c
            sums[b, 2] += w * c * c
            sums[b, 3] += w * power_sum[y, x] / n_frames


def ring_sums(power_sum: np.ndarray, total: np.ndarray, shape: tuple[int, int], n_frames: int) -> np.ndarray:
    """Per-bin sums ``(n_bins, 4)`` float64: weight, sum of ``c``, sum of ``c^2``, sum of ``power``.

    ``power_sum`` float ``(ny, nx//2+1)``: ``sum_i |F_i|^2``; ``total`` complex ``(ny, nx//2+1)``:
    ``sum_i F_i``; ``c`` and ``power`` as in :func:`_ring_sums_kernel`.
    """
    ny, nx = shape
    if power_sum.shape != (ny, nx // 2 + 1) or total.shape != power_sum.shape:
        raise ValueError(f"spectra {power_sum.shape}, {total.shape} do not belong to an image {shape}")
    if n_frames < 2:
        raise ValueError(f"{n_frames} frames: the cross-power needs at least 2")
    bins, _, weight = _bin_index(shape)
    sums = np.zeros((int(bins.max()) + 1, 4))
    _ring_sums_kernel(np.ascontiguousarray(power_sum, dtype=np.float64), np.ascontiguousarray(total, dtype=np.complex128),
                      bins, weight, float(n_frames), sums)
    return sums


def estimate_spectral_snr(spectra: list[np.ndarray], total: np.ndarray, shape: tuple[int, int]) -> SpectralSNR:
    """Estimate ``P_S`` and ``P_N`` per ring bin from aligned frame spectra.

    ``spectra``: ``n_frames`` complex ``(ny, nx//2+1)`` half spectra of images ``shape``, shifted by
    the current alignment; ``total``: their sum.
    """
    n = len(spectra)
    power_sum = np.zeros(total.shape, dtype=np.float64)
    for spec in spectra:
        if spec.shape != total.shape:
            raise ValueError(f"spectrum {spec.shape} and sum {total.shape} differ")
        _add_power_kernel(np.ascontiguousarray(spec), power_sum)
    sums = ring_sums(power_sum, total, shape, n)
    count = np.maximum(sums[:, 0], 1e-300)
    mean_c = sums[:, 1] / count
    var_c = np.maximum(sums[:, 2] / count - mean_c**2, 0.0)
    # elements of a ring are about independent; the half spectrum's mirror copies are not, so the
    # effective count is the weight / 2 (each off-axis element stands for two mirror-image ones)
    se = np.sqrt(var_c / np.maximum(sums[:, 0] / 2.0, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(mean_c > 0, mean_c**2 / (mean_c**2 + se**2), 0.0)
    signal = np.maximum(mean_c, 0.0) * shrink
    noise = np.maximum(sums[:, 3] / count - np.maximum(mean_c, 0.0), 0.0)
    empty = sums[:, 0] == 0
    signal[empty] = 0.0
    noise[empty] = 0.0
    freq = (np.arange(sums.shape[0]) + 0.5) * RING_BIN_WIDTH / min(shape)
    return SpectralSNR(freq, signal, noise, se, (mean_c > SIGNIFICANCE_Z * se) & ~empty, n)


def spectral_snr_weight(estimate: SpectralSNR, shape: tuple[int, int]) -> np.ndarray | None:
    """float32 ``(ny, nx//2+1)``: ``W = P_S / (P_N (P_N + (n - 1) P_S))`` interpolated in ``|k|``,
    scaled to a maximum of 1, zero at DC and on the central cross; ``None`` when the estimate has
    fewer than ``MIN_SIGNIFICANT_BINS`` significant bins (too little signal: keep another filter)."""
    if int(estimate.significant.sum()) < MIN_SIGNIFICANT_BINS:
        return None
    p_s, p_n, n = estimate.signal_power, estimate.noise_power, estimate.n_frames
    with np.errstate(divide="ignore", invalid="ignore"):
        w_bins = np.where((p_n > 0) & (p_s > 0), p_s / (p_n * (p_n + (n - 1) * p_s)), 0.0)
    if not np.any(w_bins > 0):
        return None
    _, radius, _ = _bin_index(shape)
    weight = np.interp(radius, estimate.frequency_cycles_per_px, w_bins, right=0.0)
    weight /= weight.max()
    weight[0, :] = 0.0
    weight[:, 0] = 0.0
    return weight.astype(np.float32)


def shift_bound_px(estimate: SpectralSNR, shape: tuple[int, int]) -> float:
    """The Cramér–Rao bound (px of ``shape`` per axis, the root of the mean of the x and y variances)
    on the position of one frame against the sum of the other ``n - 1``, for a specimen that is a
    Gaussian random field with the per-frame power ``P_S`` of ``estimate`` under white noise ``P_N``.

    Each independent frequency ``k`` of the pair (frame, reference) carries the Fisher information
    ``2 (2 pi k)^2 g / (1 - g)`` on the shift, ``g = P_S^2 / ((P_S + P_N)(P_S + P_N / (n - 1)))`` the
    squared coherence (Knapp & Carter, 1976), i.e. ``2 (2 pi k)^2 (n - 1) P_S^2 / (P_N (n P_S + P_N))``;
    summed over the half spectrum with its multiplicity (DC and the central cross left out, as in
    the estimate). No unbiased estimator measures a frame more precisely; the others' own errors
    only add to it. A smoothness prior on the trajectory can do better where the path is smooth.
    ``inf`` without signal."""
    p_s, p_n, n = estimate.signal_power, estimate.noise_power, estimate.n_frames
    with np.errstate(divide="ignore", invalid="ignore"):
        per_bin = np.where((p_n > 0) & (p_s > 0), (n - 1) * p_s**2 / (p_n * (n * p_s + p_n)), 0.0)
    if n < 2 or not np.any(per_bin > 0):
        return float("inf")
    bins, radius, weight = _bin_index(shape)
    ratio = np.interp(radius, estimate.frequency_cycles_per_px, per_bin, right=0.0) * weight
    ratio[bins < 0] = 0.0
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    info_x = float(np.sum(ratio * (2.0 * np.pi * kx) ** 2))
    info_y = float(np.sum(ratio * (2.0 * np.pi * ky) ** 2))
    if not (info_x > 0 and info_y > 0):
        return float("inf")
    return float(np.sqrt(0.5 * (1.0 / info_x + 1.0 / info_y)))
