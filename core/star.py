"""RELION-style STAR files: the per-movie motion file and a small reader.

The per-movie file (``framewatch correct --star``) follows RELION's ``Micrograph::write`` layout,
so Bayesian polishing can start from it:

- ``data_general``: image size, movie and gain names, binning, pixel size, dose per frame,
  pre-exposure (our prior dose), voltage, start frame and ``rlnMotionModelVersion``.
- ``data_global_shift``: ``rlnMicrographFrameNumber`` (1-based) and ``rlnMicrographShiftX/Y`` in
  unbinned movie pixels. Sign and origin: framewatch's shifts are the position of the specimen in
  frame t relative to frame 0, and RELION's are the same (frame 1 = 0 in its 1-based count), so the
  values are written unchanged -- no sign flip.
- ``data_local_motion_model``: RELION's third-order polynomial (version 1), written only when the
  local model is expressible that way. framewatch's model is a cubic B-spline in (x, y, t); it is
  converted by least squares to RELION's 18 coefficients per axis,
  ``u(x, y, z) = sum_{m in (1, x, x^2, y, y^2, xy)} m (c1 z + c2 z^2 + c3 z^3)`` with
  ``x = X / nx - 0.5``, ``y = Y / ny - 0.5`` and z the 0-based frame index, relative to frame 0,
  and written only if the polynomial reproduces the spline to ``POLYNOMIAL_TOLERANCE_PX`` RMS over
  the field and all frames; otherwise the block is left out, ``rlnMotionModelVersion`` is 0 and the
  reason is a comment in the file.
- ``data_hot_pixels``: ``rlnCoordinateX/Y`` of every replaced pixel.
"""
from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np

POLYNOMIAL_TOLERANCE_PX = 0.1
_MONOMIALS = ("1", "x", "x2", "y", "y2", "xy")


def _monomials(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    one = np.ones_like(x)
    return [one, x, x * x, y, y * y, x * y]


def relion_polynomial_design(x_px, y_px, z, *, shape: tuple[int, int]) -> np.ndarray:
    """``(n, 18)`` design matrix of RELION's ThirdOrderPolynomialModel at points (X, Y) and frame z."""
    ny, nx = shape
    x = np.asarray(x_px, dtype=np.float64) / nx - 0.5
    y = np.asarray(y_px, dtype=np.float64) / ny - 0.5
    z = np.asarray(z, dtype=np.float64)
    cols = []
    for m in _monomials(x, y):
        cols.extend([m * z, m * z**2, m * z**3])
    return np.column_stack(cols)


def fit_relion_polynomial(
    displacement: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    shape: tuple[int, int],
    n_frames: int,
    samples: int = 9,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares RELION coefficients for a local displacement ``(dx, dy) = displacement(X, Y, t)``
    given relative to frame 0 on a ``samples x samples`` grid and all frames.

    Returns ``(coeffs_x (18,), coeffs_y (18,), rms_misfit_px)``.
    """
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, samples), np.linspace(0, ny - 1, samples))
    xs = np.tile(gx.ravel(), n_frames)
    ys = np.tile(gy.ravel(), n_frames)
    zs = np.repeat(np.arange(n_frames, dtype=np.float64), gx.size)
    dx, dy = displacement(xs, ys, zs)
    design = relion_polynomial_design(xs, ys, zs, shape=shape)
    cx, *_ = np.linalg.lstsq(design, dx, rcond=None)
    cy, *_ = np.linalg.lstsq(design, dy, rcond=None)
    misfit = np.sqrt(np.mean((design @ cx - dx) ** 2 + (design @ cy - dy) ** 2))
    return cx, cy, float(misfit)


def _loop(name: str, labels: list[str], rows) -> str:
    lines = [f"data_{name}", "", "loop_"]
    lines += [f"_{label} #{i + 1}" for i, label in enumerate(labels)]
    for row in rows:
        lines.append(" ".join(_fmt(v) for v in row))
    return "\n".join(lines) + "\n\n"


def _fmt(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6f}"
    text = str(value)
    return f'"{text}"' if (not text or any(c.isspace() for c in text)) else text


def write_motion_star(
    path: str | os.PathLike,
    *,
    shifts_px: np.ndarray,
    image_shape: tuple[int, int],
    movie_name: str,
    pixel_size_a: float,
    dose_per_frame_e_per_a2: float,
    prior_dose_e_per_a2: float,
    voltage_kv: float,
    gain_name: str | None = None,
    defect_file: str | None = None,
    hot_pixels_xy: np.ndarray | None = None,
    local_displacement: Callable | None = None,
) -> dict:
    """Write the per-movie motion STAR file atomically; returns what was decided (model version, misfit).

    ``local_displacement(X, Y, t) -> (dx, dy)``: the local motion relative to frame 0 in movie
    pixels, or None for whole-frame only.
    """
    ny, nx = image_shape
    n_frames = int(np.shape(shifts_px)[0])
    version, note, coeffs, misfit = 0, "whole-frame alignment only", None, None
    if local_displacement is not None:
        cx, cy, misfit = fit_relion_polynomial(local_displacement, shape=image_shape, n_frames=n_frames)
        if misfit <= POLYNOMIAL_TOLERANCE_PX:
            version, note, coeffs = 1, f"local model converted to RELION's polynomial, misfit {misfit:.3f} px", (cx, cy)
        else:
            note = (f"local model not expressible as RELION's polynomial (misfit {misfit:.3f} px > "
                    f"{POLYNOMIAL_TOLERANCE_PX} px); data_local_motion_model left out")
    general = {
        "rlnImageSizeX": nx,
        "rlnImageSizeY": ny,
        "rlnImageSizeZ": n_frames,
        "rlnMicrographMovieName": movie_name,
        "rlnMicrographGainName": gain_name or "",
        "rlnMicrographDefectFile": defect_file or "",
        "rlnMicrographBinning": 1.0,
        "rlnMicrographOriginalPixelSize": float(pixel_size_a),
        "rlnMicrographDoseRate": float(dose_per_frame_e_per_a2),
        "rlnMicrographPreExposure": float(prior_dose_e_per_a2),
        "rlnVoltage": float(voltage_kv),
        "rlnMicrographStartFrame": 1,
        "rlnMotionModelVersion": version,
    }
    text = "# written by framewatch; " + note + "\n\n# version 30001\n\ndata_general\n\n"
    text += "".join(f"_{k} {_fmt(v)}\n" for k, v in general.items()) + "\n"
    text += "# version 30001\n\n" + _loop(
        "global_shift",
        ["rlnMicrographFrameNumber", "rlnMicrographShiftX", "rlnMicrographShiftY"],
        [(i + 1, float(sx), float(sy)) for i, (sx, sy) in enumerate(np.asarray(shifts_px))],
    )
    if coeffs is not None:
        values = list(coeffs[0]) + list(coeffs[1])
        text += "# version 30001\n\n" + _loop(
            "local_motion_model", ["rlnMotionModelCoeffsIdx", "rlnMotionModelCoeff"], list(enumerate(values))
        )
    if hot_pixels_xy is not None and len(hot_pixels_xy):
        text += "# version 30001\n\n" + _loop(
            "hot_pixels", ["rlnCoordinateX", "rlnCoordinateY"], [(float(x), float(y)) for x, y in hot_pixels_xy]
        )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return {"motion_model_version": version, "polynomial_misfit_px": misfit, "note": note}


def read_star(path: str | os.PathLike) -> dict[str, dict[str, list] | dict[str, str]]:
    """Minimal STAR reader: ``{block: {label: [values...]}}`` for loops, ``{label: value}`` otherwise.

    Values stay strings; quoted strings are unquoted. Enough for framewatch's own files.
    """
    blocks: dict = {}
    current = None
    labels: list[str] = []
    in_loop = False
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            current = blocks.setdefault(line[5:], {})
            labels, in_loop = [], False
        elif line == "loop_":
            in_loop, labels = True, []
        elif line.startswith("_"):
            parts = line.split(None, 1)
            label = parts[0][1:]
            if in_loop:
                labels.append(label)
                current[label] = []
            else:
                current[label] = parts[1].strip('"') if len(parts) > 1 else ""
        elif in_loop and current is not None:
            values = _split_star_row(line)
            for label, value in zip(labels, values):
                current[label].append(value)
    return blocks


def _split_star_row(line: str) -> list[str]:
    return shlex.split(line, posix=True)
