"""Patch-based local motion: residual shifts of overlapping patches after whole-frame alignment.

Input is the globally aligned, binned real-space copy of every frame (``(n_frames, ay, ax)`` in
alignment pixels). The field is covered by ``nx x ny`` patches of equal size with the requested
overlap (default 50 %), centres evenly spaced from edge to edge. Each patch has its mean removed and
is tapered with a cosine edge (1/8 of its size on each side) before its transform, so the patch
border makes no cross at zero shift. Frames are grouped in time when one frame carries too little
signal: the group holds at least ``MIN_ELECTRONS_PER_PATCH_GROUP`` electrons in a patch
(``dose_per_frame * group * patch area in A^2``). Each patch's groups are correlated with the sum of
the others (leave-one-out references, the B-factor filter with the zero frequency and central cross
removed, Gaussian sub-pixel peaks within ``MAX_LOCAL_SHIFT_PX``), twice (:func:`patch_trajectory`);
the result is each patch's *residual* trajectory in movie pixels.
A patch is rejected when its correlation peaks are no more significant
than noise (median peak significance below ``MIN_PATCH_SIGNIFICANCE``, or below a quarter of the
median patch's); the pooled model (:mod:`framewatch.core.separable_motion`) down-weights the rest
robustly, and :mod:`framewatch.core.local_motion` decides whether to apply it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from .fourier import shift_spectrum
from .frame_pool import frame_pool
from .global_align import bfactor_filter, correlation_rms, loo_cross_power
from .peak import find_peak, offset_mask

MIN_ELECTRONS_PER_PATCH_GROUP = 1.0e5
MIN_PATCH_SIGNIFICANCE = 5.0
TAPER_FRACTION = 0.125
MAX_LOCAL_SHIFT_PX = 8.0  # movie px: the largest residual a patch may have after whole-frame alignment
PATCH_ITERATIONS = 2  # passes of leave-one-out correlation per patch (the frames come globally aligned)
LOCAL_FIELD_GRID_PX = 32  # the model is evaluated every 32 movie pixels and interpolated between


@dataclass(frozen=True)
class PatchGrid:
    """Patches of ``size_px`` (alignment pixels, square) with top-left corners ``corners`` ``(n, 2)``
    (x, y) and centres ``centres_px`` ``(n, 2)`` (x, y) in alignment pixels; ``shape`` (nx, ny)."""

    shape: tuple[int, int]
    size_px: int
    corners: np.ndarray
    centres_px: np.ndarray


@dataclass(frozen=True)
class PatchMeasurements:
    """Residual patch trajectories: ``shifts_px`` ``(n_patches, n_groups, 2)`` movie px (x, y),
    each patch's group 0 at (0, 0); ``centres_px`` ``(n_patches, 2)`` movie px;
    ``group_times`` ``(n_groups,)`` mean frame index of each group; ``significance``
    ``(n_patches,)`` median peak significance; ``rejected`` bool ``(n_patches,)``; ``group_size``."""

    shifts_px: np.ndarray
    centres_px: np.ndarray
    group_times: np.ndarray
    significance: np.ndarray
    rejected: np.ndarray
    group_size: int


def patch_grid(field_shape: tuple[int, int], *, patches: tuple[int, int], overlap: float) -> PatchGrid:
    """Even patch size and evenly spaced corners covering ``field_shape`` ``(ay, ax)``."""
    ay, ax = field_shape
    npx, npy = patches
    size_x = ax / (npx - (npx - 1) * overlap)
    size_y = ay / (npy - (npy - 1) * overlap)
    size = int(min(size_x, size_y, ax, ay)) // 2 * 2
    xs = np.rint(np.linspace(0, ax - size, npx)).astype(int)
    ys = np.rint(np.linspace(0, ay - size, npy)).astype(int)
    corners = np.array([(x, y) for y in ys for x in xs], dtype=int)
    centres = corners + (size - 1) / 2.0
    return PatchGrid((npx, npy), size, corners, centres)


def taper_window(size: int) -> np.ndarray:
    """float32 ``(size, size)`` separable cosine-edge window (flat centre, 1/8 edges)."""
    edge = max(1, int(round(size * TAPER_FRACTION)))
    w = np.ones(size)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    w[:edge] = ramp
    w[-edge:] = ramp[::-1]
    return np.outer(w, w).astype(np.float32)


def group_size_for(*, dose_per_frame_e_per_a2: float, patch_area_a2: float, n_frames: int) -> int:
    """Frames per group so one patch group holds at least ``MIN_ELECTRONS_PER_PATCH_GROUP``."""
    per_frame = dose_per_frame_e_per_a2 * patch_area_a2
    size = max(1, math.ceil(MIN_ELECTRONS_PER_PATCH_GROUP / per_frame))
    return int(min(size, max(1, n_frames // 3)))


def patch_trajectory(
    spectra: list[np.ndarray],
    *,
    shape: tuple[int, int],
    filt: np.ndarray,
    mask: np.ndarray,
    iterations: int,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(n, 2)`` (x, y, alignment px) of one patch's frames (or frame groups), each
    against the sum of the others (leave-one-out), and each peak's significance ``(n,)``.

    The frames are already globally aligned, so the first pass correlates them as they are; each
    further pass shifts them by the current estimates before building the references. No temporal
    smoothing: the pooled model (:mod:`framewatch.core.separable_motion`) does that across patches.
    """
    n = len(spectra)
    pos = np.zeros((n, 2))
    sig = np.zeros(n)
    for _ in range(iterations):
        shifted = [spec if not pos[i].any() else shift_spectrum(spec, shape, -pos[i, 0], -pos[i, 1])
                   for i, spec in enumerate(spectra)]
        total = np.sum(shifted, axis=0)
        new = pos.copy()
        xps = np.stack([loo_cross_power(shifted[i], total, filt) for i in range(n)])
        # one batched inverse transform: patches are small, so per-call overhead would dominate
        ccs = scipy.fft.irfft2(xps, s=shape, axes=(-2, -1), workers=threads, overwrite_x=True)
        for i in range(n):
            dx, dy, height = find_peak(ccs[i], mask)
            sig[i] = height / max(correlation_rms(xps[i], shape), 1e-30)
            new[i] = pos[i] + (dx, dy)
        pos = new - new.mean(axis=0)
    return pos, sig


@dataclass(frozen=True)
class PatchOptions:
    """How patches are laid out and aligned: ``patches`` (nx, ny), ``overlap`` fraction, B-factor in
    alignment pixels squared, iteration cap and tolerance (movie px), threads."""

    patches: tuple[int, int]
    overlap: float
    bfactor_px2: float
    max_iterations: int
    tolerance_px: float
    threads: int


def measure_patches(
    aligned: np.ndarray,
    *,
    bin_factor: float,
    pixel_size_a: float,
    dose_per_frame_e_per_a2: float,
    options: PatchOptions,
) -> PatchMeasurements:
    """Measure residual trajectories of every patch of the globally aligned binned frames.

    ``aligned``: float32 ``(n_frames, ay, ax)`` in alignment pixels, already registered by the
    whole-frame shifts. Shifts are returned in movie pixels (``bin_factor`` converts).
    """
    n_frames, ay, ax = aligned.shape
    grid = patch_grid((ay, ax), patches=options.patches, overlap=options.overlap)
    size = grid.size_px
    patch_area_a2 = (size * bin_factor * pixel_size_a) ** 2
    g = group_size_for(dose_per_frame_e_per_a2=dose_per_frame_e_per_a2, patch_area_a2=patch_area_a2, n_frames=n_frames)
    starts = list(range(0, n_frames - g + 1, g))
    bounds = [(s, s + g) for s in starts]
    if bounds[-1][1] < n_frames:  # a remainder joins the last group
        bounds[-1] = (bounds[-1][0], n_frames)
    group_times = np.array([(a + b - 1) / 2.0 for a, b in bounds])
    window = taper_window(size)
    n_patches = len(grid.corners)
    shifts = np.zeros((n_patches, len(bounds), 2))
    significance = np.zeros(n_patches)
    filt = bfactor_filter((size, size), bfactor_px2=options.bfactor_px2)
    mask = offset_mask((size, size), max(2.0, MAX_LOCAL_SHIFT_PX / bin_factor))
    iterations = max(1, min(options.max_iterations, PATCH_ITERATIONS))

    def measure(corner: tuple[int, int], threads: int) -> tuple[np.ndarray, np.ndarray]:
        x0, y0 = corner
        blocks = np.stack([aligned[a:b, y0 : y0 + size, x0 : x0 + size].sum(axis=0, dtype=np.float32) for a, b in bounds])
        blocks -= blocks.mean(axis=(1, 2), keepdims=True)
        blocks *= window
        spectra = list(scipy.fft.rfft2(blocks, axes=(-2, -1), workers=threads, overwrite_x=True))
        return patch_trajectory(spectra, shape=(size, size), filt=filt, mask=mask, iterations=iterations, threads=threads)

    with frame_pool(options.threads, n_patches) as pool:  # patches are independent: one per thread
        for p, (pos, sig) in enumerate(pool.map(lambda corner: measure(corner, pool.threads_each), grid.corners)):
            shifts[p] = (pos - pos[0]) * bin_factor
            significance[p] = float(np.median(sig))
    rejected = (significance < MIN_PATCH_SIGNIFICANCE) | (significance < 0.25 * float(np.median(significance)))
    centres = (grid.centres_px + 0.5) * bin_factor - 0.5
    return PatchMeasurements(shifts, centres, group_times, significance, rejected, g)
