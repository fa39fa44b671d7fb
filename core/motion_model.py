"""Smooth spatio-temporal model of the local (patch) residual motion: a cubic B-spline in (x, y, t).

After whole-frame alignment, patch alignment measures, for patch centres ``(x, y)`` (movie pixels)
and frame groups centred at time ``t`` (a float frame index), a residual displacement
``(dx, dy)`` in movie pixels (DESIGN convention: a feature at ``(x, y)`` in the reference
configuration appears at ``(x + dx, y + dy)`` in frame ``t``). Those measurements are noisy and a
few are wrong, so they are replaced by a smooth model, as Warp does (a cubic B-spline grid)::

    d(x, y, t) = sum_{k, j, i} C[k, j, i] * phi_k(t) * phi_j(y) * phi_i(x)

one coefficient array ``C`` of shape ``(n_t, n_y, n_x)`` per component (``coeffs_x``,
``coeffs_y``, in movie pixels).

Basis along one axis (domain ``[0, L]``: ``L = nx - 1``, ``ny - 1`` or ``n_frames - 1``) with
``n`` control points:

* ``n = 1``: a constant (used whenever only one distinct value was observed along that axis, or
  the domain has zero length).
* ``n >= 2``: uniform cubic B-splines ``b3(u / h - k)`` centred on the control points
  ``u_k = k h``, ``h = L / (n - 1)``, ``k = 0 .. n - 1``, which span the domain. Each end has one
  extended knot carrying a phantom coefficient that is extrapolated from the real ones (no extra
  freedom): linearly when ``n = 2`` (the model is then exactly linear), quadratically when
  ``n >= 3`` (``c[-1] = 3 c[0] - 3 c[1] + c[2]``, and mirrored at the far end). So the end
  intervals are quadratic (zero third derivative), the spline is C2 inside, ``n = 3`` is exactly
  the quadratic polynomials (which contain RELION's spatial terms ``1, x, x^2``), and polynomials
  up to degree 2 are reproduced for every ``n >= 3``. Outside ``[0, L]`` the end pieces are
  continued as polynomials (small overhangs, e.g. the last node of a warp grid, stay smooth).

Default control shape: ``min(4, number of distinct observed values)`` along each axis
(:func:`default_control_shape`), e.g. ``(4, 4, 4)`` for a 5 x 5 patch grid and 5 frame groups.

Fit (:func:`fit_local_motion`): weighted linear least squares of both components at once, with
observation weights ``quality * robust``, plus a small penalty ``lambda * ||D C||^2`` on the second
differences of the coefficients along every axis with ``n >= 3``, where
``lambda = smoothness * mean(diag(A^T W A))`` (scale-free: independent of the number of
observations and of the quality scale). Robust re-weighting (iteratively re-weighted least squares,
up to 5 fits): residual vectors ``r = observation - model``; a robust scale
``sigma = max(1.4826 * MAD(components of r), 0.1 px)`` over the observations with quality > 0;
Tukey's biweight ``w = (1 - (|r| / R)^2)^2`` for ``|r| < R`` and 0 beyond, with the cut-off
``R = max(4 sigma, 1 px)``. An observation whose residual stays beyond ``R`` thus ends with weight
0 (rejected), and a bad patch does not pull its neighbours; the 0.1 px and 1 px floors keep clean
data from being over-rejected.

With ``reference_frame`` set, the model reports the motion relative to that frame:
``displacement(x, y, t) = raw(x, y, t) - raw(x, y, reference_frame)``, which vanishes everywhere at
``t = reference_frame``. The tensor product makes this a change of the time basis only
(``phi_k(t) - phi_k(t_ref)``). Fit residuals and weights refer to the raw model (the observations'
own reference).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .image_warp import field_grid_shape
from .robust_scale import mad_sigma
from .spline_axis import axis_basis, axis_description, second_difference

__all__ = ["LocalFitOptions", "LocalMotionModel", "ModelFit", "default_control_shape", "fit_local_motion"]

_DEFAULT_MAX_CONTROL = 4  # default control points per axis (fewer if fewer distinct values)
_MAX_FITS = 5  # least-squares solves in the robust loop
_SIGMA_FLOOR_PX = 0.1  # floor of the robust residual scale
_REJECT_FLOOR_PX = 1.0  # residuals below this are never rejected
_REJECT_SIGMAS = 4.0  # Tukey cut-off in robust sigmas


# ---------------------------------------------------------------------------------------------
# domains (the one-axis basis is core/spline_axis.py)


def _axis_lengths(image_shape: tuple[int, int], n_frames: int) -> tuple[float, float, float]:
    """Domain lengths ``(L_t, L_y, L_x)`` in frames and movie pixels."""
    return float(n_frames - 1), float(image_shape[0] - 1), float(image_shape[1] - 1)


# ---------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class LocalMotionModel:
    """Tensor-product cubic B-spline model of the local residual displacement (movie pixels).

    ``coeffs_x``/``coeffs_y``: float64 ``(n_t, n_y, n_x)`` = ``control_shape``, in movie pixels.
    ``image_shape``: ``(ny, nx)`` movie pixels; ``n_frames``: frames of the movie (time axis
    ``[0, n_frames - 1]`` in frame indices). ``reference_frame``: when set, displacements are
    relative to that frame (zero there everywhere). The coefficient arrays are stored read-only.
    """

    control_shape: tuple[int, int, int]
    coeffs_x: np.ndarray
    coeffs_y: np.ndarray
    image_shape: tuple[int, int]
    n_frames: int
    reference_frame: int | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(v) for v in self.control_shape)
        image_shape = tuple(int(v) for v in self.image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"control_shape must be three positive ints (n_t, n_y, n_x), got {self.control_shape}")
        if len(image_shape) != 2 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (ny, nx), got {self.image_shape}")
        if int(self.n_frames) < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        for n, length, axis in zip(shape, _axis_lengths(image_shape, int(self.n_frames)), "tyx"):
            if n > 1 and length <= 0:
                raise ValueError(f"axis {axis} has a zero-length domain: it takes 1 control point, not {n}")
        object.__setattr__(self, "control_shape", shape)
        object.__setattr__(self, "image_shape", image_shape)
        object.__setattr__(self, "n_frames", int(self.n_frames))
        for name in ("coeffs_x", "coeffs_y"):
            c = np.array(getattr(self, name), dtype=np.float64)  # a private copy
            if c.shape != shape:
                raise ValueError(f"{name} has shape {c.shape}, control_shape is {shape}")
            if not np.all(np.isfinite(c)):
                raise ValueError(f"{name} contains non-finite values")
            c.flags.writeable = False
            object.__setattr__(self, name, c)
        if self.reference_frame is not None:
            ref = int(self.reference_frame)
            if not 0 <= ref < self.n_frames:
                raise ValueError(f"reference_frame {self.reference_frame} outside 0..{self.n_frames - 1}")
            object.__setattr__(self, "reference_frame", ref)

    # -- bases --------------------------------------------------------------------------------
    def _basis_t(self, t: np.ndarray) -> np.ndarray:
        lt = float(self.n_frames - 1)
        b = axis_basis(t, self.control_shape[0], lt)
        if self.reference_frame is not None:
            b = b - axis_basis(np.array([float(self.reference_frame)]), self.control_shape[0], lt)
        return b

    def _basis_y(self, y: np.ndarray) -> np.ndarray:
        return axis_basis(y, self.control_shape[1], float(self.image_shape[0] - 1))

    def _basis_x(self, x: np.ndarray) -> np.ndarray:
        return axis_basis(x, self.control_shape[2], float(self.image_shape[1] - 1))

    # -- evaluation ---------------------------------------------------------------------------
    def displacement(self, x, y, t) -> tuple[np.ndarray, np.ndarray]:
        """Displacement ``(dx, dy)`` in movie pixels at positions ``x``, ``y`` (movie px) and
        times ``t`` (frame index, float allowed). Inputs broadcast together; outputs are float64
        arrays of the broadcast shape."""
        xb, yb, tb = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(t, np.float64))
        shape = xb.shape
        bt, by, bx = self._basis_t(tb), self._basis_y(yb), self._basis_x(xb)
        n_t, n_y, n_x = self.control_shape
        out = []
        for c in (self.coeffs_x, self.coeffs_y):
            spatial = (bt @ c.reshape(n_t, n_y * n_x)).reshape(-1, n_y, n_x)  # (m, n_y, n_x)
            out.append(np.einsum("mji,mj,mi->m", spatial, by, bx).reshape(shape))
        return out[0], out[1]

    def field_on_grid(self, t: float, grid_step_px: int) -> tuple[np.ndarray, np.ndarray]:
        """Displacement of frame time ``t`` on the coarse grid of :func:`warp_image`.

        Returns ``(field_dx, field_dy)``, float32 ``(gy, gx)`` =
        ``field_grid_shape(image_shape, grid_step_px)``, node ``(j, i)`` at pixel
        ``(i * grid_step_px, j * grid_step_px)`` (the last node may lie just past the frame edge).
        """
        gy, gx = field_grid_shape(self.image_shape, grid_step_px)
        bt = self._basis_t(np.array([float(t)]))[0]  # (n_t,)
        by = self._basis_y(np.arange(gy) * float(grid_step_px))  # (gy, n_y)
        bx = self._basis_x(np.arange(gx) * float(grid_step_px))  # (gx, n_x)
        fields = []
        for c in (self.coeffs_x, self.coeffs_y):
            spatial = np.tensordot(bt, c, axes=(0, 0))  # (n_y, n_x)
            fields.append((by @ spatial @ bx.T).astype(np.float32))
        return fields[0], fields[1]

    def summary(self) -> dict:
        """JSON-able description: shapes, coefficients (movie px, nested lists ``[t][y][x]``), knots."""
        lt, ly, lx = _axis_lengths(self.image_shape, self.n_frames)
        n_t, n_y, n_x = self.control_shape
        return {
            "model": "tensor-product cubic B-spline d(x, y, t) = sum C[k, j, i] phi_k(t) phi_j(y) phi_i(x)",
            "control_shape": list(self.control_shape),
            "image_shape": list(self.image_shape),
            "n_frames": self.n_frames,
            "reference_frame": self.reference_frame,
            "coeffs_x_px": self.coeffs_x.tolist(),
            "coeffs_y_px": self.coeffs_y.tolist(),
            "knots": {
                "t": axis_description("t", "frame", n_t, lt),
                "y": axis_description("y", "px", n_y, ly),
                "x": axis_description("x", "px", n_x, lx),
            },
        }


@dataclass(frozen=True)
class ModelFit:
    """Result of :func:`fit_local_motion`.

    ``weights``: ``(n_obs,)`` weights of the final least-squares solve (quality times the Tukey
    weight; 0 = rejected or quality 0). ``residuals_px``: ``(n_obs,)`` ``|observation - model|``
    (raw model, movie px), also for rejected observations (NaN where the observation was not
    finite). ``rms_px``: weighted RMS residual of the
    accepted observations.
    """

    model: LocalMotionModel
    weights: np.ndarray = field(repr=False)
    residuals_px: np.ndarray = field(repr=False)
    rms_px: float


# ---------------------------------------------------------------------------------------------
# fitting


def default_control_shape(xs, ys, ts, *, image_shape: tuple[int, int], n_frames: int) -> tuple[int, int, int]:
    """The default ``(n_t, n_y, n_x)``: ``min(4, number of distinct values)`` along each axis.

    Counted over the observations given (pass only the accepted ones); an axis with one distinct
    value, or whose domain has zero length (one frame, one pixel), gets 1 (a constant along it).
    Four control points per spatial axis, not three: on a 5 x 5 patch grid of a 2048 px field, a
    2 px field with a wavelength equal to the field width is fitted to 0.09 px RMS with four and
    only to 0.28 px with three (a quadratic); for noisy low-dose data pass ``(n_t, 3, 3)``.
    """
    lt, ly, lx = _axis_lengths(image_shape, n_frames)
    n_t = min(_DEFAULT_MAX_CONTROL, len(np.unique(np.asarray(ts, np.float64)))) if lt > 0 else 1
    n_y = min(_DEFAULT_MAX_CONTROL, len(np.unique(np.asarray(ys, np.float64)))) if ly > 0 else 1
    n_x = min(_DEFAULT_MAX_CONTROL, len(np.unique(np.asarray(xs, np.float64)))) if lx > 0 else 1
    return (max(n_t, 1), max(n_y, 1), max(n_x, 1))


def _design_matrix(model: LocalMotionModel, xs: np.ndarray, ys: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """``(m, n_t * n_y * n_x)`` raw basis values (C order of the coefficient arrays)."""
    raw = LocalMotionModel(model.control_shape, model.coeffs_x, model.coeffs_y, model.image_shape, model.n_frames)
    bt, by, bx = raw._basis_t(ts), raw._basis_y(ys), raw._basis_x(xs)
    return (bt[:, :, None, None] * by[:, None, :, None] * bx[:, None, None, :]).reshape(len(xs), -1)


def _penalty_matrix(control_shape: tuple[int, int, int]) -> np.ndarray:
    """Stacked second-difference operators along t, y and x of the flattened coefficients."""
    n_t, n_y, n_x = control_shape
    blocks = [
        np.kron(second_difference(n_t), np.eye(n_y * n_x)),
        np.kron(np.eye(n_t), np.kron(second_difference(n_y), np.eye(n_x))),
        np.kron(np.eye(n_t * n_y), second_difference(n_x)),
    ]
    return np.vstack(blocks)


def _solve(a: np.ndarray, b: np.ndarray, w: np.ndarray, penalty: np.ndarray, smoothness: float) -> np.ndarray:
    """Coefficients ``(n, 2)`` minimising ``sum w |A c - b|^2 + lambda |D c|^2``."""
    n = a.shape[1]
    sw = np.sqrt(w)[:, None]
    lam = smoothness * float(np.sum(w * np.sum(a * a, axis=1))) / n
    lhs = np.vstack([a * sw, np.sqrt(lam) * penalty]) if lam > 0 and penalty.size else a * sw
    rhs = np.vstack([b * sw, np.zeros((lhs.shape[0] - a.shape[0], 2))])
    coef, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    return coef


def _robust_scale(resid: np.ndarray, active: np.ndarray) -> float:
    """``max(1.4826 * MAD, floor)`` of the residual components of the active observations."""
    return max(mad_sigma(resid[active].ravel()), _SIGMA_FLOOR_PX)


@dataclass(frozen=True, kw_only=True)
class LocalFitOptions:
    """How :func:`fit_local_motion` fits: ``control_shape`` ``(n_t, n_y, n_x)`` (``None``:
    :func:`default_control_shape` of the accepted observations), ``smoothness`` (weight of the
    second-difference penalty relative to the mean data weight, 0 = none) and ``reference_frame``
    (the returned model reports displacements relative to it)."""

    control_shape: tuple[int, int, int] | None = None
    smoothness: float = 1e-3
    reference_frame: int | None = None

    def __post_init__(self) -> None:
        if self.smoothness < 0 or not np.isfinite(self.smoothness):
            raise ValueError(f"smoothness must be >= 0, got {self.smoothness}")


@dataclass(frozen=True)
class _Observations:
    """Validated observations: positions and times ``(m,)``, displacements ``b`` ``(m, 2)`` (0 where
    not finite), quality ``q`` ``(m,)`` (0 where not finite) and the finite mask."""

    xs: np.ndarray
    ys: np.ndarray
    ts: np.ndarray
    b: np.ndarray
    q: np.ndarray
    finite: np.ndarray


def _validated_observations(xs, ys, ts, dxs, dys, quality) -> _Observations:
    xs, ys, ts, dxs, dys = (np.asarray(v, dtype=np.float64).ravel() for v in (xs, ys, ts, dxs, dys))
    m = xs.shape[0]
    if not all(v.shape[0] == m for v in (ys, ts, dxs, dys)):
        raise ValueError("xs, ys, ts, dxs and dys must have the same length")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys)) and np.all(np.isfinite(ts))):
        raise ValueError("observation positions and times must be finite")
    if quality is None:
        q = np.ones(m)
    else:
        q = np.asarray(quality, dtype=np.float64).ravel().copy()
        if q.shape[0] != m:
            raise ValueError("quality must have one value per observation")
        if not np.all((q >= 0) & (q <= 1)):
            raise ValueError("quality values must lie in [0, 1]")
    finite = np.isfinite(dxs) & np.isfinite(dys)
    q[~finite] = 0.0
    if not np.any(q > 0):
        raise ValueError("no observation with quality > 0 to fit")
    b = np.stack([np.where(finite, dxs, 0.0), np.where(finite, dys, 0.0)], axis=1)
    return _Observations(xs, ys, ts, b, q, finite)


def _robust_weights(a: np.ndarray, obs: _Observations, penalty: np.ndarray, smoothness: float) -> np.ndarray:
    """Tukey weights ``(m,)`` from iteratively re-weighted least squares (up to ``_MAX_FITS - 1`` solves)."""
    active = obs.q > 0
    robust = np.ones(obs.q.shape[0])
    for _ in range(_MAX_FITS - 1):
        coef = _solve(a, obs.b, obs.q * robust, penalty, smoothness)
        resid = obs.b - a @ coef
        cutoff = max(_REJECT_SIGMAS * _robust_scale(resid, active), _REJECT_FLOOR_PX)
        rmag = np.hypot(resid[:, 0], resid[:, 1])
        new = np.where(rmag < cutoff, (1.0 - (rmag / cutoff) ** 2) ** 2, 0.0)
        if not np.any(obs.q * new > 0):
            break  # keep the previous weights rather than reject everything
        converged = float(np.max(np.abs(new - robust))) < 1e-4
        robust = new
        if converged:
            break
    return robust


def _final_fit(a, obs: _Observations, weights, penalty, template: LocalMotionModel, options: LocalFitOptions) -> ModelFit:
    """The last solve with the final weights, its residuals and the model."""
    coef = _solve(a, obs.b, weights, penalty, options.smoothness)
    resid = obs.b - a @ coef
    rmag = np.hypot(resid[:, 0], resid[:, 1])
    rmag[~obs.finite] = np.nan
    accepted = weights > 0
    rms = float(np.sqrt(np.sum(weights[accepted] * rmag[accepted] ** 2) / np.sum(weights[accepted])))
    model = LocalMotionModel(
        template.control_shape,
        coef[:, 0].reshape(template.control_shape),
        coef[:, 1].reshape(template.control_shape),
        template.image_shape,
        template.n_frames,
        options.reference_frame,
    )
    return ModelFit(model=model, weights=weights, residuals_px=rmag, rms_px=rms)


def fit_local_motion(
    xs,
    ys,
    ts,
    dxs,
    dys,
    *,
    image_shape: tuple[int, int],
    n_frames: int,
    quality=None,
    options: LocalFitOptions | None = None,
    **option_values,
) -> ModelFit:
    """Fit a :class:`LocalMotionModel` to patch measurements by robust weighted least squares.

    ``xs``, ``ys``: ``(n_obs,)`` patch centres (movie px); ``ts``: ``(n_obs,)`` times as (float)
    frame indices; ``dxs``, ``dys``: ``(n_obs,)`` residual displacements (movie px; non-finite =
    rejected); ``image_shape`` ``(ny, nx)`` and ``n_frames`` set the spline domains; ``quality``:
    optional ``(n_obs,)`` weights in [0, 1] (0 = rejected before fitting). How to fit:
    ``options`` (:class:`LocalFitOptions`) or its fields as keywords (``control_shape=``,
    ``smoothness=``, ``reference_frame=``).

    Steps: validate the observations; build the design and penalty for the control grid; robust
    (Tukey) weights by iteratively re-weighted least squares; the final solve.
    Raises ``ValueError`` when no observation has quality > 0 or inputs disagree in length.
    """
    if options is None:
        options = LocalFitOptions(**option_values)
    elif option_values:
        raise ValueError(f"give options= or its fields as keywords, not both (got {sorted(option_values)})")
    obs = _validated_observations(xs, ys, ts, dxs, dys, quality)
    control_shape = options.control_shape
    if control_shape is None:
        active = obs.q > 0
        control_shape = default_control_shape(obs.xs[active], obs.ys[active], obs.ts[active], image_shape=image_shape,
                                              n_frames=n_frames)
    zeros = np.zeros(tuple(int(v) for v in control_shape))
    template = LocalMotionModel(tuple(control_shape), zeros, zeros, tuple(image_shape), int(n_frames))
    a = _design_matrix(template, obs.xs, obs.ys, obs.ts)
    penalty = _penalty_matrix(template.control_shape)
    robust = _robust_weights(a, obs, penalty, options.smoothness)
    return _final_fit(a, obs, obs.q * robust, penalty, template, options)
