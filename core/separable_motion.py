"""Pooled low-dose estimator of local motion: one spatial deformation field times one time profile.

At tilt-series dose (0.3 e/A^2 per frame) a patch measured in one frame moves by a few tenths of a
pixel of noise, while the local deformation at the patch centres changes by about as much over the
whole movie: per-frame, per-patch models fit the noise. This estimator pools every patch and every
frame into few degrees of freedom. The patch measurements (residual shifts after whole-frame
alignment, each patch's own frame 0 at zero) are modelled as::

    m[p, t] = o[p] + e[t] + g[t] * U(x_p, y_p) + noise

* ``U(x, y) = (Ux, Uy)``: a smooth deformation field, a tensor cubic B-spline in x and y with few
  control points (``spatial_shape``, 2-4 per axis), without its mean (a common translation is
  whole-frame motion, not deformation);
* ``g[t]``: one time profile shared by the whole field (beam-induced motion is a deformation that
  develops with dose: fast early, then slow), ``g[reference_frame] = 0`` and ``max |g| = 1``;
* nuisances, never applied: ``o[p]`` a per-patch offset (each patch's trajectory starts at its own
  zero) and ``e[t]`` a per-frame common translation (what the whole-frame alignment left).

With ``P`` patches and ``T`` frames, ``2 P T`` numbers fix ``2 (n_coefficients - 1) + T - 1``
parameters of interest: each spatial coefficient is measured by every frame at once. The fit is
alternating weighted least squares (offsets and common translations, then the field, then the
profile) with robust Tukey weights, so a bad patch-frame measurement (a noise peak) drops out.

The uncertainty of the field comes from the least-squares covariance of the spatial coefficients
(the residual scale times ``N^-1``, ``N`` the normal matrix), propagated through the profile:
``field_uncertainty_px`` is the RMS standard error of the displacement over the field and the
frames, next to ``field_rms_px``, the RMS of the displacement itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .robust_scale import mad_sigma
from .spline_axis import axis_basis, second_difference

__all__ = ["SeparableMotionModel", "SeparableFit", "SeparableFitOptions", "fit_separable_motion"]



@dataclass(frozen=True)
class SeparableMotionModel:
    """``d(x, y, t) = (profile[t] - profile[reference_frame]) * U(x, y)`` in movie pixels.

    ``profile``: ``(n_frames,)`` (linear interpolation between frames); ``coeffs_x`` / ``coeffs_y``:
    ``(n_y, n_x)`` cubic B-spline coefficients of ``U`` over ``image_shape`` ``(ny, nx)``.
    ``field_mean_xy``: the mean of the raw B-spline over the image, removed from ``U`` (kept for the
    record; :meth:`displacement` includes the removal). Displacements are relative to
    ``reference_frame`` (zero there everywhere). Outside the box of the patch
    centres the spline continues smoothly (tested: holding the edge values instead lost 2 % of the
    top band on simulated fields that keep growing towards the corners).
    """

    profile: np.ndarray
    coeffs_x: np.ndarray
    coeffs_y: np.ndarray
    image_shape: tuple[int, int]
    reference_frame: int
    field_mean_xy: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("profile", "coeffs_x", "coeffs_y"):
            a = np.array(getattr(self, name), dtype=np.float64)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} contains non-finite values")
            a.flags.writeable = False
            object.__setattr__(self, name, a)
        if self.coeffs_x.shape != self.coeffs_y.shape or self.coeffs_x.ndim != 2:
            raise ValueError(f"coeffs_x {self.coeffs_x.shape} and coeffs_y {self.coeffs_y.shape} must be the same 2-D shape")
        if not 0 <= int(self.reference_frame) < self.profile.shape[0]:
            raise ValueError(f"reference_frame {self.reference_frame} outside 0..{self.profile.shape[0] - 1}")

    @property
    def n_frames(self) -> int:
        return int(self.profile.shape[0])

    def relative_profile(self, t) -> np.ndarray:
        """``profile(t) - profile(reference_frame)`` at (float) frame indices ``t``."""
        frames = np.arange(self.n_frames, dtype=np.float64)
        g = self.profile - self.profile[self.reference_frame]
        return np.interp(np.asarray(t, np.float64), frames, g)

    def spatial_field(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """``U(x, y)`` ``(dx, dy)`` at movie-pixel positions (broadcast together)."""
        xb, yb = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        ny, nx = self.coeffs_x.shape
        by = axis_basis(yb.ravel(), ny, float(self.image_shape[0] - 1))
        bx = axis_basis(xb.ravel(), nx, float(self.image_shape[1] - 1))
        out = []
        for c, mean in zip((self.coeffs_x, self.coeffs_y), self.field_mean_xy):
            out.append((np.einsum("mj,ji,mi->m", by, c, bx) - mean).reshape(xb.shape))
        return out[0], out[1]

    def displacement(self, x, y, t) -> tuple[np.ndarray, np.ndarray]:
        """Displacement ``(dx, dy)`` in movie pixels at ``x``, ``y`` (movie px) and frame ``t``."""
        xb, yb, tb = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(t, np.float64))
        ux, uy = self.spatial_field(xb, yb)
        g = self.relative_profile(tb)
        return g * ux, g * uy

    def summary(self) -> dict:
        return {
            "model": "separable: d(x, y, t) = (g[t] - g[ref]) * U(x, y), U a cubic B-spline in x, y without its mean",
            "profile": self.profile.round(5).tolist(),
            "spatial_shape": list(self.coeffs_x.shape),
            "coeffs_x_px": self.coeffs_x.round(5).tolist(),
            "coeffs_y_px": self.coeffs_y.round(5).tolist(),
            "field_mean_xy_px": [round(float(v), 5) for v in self.field_mean_xy],
            "image_shape": list(self.image_shape),
            "reference_frame": int(self.reference_frame),
        }


@dataclass(frozen=True, kw_only=True)
class PatchShiftData:
    """Patch measurements that the separable model is fitted to (and cross-validated on).

    ``shifts_px``: ``(n_patches, n_times, 2)`` residual shifts (x, y) in movie pixels (non-finite =
    missing); ``centres_px``: ``(n_patches, 2)``; ``times``: ``(n_times,)`` frame index (float) of each
    measurement column, increasing; ``n_frames``: frames of the movie; ``image_shape``: ``(ny, nx)``
    movie pixels; ``reference_frame``: the frame the model is relative to.
    """

    shifts_px: np.ndarray
    centres_px: np.ndarray
    times: np.ndarray
    n_frames: int
    image_shape: tuple[int, int]
    reference_frame: int

@dataclass(frozen=True, kw_only=True)
class SeparableFitOptions:
    """``spatial_shape`` ``(n_y, n_x)`` control points of ``U``; ``iterations`` of the alternating
    fit; Tukey cut-off ``reject_sigmas`` times the robust residual scale, never below
    ``reject_floor_px``; ``smoothness``: second-difference penalty on the coefficients relative to
    the mean data weight."""

    spatial_shape: tuple[int, int]
    iterations: int = 30
    reject_sigmas: float = 4.0
    reject_floor_px: float = 0.5
    smoothness: float = 1e-3


@dataclass(frozen=True)
class SeparableFit:
    """Result of :func:`fit_separable_motion`.

    ``model``: the fitted model; ``weights`` ``(n_patches, n_times)`` final robust weights (0 =
    rejected); ``residual_sigma_px``: per-axis residual scale; ``field_rms_px`` /
    ``field_uncertainty_px``: RMS displacement and its RMS standard error over a grid of the field
    and all frames; ``offsets_px`` ``(n_patches, 2)``, ``common_px`` ``(n_times, 2)``: the nuisances;
    ``residuals_px`` ``(n_patches, n_times)``: ``|measurement - model - nuisances|``.
    """

    model: SeparableMotionModel
    weights: np.ndarray = field(repr=False)
    residual_sigma_px: float
    field_rms_px: float
    field_uncertainty_px: float
    offsets_px: np.ndarray = field(repr=False)
    common_px: np.ndarray = field(repr=False)
    residuals_px: np.ndarray = field(repr=False, default=None)


def spatial_design(centres_px: np.ndarray, *, image_shape: tuple[int, int], spatial_shape: tuple[int, int]) -> np.ndarray:
    """``(n_points, n_y * n_x)`` B-spline basis of ``U`` at ``centres_px`` ``(n_points, 2)`` (x, y)."""
    ny, nx = spatial_shape
    by = axis_basis(centres_px[:, 1], ny, float(image_shape[0] - 1))
    bx = axis_basis(centres_px[:, 0], nx, float(image_shape[1] - 1))
    return (by[:, :, None] * bx[:, None, :]).reshape(len(centres_px), -1)


def _image_mean_basis(image_shape: tuple[int, int], spatial_shape: tuple[int, int], samples: int = 33) -> np.ndarray:
    """``(n_y * n_x,)`` mean of each basis function of ``U`` over the image (``samples`` per axis)."""
    ny, nx = image_shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, samples), np.linspace(0, ny - 1, samples))
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    return spatial_design(pts, image_shape=image_shape, spatial_shape=spatial_shape).mean(axis=0)


def _second_differences(spatial_shape: tuple[int, int]) -> np.ndarray:
    ny, nx = spatial_shape
    blocks = []
    for n, left, right in ((ny, None, np.eye(nx)), (nx, np.eye(ny), None)):
        d = second_difference(n)
        blocks.append(np.kron(d, right) if left is None else np.kron(left, d))
    return np.vstack(blocks) if any(b.size for b in blocks) else np.zeros((0, ny * nx))


def _nuisances(resid: np.ndarray, w: np.ndarray, sweeps: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch offsets ``(P, 2)`` and per-time common shifts ``(T, 2)`` of ``resid`` ``(P, T, 2)``
    by weighted alternating means (an additive two-way fit)."""
    n_p, n_t = w.shape
    o = np.zeros((n_p, 2))
    e = np.zeros((n_t, 2))
    wsum_p = np.maximum(w.sum(axis=1), 1e-12)[:, None]
    wsum_t = np.maximum(w.sum(axis=0), 1e-12)[:, None]
    for _ in range(sweeps):
        o = np.einsum("pt,ptc->pc", w, resid - e[None]) / wsum_p
        e = np.einsum("pt,ptc->tc", w, resid - o[:, None]) / wsum_t
    return o, e


def _solve_field(data: np.ndarray, w: np.ndarray, g: np.ndarray, design: np.ndarray, penalty: np.ndarray,
                 smoothness: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``(n_c, 2)`` of ``U`` minimising ``sum w |data - g_t S c|^2 + lam |D c|^2`` and
    the normal matrix ``(n_c, n_c)``. ``data`` ``(P, T, 2)`` already without the nuisances."""
    wp = (w * g[None, :] ** 2).sum(axis=1)  # (P,)
    normal = design.T @ (design * wp[:, None])
    rhs = design.T @ np.einsum("pt,t,ptc->pc", w, g, data)
    lam = smoothness * float(np.trace(normal)) / normal.shape[0]
    if penalty.size and lam > 0:
        normal = normal + lam * penalty.T @ penalty
    coef = np.linalg.lstsq(normal, rhs, rcond=None)[0]
    return coef, normal


def fit_separable_motion(
    data: PatchShiftData,
    *,
    options: SeparableFitOptions,
    patch_weights: np.ndarray | None = None,
) -> SeparableFit:
    """Fit the separable model to the patch measurements ``data``.

    ``patch_weights``: ``(n_patches,)`` in [0, 1] (0 = a rejected patch). The profile is fitted at
    ``data.times`` and interpolated linearly to every frame (continued linearly beyond the first and
    last time).
    """
    shifts_px, centres_px, times = data.shifts_px, data.centres_px, data.times
    n_frames, image_shape, reference_frame = data.n_frames, data.image_shape, data.reference_frame
    shape = np.shape(shifts_px)
    n_p, n_t = shape[:2]
    times = np.asarray(times, dtype=np.float64)
    if shape != (n_p, n_t, 2) or times.shape != (n_t,) or np.shape(centres_px) != (n_p, 2):
        raise ValueError(f"shapes disagree: shifts {shape}, centres {np.shape(centres_px)}, times {times.shape}")
    m, base = measurement_weights(shifts_px, np.ones(n_p) if patch_weights is None else patch_weights)
    if n_t < 2 or np.count_nonzero(base.sum(axis=1) > 0) < 2:
        raise ValueError("the separable fit needs at least two patches and two times with data")
    design = spatial_design(np.asarray(centres_px, np.float64), image_shape=image_shape, spatial_shape=options.spatial_shape)
    field_mean = _image_mean_basis(image_shape, options.spatial_shape)
    design = design - field_mean  # U without its mean over the image: a common translation is whole-frame motion
    penalty = _second_differences(options.spatial_shape)
    g, u, robust = _alternating_fit(m, base, design, penalty, options)
    # the profile relative to the reference frame, with |g| <= 1; the field takes the scale
    ref = float(np.interp(reference_frame, times, g))
    g = g - ref
    scale = float(np.max(np.abs(g))) or 1.0
    g = g / scale
    w = base * robust
    # refit the field and the nuisances with the final profile and weights, then the covariance
    o, e = _nuisances(m - g[None, :, None] * u[:, None, :] * scale, w)
    data = m - o[:, None] - e[None]
    coef, normal = _solve_field(data, w, g, design, penalty, options.smoothness)
    resid = data - g[None, :, None] * (design @ coef)[:, None, :]
    n_par = 2 * design.shape[1] + n_t + 2 * (n_p + n_t)
    sigma = float(np.sqrt(np.sum(w[..., None] * resid**2) / max(np.sum(w) * 2 - n_par, 1.0)))
    profile = _interpolate_profile(np.arange(n_frames, dtype=np.float64), times, g)
    ny_c, nx_c = options.spatial_shape
    mean_xy = tuple(float(v) for v in field_mean @ coef)
    model = SeparableMotionModel(profile, coef[:, 0].reshape(ny_c, nx_c), coef[:, 1].reshape(ny_c, nx_c),
                                 tuple(int(v) for v in image_shape), int(reference_frame), mean_xy)
    field_rms, field_err = _field_figures(model, normal, sigma, centres_px, options.spatial_shape)
    return SeparableFit(model, w, sigma, field_rms, field_err, o, e, np.hypot(resid[..., 0], resid[..., 1]))


def measurement_weights(shifts_px: np.ndarray, patch_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(m, w)``: the measurements ``(P, T, 2)`` as a float64 copy with the non-finite ones at 0, and
    their weights ``(P, T)``: the patch's weight ``(P,)`` where the measurement is finite, else 0."""
    m = np.array(shifts_px, dtype=np.float64)
    finite = np.all(np.isfinite(m), axis=2)
    m[~finite] = 0.0
    return m, np.asarray(patch_weights, np.float64)[:, None] * finite


def _alternating_fit(m: np.ndarray, base: np.ndarray, design: np.ndarray, penalty: np.ndarray,
                     options: SeparableFitOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``options.iterations`` sweeps of nuisances, field and profile from the leading temporal
    component of the centred measurements ``m`` ``(P, T, 2)`` (weights ``base`` ``(P, T)``), with
    Tukey re-weighting every third sweep. Returns the profile ``g`` ``(T,)`` (``max |g| = 1``), the
    field at the patches ``u`` ``(P, 2)`` and the robust weights ``(P, T)``."""
    n_p, n_t = base.shape
    o, e = _nuisances(m, base)
    centred = m - o[:, None] - e[None]
    u_, s_, _ = np.linalg.svd((centred * base[:, :, None]).transpose(1, 0, 2).reshape(n_t, -1), full_matrices=False)
    g = u_[:, 0] * s_[0]
    robust = np.ones((n_p, n_t))
    for it in range(options.iterations):
        w = base * robust
        data = m - o[:, None] - e[None]
        coef, _ = _solve_field(data, w, g, design, penalty, options.smoothness)
        u = design @ coef  # (P, 2)
        g = np.einsum("pt,pc,ptc->t", w, u, data) / np.maximum(np.einsum("pt,pc,pc->t", w, u, u), 1e-12)
        scale = float(np.max(np.abs(g))) or 1.0  # keep the profile's scale fixed (the product is what counts)
        g, u = g / scale, u * scale
        model = g[None, :, None] * u[:, None, :]
        o, e = _nuisances(m - model, w)
        if it % 3 == 2:  # robust re-weighting every third sweep, after the fit has settled a little
            robust = _tukey_weights(m - o[:, None] - e[None] - model, w, base, robust, options)
    return g, u, robust


def _tukey_weights(resid: np.ndarray, w: np.ndarray, base: np.ndarray, robust: np.ndarray,
                   options: SeparableFitOptions) -> np.ndarray:
    """Tukey biweights ``(P, T)`` of the residuals ``(P, T, 2)`` with the cut-off ``max(reject_sigmas
    sigma, reject_floor_px)``; the previous ``robust`` when they would reject everything."""
    comps = resid[w > 0].ravel()
    sigma = mad_sigma(comps) if comps.size else 0.0
    cut = max(options.reject_sigmas * sigma, options.reject_floor_px)
    r = np.hypot(resid[..., 0], resid[..., 1])
    new = np.where(r < cut, (1.0 - (r / cut) ** 2) ** 2, 0.0)
    return new if np.any(base * new > 0) else robust


def _interpolate_profile(t: np.ndarray, times: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``g`` (at increasing ``times``) at frames ``t``: linear between times, continued linearly
    from the two end times beyond them (the motion is fastest at the start: holding the first value
    would underestimate frame 0 when only frame 1 was measured, as in a cross-validation fold)."""
    out = np.interp(t, times, g)
    if len(times) >= 2:
        lo, hi = t < times[0], t > times[-1]
        out[lo] = g[0] + (t[lo] - times[0]) * (g[1] - g[0]) / (times[1] - times[0])
        out[hi] = g[-1] + (t[hi] - times[-1]) * (g[-1] - g[-2]) / (times[-1] - times[-2])
    return out


def _field_figures(model: SeparableMotionModel, normal: np.ndarray, sigma: float, centres_px: np.ndarray,
                   spatial_shape: tuple[int, int], samples: int = 9) -> tuple[float, float]:
    """RMS displacement and RMS standard error over a ``samples`` x ``samples`` grid and all frames."""
    ny, nx = model.image_shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, samples), np.linspace(0, ny - 1, samples))
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    s = spatial_design(pts, image_shape=model.image_shape, spatial_shape=spatial_shape)
    s = s - _image_mean_basis(model.image_shape, spatial_shape)
    cov = np.linalg.pinv(normal) * sigma**2
    var_u = np.einsum("mi,ij,mj->m", s, cov, s) * 2.0  # both components
    ux, uy = model.spatial_field(pts[:, 0], pts[:, 1])
    g2 = model.relative_profile(np.arange(model.n_frames)) ** 2
    rms = float(np.sqrt(np.mean(g2) * np.mean(ux**2 + uy**2)))
    err = float(np.sqrt(np.mean(g2) * np.mean(var_u)))
    return rms, err
