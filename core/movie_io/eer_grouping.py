"""Grouping the raw frames of an EER movie into fractions (the rule below; the reader is
:mod:`framewatch.core.movie_io.eer`).


1. ``group_frames = g``: ``n_fractions = max(1, round(n_raw / g))``;
2. a total dose ``D`` (e/A^2) is known: ``n_fractions = max(1, round(D / target))``, with
   ``target = fraction_dose_e_per_a2`` or 0.3 e/A^2 (suited to tilts of 2-4 e/A^2);
3. neither: 40 raw frames per fraction (RELION's default ``--eer_grouping``), dose unknown.

(``round`` is round-half-up; ``n_fractions`` never exceeds ``n_raw``.) **Remainder rule: every raw
frame is used.** Fraction ``i`` holds raw frames ``[floor(i n_raw / n_f), floor((i+1) n_raw / n_f))``,
so fraction sizes differ by at most one raw frame and the extra frames are spread evenly over the
exposure (MotionCor3 also keeps the leftover frames, putting them in the last fractions; RELION
drops them). With the dose per raw frame ``d = D / n_raw``, ``dose_per_fraction_e_per_a2 = D /
n_fractions`` is the mean fraction dose, and the true accumulated dose at the end of fraction ``i``
(``end_i * d``) differs from DESIGN.md's uniform ``(i + 1) * D / n_fractions`` by less than ``d``
(one raw frame, ~0.008 e/A^2 at usual rates). RELION's rule would drop up to ``g - 1`` raw frames:
up to 10 % of a 400-frame tilt's dose.

A fraction is the sum of its raw frames, returned as uint8 when no fraction holds more than 255 raw
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import SettingsError

DEFAULT_EER_GROUP_FRAMES = 40
DEFAULT_EER_FRACTION_DOSE_E_PER_A2 = 0.3


@dataclass(frozen=True)
class EerGrouping:
    """How raw frames form fractions (see the module docstring for the rule).

    ``boundaries``: ``n_fractions + 1`` raw-frame indices; fraction ``i`` is raw frames
    ``boundaries[i]:boundaries[i + 1]``. Doses are ``None`` when no total dose is known.
    """

    n_raw_frames: int
    boundaries: tuple[int, ...]
    dose_per_raw_frame_e_per_a2: float | None
    dose_per_fraction_e_per_a2: float | None
    rule: str

    @property
    def n_fractions(self) -> int:
        return len(self.boundaries) - 1

    @property
    def raw_frames_per_fraction(self) -> tuple[int, ...]:
        b = self.boundaries
        return tuple(b[i + 1] - b[i] for i in range(len(b) - 1))

    def fraction_doses_e_per_a2(self) -> tuple[float, ...] | None:
        """The dose of each fraction (its raw frames times the dose per raw frame), or ``None``."""
        if self.dose_per_raw_frame_e_per_a2 is None:
            return None
        return tuple(n * self.dose_per_raw_frame_e_per_a2 for n in self.raw_frames_per_fraction)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def group_eer_frames(
    n_raw_frames: int,
    *,
    group_frames: int | None = None,
    fraction_dose_e_per_a2: float | None = None,
    total_dose_e_per_a2: float | None = None,
) -> EerGrouping:
    """Split ``n_raw_frames`` raw EER frames into fractions (rule in the module docstring).

    Raises :class:`SettingsError` for a non-positive value, for both ``group_frames`` and
    ``fraction_dose_e_per_a2``, or for a dose target without a total dose.
    """
    n_raw = int(n_raw_frames)
    if n_raw < 1:
        raise SettingsError(f"an EER movie needs at least one raw frame, got {n_raw}")
    if group_frames is not None and fraction_dose_e_per_a2 is not None:
        raise SettingsError(
            "EER grouping given both as raw frames per fraction and as a dose per fraction",
            fix="give only --eer-group-frames or only --eer-fraction-dose",
        )
    if total_dose_e_per_a2 is not None and not (total_dose_e_per_a2 > 0 and math.isfinite(total_dose_e_per_a2)):
        raise SettingsError(f"EER total dose {total_dose_e_per_a2} e/A^2 is not positive", fix="give the dose per tilt in e/A^2")
    if group_frames is not None:
        if int(group_frames) != group_frames or group_frames < 1:
            raise SettingsError(f"EER group size {group_frames} is not a positive whole number of raw frames")
        n_fr = _round_half_up(n_raw / int(group_frames))
        rule = f"{int(group_frames)} raw frames per fraction requested"
    elif total_dose_e_per_a2 is not None:
        target = DEFAULT_EER_FRACTION_DOSE_E_PER_A2 if fraction_dose_e_per_a2 is None else float(fraction_dose_e_per_a2)
        if not (target > 0 and math.isfinite(target)):
            raise SettingsError(f"EER dose per fraction {target} e/A^2 is not positive")
        n_fr = _round_half_up(total_dose_e_per_a2 / target)
        rule = f"{target:g} e/A^2 per fraction requested"
    else:
        if fraction_dose_e_per_a2 is not None:
            raise SettingsError(
                "an EER dose per fraction needs the total dose of the movie",
                fix="give the dose per tilt (e/A^2), or group by raw frames with --eer-group-frames",
            )
        n_fr = _round_half_up(n_raw / DEFAULT_EER_GROUP_FRAMES)
        rule = f"default {DEFAULT_EER_GROUP_FRAMES} raw frames per fraction (no dose known)"
    n_fr = min(max(n_fr, 1), n_raw)
    boundaries = tuple((i * n_raw) // n_fr for i in range(n_fr + 1))
    d_raw = None if total_dose_e_per_a2 is None else float(total_dose_e_per_a2) / n_raw
    d_frac = None if total_dose_e_per_a2 is None else float(total_dose_e_per_a2) / n_fr
    sizes = {boundaries[i + 1] - boundaries[i] for i in range(n_fr)}
    rule += f"; {n_raw} raw frames -> {n_fr} fractions of {'/'.join(str(s) for s in sorted(sizes))}, none dropped"
    return EerGrouping(n_raw, boundaries, d_raw, d_frac, rule)
