"""Plausible ranges of the numbers a correction takes, and one check that explains a refusal.

Every processing number reaches the engine from a person (command line, configuration) or from
acquisition metadata (an mdoc written by SerialEM, a script or failing hardware), so each one is
checked to be a finite number inside a range that covers every real microscope and detector with
a wide margin. A value outside is refused with :class:`~framewatch.core.errors.SettingsError`
naming the value, the range and the fix; nothing is clamped.

=================================  ================  =============================================
quantity                           range             why
=================================  ================  =============================================
pixel size                         0.05-100 A        super-resolution K3 at the highest
                                                     magnification is ~0.3 A; 100 A is an atlas
dose per frame                     0.0001-100 e/A^2  EER fractions of 1000+ raw frames; one frame
                                                     of an exposure never holds 100 e/A^2
dose per tilt / per movie          0.001-1000 e/A^2  a single-particle exposure is 40-80 e/A^2
prior dose                         0-10000 e/A^2     a whole tilt series is 100-200 e/A^2
voltage                            50-400 kV         cryo-EM microscopes run at 100-300 kV
patches per axis                   0-64              MotionCor users take 5-10
EER dose per fraction              0.001-100 e/A^2   0.3 is the default target
EER raw frames per fraction        1-1000000
threads                            0-4096            0 = all cores
=================================  ================  =============================================
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .errors import SettingsError


@dataclass(frozen=True)
class PlausibleRange:
    """A closed interval ``[low, high]`` of finite values in ``unit`` (``""`` for counts)."""

    low: float
    high: float
    unit: str = ""

    def contains(self, value) -> bool:
        """True when ``value`` is a real, finite number inside the range (bools are not numbers)."""
        if isinstance(value, bool):
            return False
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            return False
        return math.isfinite(v) and self.low <= v <= self.high

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.low:g}-{self.high:g}{unit}"


PIXEL_SIZE_A = PlausibleRange(0.05, 100.0, "A")
DOSE_PER_FRAME_E_PER_A2 = PlausibleRange(1e-4, 100.0, "e/A^2")
DOSE_PER_TILT_E_PER_A2 = PlausibleRange(1e-3, 1000.0, "e/A^2")
PRIOR_DOSE_E_PER_A2 = PlausibleRange(0.0, 10000.0, "e/A^2")
VOLTAGE_KV = PlausibleRange(50.0, 400.0, "kV")
PATCHES_PER_AXIS = PlausibleRange(0, 64)
EER_FRACTION_DOSE_E_PER_A2 = PlausibleRange(1e-3, 100.0, "e/A^2")
EER_GROUP_FRAMES = PlausibleRange(1, 1_000_000)
THREADS = PlausibleRange(0, 4096)


def require_in_range(value, allowed: PlausibleRange, *, what: str, fix: str | None = None,
                     path: str | Path | None = None) -> float:
    """``float(value)`` when ``allowed`` contains it, else a :class:`SettingsError` naming ``what``.

    ``what`` names the quantity as a user knows it (``"pixel size"``); ``fix`` says which option or
    key to change. NaN, infinities, values that overflow a float and non-numbers are refused.
    """
    if allowed.contains(value):
        return float(value)
    unit = f" {allowed.unit}" if allowed.unit else ""
    shown = value if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
    if isinstance(shown, float) and math.isfinite(shown):
        shown = f"{shown:g}"
    kind = "is not a finite number" if not _is_finite_number(value) else "is outside the plausible range"
    raise SettingsError(f"{what} {shown}{unit} {kind} ({allowed.text()})", path=path, fix=fix)


def require_finite(value, *, what: str, low: float = -math.inf, fix: str | None = None) -> float:
    """``float(value)`` when it is a finite number ``> low``; else a :class:`SettingsError`."""
    if _is_finite_number(value) and float(value) > low:
        return float(value)
    bound = "" if low == -math.inf else f" > {low:g}"
    raise SettingsError(f"{what} {value!r} is not a finite number{bound}", fix=fix)


def _is_finite_number(value) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False
