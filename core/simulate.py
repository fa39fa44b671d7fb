"""Synthetic detector movies with exact ground truth.

The physical model
------------------
*Specimen.* A projected density ``B(x, y)`` that is a sum of many isotropic Gaussian blobs
("particles") at random positions, sigmas in 0.6-4 px drawn with ``1 / sigma**2`` uniform (many
small blobs, fewer large ones), each with about the same integrated mass and a random sign (peak
amplitude ~ ``+-1 / sigma**2``). The small blobs carry structure up to Nyquist and a spectrum that
is flat down to the lowest frequencies (signal for alignment); the larger ones add
low-resolution power; the signs (phase contrast) and the numbers keep the field near-Gaussian. A
few large, weak blobs (sigma 5-12 % of the field width) add smooth ice-thickness-like features.
Each blob is ``a * exp(-r**2 / (2 sigma**2))`` truncated to the square
``|x - cx|, |y - cy| <= 4 sigma`` (the truncation is part of the specimen, not an approximation of
it). Blob centres fill the field plus a margin wide enough that motion never uncovers an empty
border. At the default 60 blobs per 1000 px^2 and 15 % rms contrast, the variance of the ideal
image splits about 36 / 44 / 16 / 3 % over the quarter bands of Nyquist.

*Spectral shape* (``blob_mass_exponent`` = e, default 0). A blob's integrated mass scales as
``sigma**e`` (peak ``~ sigma**(e - 2)``), so e > 0 moves power from the small blobs (high
frequencies) to the large ones: a steeper, power-law-like fall-off. Quarter-band variance split of
the ideal image (1024^2, 10 % contrast, one seed): e = 0: 45 / 38 / 14 / 2.9 %; e = 1: 55 / 33 /
10 / 1.8 %; e = 2: 77 / 19 / 3.9 / 0.6 %; e = 3: 93 / 6 / 0.6 / 0.1 %. Real ice-embedded
specimens at tomography dose sit around e = 1-2.

*Exactness.* A detector pixel ``(i, j)`` covers ``[i - 1/2, i + 1/2) x [j - 1/2, j + 1/2)`` (pixel
centres at integer coordinates, x = column, y = row). Every rendered value is the exact integral of
the continuous density over the pixel's area, computed in closed form with ``erf`` (the Gaussian
and its truncation are separable). Nothing is ever interpolated or resampled: the image of frame
``t`` is the same analytic specimen, moved, and integrated over the pixels again. An integer shift
therefore gives exactly a shifted image, and a sub-pixel shift gives exactly what a detector would
record of the moved specimen.

*Motion.* The position of the specimen point that is at ``(x, y)`` in frame 0 is, in frame ``t``,
``(x, y) + s(t) + d(x, y, t)``: ``s(t) = shifts_px[t]`` is the global trajectory (DESIGN.md sign
convention, ``s(0) = (0, 0)``) and ``d(x, y, t) = a(t) * (u(x, y), v(x, y))`` a smooth local
deformation, ``a(t) = (1 - exp(-t / tau)) / (1 - exp(-(n - 1) / tau))`` (``tau = 2`` frames: fast
early, 0 at frame 0, 1 at the last frame). ``u, v`` are sums of three plane waves of wavelength at
least the field width, with their mean over the field removed (so ``s(t)`` is the mean motion) and
scaled so that ``max |(u, v)|`` over the field is ``local_amplitude_px``; plus ``local_bumps``
localised Gaussian bumps, each ``A_b exp(-|(x, y) - c_b|^2 / (2 sigma_b^2))`` times a random unit
direction, ``A_b = local_bump_amplitude_px``, ``sigma_b = local_bump_sigma_px`` (default 1/16 of the
shorter side), centres uniform over the field. The mean of waves plus bumps over the field is
removed (so ``s(t)`` stays the mean motion). ``tau`` is ``local_tau_frames``. A blob is small, so it
moves rigidly with the local field evaluated at its own frame-0 centre (the usual "particle moves
with its local field" model): each blob stays an exact Gaussian.

*Global trajectories* (``trajectory``). ``"drift_jump"`` (default): a jump of ``jump_px`` over frames
0-2, a linear drift of ``drift_px_per_frame`` at 60-120 degrees to it, 0.05 px jitter.
``"subpixel"``: smooth, extent < 0.9 px. ``"smooth"``: a drift of 0.75-1.25 x
``drift_px_per_frame`` whose direction turns steadily by up to 90 degrees. ``"jerky"``: a straight
drift of ``drift_px_per_frame`` plus an independent kick ``N(0, jerk_rms_px)`` per axis every frame
(a random walk: no smooth model fits it). ``"fast_early"`` (beam-induced): ``jump_px * (1 -
exp(-t)) / (1 - exp(-(n - 1)))`` (time constant 1 frame: 63 % of it in the first step) in a random
direction plus a slow drift of ``drift_px_per_frame / 4`` in another. ``"none"``, or an explicit
``(n_frames, 2)`` array.

*Transmission and dose.* Relative transmission ``T = g(1 + c (B - beta))``, where ``g`` is the
identity above 0.5 and below it bends smoothly (same value and slope) towards a floor of 0.3 that
it never reaches, so ``T > 0.3`` everywhere while almost every pixel is linear in ``B``. ``c`` is
solved so that the rms contrast ``std(T) / mean(T)`` is ``contrast_rms`` and ``beta`` so that
``mean(T) = 1``, both over the field at the middle frame's configuration (the image every
correction is registered to); they are constants of the specimen, shared by every frame. Expected
counts per pixel and frame: ``lambda(x) = dose_per_frame_e_per_a2 * pixel_size_a**2 * T(x)``, so the
mean count per pixel and frame is the dose times the pixel area.

*Detector.* ``raw ~ Poisson(lambda_t(x) * sensitivity(x))`` with ``sensitivity = 1 + pixel noise
(gain_rms) + column banding (gain_columns_rms)``, kept >= 0.1 and normalised to mean 1. The true multiplicative gain
reference is ``1 / sensitivity`` (``raw * true_gain`` has expectation ``lambda``); the gain a user
"has" is the true gain times ``1 + N(0, gain_reference_error_rms)``, a residual fixed pattern. Hot
pixels get an extra ``Poisson(hot_counts_per_frame)`` in every frame; a dead column reads 0 in every
frame (its gain stays finite: the corrector must find it from the data). Poisson counts come from a
counter-based generator keyed by (seed, frame, pixel), so frames are reproducible whatever the
number of threads.

*Ideal image.* The noiseless, gain-free expected counts per frame at the middle frame's
configuration, ``m = n_frames // 2``: ``render_expected(sim, m)``.

Scoring (what every accuracy test uses)
---------------------------------------
``quarter_band_frc(image, sim.ideal)``: FRC of an output against the noiseless image in the middle
frame's configuration, averaged over the four quarter bands of Nyquist (low to high).
``oracle_correction(sim, **options)``: ``correct_movie`` of the same noisy frames with the true
global motion and, with local motion, the true local field (``true_local_displacement(sim)``,
registered to the middle frame): the oracle sum; accuracy is ``quarter_band_frc`` of an output over
that of the oracle, per band. All new options default to the behaviour before they existed: the same
seed gives the same movie.

Randomness is split by component (specimen, trajectory, local field, gain, hot pixels, counts, bumps):
the same seed with, say, another dose or gain option gives the same specimen and trajectory. (The
specimen does depend on the largest motion, which sets the margin of blob centres.)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from .errors import SettingsError
from .settings import GainOrientation

__all__ = [
    "SimulationSpec",
    "SimulatedMovie",
    "simulate_movie",
    "render_expected",
    "local_displacement_px",
    "true_local_displacement",
    "oracle_correction",
    "quarter_band_frc",
    "local_time_profile",
    "truth_dict",
    "write_simulation",
    "SHIFT_CONVENTION",
]

SHIFT_CONVENTION = (
    "shifts_px[t] = (sx, sy): a feature at (x, y) in frame 0 appears at (x + sx, y + sy) in frame t; "
    "frame 0 is (0, 0); x = column (fast axis), y = row; unbinned movie pixels"
)
BLOB_SIGMA_RANGE_PX = (0.6, 4.0)
BLOB_TRUNCATION_SIGMAS = 4.0
TRANSMISSION_FLOOR = 0.3
TRANSMISSION_KNEE = 0.5  # below this T the soft floor takes over (continuous slope)
_KNEE_WIDTH = TRANSMISSION_KNEE - TRANSMISSION_FLOOR
LOCAL_TAU_FRAMES = 2.0
JITTER_RMS_PX = 0.05
FAST_EARLY_TAU_FRAMES = 1.0
TRAJECTORY_KINDS = ("drift_jump", "subpixel", "none", "smooth", "jerky", "fast_early")
SUBPIXEL_AMPLITUDE_PX = (0.33, 0.27)  # any two positions lie < 0.86 px apart
_DTYPE_MAX = {"uint8": 255.0, "uint16": 65535.0, "float32": math.inf}


# --------------------------------------------------------------------------------------------
# Specification and result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SimulationSpec:
    """What to simulate. Sizes in pixels, doses in electrons per square Angstrom.

    ``trajectory``: ``"drift_jump"`` (an early jump of ``jump_px`` over frames 0-2 in a random
    direction, a linear drift of ``drift_px_per_frame`` at 60-120 degrees from it, 0.05 px jitter),
    ``"subpixel"`` (smooth, extent < 0.9 px, non-integer), ``"smooth"`` (turning drift),
    ``"jerky"`` (drift plus random kicks of ``jerk_rms_px`` per axis and frame), ``"fast_early"``
    (beam-induced: ``jump_px`` approached with a 1-frame time constant, then slow drift), ``"none"``,
    or an explicit ``(n_frames, 2)`` sequence of (x, y) shifts in pixels with row 0 = (0, 0).
    Local motion: ``local_amplitude_px`` (smooth waves, max displacement), ``local_bumps`` Gaussian
    bumps of ``local_bump_amplitude_px`` and width ``local_bump_sigma_px`` (None: shorter side / 16),
    time profile constant ``local_tau_frames``. ``blob_mass_exponent``: spectral shape (0 = default;
    larger = less high-frequency power, see the module docstring).
    ``blob_density_per_kpx2``: blobs per 1000 square pixels. ``n_large_features``: large smooth
    blobs. ``dtype``: ``"uint8"`` (counts above 255 are clipped and flagged), ``"uint16"`` or
    ``"float32"``. ``radiation_damage``: fade each frame's specimen detail with the dose it has
    received (Grant & Grigorieff's filter at mid-frame dose, prior included); the ideal image stays
    undamaged, so dose weighting has something to recover. ``featureless_box_px``: ``(x0, y0, width,
    height)`` in frame-0 pixels where the specimen has no features (no blob centred inside).
    """

    ny: int = 1024
    nx: int = 1024
    n_frames: int = 10
    pixel_size_a: float = 1.5
    dose_per_frame_e_per_a2: float = 0.3
    prior_dose_e_per_a2: float = 0.0
    trajectory: str | tuple = "drift_jump"
    jump_px: float = 2.5
    drift_px_per_frame: float = 0.4
    local_amplitude_px: float = 0.0
    local_bumps: int = 0
    local_bump_amplitude_px: float = 2.0
    local_bump_sigma_px: float | None = None
    local_tau_frames: float = LOCAL_TAU_FRAMES
    jerk_rms_px: float = 0.4
    contrast_rms: float = 0.15
    blob_density_per_kpx2: float = 60.0
    blob_mass_exponent: float = 0.0
    n_large_features: int = 3
    gain_rms: float = 0.05
    gain_columns_rms: float = 0.0
    gain_reference_error_rms: float = 0.0
    n_hot_pixels: int = 0
    hot_counts_per_frame: float = 5.0
    dead_column: int | None = None
    dtype: str = "uint8"
    radiation_damage: bool = False
    featureless_box_px: tuple | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ny < 8 or self.nx < 8:
            raise SettingsError(f"movie size {self.ny} x {self.nx} px is too small", fix="use at least 8 x 8 pixels")
        if self.n_frames < 1:
            raise SettingsError(f"{self.n_frames} frames", fix="simulate at least one frame")
        if not self.pixel_size_a > 0:
            raise SettingsError(f"pixel size {self.pixel_size_a} A is not positive", fix="give Angstrom per pixel > 0")
        if not self.dose_per_frame_e_per_a2 > 0:
            raise SettingsError(f"dose per frame {self.dose_per_frame_e_per_a2} e/A^2 is not positive")
        if self.prior_dose_e_per_a2 < 0:
            raise SettingsError(f"prior dose {self.prior_dose_e_per_a2} e/A^2 is negative")
        if not 0.0 <= self.contrast_rms < 0.6:
            raise SettingsError(f"contrast_rms {self.contrast_rms} is outside [0, 0.6)")
        if not self.blob_density_per_kpx2 > 0:
            raise SettingsError(f"blob density {self.blob_density_per_kpx2} per 1000 px^2 is not positive")
        for name in ("jump_px", "drift_px_per_frame", "local_amplitude_px", "local_bump_amplitude_px", "jerk_rms_px",
                     "gain_rms", "gain_columns_rms", "gain_reference_error_rms", "hot_counts_per_frame"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise SettingsError(f"{name} = {value} must be a finite number >= 0")
        if self.n_hot_pixels < 0 or self.n_hot_pixels > self.ny * (self.nx - 1):
            raise SettingsError(f"{self.n_hot_pixels} hot pixels do not fit a {self.ny} x {self.nx} frame")
        if self.local_bumps < 0:
            raise SettingsError(f"local_bumps {self.local_bumps} is negative", fix="give a number of bumps >= 0")
        sigma = self.local_bump_sigma_px
        if sigma is not None and not (sigma > 0 and math.isfinite(sigma)):
            raise SettingsError(f"local_bump_sigma_px {sigma} is not positive", fix="give a width in px, or None")
        if not (self.local_tau_frames > 0 and math.isfinite(self.local_tau_frames)):
            raise SettingsError(f"local_tau_frames {self.local_tau_frames} is not positive")
        if not (math.isfinite(self.blob_mass_exponent) and -2.0 <= self.blob_mass_exponent <= 4.0):
            raise SettingsError(f"blob_mass_exponent {self.blob_mass_exponent} is outside [-2, 4]",
                                fix="0 is the default spectrum; 1-3 move power to low frequencies")
        if self.n_large_features < 0:
            raise SettingsError(f"n_large_features {self.n_large_features} is negative")
        if self.dead_column is not None and not 0 <= self.dead_column < self.nx:
            raise SettingsError(f"dead column {self.dead_column} is outside 0..{self.nx - 1}")
        if self.dtype not in _DTYPE_MAX:
            raise SettingsError(f"dtype {self.dtype!r} is not uint8, uint16 or float32")
        if isinstance(self.trajectory, str):
            if self.trajectory not in TRAJECTORY_KINDS:
                raise SettingsError(
                    f"trajectory {self.trajectory!r} is unknown", fix=f"use one of {', '.join(TRAJECTORY_KINDS)} or an array"
                )
        else:
            shifts = np.asarray(self.trajectory, dtype=np.float64)
            if shifts.shape != (self.n_frames, 2) or not np.all(np.isfinite(shifts)):
                raise SettingsError(
                    f"explicit trajectory has shape {shifts.shape}",
                    fix=f"give ({self.n_frames}, 2) finite (x, y) shifts",
                )
            if np.any(shifts[0] != 0):
                raise SettingsError(
                    "explicit trajectory does not start at (0, 0)", fix="subtract the first row (frame 0 is the origin)"
                )
            # store hashable and immutable
            object.__setattr__(self, "trajectory", tuple((float(x), float(y)) for x, y in shifts))

    @property
    def has_local_motion(self) -> bool:
        """True when the specimen deforms: smooth waves and/or localised bumps."""
        return self.n_frames > 1 and (self.local_amplitude_px > 0 or (self.local_bumps > 0 and self.local_bump_amplitude_px > 0))

    @property
    def bump_sigma_px(self) -> float:
        """Width (Gaussian sigma) of the local bumps: ``local_bump_sigma_px`` or 1/16 of the shorter side."""
        return float(self.local_bump_sigma_px) if self.local_bump_sigma_px is not None else min(self.nx, self.ny) / 16.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not isinstance(self.trajectory, str):
            d["trajectory"] = [list(row) for row in self.trajectory]
        return d


@dataclass(frozen=True, eq=False)
class SimulatedMovie:
    """A simulated movie and everything needed to reproduce any of its noiseless frames.

    Arrays: ``frames`` (n_frames, ny, nx) counts in ``spec.dtype``; ``gain``, ``true_gain``
    (ny, nx) float32 multiplicative gain references in movie orientation (``gain`` includes the
    reference error); ``shifts_px`` (n_frames, 2) float64 (x, y) global shifts; ``hot_pixels_xy``
    (n, 2) int64 (x, y); ``ideal`` (ny, nx) float32 expected counts per frame at the middle frame's
    configuration. Model internals: ``blobs`` (n_blobs, 4) float64 columns (x_px, y_px, sigma_px,
    peak amplitude) at frame 0; ``local_modes`` (2, n_modes, 4) float64 rows (cycles per field
    width in x, cycles per field height in y, amplitude_px, phase_rad) for u and v;
    ``local_bumps`` (n_bumps, 5) float64 rows (x_px, y_px, sigma_px, ax_px, ay_px) of the localised
    Gaussian bumps; ``local_offset_px`` (2,) subtracted field means (waves and bumps together);
    ``blob_local_px`` (n_blobs, 2) the local
    field (u, v) at each blob's frame-0 centre (the displacement at a(t) = 1); ``contrast_scale`` = ``c`` and
    ``density_offset`` = ``beta`` of the transmission ``T = g(1 + c (B - beta))``.
    """

    spec: SimulationSpec
    frames: np.ndarray
    gain: np.ndarray
    true_gain: np.ndarray
    shifts_px: np.ndarray
    hot_pixels_xy: np.ndarray
    dead_column: int | None
    ideal: np.ndarray
    blobs: np.ndarray
    local_modes: np.ndarray
    local_offset_px: np.ndarray
    blob_local_px: np.ndarray
    contrast_scale: float
    density_offset: float
    trajectory_info: dict = field(default_factory=dict)
    n_clipped_counts: int = 0
    local_bumps: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))

    @property
    def middle_frame(self) -> int:
        return self.spec.n_frames // 2

    @property
    def counts_clipped(self) -> bool:
        """True when some counts did not fit ``spec.dtype`` and were clipped to its maximum."""
        return self.n_clipped_counts > 0

    @property
    def counts_per_frame_px(self) -> float:
        """Mean expected counts per pixel and frame: dose per frame times pixel area."""
        return self.spec.dose_per_frame_e_per_a2 * self.spec.pixel_size_a**2


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------
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


@njit(cache=True, inline="always")
def _counts_of_density(d, c, beta, scale):  # pragma: no cover - compiled
    """Expected counts ``scale * T`` of projected density ``d``, ``T = g(1 + c (d - beta))``.

    ``g`` is the identity above the knee ``T = 0.5`` and below it decays smoothly (same value and
    slope at the knee) towards the floor ``T = 0.3``, which it never reaches.
    """
    t = 1.0 + c * (d - beta)
    if t < TRANSMISSION_KNEE:
        t = TRANSMISSION_FLOOR + _KNEE_WIDTH * math.exp((t - TRANSMISSION_KNEE) / _KNEE_WIDTH)
    return scale * t


@njit(cache=True, nogil=True)
def _density_to_counts(buf, c, beta, scale):  # pragma: no cover - compiled
    """In place: projected density (ny, nx) float64 -> expected counts per pixel."""
    ny, nx = buf.shape
    for j in range(ny):
        for i in range(nx):
            buf[j, i] = _counts_of_density(buf[j, i], c, beta, scale)


@njit(cache=True, inline="always")
def _mix64(z):  # pragma: no cover - compiled
    """SplitMix64 finaliser (a bijective 64-bit hash)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _unit(z):  # pragma: no cover - compiled
    """A 64-bit hash -> uniform in (0, 1)."""
    return (float(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def _poisson_frame(density, c, beta, scale, sens, key, out, max_count):  # pragma: no cover - compiled
    """out[j, i] ~ Poisson(counts(density[j, i]) * sens[j, i]), clipped to ``max_count``; returns #clipped.

    Uniforms come from a counter-based stream per pixel (SplitMix64 of ``key`` and the pixel
    index), so the result does not depend on threads. Means < 10: inversion of the CDF; larger
    means: Hormann's transformed rejection with squeeze (PTRS, 1993), also exact.
    """
    ny, nx = density.shape
    golden = np.uint64(0x9E3779B97F4A7C15)
    n_clipped = 0
    for j in range(ny):
        for i in range(nx):
            mu = _counts_of_density(density[j, i], c, beta, scale) * sens[j, i]
            state = _mix64(key ^ (np.uint64(j * nx + i) * golden))
            n = 0
            if mu <= 0.0:
                n = 0
            elif mu < 10.0:
                # inversion: the smallest n with u <= P(N <= n); the first four terms without
                # branches (the common case at movie doses), then term by term
                u = _unit(state)
                p0 = math.exp(-mu)
                p1 = p0 * mu
                p2 = p1 * mu * 0.5
                p3 = p2 * mu * (1.0 / 3.0)
                c1 = p0 + p1
                c2 = c1 + p2
                c3 = c2 + p3
                n = int(u > p0) + int(u > c1) + int(u > c2) + int(u > c3)
                if n == 4:
                    n = 3
                    p = p3
                    cdf = c3
                    while u > cdf and n < 1000:
                        n += 1
                        p *= mu / n
                        cdf += p
            else:
                slam = math.sqrt(mu)
                loglam = math.log(mu)
                b = 0.931 + 2.53 * slam
                aa = -0.059 + 0.02483 * b
                log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
                vr = 0.9277 - 3.6224 / (b - 2.0)
                while True:
                    state += golden
                    uu = _unit(_mix64(state)) - 0.5
                    state += golden
                    v = _unit(_mix64(state))
                    us = 0.5 - abs(uu)
                    kk = math.floor((2.0 * aa / us + b) * uu + mu + 0.43)
                    if us >= 0.07 and v <= vr:
                        n = int(kk)
                        break
                    if kk < 0 or (us < 0.013 and v > us):
                        continue
                    log_ratio = math.log(v) + log_invalpha - math.log(aa / (us * us) + b)
                    if log_ratio <= -mu + kk * loglam - math.lgamma(kk + 1.0):
                        n = int(kk)
                        break
            if n > max_count:
                out[j, i] = max_count
                n_clipped += 1
            else:
                out[j, i] = n
    return n_clipped


def _kernel_constants(sim) -> tuple[float, float, float]:
    """(c, beta, scale) of counts(d) = scale * g(1 + c (d - beta)), scale = counts per frame and pixel."""
    return sim.contrast_scale, sim.density_offset, sim.counts_per_frame_px


# --------------------------------------------------------------------------------------------
# Model pieces (pure numpy)
# --------------------------------------------------------------------------------------------
def local_time_profile(n_frames: int, *, tau_frames: float = LOCAL_TAU_FRAMES) -> np.ndarray:
    """a(t), (n_frames,) float64: 0 at frame 0, 1 at the last frame, fast early (time constant tau)."""
    if n_frames < 2:
        return np.zeros(n_frames)
    t = np.arange(n_frames, dtype=np.float64)
    return (1.0 - np.exp(-t / tau_frames)) / (1.0 - math.exp(-(n_frames - 1) / tau_frames))


def _global_trajectory(spec: SimulationSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    n = spec.n_frames
    t = np.arange(n, dtype=np.float64)
    kind = spec.trajectory
    if not isinstance(kind, str):
        return np.array(kind, dtype=np.float64).reshape(n, 2), {"kind": "explicit"}
    if kind == "none":
        return np.zeros((n, 2)), {"kind": "none"}
    if kind == "subpixel":
        phases = rng.uniform(0, 2 * np.pi, 2)
        omega = 1.5 * np.pi / max(n - 1, 1)
        shifts = np.empty((n, 2))
        for axis in range(2):
            amp = SUBPIXEL_AMPLITUDE_PX[axis]
            shifts[:, axis] = amp * (np.sin(omega * t + phases[axis]) - np.sin(phases[axis]))
        info = {"kind": "subpixel", "amplitude_px": list(SUBPIXEL_AMPLITUDE_PX), "omega_rad_per_frame": omega,
                "phase_rad": phases.tolist()}
        return shifts, info
    if kind == "smooth":
        # a drift whose direction turns steadily by up to 90 degrees over the movie
        theta0 = rng.uniform(0, 2 * np.pi)
        turn = rng.uniform(-0.5 * np.pi, 0.5 * np.pi)
        theta = theta0 + turn * t / max(n - 1, 1)
        speed = spec.drift_px_per_frame * rng.uniform(0.75, 1.25)
        steps = np.zeros((n, 2))
        steps[1:] = speed * np.column_stack([np.cos(theta[1:]), np.sin(theta[1:])])
        shifts = np.cumsum(steps, axis=0)
        info = {"kind": "smooth", "speed_px_per_frame": speed, "start_direction_deg": math.degrees(theta0) % 360.0,
                "turn_deg": math.degrees(turn)}
        return shifts, info
    if kind == "jerky":
        # a straight drift plus independent random kicks every frame (a random walk): no smooth model fits
        theta0 = rng.uniform(0, 2 * np.pi)
        kicks = rng.normal(0.0, spec.jerk_rms_px, (n, 2))
        kicks[0] = 0.0
        shifts = spec.drift_px_per_frame * t[:, None] * np.array([np.cos(theta0), np.sin(theta0)]) + np.cumsum(kicks, axis=0)
        info = {"kind": "jerky", "drift_px_per_frame": spec.drift_px_per_frame,
                "drift_direction_deg": math.degrees(theta0) % 360.0, "jerk_rms_px_per_axis": spec.jerk_rms_px}
        return shifts, info
    if kind == "fast_early":
        # beam-induced: an exponential approach of jump_px (time constant 1 frame: most of it in the
        # first two steps), then a slow drift at a quarter of drift_px_per_frame in another direction
        jump_angle = rng.uniform(0, 2 * np.pi)
        drift_angle = jump_angle + rng.uniform(np.pi / 4, 7 * np.pi / 4)
        tau = FAST_EARLY_TAU_FRAMES
        early = (1.0 - np.exp(-t / tau)) / (1.0 - math.exp(-max(n - 1, 1) / tau))
        slow = 0.25 * spec.drift_px_per_frame
        shifts = (spec.jump_px * early[:, None] * np.array([np.cos(jump_angle), np.sin(jump_angle)])
                  + slow * t[:, None] * np.array([np.cos(drift_angle), np.sin(drift_angle)]))
        info = {"kind": "fast_early", "jump_px": spec.jump_px, "tau_frames": tau,
                "jump_direction_deg": math.degrees(jump_angle) % 360.0, "slow_drift_px_per_frame": slow,
                "drift_direction_deg": math.degrees(drift_angle) % 360.0}
        return shifts, info
    # drift_jump
    jump_angle = rng.uniform(0, 2 * np.pi)
    drift_angle = jump_angle + rng.choice([-1.0, 1.0]) * rng.uniform(np.pi / 3, 2 * np.pi / 3)
    jump_profile = np.minimum(np.array([0.0, 0.75] + [1.0] * max(n - 2, 0))[:n], 1.0)
    jitter = rng.normal(0.0, JITTER_RMS_PX, (n, 2))
    jitter[0] = 0.0
    shifts = (
        spec.jump_px * jump_profile[:, None] * np.array([np.cos(jump_angle), np.sin(jump_angle)])
        + spec.drift_px_per_frame * t[:, None] * np.array([np.cos(drift_angle), np.sin(drift_angle)])
        + jitter
    )
    info = {"kind": "drift_jump", "jump_px": spec.jump_px, "jump_profile": jump_profile.tolist(),
            "jump_direction_deg": math.degrees(jump_angle) % 360.0,
            "drift_px_per_frame": spec.drift_px_per_frame,
            "drift_direction_deg": math.degrees(drift_angle) % 360.0, "jitter_rms_px": JITTER_RMS_PX}
    return shifts, info


def _local_unit_sum(modes: np.ndarray, nx: int, ny: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sum of plane waves ``sum_k A_k sin(2 pi (p_k x / nx + q_k y / ny) + phi_k)`` (modes (k, 4))."""
    out = np.zeros(np.broadcast(x, y).shape)
    for p, q, amp, phase in modes:
        out += amp * np.sin(2 * np.pi * (p * x / nx + q * y / ny) + phase)
    return out


def _bump_sum(bumps: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of Gaussian bumps ``(n, 5)`` rows (x_px, y_px, sigma_px, ax_px, ay_px)."""
    shape = np.broadcast(x, y).shape
    u, v = np.zeros(shape), np.zeros(shape)
    for cx, cy, sigma, ax, ay in bumps:
        g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * sigma**2))
        u += ax * g
        v += ay * g
    return u, v


def _local_field_at(modes: np.ndarray, bumps: np.ndarray, nx: int, ny: int, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Waves plus bumps at (x, y), before the field mean is removed."""
    u = _local_unit_sum(modes[0], nx, ny, x, y)
    v = _local_unit_sum(modes[1], nx, ny, x, y)
    if bumps.shape[0]:
        bu, bv = _bump_sum(bumps, x, y)
        u, v = u + bu, v + bv
    return u, v


def _local_bumps(spec: SimulationSpec, rng: np.random.Generator) -> np.ndarray:
    """(n, 5): bump centres uniform over the field, width ``spec.bump_sigma_px``, displacement
    ``local_bump_amplitude_px`` in a uniformly random direction."""
    n = spec.local_bumps if spec.local_bump_amplitude_px > 0 else 0
    if n == 0:
        return np.zeros((0, 5))
    angle = rng.uniform(0, 2 * np.pi, n)
    amp = spec.local_bump_amplitude_px
    return np.column_stack([rng.uniform(0, spec.nx - 1, n), rng.uniform(0, spec.ny - 1, n),
                            np.full(n, spec.bump_sigma_px), amp * np.cos(angle), amp * np.sin(angle)])


def _field_mean(modes: np.ndarray, bumps: np.ndarray, spec: SimulationSpec) -> np.ndarray:
    """Mean (u, v) of waves plus bumps over the field (257 x 257 samples)."""
    gy, gx = np.meshgrid(np.linspace(0, spec.ny - 1, 257), np.linspace(0, spec.nx - 1, 257), indexing="ij")
    u, v = _local_field_at(modes, bumps, spec.nx, spec.ny, gx, gy)
    return np.array([u.mean(), v.mean()])


def _local_field(spec: SimulationSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth (u, v) modes scaled to max |(u, v)| = local_amplitude_px over the field."""
    n_modes = 3
    modes = np.zeros((2, n_modes, 4))
    for c in range(2):
        for k in range(n_modes):
            # wave vector in cycles per field: |(p, q)| in [0.35, 1] (wavelength >= field size)
            norm = rng.uniform(0.35, 1.0)
            angle = rng.uniform(0, 2 * np.pi)
            modes[c, k] = (norm * np.cos(angle), norm * np.sin(angle), rng.uniform(0.5, 1.0),
                           rng.uniform(0, 2 * np.pi))
    offset = np.zeros(2)
    if spec.local_amplitude_px <= 0:
        modes[:, :, 2] = 0.0
        return modes, offset
    gy, gx = np.meshgrid(np.linspace(0, spec.ny - 1, 257), np.linspace(0, spec.nx - 1, 257), indexing="ij")
    u = _local_unit_sum(modes[0], spec.nx, spec.ny, gx, gy)
    v = _local_unit_sum(modes[1], spec.nx, spec.ny, gx, gy)
    mu, mv = u.mean(), v.mean()
    scale = spec.local_amplitude_px / np.sqrt((u - mu) ** 2 + (v - mv) ** 2).max()
    modes[:, :, 2] *= scale
    offset[:] = (mu * scale, mv * scale)
    return modes, offset


def _blob_table(spec: SimulationSpec, margin_px: float, rng: np.random.Generator) -> np.ndarray:
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


def _render_density(sim_like, t: int, out: np.ndarray) -> np.ndarray:
    out[...] = 0.0
    xs, ys = _blob_positions(sim_like, t)
    blobs = sim_like.blobs
    _splat_blobs(out, np.ascontiguousarray(xs), np.ascontiguousarray(ys), np.ascontiguousarray(blobs[:, 2]),
                 np.ascontiguousarray(blobs[:, 3]), BLOB_TRUNCATION_SIGMAS)
    return out


def _transmission(density: np.ndarray, c: float, beta: float) -> np.ndarray:
    """T = g(1 + c (B - beta)) (numpy twin of ``_counts_of_density`` with scale 1)."""
    t = 1.0 + c * (density - beta)
    low = t < TRANSMISSION_KNEE
    t[low] = TRANSMISSION_FLOOR + _KNEE_WIDTH * np.exp((t[low] - TRANSMISSION_KNEE) / _KNEE_WIDTH)
    return t


def _solve_transmission(density: np.ndarray, contrast_rms: float) -> tuple[float, float]:
    """(c, beta) such that std(T) = contrast_rms and mean(T) = 1 over ``density`` (ny, nx).

    ``c`` by bisection on std(T) / mean(T) over a strided subsample, then ``beta`` by Newton
    steps on the full image (the soft floor lifts the mean a little).
    """
    beta = float(density.mean(dtype=np.float64))
    if contrast_rms == 0:
        return 0.0, beta
    step = max(1, int(math.sqrt(density.size / 2.0**18)))
    sample = density[::step, ::step].ravel()
    sample_mean = float(sample.mean())

    def ratio(c: float) -> float:
        tr = _transmission(sample, c, sample_mean)
        return float(tr.std() / tr.mean())

    std = float(sample.std())
    if std == 0:
        raise SettingsError("the specimen has no contrast (empty field?)", fix="raise blob_density_per_kpx2")
    lo, hi = 0.0, contrast_rms / std
    while ratio(hi) < contrast_rms:
        lo, hi = hi, hi * 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ratio(mid) < contrast_rms:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-6 * hi:
            break
    c = 0.5 * (lo + hi)
    for _ in range(2):  # d mean(T) / d beta = -c wherever T is above the knee
        beta += (float(_transmission(density, c, beta).mean(dtype=np.float64)) - 1.0) / c
    return c, beta


def _detector(spec: SimulationSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sensitivity, true gain, user gain: (ny, nx) float32 each."""
    shape = (spec.ny, spec.nx)
    sens = np.ones(shape, dtype=np.float32)
    if spec.gain_rms:
        sens += np.float32(spec.gain_rms) * rng.standard_normal(shape, dtype=np.float32)
    if spec.gain_columns_rms:
        sens += np.float32(spec.gain_columns_rms) * rng.standard_normal((1, spec.nx), dtype=np.float32)
    np.maximum(sens, np.float32(0.1), out=sens)
    sens /= np.float32(sens.mean(dtype=np.float64))
    true_gain = (np.float32(1.0) / sens).astype(np.float32)
    if spec.gain_reference_error_rms:
        err = np.float32(1.0) + np.float32(spec.gain_reference_error_rms) * rng.standard_normal(shape, dtype=np.float32)
        gain = true_gain * np.maximum(err, np.float32(0.05))
    else:
        gain = true_gain.copy()
    return sens, true_gain, gain.astype(np.float32, copy=False)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _frame_key(seed: int, frame_index: int) -> np.uint64:
    mask = (1 << 64) - 1

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    return np.uint64(mix((mix(seed & mask) + 0x9E3779B97F4A7C15 * (frame_index + 1)) & mask))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def local_displacement_px(sim, x, y, t) -> tuple[np.ndarray, np.ndarray]:
    """Local part of the motion at frame ``t`` of the specimen point at (x, y) in frame 0.

    ``x, y`` broadcastable arrays of frame-0 pixel coordinates; ``t`` a frame index (int or an
    array broadcastable with x, y). Returns (dx, dy) in pixels; the full position in frame t is
    ``(x, y) + shifts_px[t] + (dx, dy)``. Zero at t = 0; zero everywhere without local motion.
    """
    spec = sim.spec
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = local_time_profile(spec.n_frames, tau_frames=spec.local_tau_frames)[np.asarray(t)]
    if not spec.has_local_motion:
        zero = np.zeros(np.broadcast(x, y, a).shape)
        return zero, zero.copy()
    u, v = _local_field_at(sim.local_modes, sim.local_bumps, spec.nx, spec.ny, x, y)
    return a * (u - sim.local_offset_px[0]), a * (v - sim.local_offset_px[1])


def true_local_displacement(sim: SimulatedMovie):
    """The simulator's local motion in the middle frame's registered coordinates, as a function.

    Returns ``f(x, y, t) -> (dx, dy)``: ``x, y`` arrays of pixel coordinates of the registered
    (middle-frame) image, ``t`` a frame index; zero at the middle frame. This is what
    ``correct_movie(..., local_displacement_px=f)`` expects for an oracle sum (DESIGN.md: every
    correction registers to the middle frame; a static deformation relative to the undeformed
    specimen is not identifiable from the frames, so the truth is taken relative to that frame).
    """
    m = sim.spec.n_frames // 2
    s_m = sim.shifts_px[m]

    def displacement(x, y, t):
        x0, y0 = np.asarray(x) - s_m[0], np.asarray(y) - s_m[1]
        ax, ay = local_displacement_px(sim, x0, y0, int(round(float(t))))
        bx, by = local_displacement_px(sim, x0, y0, m)
        return ax - bx, ay - by

    return displacement


def oracle_correction(sim: SimulatedMovie, **options):
    """``correct_movie`` of ``sim``'s frames with its true global (and local) motion: the oracle sum.

    The same noisy frames, gain, defect handling and dose weighting as a real run; only the motion
    is given instead of measured. ``options`` are ``correct_movie`` options (``pixel_size_a`` and
    ``dose_per_frame_e_per_a2`` default to the simulation's). With local motion the true field
    (:func:`true_local_displacement`) is applied; ``patches`` then defaults to (5, 5) only because
    ``correct_movie`` needs a patch grid to accept a given field (the grid is not used).
    Returns the ``MovieResult``; score it with :func:`quarter_band_frc` against ``sim.ideal``.
    """
    from .correct import correct_movie

    opts = dict(pixel_size_a=sim.spec.pixel_size_a, dose_per_frame_e_per_a2=sim.spec.dose_per_frame_e_per_a2)
    opts.update(options)
    if sim.spec.has_local_motion:
        patches = opts.get("patches")
        if not isinstance(patches, (tuple, list)) or min(patches) < 2:  # "auto" or none
            opts["patches"] = (5, 5)
        return correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px,
                             local_displacement_px=true_local_displacement(sim), **opts)
    opts["patches"] = (0, 0)  # whole-frame: the true shifts are all the motion there is
    return correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px, **opts)


def quarter_band_frc(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """FRC of ``image`` against ``reference`` (both ``(ny, nx)``), averaged over the four quarter
    bands of Nyquist (low to high): ``(4,)``. The scoring of every accuracy test: ``reference`` is
    ``sim.ideal`` (noiseless, the middle frame's configuration)."""
    from .frc import band_averaged_frc, frc_curve

    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    freq, frc = frc_curve(np.fft.rfft2(a), np.fft.rfft2(b), a.shape)
    return band_averaged_frc(freq, frc)


def render_expected(sim: SimulatedMovie, frame_index: int) -> np.ndarray:
    """Noiseless, gain-free expected counts (ny, nx) float32 of the specimen as it is in frame ``frame_index``."""
    n = sim.spec.n_frames
    if not -n <= frame_index < n:
        raise IndexError(f"frame {frame_index} of a {n}-frame simulation")
    buf = np.empty((sim.spec.ny, sim.spec.nx), dtype=np.float64)
    _render_density(sim, int(frame_index) % n, buf)
    _density_to_counts(buf, *_kernel_constants(sim))
    return buf.astype(np.float32)


def ideal_image(sim: SimulatedMovie) -> np.ndarray:
    """The ideal image: ``render_expected`` at the middle frame (n_frames // 2), (ny, nx) float32."""
    return render_expected(sim, sim.middle_frame)


def simulate_movie(spec: SimulationSpec, *, threads: int = 0) -> SimulatedMovie:
    """Simulate one movie (see the module docstring for the model).

    ``threads``: frames rendered concurrently (0 = all cores). The result does not depend on it.
    """
    seeds = np.random.SeedSequence(spec.seed).spawn(7)  # the first six as before: same seed, same movie
    rng_specimen, rng_traj, rng_local, rng_gain, rng_hot, _, rng_bumps = (np.random.default_rng(s) for s in seeds)
    counts_seed = int(seeds[5].generate_state(2, dtype=np.uint64)[0])

    shifts, traj_info = _global_trajectory(spec, rng_traj)
    shifts[0] = 0.0
    modes, offset = _local_field(spec, rng_local)
    bumps = _local_bumps(spec, rng_bumps)
    if bumps.shape[0]:
        offset = _field_mean(modes, bumps, spec)
    max_motion = float(np.abs(shifts).max(initial=0.0)) + spec.local_amplitude_px
    if bumps.shape[0]:
        max_motion += spec.local_bump_amplitude_px * min(bumps.shape[0], 4)
    margin = math.ceil(max_motion + BLOB_TRUNCATION_SIGMAS * BLOB_SIGMA_RANGE_PX[1] + 2)
    blobs = _blob_table(spec, margin, rng_specimen)

    # a provisional movie object carries the geometry for rendering
    sim = SimulatedMovie(
        spec=spec, frames=np.empty((0, 0, 0), np.uint8), gain=np.empty((0, 0), np.float32),
        true_gain=np.empty((0, 0), np.float32), shifts_px=shifts, hot_pixels_xy=np.empty((0, 2), np.int64),
        dead_column=spec.dead_column, ideal=np.empty((0, 0), np.float32), blobs=blobs, local_modes=modes,
        local_offset_px=offset, blob_local_px=np.zeros((blobs.shape[0], 2)), contrast_scale=0.0,
        density_offset=0.0, trajectory_info=traj_info, local_bumps=bumps,
    )
    if spec.has_local_motion:
        u, v = local_displacement_px(sim, blobs[:, 0], blobs[:, 1], spec.n_frames - 1)  # a(t) = 1
        sim = dataclasses.replace(sim, blob_local_px=np.column_stack([u, v]))
    m = spec.n_frames // 2
    density = _render_density(sim, m, np.empty((spec.ny, spec.nx), dtype=np.float64))
    c, beta = _solve_transmission(density, spec.contrast_rms)
    sim = dataclasses.replace(sim, contrast_scale=c, density_offset=beta)
    constants = _kernel_constants(sim)
    _density_to_counts(density, *constants)
    ideal = density.astype(np.float32)
    del density

    sens, true_gain, gain = _detector(spec, rng_gain)
    frames = np.empty((spec.n_frames, spec.ny, spec.nx), dtype=np.dtype(spec.dtype))
    max_count = _DTYPE_MAX[spec.dtype]
    n_workers = min(spec.n_frames, threads if threads > 0 else _available_cores())
    per_thread = threading.local()

    def one_frame(t: int) -> int:
        buf = getattr(per_thread, "buf", None)
        if buf is None:
            buf = per_thread.buf = np.empty((spec.ny, spec.nx), dtype=np.float64)
        _render_density(sim, t, buf)
        if spec.radiation_damage:
            _damage_density(buf, spec, t)
        return int(_poisson_frame(buf, *constants, sens, _frame_key(counts_seed, t), frames[t], max_count))

    if n_workers <= 1:
        n_clipped = sum(one_frame(t) for t in range(spec.n_frames))
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            n_clipped = sum(pool.map(one_frame, range(spec.n_frames)))

    # defects
    hot_xy = np.empty((0, 2), dtype=np.int64)
    if spec.n_hot_pixels:
        n_cols = spec.nx - (1 if spec.dead_column is not None else 0)
        flat = rng_hot.choice(spec.ny * n_cols, size=spec.n_hot_pixels, replace=False)
        hy, hx = np.divmod(flat, n_cols)
        if spec.dead_column is not None:
            hx = hx + (hx >= spec.dead_column)
        hot_xy = np.column_stack([hx, hy]).astype(np.int64)
        extra = rng_hot.poisson(spec.hot_counts_per_frame, (spec.n_frames, spec.n_hot_pixels))
        values = frames[:, hy, hx].astype(np.float64) + extra
        n_clipped += int(np.count_nonzero(values > max_count))
        frames[:, hy, hx] = np.minimum(values, max_count).astype(frames.dtype)
    if spec.dead_column is not None:
        frames[:, :, spec.dead_column] = 0
    if n_clipped:
        warnings.warn(
            f"{n_clipped} pixel counts exceeded {spec.dtype} and were clipped; use dtype='uint16'",
            RuntimeWarning,
            stacklevel=2,
        )
    return dataclasses.replace(
        sim, frames=frames, gain=gain, true_gain=true_gain, hot_pixels_xy=hot_xy, ideal=ideal,
        n_clipped_counts=n_clipped,
    )


def _damage_density(density: np.ndarray, spec: SimulationSpec, t: int) -> None:
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


def truth_dict(sim: SimulatedMovie) -> dict:
    """The ground truth as a JSON-able dict (no arrays of image size)."""
    spec = sim.spec
    n = spec.n_frames
    accumulated = [spec.prior_dose_e_per_a2 + (i + 1) * spec.dose_per_frame_e_per_a2 for i in range(n)]
    return {
        "spec": spec.as_dict(),
        "shape": [n, spec.ny, spec.nx],
        "pixel_size_a": spec.pixel_size_a,
        "shifts_px": [[float(x), float(y)] for x, y in sim.shifts_px],
        "shift_convention": SHIFT_CONVENTION,
        "trajectory": sim.trajectory_info,
        "reference_frame": sim.middle_frame,
        "ideal_description": "expected counts per frame, no noise, no gain, specimen as in frame n_frames // 2",
        "hot_pixels_xy": sim.hot_pixels_xy.tolist(),
        "dead_column": sim.dead_column,
        "local_motion": {
            "amplitude_px": spec.local_amplitude_px,
            "model": "d(x, y, t) = a(t) * (u(x, y), v(x, y)) at frame-0 coordinates; "
                     "u = sum_k A_k sin(2 pi (p_k x / nx + q_k y / ny) + phi_k) "
                     "+ sum_b ax_b exp(-|(x, y) - c_b|^2 / (2 sigma_b^2)) - offset_u (v likewise, ay_b); "
                     "a(t) = (1 - exp(-t / tau)) / (1 - exp(-(n - 1) / tau))",
            "tau_frames": spec.local_tau_frames,
            "a_t": local_time_profile(n, tau_frames=spec.local_tau_frames).tolist(),
            "bumps": sim.local_bumps.tolist(),
            "bump_columns": ["x_px", "y_px", "sigma_px", "ax_px", "ay_px"],
            "modes_u": sim.local_modes[0].tolist(),
            "modes_v": sim.local_modes[1].tolist(),
            "mode_columns": ["p_cycles_per_nx", "q_cycles_per_ny", "amplitude_px", "phase_rad"],
            "offset_px": sim.local_offset_px.tolist(),
        },
        "dose_per_frame_e_per_a2": spec.dose_per_frame_e_per_a2,
        "prior_dose_e_per_a2": spec.prior_dose_e_per_a2,
        "accumulated_dose_e_per_a2": accumulated,
        "dose_rule": "N_i = prior_dose + (i + 1) * dose_per_frame (end of frame i, 0-based)",
        "expected_counts_per_frame_px": sim.counts_per_frame_px,
        "specimen": {
            "n_blobs": int(sim.blobs.shape[0]),
            "blob_sigma_range_px": list(BLOB_SIGMA_RANGE_PX),
            "n_large_features": spec.n_large_features,
            "truncation_sigmas": BLOB_TRUNCATION_SIGMAS,
            "transmission": "T = g(1 + c (B - beta)); g(t) = t for t >= knee, else floor + (knee - floor) "
                            "exp((t - knee) / (knee - floor)); counts = dose_per_frame * pixel_size^2 * T",
            "transmission_floor": TRANSMISSION_FLOOR,
            "transmission_knee": TRANSMISSION_KNEE,
            "contrast_scale": sim.contrast_scale,
            "density_offset": sim.density_offset,
            "contrast_rms": spec.contrast_rms,
            "blob_mass_exponent": spec.blob_mass_exponent,
        },
        "gain": "multiplicative: corrected = raw * gain; true gain = 1 / sensitivity",
        "counts_clipped": sim.counts_clipped,
        "n_clipped_counts": sim.n_clipped_counts,
    }


def write_simulation(
    sim: SimulatedMovie,
    prefix: str | os.PathLike,
    *,
    movie_format: str = "tiff",
    mrc_mode: int | None = None,
    tiff_compression: str = "lzw",
    gain_orientation: GainOrientation = GainOrientation(),
) -> dict[str, Path]:
    """Write PREFIX.tif|.mrc, PREFIX_gain.mrc, PREFIX_ideal.mrc and PREFIX_truth.json.

    The gain is stored so that applying ``gain_orientation`` to the file gives the movie-oriented
    ``sim.gain``. Returns the paths by role: "movie", "gain", "ideal", "truth".
    """
    from .gain import unorient_gain
    from .movie_io import write_image_mrc, write_movie

    if movie_format not in ("tiff", "mrc"):
        raise SettingsError(f"movie format {movie_format!r} is not tiff or mrc")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {
        "movie": Path(f"{prefix}.{'tif' if movie_format == 'tiff' else 'mrc'}"),
        "gain": Path(f"{prefix}_gain.mrc"),
        "ideal": Path(f"{prefix}_ideal.mrc"),
        "truth": Path(f"{prefix}_truth.json"),
    }
    px = sim.spec.pixel_size_a
    write_movie(paths["movie"], sim.frames, mrc_mode=mrc_mode, tiff_compression=tiff_compression, pixel_size_a=px)
    stored_gain = np.ascontiguousarray(unorient_gain(sim.gain, gain_orientation), dtype=np.float32)
    write_image_mrc(paths["gain"], stored_gain, pixel_size_a=px)
    write_image_mrc(paths["ideal"], sim.ideal, pixel_size_a=px)
    truth = truth_dict(sim)
    truth["gain_orientation"] = dataclasses.asdict(gain_orientation)
    truth["files"] = {role: path.name for role, path in paths.items()}
    truth["movie_format"] = movie_format
    paths["truth"].write_text(json.dumps(truth, indent=1) + "\n")
    return paths
