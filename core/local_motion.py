"""Local motion of one movie, decided by evidence: patch grid, pooled estimate, cross-validated decision.

The steps (each in its own module):

1. :func:`choose_patch_grid` (``--patches auto``): the patch grid from the frame size and the signal
   (none when the whole-frame alignment's peaks are barely above noise);
2. :func:`framewatch.core.local_align.measure_patches`: per-patch residual trajectories on the
   globally aligned alignment copy (or, for a streamed movie, on patch spectra built while the
   frames arrived, :mod:`framewatch.core.streamed_patches`);
3. :func:`framewatch.core.local_evidence.cross_validate_local_motion`: is there a deformation the
   held-out frames confirm?
4. :func:`framewatch.core.separable_motion.fit_separable_motion` on all frames: the model that is
   applied, with its uncertainty.

:func:`local_motion_from_patches` does steps 3 and 4 on the measurements of step 2. Without support
the movie is corrected whole-frame only, and the result says
``local_motion: declined (reason)``; ``force`` applies the fitted model anyway
(``--local-force``), still recording what the evidence said.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .local_align import PatchMeasurements
from .local_evidence import EvidenceOptions, LocalEvidence, cross_validate_local_motion
from .separable_motion import PatchShiftData, SeparableFitOptions, fit_separable_motion

__all__ = ["KnownDisplacement", "LocalMotion", "PatchGridChoice", "choose_patch_grid", "local_motion_from_patches"]

AUTO_MAX_PATCHES = 5  # per axis
AUTO_MIN_PATCH_PX = 512  # movie (output) pixels: smaller patches carry too little signal at tilt dose
AUTO_MIN_PATCH_ALIGN_PX = 96  # alignment pixels
AUTO_MIN_WHOLE_SIGNIFICANCE = 5.0  # whole-frame peak significance (pure noise gives about 4-5)
MIN_ACCEPTED_PATCHES = 4
MAX_REJECTED_FRACTION = 0.5


@dataclass(frozen=True)
class PatchGridChoice:
    """The grid ``patches`` (nx, ny), ``(0, 0)`` for none, and why (``reason``)."""

    patches: tuple[int, int]
    reason: str


def _patch_size(length: int, n: int, overlap: float) -> float:
    return length / (n - (n - 1) * overlap)


def choose_patch_grid(
    align_shape: tuple[int, int],
    *,
    bin_factor: float,
    whole_frame_significance: float,
    overlap: float = 0.5,
) -> PatchGridChoice:
    """The densest grid (at most ``AUTO_MAX_PATCHES`` along the short axis, square patches with
    ``overlap``) whose patches are at least ``AUTO_MIN_PATCH_PX`` output pixels (and
    ``AUTO_MIN_PATCH_ALIGN_PX`` alignment pixels) wide; none when the whole-frame alignment's median
    peak significance is below ``AUTO_MIN_WHOLE_SIGNIFICANCE`` (its peaks are barely above noise, so
    patches of the same frames would be noise).

    ``align_shape`` ``(ay, ax)``: the alignment copy; ``bin_factor``: output pixels per alignment pixel.
    """
    ay, ax = align_shape
    short, long_ = min(ay, ax), max(ay, ax)
    if whole_frame_significance < AUTO_MIN_WHOLE_SIGNIFICANCE:
        return PatchGridChoice((0, 0), f"too little signal for patches (whole-frame peak significance "
                                       f"{whole_frame_significance:.1f} < {AUTO_MIN_WHOLE_SIGNIFICANCE:g})")
    for n_short in range(AUTO_MAX_PATCHES, 1, -1):
        size = _patch_size(short, n_short, overlap)
        if size * bin_factor < AUTO_MIN_PATCH_PX or size < AUTO_MIN_PATCH_ALIGN_PX:
            continue
        n_long = max(n_short, int(round((long_ / size - overlap) / (1 - overlap))))
        nx, ny = (n_long, n_short) if ax >= ay else (n_short, n_long)
        return PatchGridChoice((nx, ny), f"{nx}x{ny} patches of {size * bin_factor:.0f} px")
    return PatchGridChoice((0, 0), f"frame too small for 2 x 2 patches of {AUTO_MIN_PATCH_PX} px")


def spatial_control_candidates(patches: tuple[int, int]) -> list[tuple[int, int]]:
    """Candidate control grids ``(n_y, n_x)`` of the deformation field for a patch grid (nx, ny):
    from 2 per axis up to as many as patches (3 at most) or one fewer than patches (4 at most), so
    the field never has more freedom than the patches can pin down. The cross-validation picks one."""
    def most(n: int) -> int:
        return n if n <= 3 else min(n - 1, 4)

    top_y, top_x = most(patches[1]), most(patches[0])
    return [(min(k, top_y), min(k, top_x)) for k in range(2, max(top_y, top_x) + 1)]


# The field's second-difference penalty (SeparableFitOptions.smoothness): a light one lets a
# well-measured field bend, a stronger one keeps a noisy one from fitting the noise. Each control grid
# with 3 or more points on an axis (a 2-point axis has no second difference) is tried with both, and
# the cross-validation picks the pair. Measured (README, "Local motion"): at 10 % contrast with a
# 2-3 px field 0.03 raised the top band by up to 0.015 of the oracle (5 % up to 0.026); at 15-25 %
# with strong fields it cost up to 0.015 where 1e-3 was right.
FIELD_SMOOTHNESS_CANDIDATES = (1e-3, 0.03)


def field_fit_candidates(patches: tuple[int, int]) -> list[SeparableFitOptions]:
    """The fits the cross-validation chooses among for a patch grid (nx, ny): every control grid of
    :func:`spatial_control_candidates`, each with every :data:`FIELD_SMOOTHNESS_CANDIDATES` it can
    feel (the lightest first, so it wins a tie)."""
    out = []
    for shape in spatial_control_candidates(patches):
        values = FIELD_SMOOTHNESS_CANDIDATES if max(shape) >= 3 else FIELD_SMOOTHNESS_CANDIDATES[:1]
        out += [SeparableFitOptions(spatial_shape=shape, smoothness=value) for value in values]
    return out


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

    ``decision``: ``"applied"``, ``"forced"`` (applied against the evidence, ``--local-force``),
    ``"declined"`` or ``"off"`` (no patches: too small, too little signal, or switched off);
    ``reason`` says why. ``model``: the applied model, registered to the middle frame (``None``
    unless applied). ``fitted_model``: the fit on all frames even when declined (for the record).
    ``patches``: the measurements; ``evidence``: the cross-validation. ``residual_mean_px`` /
    ``residual_max_px``: distance between accepted patch measurements and the fit;
    ``rejected_fraction``: patches rejected for lack of signal or as outliers;
    ``field_rms_px`` / ``field_uncertainty_px``: the fitted deformation and its standard error
    (RMS over the field and the frames); ``field_smoothness``: the fit's second-difference penalty
    (chosen with the control grid by the cross-validation, :func:`field_fit_candidates`).
    """

    model: object | None
    patches: PatchMeasurements | None
    residual_mean_px: float | None
    residual_max_px: float | None
    rejected_fraction: float | None
    fallback_reason: str | None
    decision: str = "applied"
    reason: str = ""
    evidence: LocalEvidence | None = None
    fitted_model: object | None = None
    field_rms_px: float | None = None
    field_uncertainty_px: float | None = None
    grid: tuple[int, int] = (0, 0)
    field_smoothness: float | None = None

    @property
    def label(self) -> str:
        """``applied``, ``forced (reason)``, ``declined (reason)`` or ``off (reason)``."""
        if self.decision == "applied":
            return "applied"
        return f"{self.decision} ({self.reason})"

    def statistics(self) -> dict:
        """The per-tilt figures (added to ``DriftStatistics``)."""
        ev = self.evidence
        return {
            "local_motion": self.label,
            "local_patches": None if self.grid == (0, 0) else f"{self.grid[0]}x{self.grid[1]}",
            "local_evidence_z": None if ev is None else round(ev.z, 3),
            "local_evidence_gain_fraction": None if ev is None else round(ev.gain_fraction, 4),
            "local_field_rms_px": self.field_rms_px,
            "local_field_uncertainty_px": self.field_uncertainty_px,
        }

    def summary(self) -> dict:
        p = self.patches
        out = {
            "applied": self.model is not None,
            "decision": self.decision,
            "reason": self.reason,
            "local_motion": self.label,
            "fallback_reason": self.fallback_reason,
            "grid": list(self.grid),
            "evidence": None if self.evidence is None else self.evidence.summary(),
            "field_rms_px": self.field_rms_px,
            "field_uncertainty_px": self.field_uncertainty_px,
            "field_smoothness": self.field_smoothness,
            "model": None if self.model is None else self.model.summary(),
            "fitted_model": None if self.fitted_model is None else self.fitted_model.summary(),
        }
        if p is not None:
            out.update({
                "group_size_frames": p.group_size,
                "patch_weighting": p.weighting,
                "group_times_frames": p.group_times.tolist(),
                "patch_centres_px": p.centres_px.round(2).tolist(),
                "patch_shifts_px": p.shifts_px.round(4).tolist(),
                "patch_significance": p.significance.round(2).tolist(),
                "patch_rejected": p.rejected.tolist(),
                "residual_mean_px": self.residual_mean_px,
                "residual_max_px": self.residual_max_px,
                "rejected_fraction": self.rejected_fraction,
            })
        return out


def local_motion_off(reason: str) -> LocalMotion:
    """No patches were measured (``--patches 0 0``, or the automatic grid found none)."""
    return LocalMotion(None, None, None, None, None, reason, decision="off", reason=reason)


def local_motion_from_patches(
    meas: PatchMeasurements,
    *,
    n_frames: int,
    grid: tuple[int, int],
    image_shape: tuple[int, int],
    force: bool = False,
    evidence_options: EvidenceOptions = EvidenceOptions(),
) -> LocalMotion:
    """Test and fit the patch measurements ``meas`` of a movie of ``n_frames`` (steps 3 and 4 of
    the module docstring); ``grid`` (nx, ny) the patches they were measured on."""
    grid = tuple(int(v) for v in grid)
    n_patches, n_times = meas.shifts_px.shape[:2]
    accepted = ~meas.rejected
    rejected_fraction = float(meas.rejected.mean())

    def declined(reason: str, **kw) -> LocalMotion:
        return LocalMotion(None, meas, kw.pop("mean_r", None), kw.pop("max_r", None), rejected_fraction, reason,
                           decision="declined", reason=reason, grid=grid, **kw)

    if accepted.sum() < MIN_ACCEPTED_PATCHES or accepted.mean() < 1.0 - MAX_REJECTED_FRACTION:
        return declined(f"only {int(accepted.sum())} of {n_patches} patches carry signal")
    if n_times < 4:
        return declined(f"only {n_times} frame groups in time")
    reference = n_frames // 2
    data = PatchShiftData(shifts_px=meas.shifts_px, centres_px=meas.centres_px, times=meas.group_times,
                          n_frames=n_frames, image_shape=image_shape, reference_frame=reference)
    weights = accepted.astype(np.float64)
    # the model's spatial freedom and smoothness are chosen by the same cross-validation: the largest
    # held-out gain
    evidence, fit_options = None, None
    for candidate in field_fit_candidates(grid):
        ev = cross_validate_local_motion(data, fit_options=candidate, patch_weights=weights, options=evidence_options)
        if evidence is None or ev.gain_fraction > evidence.gain_fraction:
            evidence, fit_options = ev, candidate
    try:
        fit = fit_separable_motion(data, options=fit_options, patch_weights=weights)
    except (ValueError, np.linalg.LinAlgError) as err:
        return declined(f"the fit failed: {err}", evidence=evidence)
    used = fit.weights > 0
    per_patch_used = used.any(axis=1)
    rejected_fraction = float(1.0 - per_patch_used.mean())
    mean_r = float(fit.residuals_px[used].mean())
    max_r = float(fit.residuals_px[used].max())
    figures = dict(evidence=evidence, fitted_model=fit.model, field_rms_px=round(fit.field_rms_px, 4),
                   field_uncertainty_px=round(fit.field_uncertainty_px, 4), field_smoothness=fit_options.smoothness)
    if evidence.supported:
        return LocalMotion(fit.model, meas, mean_r, max_r, rejected_fraction, None, decision="applied",
                           reason=evidence.reason, grid=grid, **figures)
    if force:
        return LocalMotion(fit.model, meas, mean_r, max_r, rejected_fraction, None, decision="forced",
                           reason=f"--local-force; {evidence.reason}", grid=grid, **figures)
    return declined(evidence.reason, mean_r=mean_r, max_r=max_r, **figures)
