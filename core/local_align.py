"""Patch-based local motion: residual shifts of overlapping patches after whole-frame alignment.

Input is the globally aligned, binned real-space copy of every frame (``(n_frames, ay, ax)`` in
alignment pixels). The field is covered by ``nx x ny`` patches of equal size with the requested
overlap (default 50 %), centres evenly spaced from edge to edge. Each patch has its mean removed and
is tapered with a cosine edge (1/8 of its size on each side) before its transform, so the patch
border makes no cross at zero shift. Frames are grouped in time when one frame carries too little
signal: the group holds at least ``MIN_ELECTRONS_PER_PATCH_GROUP`` electrons in a patch
(``dose_per_frame * group * patch area in A^2``). Each patch's groups are correlated with the sum of
the others (leave-one-out references, the B-factor filter with the zero frequency and central cross
removed, Gaussian sub-pixel peaks within ``MAX_LOCAL_SHIFT_PX``), twice (:func:`patch_trajectories`);
the result is each patch's *residual* trajectory in movie pixels. Patches are measured together, a
chunk of them at a time (:func:`patch_trajectories`).
A patch is rejected when its correlation peaks are no more significant
than noise (median peak significance below ``MIN_PATCH_SIGNIFICANCE``, or below a quarter of the
median patch's); the pooled model (:mod:`framewatch.core.separable_motion`) down-weights the rest
robustly, and :mod:`framewatch.core.local_motion` decides whether to apply it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from .fourier import shift_spectrum
from .frame_pool import sum_in_order
from .global_align import bfactor_filter, loo_cross_power_rms
from .peak import find_peak, offset_mask, peak_window_fits, peaks_near_zero
from .spectral_weight import SpectralSNR, spectral_snr_weight

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
    ``(n_patches,)`` median peak significance; ``rejected`` bool ``(n_patches,)``; ``group_size``;
    ``weighting``: the correlation filter (:func:`patch_filter`)."""

    shifts_px: np.ndarray
    centres_px: np.ndarray
    group_times: np.ndarray
    significance: np.ndarray
    rejected: np.ndarray
    group_size: int
    weighting: str = "bfactor"


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


def group_size_for(*, dose_per_frame_e_per_a2: float, patch_area_a2: float, n_frames: int | None) -> int:
    """Frames per group so one patch group holds at least ``MIN_ELECTRONS_PER_PATCH_GROUP``, at most
    a third of ``n_frames`` (``None``: a movie whose length is not known yet, not capped)."""
    per_frame = dose_per_frame_e_per_a2 * patch_area_a2
    size = max(1, math.ceil(MIN_ELECTRONS_PER_PATCH_GROUP / per_frame))
    return int(size if n_frames is None else min(size, max(1, n_frames // 3)))


def patch_trajectories(
    spectra: np.ndarray,
    *,
    shape: tuple[int, int],
    filt: np.ndarray,
    max_radius_px: float,
    iterations: int,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(n_patches, n, 2)`` (x, y, alignment px) of each patch's frames (or frame groups)
    and each peak's significance ``(n_patches, n)``; ``spectra`` complex64 ``(n_patches, n, ny, nkx)``.

    Each frame is correlated with the sum of the patch's other frames (leave-one-out). The frames
    are already globally aligned, so the first pass correlates them as they are; each further pass
    shifts them by the current estimates before building the references. No temporal smoothing: the
    pooled model (:mod:`framewatch.core.separable_motion`) does that across patches. The peak is
    searched within ``max_radius_px`` (alignment px) of zero: for all maps at once by a direct DFT at
    those offsets when they are few (:func:`~framewatch.core.peak.peaks_near_zero`; at 4096² with
    5 x 5 patches of 340 px, the inverse transforms of the maps were 0.23 s of the 0.54 s the patches
    took on one thread), else on the inverse transform of every map.
    """
    n_patches, n = spectra.shape[:2]
    direct = peak_window_fits(shape, max_radius_px)
    pos = np.zeros((n_patches, n, 2))
    sig = np.zeros((n_patches, n))
    xps = np.empty(spectra.shape, dtype=np.complex64)
    rms = np.empty((n_patches, n))
    for _ in range(iterations):
        for p in range(n_patches):
            shifted = [spec if not pos[p, i].any() else shift_spectrum(spec, shape, -pos[p, i, 0], -pos[p, i, 1])
                       for i, spec in enumerate(spectra[p])]
            total = sum_in_order(shifted)  # the values of np.sum(shifted, axis=0), without stacking
            for i in range(n):
                rms[p, i] = loo_cross_power_rms(shifted[i], total, filt, shape, out=xps[p, i])[1]
        flat = xps.reshape(n_patches * n, *xps.shape[2:])
        if direct:
            peaks = peaks_near_zero(flat, shape, max_radius_px)
        else:  # one batched inverse transform: patches are small, so per-call overhead would dominate
            mask = offset_mask(shape, max_radius_px)
            ccs = scipy.fft.irfft2(flat, s=shape, axes=(-2, -1), workers=threads)
            peaks = np.array([find_peak(cc, mask) for cc in ccs])
        peaks = peaks.reshape(n_patches, n, 3)
        sig = peaks[..., 2] / np.maximum(rms, 1e-30)
        new = pos + peaks[..., :2]
        pos = new - new.mean(axis=1, keepdims=True)
    return pos, sig


# patches whose spectra are processed together: bounds the (patches, frames, ny, nkx) complex64 arrays
PATCH_CHUNK_BYTES = 48 << 20


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


@dataclass(frozen=True)
class PatchLayout:
    """Where and how a movie's patches are measured: the ``grid``, the frame groups ``bounds``
    (``(start, stop)`` frame indices; a remainder joins the last group) of ``group_size`` frames,
    and the taper ``window`` ``(size, size)`` float32."""

    grid: PatchGrid
    bounds: tuple[tuple[int, int], ...]
    group_size: int
    window: np.ndarray = field(repr=False, compare=False)

    @property
    def group_times(self) -> np.ndarray:
        """``(n_groups,)`` the mean frame index of each group."""
        return np.array([(a + b - 1) / 2.0 for a, b in self.bounds])


def patch_area_a2(grid: PatchGrid, *, bin_factor: float, pixel_size_a: float) -> float:
    """The area of one patch of ``grid`` in square angstroms."""
    return (grid.size_px * bin_factor * pixel_size_a) ** 2


def patch_layout(field_shape: tuple[int, int], *, n_frames: int, bin_factor: float, pixel_size_a: float,
                 dose_per_frame_e_per_a2: float, options: PatchOptions) -> PatchLayout:
    """The :class:`PatchLayout` of ``n_frames`` frames of the alignment copy ``field_shape`` ``(ay, ax)``."""
    grid = patch_grid(field_shape, patches=options.patches, overlap=options.overlap)
    g = group_size_for(dose_per_frame_e_per_a2=dose_per_frame_e_per_a2, n_frames=n_frames,
                       patch_area_a2=patch_area_a2(grid, bin_factor=bin_factor, pixel_size_a=pixel_size_a))
    bounds = [(s, s + g) for s in range(0, n_frames - g + 1, g)]
    if bounds[-1][1] < n_frames:  # a remainder joins the last group
        bounds[-1] = (bounds[-1][0], n_frames)
    return PatchLayout(grid, tuple(bounds), g, taper_window(grid.size_px))


def patch_block_spectra(blocks: np.ndarray, window: np.ndarray, *, threads: int) -> np.ndarray:
    """Spectra ``(..., size, size//2+1)`` complex64 of square real-space blocks ``(..., size, size)``
    float32 (overwritten): each block's mean removed, then the taper ``window``. Linear in the
    blocks, so the spectrum of a group's summed blocks is the sum of the blocks' spectra."""
    blocks -= blocks.mean(axis=(-2, -1), keepdims=True)
    blocks *= window
    return scipy.fft.rfft2(blocks, axes=(-2, -1), workers=threads, overwrite_x=True)


def patch_chunk_size(layout: PatchLayout) -> int:
    """Patches whose group spectra are measured together (:data:`PATCH_CHUNK_BYTES` bounds them
    and their cross-powers)."""
    size = layout.grid.size_px
    per_patch = len(layout.bounds) * size * (size // 2 + 1) * 8
    return max(1, PATCH_CHUNK_BYTES // (2 * per_patch))


def patch_filter(size_px: int, *, spectral_snr: SpectralSNR | None, bfactor_px2: float) -> tuple[np.ndarray, str]:
    """The cross-power filter ``(size, size//2+1)`` float32 of square patches ``size_px`` and its name.

    ``spectral_snr``: the whole-frame alignment's estimate on the same (alignment) pixels. The
    specimen is the same in every patch, so the maximum-likelihood weight of a patch group against
    the sum of the other groups is the whole frame's, ``P_S / (P_N (P_N + n P_S))`` up to a constant
    (Knapp & Carter: a group of ``g`` frames against ``n - g`` others gives ``n``, whatever ``g``),
    evaluated at the patch's frequencies: ``"spectral_snr"``. Without an estimate, or with one too
    weak to use (:func:`~framewatch.core.spectral_weight.spectral_snr_weight` gives ``None``), the
    B-factor filter: ``"bfactor"``. Measured on the second simulator (10-15 % contrast, 2-3 px
    fields): the field's uncertainty 15-20 % lower than with B = 40 px^2."""
    if spectral_snr is not None:
        weight = spectral_snr_weight(spectral_snr, (size_px, size_px))
        if weight is not None:
            return weight, "spectral_snr"
    return bfactor_filter((size_px, size_px), bfactor_px2=bfactor_px2), "bfactor"


def measure_patch_spectra(chunk_spectra, layout: PatchLayout, *, bin_factor: float, options: PatchOptions,
                          spectral_snr: SpectralSNR | None = None) -> PatchMeasurements:
    """The residual trajectories of every patch of ``layout`` from its group spectra.

    ``chunk_spectra(start, stop)``: complex64 ``(stop - start, n_groups, size, size//2+1)``, the
    spectra (:func:`patch_block_spectra`) of patches ``start:stop`` in each frame group, called for
    chunks of :func:`patch_chunk_size` patches. Shifts in movie pixels (``bin_factor`` converts).
    ``spectral_snr``: the whole-frame estimate the correlations are weighted by (:func:`patch_filter`)."""
    grid = layout.grid
    size = grid.size_px
    n_patches = len(grid.corners)
    shifts = np.zeros((n_patches, len(layout.bounds), 2))
    significance = np.zeros(n_patches)
    filt, weighting = patch_filter(size, spectral_snr=spectral_snr, bfactor_px2=options.bfactor_px2)
    radius = max(2.0, MAX_LOCAL_SHIFT_PX / bin_factor)
    iterations = max(1, min(options.max_iterations, PATCH_ITERATIONS))
    chunk = patch_chunk_size(layout)
    for start in range(0, n_patches, chunk):
        stop = min(n_patches, start + chunk)
        pos, sig = patch_trajectories(chunk_spectra(start, stop), shape=(size, size), filt=filt,
                                      max_radius_px=radius, iterations=iterations, threads=options.threads)
        shifts[start:stop] = (pos - pos[:, :1]) * bin_factor
        significance[start:stop] = np.median(sig, axis=1)
    rejected = (significance < MIN_PATCH_SIGNIFICANCE) | (significance < 0.25 * float(np.median(significance)))
    centres = (grid.centres_px + 0.5) * bin_factor - 0.5
    return PatchMeasurements(shifts, centres, layout.group_times, significance, rejected, layout.group_size,
                             weighting)


def measure_patches(
    aligned: np.ndarray,
    *,
    bin_factor: float,
    pixel_size_a: float,
    dose_per_frame_e_per_a2: float,
    options: PatchOptions,
    spectral_snr: SpectralSNR | None = None,
) -> PatchMeasurements:
    """Measure residual trajectories of every patch of the globally aligned binned frames.

    ``aligned``: float32 ``(n_frames, ay, ax)`` in alignment pixels, already registered by the
    whole-frame shifts. Shifts are returned in movie pixels (``bin_factor`` converts).
    ``spectral_snr``: the whole-frame alignment's estimate, for the correlation filter (:func:`patch_filter`).
    """
    n_frames, ay, ax = aligned.shape
    layout = patch_layout((ay, ax), n_frames=n_frames, bin_factor=bin_factor, pixel_size_a=pixel_size_a,
                          dose_per_frame_e_per_a2=dose_per_frame_e_per_a2, options=options)
    size = layout.grid.size_px

    def chunk_spectra(start: int, stop: int) -> np.ndarray:
        corners = layout.grid.corners[start:stop]
        blocks = np.empty((len(corners), len(layout.bounds), size, size), dtype=np.float32)
        for c, (x0, y0) in enumerate(corners):
            for k, (a, b) in enumerate(layout.bounds):
                aligned[a:b, y0 : y0 + size, x0 : x0 + size].sum(axis=0, dtype=np.float32, out=blocks[c, k])
        return patch_block_spectra(blocks, layout.window, threads=options.threads)

    return measure_patch_spectra(chunk_spectra, layout, bin_factor=bin_factor, options=options,
                                 spectral_snr=spectral_snr)
