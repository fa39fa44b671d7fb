"""Which tilt series a movie belongs to, its angle, acquisition order, dose and prior dose.

Grouping: a tilt-series mdoc (``[ZValue = n]`` sections; frame-set and montage mdocs are ignored)
that lists the movie's file name in a ``SubFramePath`` (Windows paths are fine) names the series
after itself (``TS_07.mrc.mdoc`` -> ``TS_07``); otherwise a file-name pattern (naming.py) does;
otherwise the movie is its own series (named after the file).

Per tilt, the first source that has a value wins:

- tilt angle: mdoc ``TiltAngle``; file name; unknown (0, flagged);
- acquisition order: mdoc ``DateTime`` (two- or four-digit year); file mtime;
- acquisition index (0 = first tilt): rank in the mdoc by DateTime (ZValue for ties or gaps);
  file-name index; rank by mtime among the series' movies seen so far;
- dose per frame: the command line/config; mdoc ``FrameDosesAndNumber``; mdoc ``ExposureDose`` /
  frames (when > 0); none -> the movie fails with "no dose";
- pixel size: command line/config; the frame mdoc's ``PixelSpacing`` (the frames' own pixel);
  none -> the movie fails with "no pixel size". (A tilt-series mdoc's PixelSpacing is that of the
  binned tilt images, so it is not used.)
- voltage: command line/config; mdoc ``Voltage``; 300 kV.

Prior dose (DESIGN.md): the mdoc's ``PriorRecordDose``; else the sum of the mdoc ``ExposureDose`` of
the series' earlier tilts in acquisition order, not counting this one (when every earlier tilt has a
positive one); else acquisition index x dose per tilt (command line/config, or this tilt's own
mdoc dose). For the last two rules ``--prior-dose`` is added as the dose the area received before
the series began. The value and the rule are recorded.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from framewatch.daemon.config.processing_options import DEFAULT_VOLTAGE_KV, ProcessingOptions
from framewatch.daemon.intake.mdoc import Mdoc, MdocSection, frame_mdoc_for, read_mdoc
from framewatch.daemon.intake.naming import DEFAULT_PATTERNS, NamePattern, movie_stem, parse_movie_name

# the keys of a tilt section the daemon uses (a section lacking one its siblings have is incomplete)
_USED_KEYS = frozenset({"TiltAngle", "ExposureDose", "PriorRecordDose", "SubFramePath", "NumSubFrames", "DateTime",
                        "FrameDosesAndNumber", "TargetDefocus", "Defocus"})

RULE_PRIOR_RECORD = "mdoc PriorRecordDose"
RULE_SUM = "sum of earlier ExposureDose"
RULE_INDEX = "acquisition index x dose per tilt"


@dataclass
class _MdocEntry:
    stat_key: tuple
    mdoc: Mdoc
    changed_at: float
    order: dict  # basename -> (rank, section)


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


def _epoch(d: _dt.datetime | None) -> float | None:
    return None if d is None else d.replace(tzinfo=None).timestamp()


def _order_sections(sections: tuple[MdocSection, ...]) -> list[MdocSection]:
    """Tilt sections in acquisition order: DateTime when every section has one, else ZValue."""
    if sections and all(s.datetime is not None for s in sections):
        return sorted(sections, key=lambda s: (s.datetime, s.index))
    return sorted(sections, key=lambda s: s.index)


class SeriesIndex:
    """Tilt-series mdocs under the watch root, re-read whenever they change."""

    def __init__(self, patterns: tuple[NamePattern, ...] = DEFAULT_PATTERNS):
        self.patterns = patterns
        self._mdocs: dict[str, _MdocEntry] = {}
        self._by_name: dict[str, str] = {}  # movie basename -> mdoc path
        self.warnings: list[tuple[str, tuple[str, ...]]] = []  # (mdoc path, warnings) not yet logged

    # -- mdocs -------------------------------------------------------------------------------------
    def note_mdoc(self, path: str | Path, now: float) -> Mdoc | None:
        """Read an mdoc if it is new or changed. Returns the Mdoc when it was (re-)read."""
        p = str(path)
        try:
            st = os.stat(p)
        except OSError:
            self._forget(p)
            return None
        key = (st.st_size, st.st_mtime_ns)
        entry = self._mdocs.get(p)
        if entry is not None and entry.stat_key == key:
            return None
        try:
            mdoc = read_mdoc(p)
        except OSError as err:
            self.warnings.append((p, (f"cannot read: {err}",)))
            return None
        if mdoc.warnings:
            self.warnings.append((p, mdoc.warnings))
        if mdoc.kind not in ("tilt_series", "empty", "frame_set", "montage"):
            self.warnings.append((p, (f"not a tilt-series, frame-set or montage mdoc ({mdoc.kind}); ignored",)))
        order = {}
        if mdoc.kind == "tilt_series":
            for rank, sec in enumerate(_order_sections(mdoc.tilt_sections)):
                name = sec.sub_frame_name
                if name:
                    order[name] = (rank, sec)
        if entry is not None:
            for name in entry.order:
                if self._by_name.get(name) == p:
                    del self._by_name[name]
        self._mdocs[p] = _MdocEntry(key, mdoc, now, order)
        for name in order:
            self._by_name[name] = p
        return mdoc

    def _forget(self, p: str) -> None:
        entry = self._mdocs.pop(p, None)
        if entry:
            for name in entry.order:
                if self._by_name.get(name) == p:
                    del self._by_name[name]

    def refresh(self, now: float) -> None:
        for p in list(self._mdocs):
            self.note_mdoc(p, now)

    def tilt_series_mdocs(self) -> dict[str, Mdoc]:
        return {p: e.mdoc for p, e in self._mdocs.items() if e.mdoc.kind == "tilt_series"}

    def mdoc_changed_at(self, p: str) -> float | None:
        e = self._mdocs.get(p)
        return None if e is None else e.changed_at

    def mdoc_names(self, p: str) -> list[str]:
        e = self._mdocs.get(p)
        return [] if e is None else list(e.order)

    def entry_for(self, movie: str | Path) -> tuple[str, Mdoc, int, MdocSection] | None:
        name = Path(movie).name
        p = self._by_name.get(name)
        if p is None:
            return None
        e = self._mdocs[p]
        rank, sec = e.order[name]
        return p, e.mdoc, rank, sec

    def entry_settled(self, movie: str | Path) -> bool:
        """The movie has its mdoc line, and it has every key that all the mdoc's other tilt sections
        have (False while the section is still being written: SerialEM appends it line by line,
        and a rewritten mdoc is read half-written; found by the torture run -- a section read
        without its DateTime put the movie's acquisition time on the file-mtime clock and out of
        order)."""
        e = self.entry_for(movie)
        if e is None:
            return False
        _, mdoc, _, sec = e
        others = [set(x.values) & _USED_KEYS for x in mdoc.tilt_sections if x is not sec]
        return not others or set.intersection(*others) <= set(sec.values)

    def sibling_mdoc_pending(self, movie: str | Path) -> str | None:
        """A tilt-series (or still empty) mdoc for this movie's file-name series in the movie's
        directory or its parent, which does not list the movie yet: worth waiting for."""
        info = parse_movie_name(movie, self.patterns)
        if info is None:
            return None
        mp = Path(movie)
        for p, e in self._mdocs.items():
            if e.mdoc.kind not in ("tilt_series", "empty"):
                continue
            pp = Path(p)
            if pp.parent not in (mp.parent, mp.parent.parent):
                continue
            if e.mdoc.series_name == info.series:
                return p
        return None

    # -- resolution ----------------------------------------------------------------------------------
    def tilt_info(self, movie: str | Path, *, mtime: float, mtime_rank: int | None = None) -> TiltInfo:
        movie = Path(movie)
        entry = self.entry_for(movie)
        name_info = parse_movie_name(movie, self.patterns)
        flags: list[str] = []
        if entry is not None:
            mpath, mdoc, rank, sec = entry
            ordered = _order_sections(mdoc.tilt_sections)
            angle = sec.tilt_angle_deg
            angle_source = "mdoc"
            if angle is None and name_info and name_info.tilt_angle_deg is not None:
                angle, angle_source = name_info.tilt_angle_deg, "file name"
            t = _epoch(sec.datetime)
            prior_sum = None
            earlier = ordered[:rank]
            doses = [s.exposure_dose_e_per_a2 for s in earlier]
            if all(d is not None and d > 0 for d in doses):
                prior_sum = float(sum(doses))  # 0.0 for the first tilt
            exp_dose = sec.exposure_dose_e_per_a2
            info = TiltInfo(
                series=mdoc.series_name or movie_stem(movie),
                source_dir=str(Path(mpath).parent),
                grouping="mdoc",
                mdoc_path=mpath,
                zvalue=sec.index,
                tilt_angle_deg=float(angle) if angle is not None else 0.0,
                angle_source=angle_source if angle is not None else "unknown",
                acquisition_index=rank,
                index_source="mdoc DateTime" if all(s.datetime for s in ordered) else "mdoc ZValue",
                acquisition_time=t if t is not None else mtime,
                order_source="mdoc DateTime" if t is not None else "mtime",
                expected_frames=sec.num_sub_frames,
                mdoc_exposure_dose_e_per_a2=exp_dose if exp_dose is not None and exp_dose > 0 else None,
                mdoc_frame_dose_e_per_a2=sec.frame_dose_e_per_a2,
                prior_record_dose_e_per_a2=sec.prior_record_dose_e_per_a2,
                prior_sum_e_per_a2=prior_sum,
                frame_mdoc_pixel_size_a=None,
                mdoc_voltage_kv=mdoc.voltage_kv,
                tilt_axis_angle_deg=mdoc.tilt_axis_angle_deg,
                defocus_um=sec.float("TargetDefocus") if sec.float("TargetDefocus") is not None else sec.float("Defocus"),
                flags=tuple(flags) if angle is not None else tuple(flags) + ("angle_unknown",),
            )
        else:
            if name_info is not None:
                series, grouping = name_info.series, "file name"
                angle = name_info.tilt_angle_deg
                index, index_source = name_info.acquisition_index, "file name"
            else:
                series, grouping, angle, index, index_source = movie_stem(movie), "none", None, None, "none"
            if index is None and mtime_rank is not None:
                index, index_source = mtime_rank, "mtime rank"
            mdoc_dir = self._series_mdoc_dir(movie, series)
            info = TiltInfo(
                series=series,
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
        return _with_frame_mdoc(info, movie)

    def _series_mdoc_dir(self, movie: Path, series: str) -> str | None:
        for p, e in self._mdocs.items():
            pp = Path(p)
            if e.mdoc.series_name == series and pp.parent in (movie.parent, movie.parent.parent):
                return str(pp.parent)
        return None


def _with_frame_mdoc(info: TiltInfo, movie: Path) -> TiltInfo:
    """Fill what SerialEM's per-movie frame mdoc knows (pixel size of the frames, dose, voltage)."""
    fm = frame_mdoc_for(movie)
    if fm is None:
        return info
    try:
        m = read_mdoc(fm)
    except OSError:
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
        e = sec.exposure_dose_e_per_a2
        d["mdoc_exposure_dose_e_per_a2"] = e if e is not None and e > 0 else None
    if d["prior_record_dose_e_per_a2"] is None:
        d["prior_record_dose_e_per_a2"] = sec.prior_record_dose_e_per_a2
    if d["mdoc_voltage_kv"] is None:
        d["mdoc_voltage_kv"] = m.voltage_kv
    if d["angle_source"] == "unknown" and sec.tilt_angle_deg is not None:
        d["tilt_angle_deg"], d["angle_source"] = sec.tilt_angle_deg, "frame mdoc"
        d["flags"] = tuple(f for f in d["flags"] if f != "angle_unknown")
    return TiltInfo(**d)


def resolve(info: TiltInfo, opts: ProcessingOptions, n_frames: int) -> Resolved:
    """Apply 'explicit > mdoc > default' to one movie and the prior-dose rule."""
    sources: dict[str, str] = {}
    problem = None
    # pixel size
    px = opts.pixel_size_a
    if px is not None:
        sources["pixel_size_a"] = opts.source_of("pixel_size_a") or "command line"
    elif info.frame_mdoc_pixel_size_a is not None:
        px, sources["pixel_size_a"] = info.frame_mdoc_pixel_size_a, "frame mdoc"
    else:
        problem = "no pixel size: give --pixel-size-a or pixel_size_a in [processing]"
    # dose
    dpf = opts.dose_per_frame_for(n_frames)
    if dpf is not None:
        src = opts.source_of("dose_per_frame_e_per_a2") or opts.source_of("dose_per_tilt_e_per_a2") or "command line"
        sources["dose"] = src
    elif info.mdoc_frame_dose_e_per_a2 is not None:
        dpf, sources["dose"] = info.mdoc_frame_dose_e_per_a2, "mdoc FrameDosesAndNumber"
    elif info.mdoc_exposure_dose_e_per_a2 is not None and n_frames > 0:
        dpf, sources["dose"] = info.mdoc_exposure_dose_e_per_a2 / n_frames, "mdoc ExposureDose"
    elif problem is None:
        problem = "no dose: the mdoc has none (ExposureDose = 0 or missing); give --dose-per-tilt or --dose-per-frame"
    dose = None if dpf is None else dpf * n_frames
    # voltage
    if opts.voltage_kv is not None:
        kv, sources["voltage_kv"] = opts.voltage_kv, opts.source_of("voltage_kv") or "command line"
    elif info.mdoc_voltage_kv is not None:
        kv, sources["voltage_kv"] = info.mdoc_voltage_kv, "mdoc"
    else:
        kv, sources["voltage_kv"] = DEFAULT_VOLTAGE_KV, "default"
    # prior dose
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
