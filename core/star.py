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
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic_write import atomic_write_text

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


# ------------------------------------------------------------------------------ the STAR writer
STAR_VERSION = "# version 50001"
_RESERVED = ("data_", "loop_", "save_", "global_", "stop_")
_NEEDS_QUOTES_AT_START = ("_", "#", "$", ";", "[", "]", "'", '"')
# characters a STAR line cannot hold (line breaks and other control characters): written visibly
_LINE_BREAKING = {0x85, 0x2028, 0x2029}


def _visible(text: str) -> str:
    """Control characters and line separators as the text ``\\xHH`` / ``\\uHHHH`` (a STAR row is one line)."""
    out = []
    for ch in text:
        o = ord(ch)
        if o < 0x20 and ch != "\t" or 0x7F <= o < 0xA0 or o in _LINE_BREAKING:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def star_value(value) -> str:
    """One STAR value as text.

    Numbers: integers as they are, floats with 6 decimals (``nan``/``inf`` as such). Strings stay
    bare when that is unambiguous; otherwise they are put in double quotes -- when empty, with
    whitespace, a ``"`` or ``'`` or ``#`` anywhere, starting with ``_ # $ ; [ ]``, or starting with a
    reserved word (``data_``, ``loop_``, ``save_``, ``global_``, ``stop_``). Inside the quotes ``"``
    and ``'`` are doubled, the way the CSV reader behind ``starfile`` (teamtomo) reads them (it turns
    every ``'`` into ``"`` first, so a ``'`` comes back from ``starfile`` as ``"``; :func:`read_star`
    gives it back unchanged). Control characters and line separators cannot be in a STAR row: they
    are written as the visible text ``\\xHH`` / ``\\uHHHH``.
    """
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6f}"
    text = _visible("" if value is None else str(value))
    bare = (
        text
        and not any(c.isspace() for c in text)
        and not any(c in text for c in "\"'#")
        and not text.startswith(_NEEDS_QUOTES_AT_START)
        and not text.lower().startswith(_RESERVED)
    )
    if bare:
        return text
    return '"' + text.replace('"', '""').replace("'", "''") + '"'


def star_pairs(name: str, values: dict) -> str:
    """A ``data_NAME`` block of ``_label value`` lines."""
    width = max((len(k) for k in values), default=0) + 2
    lines = [STAR_VERSION, "", f"data_{name}", ""]
    lines += [f"_{k:<{width}}{star_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n\n"


def star_loop(name: str, labels, rows) -> str:
    """A ``data_NAME`` block with one ``loop_`` of ``labels`` and ``rows`` (sequences of values)."""
    labels = list(labels)
    lines = [STAR_VERSION, "", f"data_{name}", "", "loop_"]
    lines += [f"_{label} #{i + 1}" for i, label in enumerate(labels)]
    for row in rows:
        row = list(row)
        if len(row) != len(labels):
            raise ValueError(f"STAR block {name}: a row has {len(row)} values for {len(labels)} labels")
        lines.append(" ".join(star_value(v) for v in row))
    return "\n".join(lines) + "\n\n"


def star_text(blocks, *, comments=()) -> str:
    """A whole STAR file: ``# comment`` lines, then the blocks (texts of star_pairs/star_loop)."""
    head = "".join(f"# {_visible(c)}\n" for c in comments)
    return head + ("\n" if head else "") + "".join(blocks)


def write_star_file(path: str | os.PathLike, text: str) -> None:
    """Write a STAR file atomically (temporary name, fsync, rename)."""
    atomic_write_text(path, text)


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
    blocks = [
        star_pairs("general", general),
        star_loop(
            "global_shift",
            ["rlnMicrographFrameNumber", "rlnMicrographShiftX", "rlnMicrographShiftY"],
            [(i + 1, float(sx), float(sy)) for i, (sx, sy) in enumerate(np.asarray(shifts_px))],
        ),
    ]
    if coeffs is not None:
        values = list(coeffs[0]) + list(coeffs[1])
        labels = ["rlnMotionModelCoeffsIdx", "rlnMotionModelCoeff"]
        blocks.append(star_loop("local_motion_model", labels, list(enumerate(values))))
    if hot_pixels_xy is not None and len(hot_pixels_xy):
        xy = [(float(x), float(y)) for x, y in hot_pixels_xy]
        blocks.append(star_loop("hot_pixels", ["rlnCoordinateX", "rlnCoordinateY"], xy))
    write_star_file(path, star_text(blocks, comments=[f"written by framewatch; {note}"]))
    return {"motion_model_version": version, "polynomial_misfit_px": misfit, "note": note}


def read_star(path: str | os.PathLike) -> dict[str, dict[str, list] | dict[str, str]]:
    """STAR reader for framewatch's own files (and simple ones of other programs):
    ``{block: {label: [values...]}}`` for loops, ``{label: value}`` otherwise.

    Values stay strings. Quoted values are unquoted the way :func:`star_value` writes them
    (``""`` and ``''`` inside double quotes are one quote); single-quoted values are taken as they are.
    """
    blocks: dict = {}
    current = None
    labels: list[str] = []
    in_loop = False
    for raw in Path(path).read_text(encoding="utf-8").split("\n"):
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
                values = split_star_row(parts[1]) if len(parts) > 1 else [""]
                current[label] = values[0] if values else ""
        elif in_loop and current is not None:
            for label, value in zip(labels, split_star_row(line)):
                current[label].append(value)
    return blocks


def split_star_row(line: str) -> list[str]:
    """The values of one STAR row (see :func:`read_star` for the quoting)."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        q = line[i]
        if q in "\"'":
            j = i + 1
            buf = []
            while j < n:
                c = line[j]
                if q == '"' and c in "\"'" and j + 1 < n and line[j + 1] == c:
                    buf.append(c)  # a doubled quote
                    j += 2
                    continue
                if c == q and (j + 1 == n or line[j + 1].isspace()):
                    break
                buf.append(c)
                j += 1
            out.append("".join(buf))
            i = j + 1
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            out.append(line[i:j])
            i = j
    return out
