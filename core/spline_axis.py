"""One axis of a uniform cubic B-spline with extrapolated end knots (the bases of the local-motion models).

Domain ``[0, L]`` with ``n`` control points (used along t, y and x by
:mod:`framewatch.core.motion_model` and along y and x by :mod:`framewatch.core.separable_motion`):

* ``n = 1``: a constant.
* ``n >= 2``: uniform cubic B-splines ``b3(u / h - k)`` centred on ``u_k = k h``, ``h = L / (n - 1)``.
  Each end has one extended knot whose phantom coefficient is extrapolated from the real ones:
  linearly when ``n = 2`` (the model is then exactly linear), quadratically when ``n >= 3``
  (``c[-1] = 3 c[0] - 3 c[1] + c[2]``, mirrored at the far end). Outside ``[0, L]`` the end pieces
  are continued as polynomials.

The full description (and why) is in :mod:`framewatch.core.motion_model`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["axis_basis", "second_difference", "axis_description"]


def axis_basis(u: np.ndarray, n: int, length: float) -> np.ndarray:
    """Values ``(m, n)`` of the ``n`` basis functions of one axis at positions ``u`` ``(m,)``."""
    u = np.asarray(u, dtype=np.float64).ravel()
    m = u.shape[0]
    if n == 1:
        return np.ones((m, 1))
    h = length / (n - 1)
    s = u / h
    i = np.clip(np.floor(s), 0, n - 2).astype(np.intp)  # interval; ends continue polynomially
    t = s - i
    t2 = t * t
    t3 = t2 * t
    w = np.stack(
        [
            (1.0 - t) ** 3 / 6.0,
            2.0 / 3.0 - t2 + 0.5 * t3,
            1.0 / 6.0 + 0.5 * (t + t2 - t3),
            t3 / 6.0,
        ],
        axis=1,
    )  # weights of extended coefficients i - 1 .. i + 2
    ext = np.zeros((m, n + 2))  # extended coefficient index k lives in column k + 1
    rows = np.arange(m)
    for q in range(4):
        np.add.at(ext, (rows, i + q), w[:, q])
    return ext @ _extension_matrix(n)



def _extension_matrix(n: int) -> np.ndarray:
    """``(n + 2, n)``: the real coefficients plus one extrapolated phantom at each end."""
    e = np.zeros((n + 2, n))
    e[1 : n + 1] = np.eye(n)
    if n == 2:
        e[0, :2] = (2.0, -1.0)
        e[n + 1, :2] = (-1.0, 2.0)
    else:
        e[0, :3] = (3.0, -3.0, 1.0)
        e[n + 1, n - 3 :] = (1.0, -3.0, 3.0)
    return e



def second_difference(n: int) -> np.ndarray:
    """``(n - 2, n)`` second-difference operator (empty for ``n < 3``)."""
    d = np.zeros((max(n - 2, 0), n))
    for r in range(n - 2):
        d[r, r : r + 3] = (1.0, -2.0, 1.0)
    return d



def axis_description(name: str, unit: str, n: int, length: float) -> dict:
    """JSON-able description of one axis: ``n`` control points over ``[0, length]`` in ``unit``."""
    if n == 1:
        return {"axis": name, "unit": unit, "n_control": 1, "kind": "constant", "domain": [0.0, length]}
    h = length / (n - 1)
    if n == 2:
        rule = "extrapolated linearly (c[-1] = 2 c[0] - c[1])"
    else:
        rule = "extrapolated quadratically (c[-1] = 3 c[0] - 3 c[1] + c[2])"
    return {
        "axis": name,
        "unit": unit,
        "n_control": n,
        "kind": "uniform cubic B-spline",
        "domain": [0.0, length],
        "spacing": h,
        "control_positions": [k * h for k in range(n)],
        "end_knots": f"one extended knot per end, at -spacing and length + spacing; its coefficient is {rule}",
    }
