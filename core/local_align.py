"""Patch-based local motion: residual shifts of overlapping patches after whole-frame alignment.

Input is the globally aligned, binned real-space copy of every frame (``(n_frames, ay, ax)`` in
alignment pixels). The field is covered by ``nx x ny`` patches of equal size with the requested
overlap (default 50 %), centres evenly spaced from edge to edge. Each patch has its mean removed and
is tapered with a cosine edge (1/8 of its size on each side) before its transform, so the patch
border makes no cross at zero shift. Frames are grouped in time when one frame carries too little
signal: the group holds at least ``MIN_ELECTRONS_PER_PATCH_GROUP`` electrons in a patch
(``dose_per_frame * group * patch area in A^2``). Each patch's groups are aligned with the same
estimator as the whole frame (leave-one-out references, B-factor, Gaussian sub-pixel peaks,
:func:`framewatch.core.global_align.align_frames`); the result is each patch's *residual*
trajectory in movie pixels. A patch is rejected when its correlation peaks are no more significant
than noise (median peak significance below ``MIN_PATCH_SIGNIFICANCE``, or below a quarter of the
median patch's); the smooth model (:mod:`framewatch.core.motion_model`) down-weights the rest
robustly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from .global_align import align_frames
from .motion_model import LocalMotionModel, fit_local_motion

MIN_ELECTRONS_PER_PATCH_GROUP = 1.0e5
MIN_PATCH_SIGNIFICANCE = 8.0
TAPER_FRACTION = 0.125
LOCAL_FIELD_GRID_PX = 32  # the model is evaluated every 32 movie pixels and interpolated between
MIN_ACCEPTED_PATCHES = 4
MAX_ACCEPTED_REJECTED_FRACTION = 0.5
MAX_MODEL_RMS_PX = 0.75
MIN_USEFUL_LOCAL_PX = 0.15  # below this everywhere, resampling would cost more than it corrects


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
    for p, (x0, y0) in enumerate(grid.corners):
        spectra = []
        for a, b in bounds:
            block = aligned[a:b, y0 : y0 + size, x0 : x0 + size].sum(axis=0, dtype=np.float32)
            block -= block.mean()
            block *= window
            spectra.append(scipy.fft.rfft2(block, workers=options.threads))
        result = align_frames(
            spectra,
            shape=(size, size),
            bin_factor=bin_factor,
            dose_per_frame_e_per_a2=dose_per_frame_e_per_a2 * g,
            bfactor_px2=options.bfactor_px2,
            max_iterations=options.max_iterations,
            tolerance_px=options.tolerance_px,
            max_shift_px=size * bin_factor / 4.0,
            threads=options.threads,
        )
        shifts[p] = result.shifts_px
        significance[p] = float(np.median(result.peak_significance))
    rejected = (significance < MIN_PATCH_SIGNIFICANCE) | (significance < 0.25 * float(np.median(significance)))
    centres = (grid.centres_px + 0.5) * bin_factor - 0.5
    return PatchMeasurements(shifts, centres, group_times, significance, rejected, g)


@dataclass(frozen=True)
class KnownDisplacement:
    """A local motion given by the caller (e.g. the simulator's truth, for an oracle sum)."""

    function: object

    def displacement(self, x, y, t):
        return self.function(x, y, t)

    def summary(self) -> dict:
        return {"kind": "given by the caller"}


@dataclass(frozen=True)
class LocalMotion:
    """The local motion of one movie (``MovieResult.local_motion``).

    ``model``: the smooth model, registered to the middle frame (``displacement(x, y, n // 2) == 0``);
    ``None`` when the fit fell back to whole-frame only, with ``fallback_reason`` saying why.
    ``patches``: the measurements. ``residual_mean_px`` / ``residual_max_px``: distance between the
    accepted patch measurements and the model; ``rejected_fraction``: patches rejected for lack of
    signal or as outliers of the fit.
    """

    model: LocalMotionModel | KnownDisplacement | None
    patches: PatchMeasurements | None
    residual_mean_px: float | None
    residual_max_px: float | None
    rejected_fraction: float
    fallback_reason: str | None

    def summary(self) -> dict:
        p = self.patches
        if p is None:
            return {"applied": self.model is not None, "model": None if self.model is None else self.model.summary()}
        return {
            "applied": self.model is not None,
            "fallback_reason": self.fallback_reason,
            "group_size_frames": p.group_size,
            "group_times_frames": p.group_times.tolist(),
            "patch_centres_px": p.centres_px.round(2).tolist(),
            "patch_shifts_px": p.shifts_px.round(4).tolist(),
            "patch_significance": p.significance.round(2).tolist(),
            "patch_rejected": p.rejected.tolist(),
            "residual_mean_px": self.residual_mean_px,
            "residual_max_px": self.residual_max_px,
            "rejected_fraction": self.rejected_fraction,
            "model": None if self.model is None else self.model.summary(),
        }


def estimate_local_motion(
    registered: np.ndarray,
    *,
    bin_factor: float,
    image_shape: tuple[int, int],
    pixel_size_a: float,
    dose_per_frame_e_per_a2: float,
    options: PatchOptions,
) -> LocalMotion:
    """Measure patches on the registered binned frames ``(n_frames, ay, ax)`` and fit the model.

    Falls back to whole-frame only (``model=None``) when fewer than ``MIN_ACCEPTED_PATCHES`` patches
    or less than half of them carry signal, or when the fit's RMS residual exceeds
    ``MAX_MODEL_RMS_PX``; the reason is recorded.
    """
    n_frames = registered.shape[0]
    meas = measure_patches(
        registered,
        bin_factor=bin_factor,
        pixel_size_a=pixel_size_a,
        dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
        options=options,
    )
    n_patches, n_groups = meas.shifts_px.shape[:2]
    accepted = ~meas.rejected
    if accepted.sum() < MIN_ACCEPTED_PATCHES or accepted.mean() < 1.0 - MAX_ACCEPTED_REJECTED_FRACTION:
        reason = f"only {int(accepted.sum())} of {n_patches} patches carry signal"
        return LocalMotion(None, meas, None, None, float(meas.rejected.mean()), reason)
    if n_groups < 2:
        return LocalMotion(None, meas, None, None, float(meas.rejected.mean()), "too few frame groups in time")
    xs = np.repeat(meas.centres_px[:, 0], n_groups)
    ys = np.repeat(meas.centres_px[:, 1], n_groups)
    ts = np.tile(meas.group_times, n_patches)
    quality = np.repeat(accepted.astype(np.float64), n_groups)
    fit = fit_local_motion(
        xs, ys, ts, meas.shifts_px[:, :, 0].ravel(), meas.shifts_px[:, :, 1].ravel(),
        image_shape=image_shape, n_frames=n_frames, quality=quality, reference_frame=n_frames // 2,
    )
    used = fit.weights > 0
    per_patch_used = used.reshape(n_patches, n_groups).any(axis=1)
    rejected_fraction = float(1.0 - per_patch_used.mean())
    residuals = fit.residuals_px[used]
    mean_r, max_r = float(residuals.mean()), float(residuals.max())
    if fit.rms_px > MAX_MODEL_RMS_PX:
        reason = f"the smooth model misfits the patches by {fit.rms_px:.2f} px RMS (> {MAX_MODEL_RMS_PX} px)"
        return LocalMotion(None, meas, mean_r, max_r, rejected_fraction, reason)
    largest = largest_displacement_px(fit.model, image_shape=image_shape, n_frames=n_frames)
    if largest < MIN_USEFUL_LOCAL_PX:
        reason = f"local motion below {MIN_USEFUL_LOCAL_PX} px everywhere (largest {largest:.3f} px): not worth resampling"
        return LocalMotion(None, meas, mean_r, max_r, rejected_fraction, reason)
    return LocalMotion(fit.model, meas, mean_r, max_r, rejected_fraction, None)


def largest_displacement_px(model, *, image_shape: tuple[int, int], n_frames: int, samples: int = 17) -> float:
    """Largest |displacement| of ``model`` on a ``samples x samples`` grid over all frames."""
    ny, nx = image_shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, samples), np.linspace(0, ny - 1, samples))
    largest = 0.0
    for t in range(n_frames):
        dx, dy = model.displacement(gx, gy, float(t))
        largest = max(largest, float(np.sqrt(np.max(dx**2 + dy**2))))
    return largest
