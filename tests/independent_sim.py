"""A second movie simulator, written apart from ``framewatch.core.simulate`` and sharing none of its
code, so that the accuracy claims are not only claims about framewatch's own simulator (issue 12:
"your own simulator is not the world").

What differs from ``core/simulate.py``, on purpose:

- **Specimen**: a Gaussian random field, not blobs. Its power spectrum is a defocused phase-contrast
  image's: ``CTF(k)^2 * (k^2 + k0^2)^(-a/2)`` with ``CTF = -(sqrt(1 - A^2) sin chi + A cos chi)``,
  ``chi = pi lambda df k^2 - pi/2 Cs lambda^3 k^4`` (300 kV, Cs 2.7 mm, amplitude contrast
  A = 0.07, defocus ``defocus_um``): the power oscillates to zero on rings and there is little
  contrast at the lowest frequencies, as in a tomogram's tilt images. ``a``: 1 or 2.
- **Radiation damage**: a B-factor that grows with the accumulated dose N,
  ``exp(-B_per_dose * N * k^2 / 4)`` (a Gaussian in k), not Grant & Grigorieff's critical exposure
  that framewatch's dose weighting uses.
- **Detector**: every frame is rendered on a grid twice as fine and binned 2 x 2 (pixel
  integration), multiplied by a per-pixel sensitivity (the gain reference is its inverse, normalised
  to mean 1), then counted (Poisson).
- **Motion**, drawn here: ``beam`` (an exponential approach of 3 px in a random direction plus a
  slow drift: the fast-early shape of beam-induced motion), ``walk`` (a random walk, 0.3 px rms
  steps per axis), ``wobble`` (a 0.8 px sinusoid with a 4-frame period on a drift of 0.2 px per
  frame).

- **Local motion** (``local_amplitude_px`` > 0): a field ``D(u)`` made of a tilt-plane term and
  three Gaussian bumps (sigma a tenth to a fifth of the frame) scaled to the given largest
  displacement, growing in time as ``sqrt`` of the dose (fast early), zero at the middle frame.
  Frames are then rendered by cubic-spline resampling of the fine grid (``scipy.ndimage``), each
  pixel mapped back through the field by fixed-point iteration, instead of by a Fourier shift.

Conventions are DESIGN.md's: ``shifts_px[i]`` (x, y) is where frame ``i`` shows a specimen point
relative to frame 0 (pixel ``u + shifts_px[i]`` of frame ``i`` shows what pixel ``u`` of frame 0
shows), and ``ideal`` is the noiseless, undamaged specimen in the middle frame's configuration,
binned as the frames are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

WAVELENGTH_300KV_A = 0.019687
CS_A = 2.7e7
AMPLITUDE_CONTRAST = 0.07
PATHS = ("beam", "walk", "wobble")


@dataclass(frozen=True)
class IndependentMovie:
    """``frames`` uint16 ``(n, ny, nx)`` counts; ``gain`` float32 ``(ny, nx)`` (corrected = raw x gain);
    ``shifts_px`` ``(n, 2)`` the truth; ``ideal`` float32 ``(ny, nx)``; ``local``: the true local
    motion as ``f(x, y, t) -> (dx, dy)`` in the middle frame's registered coordinates (pixel
    ``u + shifts_px[t] - shifts_px[mid] + f(u, t)`` of frame ``t`` shows what pixel ``u`` of the
    middle frame shows; what ``correct_movie(local_displacement_px=...)`` takes), ``None`` without."""

    frames: np.ndarray
    gain: np.ndarray
    shifts_px: np.ndarray
    ideal: np.ndarray
    local: object = None


def trajectory_px(path: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_frames, 2)`` positions (x, y) in px, frame 0 at the origin."""
    t = np.arange(n_frames, dtype=np.float64)
    if path == "beam":
        angle, drift_angle = rng.uniform(0, 2 * np.pi, 2)
        jump = 3.0 * (1.0 - np.exp(-t / 1.5))
        drift = 0.1 * t
        pos = np.stack([jump * np.cos(angle) + drift * np.cos(drift_angle),
                        jump * np.sin(angle) + drift * np.sin(drift_angle)], axis=1)
    elif path == "walk":
        steps = rng.normal(0.0, 0.3, (n_frames, 2))
        steps[0] = 0.0
        pos = np.cumsum(steps, axis=0)
    elif path == "wobble":
        angle, drift_angle = rng.uniform(0, 2 * np.pi, 2)
        wob = 0.8 * np.sin(2 * np.pi * t / 4.0 + rng.uniform(0, 2 * np.pi))
        pos = np.stack([wob * np.cos(angle) + 0.2 * t * np.cos(drift_angle),
                        wob * np.sin(angle) + 0.2 * t * np.sin(drift_angle)], axis=1)
    else:
        raise ValueError(f"path {path!r} is not one of {PATHS}")
    return pos - pos[0]


def _ctf(k_a: np.ndarray, defocus_a: float) -> np.ndarray:
    lam = WAVELENGTH_300KV_A
    chi = np.pi * lam * defocus_a * k_a**2 - 0.5 * np.pi * CS_A * lam**3 * k_a**4
    return -(np.sqrt(1 - AMPLITUDE_CONTRAST**2) * np.sin(chi) + AMPLITUDE_CONTRAST * np.cos(chi))


def _bin2(image: np.ndarray) -> np.ndarray:
    ny, nx = image.shape
    return image.reshape(ny // 2, 2, nx // 2, 2).mean(axis=(1, 3))


def independent_movie(*, size: int = 2048, n_frames: int = 10, pixel_size_a: float = 1.5,
                      dose_per_frame_e_per_a2: float = 0.3, contrast_rms: float = 0.10, path: str = "beam",
                      exponent: float = 1.0, defocus_um: float = 3.0, b_per_dose_a2: float = 4.0,
                      sensitivity_rms: float = 0.05, local_amplitude_px: float = 0.0, seed: int = 0) -> IndependentMovie:
    """One square movie ``size`` px (see the module docstring for the model)."""
    rng = np.random.default_rng(seed)
    fine = 2 * size
    fine_px_a = pixel_size_a / 2.0
    ky = scipy.fft.fftfreq(fine, d=fine_px_a)[:, None]
    kx = scipy.fft.rfftfreq(fine, d=fine_px_a)[None, :]
    k2 = kx**2 + ky**2
    k = np.sqrt(k2)
    power = _ctf(k, defocus_um * 1e4) ** 2 * (k2 + (1 / 200.0) ** 2) ** (-exponent / 2.0)
    power[0, 0] = 0.0
    white = scipy.fft.rfft2(rng.standard_normal((fine, fine)).astype(np.float32))
    specimen = (white * np.sqrt(power)).astype(np.complex64)
    del white
    pos = trajectory_px(path, n_frames, rng)
    undamaged = _bin2(scipy.fft.irfft2(specimen, s=(fine, fine)))  # sets the contrast scale
    scale = contrast_rms / float(undamaged.std())
    counts_per_px = dose_per_frame_e_per_a2 * pixel_size_a**2
    sensitivity = np.clip(1.0 + sensitivity_rms * rng.standard_normal((size, size)), 0.5, 1.5)
    frames = np.empty((n_frames, size, size), dtype=np.uint16)
    gain = ((1.0 / sensitivity) / float(np.mean(1.0 / sensitivity))).astype(np.float32)

    def moved(p) -> np.ndarray:  # the phase that moves the specimen by +p px
        return np.exp(-2j * np.pi * (kx * p[0] + ky * p[1]) * pixel_size_a)

    def damage(i: int) -> np.ndarray:  # at the end of frame i
        return np.exp(-b_per_dose_a2 * ((i + 1) * dose_per_frame_e_per_a2) * k2 / 4.0)

    mid = n_frames // 2
    middle = specimen * moved(pos[mid])  # the specimen in the middle frame's configuration
    ideal = ((1.0 + scale * _bin2(scipy.fft.irfft2(middle, s=(fine, fine)))) * counts_per_px * n_frames
             ).astype(np.float32)
    if local_amplitude_px > 0:
        return _with_local_motion(middle, ideal, damage, pos, rng, frames, gain, size=size, scale=scale,
                                  counts_per_px=counts_per_px, sensitivity=sensitivity, amplitude_px=local_amplitude_px)
    for i in range(n_frames):
        # frame i shows at pixel u + pos[i] what frame 0 shows at u: move the specimen by +pos[i]
        image = _bin2(scipy.fft.irfft2(specimen * damage(i) * moved(pos[i]), s=(fine, fine)))
        intensity = np.clip(1.0 + scale * image, 0.0, None)
        frames[i] = rng.poisson(counts_per_px * sensitivity * intensity)
    return IndependentMovie(frames, gain, pos, ideal)


def oracle_correction(sim: IndependentMovie, **options):
    """``correct_movie`` of ``sim``'s frames with its true motion (the true field too, when it has
    one: ``patches`` is then (5, 5) only because ``correct_movie`` needs a grid to accept a field):
    the oracle sum that accuracy is scored against. ``options``: ``correct_movie``'s
    (``pixel_size_a``, ``dose_per_frame_e_per_a2``, ``threads`` ...)."""
    from framewatch.core.correct import correct_movie

    if sim.local is None:
        return correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px, **{**options, "patches": (0, 0)})
    return correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px, local_displacement_px=sim.local,
                         **{**options, "patches": (5, 5)})


def local_field(size: int, amplitude_px: float, rng: np.random.Generator):
    """``D(x, y) -> (dx, dy)`` in px: a tilt plane plus three Gaussian bumps, largest |D| on the
    frame = ``amplitude_px``."""
    plane = rng.normal(0.0, 1.0, (2, 2)) / size  # (dx, dy) per px of (x, y)
    centres = rng.uniform(0.15 * size, 0.85 * size, (3, 2))
    sigmas = rng.uniform(0.1 * size, 0.2 * size, 3)
    weights = rng.normal(0.0, 1.0, (3, 2))

    def raw(x, y):
        x = np.asarray(x, np.float64) - size / 2
        y = np.asarray(y, np.float64) - size / 2
        dx = plane[0, 0] * x + plane[0, 1] * y
        dy = plane[1, 0] * x + plane[1, 1] * y
        for (cx, cy), sig, (wx, wy) in zip(centres, sigmas, weights):
            g = np.exp(-((x + size / 2 - cx) ** 2 + (y + size / 2 - cy) ** 2) / (2 * sig**2))
            dx = dx + wx * g
            dy = dy + wy * g
        return dx, dy

    gy, gx = np.mgrid[0:size:16, 0:size:16]
    dx, dy = raw(gx, gy)
    norm = amplitude_px / float(np.sqrt(dx**2 + dy**2).max())
    return lambda x, y: tuple(norm * d for d in raw(x, y))


def _with_local_motion(middle, ideal, damage, pos, rng, frames, gain, *, size, scale, counts_per_px, sensitivity,
                       amplitude_px) -> IndependentMovie:
    """Frames resampled through the global shift and the local field (module docstring): ``middle``
    is the specimen's fine half spectrum in the middle frame's configuration, ``damage(i)`` its
    attenuation at the end of frame ``i``."""
    n = len(frames)
    fine = 2 * size
    mid = n // 2
    field = local_field(size, amplitude_px, rng)
    profile = np.sqrt((np.arange(n) + 1.0) / n)  # fast early: grows with the square root of the dose
    profile = profile - profile[mid]

    def local(x, y, t):
        dx, dy = field(x, y)
        h = profile[int(round(float(t)))]
        return h * dx, h * dy

    # every frame is mapped from the specimen in the middle frame's configuration
    q = (np.arange(fine) - 0.5) / 2.0  # coarse coordinate of each fine pixel's centre
    py, px = np.meshgrid(q, q, indexing="ij")
    # the field is smooth (its bumps are >= 0.1 of the frame wide): solve for it on every 8th fine
    # pixel (and one past the edge) and interpolate linearly, ~1e-4 px from solving at every pixel
    step = 8
    q_grid = (np.arange(0, fine + 1, step) - 0.5) / 2.0
    gy, gx = np.meshgrid(q_grid, q_grid, indexing="ij")
    for i in range(n):
        damaged = scipy.fft.irfft2(middle * damage(i), s=(fine, fine))
        coefficients = scipy.ndimage.spline_filter(damaged, order=3, mode="grid-wrap")
        g = pos[i] - pos[mid]
        fx = fy = np.zeros_like(gx)
        for _ in range(4):  # u + g + f(u, t) = p, solved by fixed-point iteration
            fx, fy = local(gx - g[0] - fx, gy - g[1] - fy, i)
        fx, fy = (scipy.ndimage.zoom(f, (fine + 1) / f.shape[0], order=1, grid_mode=False)[:fine, :fine]
                  for f in (fx, fy))
        ux, uy = px - g[0] - fx, py - g[1] - fy
        sampled = scipy.ndimage.map_coordinates(coefficients, [2 * uy + 0.5, 2 * ux + 0.5], order=3,
                                                mode="grid-wrap", prefilter=False)
        intensity = np.clip(1.0 + scale * _bin2(sampled), 0.0, None)
        frames[i] = rng.poisson(counts_per_px * sensitivity * intensity)
    return IndependentMovie(frames, gain, pos, ideal, local)
