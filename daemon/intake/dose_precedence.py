"""Which source gives a movie's pixel size, dose, voltage and prior dose (``resolve``).

Explicit options (command line over configuration, :class:`ProcessingOptions`) win over the mdoc,
which wins over the defaults:

- dose per frame: the command line/config; mdoc ``FrameDosesAndNumber``; mdoc ``ExposureDose`` /
  frames (when > 0); none -> the movie fails with "no dose";
- pixel size: command line/config; the frame mdoc's ``PixelSpacing``; none -> the movie fails with
  "no pixel size";
- voltage: command line/config; mdoc ``Voltage``; 300 kV.

Prior dose (DESIGN.md): the mdoc's ``PriorRecordDose``; else the sum of the mdoc ``ExposureDose`` of
the series' earlier tilts in acquisition order, not counting this one (when every earlier tilt has a
positive one: :func:`prior_dose_sum`); else acquisition index x dose per tilt (command line/config,
or this tilt's own mdoc dose). For the last two rules ``--prior-dose`` is added as the dose the area
received before the series began. The value and the rule are recorded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from framewatch.daemon.config.processing_options import DEFAULT_VOLTAGE_KV, ProcessingOptions
from framewatch.daemon.intake.mdoc import MdocSection
from framewatch.daemon.intake.tilt_info import TiltInfo

__all__ = ["RULE_INDEX", "RULE_PRIOR_RECORD", "RULE_SUM", "Resolved", "prior_dose_sum", "resolve"]

RULE_PRIOR_RECORD = "mdoc PriorRecordDose"
RULE_SUM = "sum of earlier ExposureDose"
RULE_INDEX = "acquisition index x dose per tilt"


@dataclass(frozen=True)
class Resolved:
    """The per-movie processing values and where each came from."""

    pixel_size_a: float | None
    dose_per_frame_e_per_a2: float | None
    dose_e_per_a2: float | None
    prior_dose_e_per_a2: float | None
    prior_dose_rule: str | None
    voltage_kv: float
    sources: dict = field(default_factory=dict)
    problem: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def prior_dose_sum(ordered: list[MdocSection], rank: int) -> float | None:
    """The summed mdoc ``ExposureDose`` (e/A^2) of the tilts before ``rank`` in acquisition order
    (``ordered``: the tilt sections), 0.0 for the first tilt; None when an earlier tilt has none."""
    doses = [s.exposure_dose_e_per_a2 for s in ordered[:rank]]
    if all(d is not None and d > 0 for d in doses):
        return float(sum(doses))
    return None


def resolve(info: TiltInfo, opts: ProcessingOptions, n_frames: int) -> Resolved:
    """Apply 'explicit > mdoc > default' to one movie of ``n_frames`` frames and the prior-dose rule."""
    sources: dict[str, str] = {}
    px, problem = _pixel_size(info, opts, sources)
    dpf, dose_problem = _dose_per_frame(info, opts, n_frames, sources)
    problem = problem or dose_problem
    dose = None if dpf is None else dpf * n_frames
    kv = _voltage(info, opts, sources)
    prior, rule = _prior_dose(info, opts, n_frames, dose)
    return Resolved(
        pixel_size_a=px,
        dose_per_frame_e_per_a2=dpf,
        dose_e_per_a2=dose,
        prior_dose_e_per_a2=prior,
        prior_dose_rule=rule,
        voltage_kv=float(kv),
        sources=sources,
        problem=problem,
    )


def _pixel_size(info: TiltInfo, opts: ProcessingOptions, sources: dict) -> tuple[float | None, str | None]:
    """(pixel size in A, problem): the options', else the frame mdoc's."""
    if opts.pixel_size_a is not None:
        sources["pixel_size_a"] = opts.source_of("pixel_size_a") or "command line"
        return opts.pixel_size_a, None
    if info.frame_mdoc_pixel_size_a is not None:
        sources["pixel_size_a"] = "frame mdoc"
        return info.frame_mdoc_pixel_size_a, None
    return None, "no pixel size: give --pixel-size-a or pixel_size_a in [processing]"


def _dose_per_frame(info: TiltInfo, opts: ProcessingOptions, n_frames: int, sources: dict) -> tuple[float | None, str | None]:
    """(dose per frame in e/A^2, problem): the options', else the mdoc's per frame, else the mdoc's
    exposure dose over the frames."""
    dpf = opts.dose_per_frame_for(n_frames)
    if dpf is not None:
        sources["dose"] = opts.source_of("dose_per_frame_e_per_a2") or opts.source_of("dose_per_tilt_e_per_a2") or "command line"
        return dpf, None
    if info.mdoc_frame_dose_e_per_a2 is not None:
        sources["dose"] = "mdoc FrameDosesAndNumber"
        return info.mdoc_frame_dose_e_per_a2, None
    if info.mdoc_exposure_dose_e_per_a2 is not None and n_frames > 0:
        sources["dose"] = "mdoc ExposureDose"
        return info.mdoc_exposure_dose_e_per_a2 / n_frames, None
    return None, "no dose: the mdoc has none (ExposureDose = 0 or missing); give --dose-per-tilt or --dose-per-frame"


def _voltage(info: TiltInfo, opts: ProcessingOptions, sources: dict) -> float:
    if opts.voltage_kv is not None:
        sources["voltage_kv"] = opts.source_of("voltage_kv") or "command line"
        return opts.voltage_kv
    if info.mdoc_voltage_kv is not None:
        sources["voltage_kv"] = "mdoc"
        return info.mdoc_voltage_kv
    sources["voltage_kv"] = "default"
    return DEFAULT_VOLTAGE_KV


def _prior_dose(info: TiltInfo, opts: ProcessingOptions, n_frames: int, dose: float | None) -> tuple[float | None, str | None]:
    """(prior dose in e/A^2, the rule that gave it); ``dose``: this movie's dose, the last fall-back
    for the dose per tilt."""
    offset = opts.prior_dose_e_per_a2 or 0.0
    prior, rule = None, None
    if info.prior_record_dose_e_per_a2 is not None:
        prior, rule = info.prior_record_dose_e_per_a2, RULE_PRIOR_RECORD
    elif info.prior_sum_e_per_a2 is not None:
        prior, rule = info.prior_sum_e_per_a2 + offset, RULE_SUM
    else:
        per_tilt = opts.dose_per_tilt_for(n_frames)
        if per_tilt is None:
            per_tilt = info.mdoc_exposure_dose_e_per_a2
        if per_tilt is None and dose is not None:
            per_tilt = dose
        if per_tilt is not None and info.acquisition_index is not None:
            prior, rule = info.acquisition_index * per_tilt + offset, RULE_INDEX
        elif per_tilt is not None:
            prior, rule = offset, "unknown acquisition index: prior dose taken as 0"
    if rule is not None and offset and rule != RULE_PRIOR_RECORD:
        rule += " + --prior-dose"
    if prior is not None and (math.isnan(prior) or prior < 0):
        prior = 0.0
    return prior, rule
