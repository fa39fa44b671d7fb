"""What is known about one movie's place in its tilt series before it is processed: :class:`TiltInfo`.

Per tilt, the first source that has a value wins:

- tilt angle: mdoc ``TiltAngle``; file name; the frame mdoc's ``TiltAngle``; unknown (0, flagged);
- acquisition order: mdoc ``DateTime`` (two- or four-digit year); file mtime;
- acquisition index (0 = first tilt): rank in the mdoc by DateTime (ZValue for ties or gaps);
  file-name index; rank by mtime among the series' movies seen so far;
- doses, prior record dose and voltage: the tilt-series mdoc's section, then the frame mdoc;
- pixel size: only the frame mdoc's ``PixelSpacing`` (the frames' own pixel; a tilt-series mdoc's
  is that of the binned tilt images).

Which of these, the command line or the configuration gives the dose and the prior dose is
decided later, in ``dose_precedence.py``.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from framewatch.daemon.intake.mdoc import Mdoc, MdocSection
from framewatch.daemon.intake.naming import NameInfo, movie_stem
from framewatch.daemon.state.name_escape import shown

__all__ = ["TiltInfo", "tilt_info_from_mdoc", "tilt_info_from_name", "with_frame_mdoc"]


@dataclass(frozen=True)
class TiltInfo:
    """Everything known about one movie's place in its series (before processing)."""

    series: str
    source_dir: str
    grouping: str  # "mdoc" | "file name" | "none"
    mdoc_path: str | None
    zvalue: int | None
    tilt_angle_deg: float
    angle_source: str
    acquisition_index: int | None
    index_source: str
    acquisition_time: float
    order_source: str
    expected_frames: int | None
    mdoc_exposure_dose_e_per_a2: float | None
    mdoc_frame_dose_e_per_a2: float | None
    prior_record_dose_e_per_a2: float | None
    prior_sum_e_per_a2: float | None
    frame_mdoc_pixel_size_a: float | None
    mdoc_voltage_kv: float | None
    tilt_axis_angle_deg: float | None
    defocus_um: float | None
    flags: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _epoch(d: _dt.datetime | None) -> float | None:
    if d is None:
        return None
    try:
        return d.replace(tzinfo=None).timestamp()
    except (ValueError, OverflowError, OSError):  # a date the platform cannot convert: the mtime is used
        return None


def _positive(dose: float | None) -> float | None:
    return dose if dose is not None and dose > 0 else None


def tilt_info_from_mdoc(movie: Path, *, mdoc_path: str, mdoc: Mdoc, rank: int, sec: MdocSection, all_dated: bool,
                        prior_sum_e_per_a2: float | None, name_info: NameInfo | None, mtime: float) -> TiltInfo:
    """The tilt of ``movie`` listed in a tilt-series mdoc: section ``sec``, ``rank`` in acquisition
    order (by DateTime when ``all_dated``, else by ZValue); ``prior_sum_e_per_a2`` is the summed
    dose of the earlier tilts (dose_precedence.py); the file name gives a missing angle."""
    angle, angle_source = sec.tilt_angle_deg, "mdoc"
    if angle is None and name_info and name_info.tilt_angle_deg is not None:
        angle, angle_source = name_info.tilt_angle_deg, "file name"
    t = _epoch(sec.datetime)
    defocus = sec.float("TargetDefocus")
    return TiltInfo(
        series=shown(mdoc.series_name or movie_stem(movie)),  # undecodable bytes as \xNN
        source_dir=str(Path(mdoc_path).parent),
        grouping="mdoc",
        mdoc_path=mdoc_path,
        zvalue=sec.index,
        tilt_angle_deg=float(angle) if angle is not None else 0.0,
        angle_source=angle_source if angle is not None else "unknown",
        acquisition_index=rank,
        index_source="mdoc DateTime" if all_dated else "mdoc ZValue",
        acquisition_time=t if t is not None else mtime,
        order_source="mdoc DateTime" if t is not None else "mtime",
        expected_frames=sec.num_sub_frames,
        mdoc_exposure_dose_e_per_a2=_positive(sec.exposure_dose_e_per_a2),
        mdoc_frame_dose_e_per_a2=sec.frame_dose_e_per_a2,
        prior_record_dose_e_per_a2=sec.prior_record_dose_e_per_a2,
        prior_sum_e_per_a2=prior_sum_e_per_a2,
        frame_mdoc_pixel_size_a=None,
        mdoc_voltage_kv=mdoc.voltage_kv,
        tilt_axis_angle_deg=mdoc.tilt_axis_angle_deg,
        defocus_um=defocus if defocus is not None else sec.float("Defocus"),
        flags=() if angle is not None else ("angle_unknown",),
    )


def tilt_info_from_name(movie: Path, *, name_info: NameInfo | None, mtime: float, mtime_rank: int | None,
                        mdoc_dir: str | None) -> TiltInfo:
    """The tilt of a ``movie`` no tilt-series mdoc lists: series, angle and index from its file name
    (``name_info``; else the movie is its own series), else the rank by mtime; ``mdoc_dir``: the
    directory of a tilt-series mdoc of the same series, if one is known (the series' source)."""
    if name_info is not None:
        series, grouping = name_info.series, "file name"
        angle = name_info.tilt_angle_deg
        index, index_source = name_info.acquisition_index, "file name"
    else:
        series, grouping, angle, index, index_source = movie_stem(movie), "none", None, None, "none"
    if index is None and mtime_rank is not None:
        index, index_source = mtime_rank, "mtime rank"
    return TiltInfo(
        series=shown(series),
        source_dir=mdoc_dir or str(movie.parent),
        grouping=grouping,
        mdoc_path=None,
        zvalue=None,
        tilt_angle_deg=float(angle) if angle is not None else 0.0,
        angle_source="file name" if angle is not None else "unknown",
        acquisition_index=index,
        index_source=index_source,
        acquisition_time=mtime,
        order_source="mtime",
        expected_frames=None,
        mdoc_exposure_dose_e_per_a2=None,
        mdoc_frame_dose_e_per_a2=None,
        prior_record_dose_e_per_a2=None,
        prior_sum_e_per_a2=None,
        frame_mdoc_pixel_size_a=None,
        mdoc_voltage_kv=None,
        tilt_axis_angle_deg=None,
        defocus_um=None,
        flags=() if angle is not None else ("angle_unknown",),
    )


def with_frame_mdoc(info: TiltInfo, m: Mdoc | None) -> TiltInfo:
    """Fill what SerialEM's per-movie frame mdoc knows (pixel size of the frames, dose, voltage)."""
    if m is None:
        return info
    fs = m.sections_of("FrameSet")
    if m.kind != "frame_set" or not fs:
        return info
    sec = fs[0]
    d = info.as_dict()
    px = sec.pixel_spacing_a
    d["frame_mdoc_pixel_size_a"] = px if px and px > 0 else None
    if d["mdoc_frame_dose_e_per_a2"] is None:
        d["mdoc_frame_dose_e_per_a2"] = sec.frame_dose_e_per_a2
    if d["mdoc_exposure_dose_e_per_a2"] is None:
        d["mdoc_exposure_dose_e_per_a2"] = _positive(sec.exposure_dose_e_per_a2)
    if d["prior_record_dose_e_per_a2"] is None:
        d["prior_record_dose_e_per_a2"] = sec.prior_record_dose_e_per_a2
    if d["mdoc_voltage_kv"] is None:
        d["mdoc_voltage_kv"] = m.voltage_kv
    if d["angle_source"] == "unknown" and sec.tilt_angle_deg is not None:
        d["tilt_angle_deg"], d["angle_source"] = sec.tilt_angle_deg, "frame mdoc"
        d["flags"] = tuple(f for f in d["flags"] if f != "angle_unknown")
    return TiltInfo(**d)
