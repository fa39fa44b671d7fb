"""The simulator's specimen: a table of Gaussian blobs and its exact pixel-integrated rendering.

Blobs are ``a * exp(-r**2 / (2 sigma**2))`` truncated to ``|x - cx|, |y - cy| <= 4 sigma``; every
rendered pixel is the exact integral over its area (:func:`_splat_blobs`, a product of ``erf``
differences). Each blob moves rigidly with the global shift and the local field at its frame-0
centre. The model is described in :mod:`framewatch.core.simulate`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .simulated_local_motion import local_time_profile
from .simulation_spec import SimulationSpec

__all__ = ["BLOB_SIGMA_RANGE_PX", "BLOB_TRUNCATION_SIGMAS", "blob_table", "render_density", "damage_density"]

BLOB_SIGMA_RANGE_PX = (0.6, 4.0)
BLOB_TRUNCATION_SIGMAS = 4.0


@njit(cache=True, nogil=True, parallel=False)
def _splat_blobs(out, xs, ys, sigmas, amps, radius_sigmas):  # pragma: no cover - compiled
    """Add pixel-integrated truncated Gaussians to ``out`` (ny, nx) float64, in blob order.

    Blob b is ``amps[b] * exp(-r**2 / (2 sigmas[b]**2))`` on the square ``|x - xs[b]|,
    |y - ys[b]| <= radius_sigmas * sigmas[b]`` (zero outside); pixel (j, i) receives its exact
    integral over ``[i - 1/2, i + 1/2) x [j - 1/2, j + 1/2)``, a product of two ``erf`` differences.
    """
    ny, nx = out.shape
    n = xs.shape[0]
    wmax = 3
    for b in range(n):
        w = 2 * int(math.ceil(radius_sigmas * sigmas[b])) + 3
        if w > wmax:
            wmax = w
    gx = np.empty(wmax, dtype=np.float64)
    gy = np.empty(wmax, dtype=np.float64)
    sqrt2 = math.sqrt(2.0)
    half_pi = math.pi / 2.0
    for b in range(n):
        s = sigmas[b]
        r = radius_sigmas * s
        cx = xs[b]
        cy = ys[b]
        i0 = max(int(math.floor(cx - r + 0.5)), 0)
        i1 = min(int(math.floor(cx + r + 0.5)), nx - 1)
        j0 = max(int(math.floor(cy - r + 0.5)), 0)
        j1 = min(int(math.floor(cy + r + 0.5)), ny - 1)
        if i0 > i1 or j0 > j1:
            continue
        inv = 1.0 / (s * sqrt2)
        # 1-D profiles: the truncated Gaussian's integral over each pixel (edges clamped to +-r)
        prev = math.erf(min(max(i0 - 0.5 - cx, -r), r) * inv)
        for i in range(i0, i1 + 1):
            cur = math.erf(min(max(i + 0.5 - cx, -r), r) * inv)
            gx[i - i0] = cur - prev
            prev = cur
        prev = math.erf(min(max(j0 - 0.5 - cy, -r), r) * inv)
        for j in range(j0, j1 + 1):
            cur = math.erf(min(max(j + 0.5 - cy, -r), r) * inv)
            gy[j - j0] = cur - prev
            prev = cur
        scale = amps[b] * half_pi * s * s  # (sigma sqrt(pi / 2))**2 turns erf differences into integrals
        w = i1 - i0 + 1
        for j in range(j0, j1 + 1):
            wy = scale * gy[j - j0]
            row = out[j, i0 : i1 + 1]
            for k in range(w):
                row[k] += wy * gx[k]



def blob_table(spec: SimulationSpec, margin_px: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) float64: x_px, y_px, sigma_px, peak amplitude at frame 0 (small blobs, then large ones)."""
    x_lo, x_hi = -margin_px, spec.nx - 1 + margin_px
    y_lo, y_hi = -margin_px, spec.ny - 1 + margin_px
    area = (x_hi - x_lo) * (y_hi - y_lo)
    n = int(rng.poisson(spec.blob_density_per_kpx2 * area / 1000.0))
    s_lo, s_hi = BLOB_SIGMA_RANGE_PX
    # 1 / sigma**2 uniform: many small blobs, few large ones; every blob has about the same
    # integrated mass (peak ~ 1 / sigma**2), random sign. The small blobs carry a spectrum flat to
    # ~0.2 cycles/px that still holds a few % of the variance above 3/4 Nyquist; being many, they
    # keep the field near-Gaussian, so the linear transmission rarely meets its floor.
    sigma = 1.0 / np.sqrt(rng.uniform(s_hi**-2, s_lo**-2, n))
    amp = rng.choice([-1.0, 1.0], n) * rng.uniform(0.4, 1.0, n) * (s_lo / sigma) ** 2
    if spec.blob_mass_exponent:
        amp *= (sigma / s_lo) ** spec.blob_mass_exponent  # mass ~ sigma**exponent: less high-frequency power
    blobs = np.column_stack([rng.uniform(x_lo, x_hi, n), rng.uniform(y_lo, y_hi, n), sigma, amp])
    # row-band order (16-px bands, then x) keeps the splatting kernel in cache
    blobs = blobs[np.argsort(np.floor(blobs[:, 1] / 16.0) * (4.0 * (x_hi - x_lo + 1.0)) + blobs[:, 0], kind="stable")]
    if spec.n_large_features:
        # weak and smooth; peak comparable to the rms of the blob field (Campbell's theorem)
        rms_blobs = math.sqrt(spec.blob_density_per_kpx2 / 1000.0 * np.mean(amp**2 * np.pi * sigma**2)) if n else 1.0
        m = spec.n_large_features
        big_sigma = rng.uniform(0.05, 0.12, m) * min(spec.nx, spec.ny)
        big = np.column_stack([rng.uniform(0, spec.nx - 1, m), rng.uniform(0, spec.ny - 1, m), big_sigma,
                               rng.choice([-1.0, 1.0], m) * rng.uniform(0.5, 1.5, m) * rms_blobs])
        blobs = np.vstack([blobs, big])
    if spec.featureless_box_px is not None:
        x0, y0, w, h = spec.featureless_box_px
        inside = (blobs[:, 0] >= x0) & (blobs[:, 0] < x0 + w) & (blobs[:, 1] >= y0) & (blobs[:, 1] < y0 + h)
        blobs = blobs[~inside]
    return blobs



def _blob_positions(sim_like, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Blob centres (x, y) at frame t: frame-0 centre + global shift + local field at that centre."""
    blobs = sim_like.blobs
    sx, sy = sim_like.shifts_px[t]
    a = local_time_profile(sim_like.spec.n_frames, tau_frames=sim_like.spec.local_tau_frames)[t]
    if a == 0.0 or not sim_like.spec.has_local_motion:
        return blobs[:, 0] + sx, blobs[:, 1] + sy
    return blobs[:, 0] + (sx + a * sim_like.blob_local_px[:, 0]), blobs[:, 1] + (sy + a * sim_like.blob_local_px[:, 1])



def render_density(sim_like, t: int, out: np.ndarray) -> np.ndarray:
    out[...] = 0.0
    xs, ys = _blob_positions(sim_like, t)
    blobs = sim_like.blobs
    _splat_blobs(out, np.ascontiguousarray(xs), np.ascontiguousarray(ys), np.ascontiguousarray(blobs[:, 2]),
                 np.ascontiguousarray(blobs[:, 3]), BLOB_TRUNCATION_SIGMAS)
    return out



def damage_density(density: np.ndarray, spec: SimulationSpec, t: int) -> None:
    """Radiation damage: fade the specimen density of frame ``t`` in place by the Grant & Grigorieff
    amplitude filter ``exp(-N / (2 Ne(k)))`` at the dose in the middle of that frame,
    ``N = prior + (t + 0.5) * dose_per_frame`` (the mean is kept; ``Ne`` at 300 kV)."""
    from .dose import critical_exposure_e_per_a2

    ny, nx = density.shape
    k = np.sqrt(np.fft.fftfreq(ny)[:, None] ** 2 + np.fft.rfftfreq(nx)[None, :] ** 2) / spec.pixel_size_a
    dose = spec.prior_dose_e_per_a2 + (t + 0.5) * spec.dose_per_frame_e_per_a2
    spectrum = np.fft.rfft2(density)
    spectrum *= np.exp(-dose / (2.0 * critical_exposure_e_per_a2(k)))
    density[...] = np.fft.irfft2(spectrum, s=(ny, nx))
