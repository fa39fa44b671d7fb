"""Plausible ranges of the mdoc values the daemon uses; a value outside its range is not used.

An mdoc is text anyone can write: ``TiltAngle = 720``, ``PixelSpacing = 1e300``, ``ExposureDose =
nan`` or a ``DateTime`` in the year 1 must not reach a tilt table, a stack header or a dose
filter. :func:`check_value` says whether one ``Key = value`` line is usable; the parser turns each
refusal into one mdoc warning, and the section accessors (``MdocSection.tilt_angle_deg`` ...)
return None for it, so the next source of that value applies (the file name for an angle, the
command line for a dose; with no other source the movie fails naming the value that is missing).
"""
from __future__ import annotations

import math

TILT_ANGLE_RANGE_DEG = (-90.0, 90.0)
PIXEL_SPACING_RANGE_A = (0.01, 1000.0)  # frames (~0.5-5 A) to binned overviews; 0 = unknown
DOSE_MAX_E_PER_A2 = 1.0e4  # ExposureDose, PriorRecordDose, FrameDosesAndNumber (a whole series is ~100-200)
VOLTAGE_RANGE_KV = (1.0, 1000.0)
YEAR_RANGE = (1980, 2100)  # DateTime: SerialEM exists since 1999; two-digit years are 20yy

# key -> (low, high, what it is); a value outside [low, high] or non-finite is not used
RANGES = {
    "TiltAngle": (*TILT_ANGLE_RANGE_DEG, "a tilt angle in degrees"),
    "PixelSpacing": (*PIXEL_SPACING_RANGE_A, "a pixel size in A"),
    "ExposureDose": (0.0, DOSE_MAX_E_PER_A2, "a dose in e/A^2"),
    "PriorRecordDose": (-1.0, DOSE_MAX_E_PER_A2, "a dose in e/A^2 (-1 = unknown)"),
    "FrameDosesAndNumber": (0.0, DOSE_MAX_E_PER_A2, "a dose per frame in e/A^2"),
    "Voltage": (*VOLTAGE_RANGE_KV, "a voltage in kV"),
}


def first_number(text: str | None) -> float | None:
    """The first whitespace-separated number of a value (may be non-finite); None when there is none."""
    if text is None:
        return None
    parts = text.split()
    if not parts:
        return None
    try:
        return float(parts[0])
    except ValueError:
        return None


def usable(key: str, value: float | None) -> bool:
    """Whether a number read for ``key`` is finite and in its plausible range (other keys: finite)."""
    if value is None or not math.isfinite(value):
        return False
    r = RANGES.get(key)
    if r is None:
        return True
    if key == "PixelSpacing" and value == 0:
        return True  # SerialEM writes 0 when it does not know; treated as "none" by the accessor
    return r[0] <= value <= r[1]


def check_value(key: str, text: str) -> str | None:
    """The warning for one ``Key = value`` line whose number is unusable, else None."""
    r = RANGES.get(key)
    if r is None:
        return None
    v = first_number(text)
    if v is None:
        return f"{key} = {text[:40]!r} is not a number: not used"
    if not usable(key, v):
        return f"{key} = {text[:40]!r} is not {r[2]} in [{r[0]:g}, {r[1]:g}]: not used"
    return None
