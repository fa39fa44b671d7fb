"""The RELION 5 tomography tables, so that RELION's jobs start from framewatch's outputs unchanged.

``OUT/tilt_series.star`` -- the tilt-series set (RELION's ``TomogramSet``): one ``data_global``
loop with one row per series that has tilts: ``rlnTomoName``, ``rlnTomoTiltSeriesStarFile``,
``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast``,
``rlnMicrographOriginalPixelSize``, ``rlnTomoTiltSeriesPixelSize``, ``rlnTomoHand`` and
``rlnOpticsGroupName``. (No ``rlnTomoTiltSeriesName``: RELION 5 would then read a stack instead of
the per-tilt images.)

``OUT/SERIES/SERIES.star`` -- one block ``data_<rlnTomoName>`` (RELION looks the block up by that
name) with one row per tilt kept in the sorted outputs (the latest acquisition of each angle), in
acquisition order: ``rlnMicrographMovieName``, ``rlnTomoTiltMovieFrameCount``,
``rlnTomoNominalStageTiltAngle``, ``rlnTomoNominalTiltAxisAngle``, ``rlnMicrographPreExposure``
(e/A^2 received before the tilt), ``rlnTomoNominalDefocus``, ``rlnMicrographName`` /
``rlnMicrographNameEven`` / ``rlnMicrographNameOdd`` (the single-image MRCs of tilt_images.py, one
2D image each -- never ``N@stack``) and ``rlnAccumMotionTotal/Early/Late`` (Angstrom; early/late by
RELION's rule, the prior dose included -- the only place that rule is used, see core/drift_stats.py).

- Paths are relative to ``[output] relion_project_dir`` (default: OUT), never absolute: RELION's jobs
  run in the project directory and open them from there.
- ``rlnTomoNominalTiltAxisAngle``: the tilt-series mdoc title ``Tilt axis angle = X``, else
  ``[output] tilt_axis_deg``; the column is left out (with a comment) when neither gives one.
- ``rlnTomoNominalDefocus``: the mdoc's ``TargetDefocus``, else its ``Defocus`` (micrometres,
  negative = underfocus, as SerialEM writes it and RELION's CTF job reads it); the column is left
  out when a tilt has none or 0, so the CTF search uses its own range instead of searching around 0.
- With ``[output] per_tilt_images = false`` the three image columns are left out (a comment says
  so): RELION's CTF estimation then has nothing to open.

``rlnTomoName`` is the series name with characters other than letters, digits and ``_.+-`` made
``_`` (it is a STAR block name). Every value goes through the one STAR writer (core/star.py), and
both files are replaced atomically whenever a series grows, completes or reopens.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from framewatch.core.star import star_loop, star_text
from framewatch.daemon.outputs.tilt_images import tilt_image_paths
from framewatch.daemon.state.records import TiltRecord

GLOBAL_TABLE = "tilt_series.star"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.+-]")


@dataclass(frozen=True)
class RelionSettings:
    project_dir: Path
    per_tilt_images: bool = True
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    tomo_hand: int = -1
    tilt_axis_deg: float | None = None
    optics_group: str = ""

    @classmethod
    def from_output_options(cls, o, out_dir: str | Path) -> "RelionSettings":
        project = Path(os.path.abspath(os.path.expanduser(o.relion_project_dir))) if o.relion_project_dir else Path(out_dir)
        return cls(project_dir=project, per_tilt_images=o.per_tilt_images, spherical_aberration_mm=o.spherical_aberration_mm,
                   amplitude_contrast=o.amplitude_contrast, tomo_hand=o.tomo_hand, tilt_axis_deg=o.tilt_axis_deg,
                   optics_group=o.optics_group)


def tomo_name(series: str) -> str:
    return _UNSAFE_NAME.sub("_", series) or "series"


def project_path(path: str | Path, project_dir: str | Path) -> str:
    """``path`` relative to the RELION project directory (``../`` where it lies outside)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(project_dir))


def _num(v, default: float = 0.0) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def _acquisition_order(records: list[TiltRecord]) -> list[TiltRecord]:
    return sorted(records, key=lambda r: (math.inf if r.acquisition_index is None else r.acquisition_index, r.z))


def series_table(series: str, series_dir: str | Path, kept: list[TiltRecord], settings: RelionSettings) -> str:
    """The text of ``SERIES.star`` for the kept records (tilt_table.mark_reacquired)."""
    rows_in = _acquisition_order(kept)
    notes = []
    axes = [r.tilt_axis_angle_deg if r.tilt_axis_angle_deg is not None else settings.tilt_axis_deg for r in rows_in]
    with_axis = all(a is not None for a in axes)
    if not with_axis:
        notes.append("rlnTomoNominalTiltAxisAngle left out: the mdoc title has no 'Tilt axis angle' "
                     "and [output] tilt_axis_deg is not set")
    defoci = [r.defocus_um for r in rows_in]
    with_defocus = all(d is not None and math.isfinite(d) and d != 0 for d in defoci)
    if not with_defocus:
        notes.append("rlnTomoNominalDefocus left out: not every tilt has a mdoc TargetDefocus (or Defocus) other than 0")
    if not settings.per_tilt_images:
        notes.append("rlnMicrographName/Even/Odd left out: [output] per_tilt_images = false")
    labels = ["rlnMicrographMovieName", "rlnTomoTiltMovieFrameCount", "rlnTomoNominalStageTiltAngle"]
    labels += ["rlnTomoNominalTiltAxisAngle"] if with_axis else []
    labels += ["rlnMicrographPreExposure"]
    labels += ["rlnTomoNominalDefocus"] if with_defocus else []
    labels += ["rlnMicrographName", "rlnMicrographNameEven", "rlnMicrographNameOdd"] if settings.per_tilt_images else []
    labels += ["rlnAccumMotionTotal", "rlnAccumMotionEarly", "rlnAccumMotionLate"]
    rows = []
    for r, axis, defocus in zip(rows_in, axes, defoci):
        stats = r.statistics
        early = stats.get("relion_early_motion_a")
        late = stats.get("relion_late_motion_a")
        if early is None or late is None:  # a tilt journalled before both counts existed: early_* was RELION's
            early, late = stats.get("early_motion_a"), stats.get("late_motion_a")
        row = [project_path(r["movie_path"], settings.project_dir), int(r.n_frames or 0), _num(r.tilt_angle_deg)]
        row += [float(axis)] if with_axis else []
        row += [_num(r.prior_dose_e_per_a2)]
        row += [float(defocus)] if with_defocus else []
        if settings.per_tilt_images:
            row += [project_path(p, settings.project_dir) for p in tilt_image_paths(series_dir, r["movie_path"])]
        row += [_num(stats.get("total_motion_a")), _num(early), _num(late)]
        rows.append(row)
    comments = [f"written by framewatch: the tilts of {series} kept in the sorted stacks, in acquisition order;",
                f"paths relative to {settings.project_dir}; rlnAccumMotion* in Angstrom (early/late: RELION's rule,",
                "prior dose included); rlnMicrographPreExposure in e/A^2 received before the tilt.", *notes]
    return star_text([star_loop(tomo_name(series), labels, rows)], comments=comments)


@dataclass(frozen=True)
class GlobalRow:
    series: str
    series_star: Path
    voltage_kv: float
    pixel_size_a: float
    tilt_series_pixel_size_a: float


def global_table(entries: list[GlobalRow], settings: RelionSettings) -> str:
    """The text of ``tilt_series.star``."""
    labels = ["rlnTomoName", "rlnTomoTiltSeriesStarFile", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
              "rlnMicrographOriginalPixelSize", "rlnTomoTiltSeriesPixelSize", "rlnTomoHand", "rlnOpticsGroupName"]
    rows = [[tomo_name(e.series), project_path(e.series_star, settings.project_dir), float(e.voltage_kv),
             float(settings.spherical_aberration_mm), float(settings.amplitude_contrast), float(e.pixel_size_a),
             float(e.tilt_series_pixel_size_a), float(settings.tomo_hand), settings.optics_group or tomo_name(e.series)]
            for e in sorted(entries, key=lambda e: e.series)]
    comments = ["written by framewatch: the tilt series corrected so far (RELION 5 tilt-series set);",
                f"paths relative to {settings.project_dir}"]
    return star_text([star_loop("global", labels, rows)], comments=comments)
