"""A defensive reader of SerialEM ``.mdoc`` files (IMOD autodoc format).

An mdoc is a global header of ``Key = value`` lines and ``[T = title]`` lines, then sections
``[ZValue = n]`` (one image of a stack: tilt series or montage piece), ``[FrameSet = n]`` (the
per-movie mdoc SerialEM writes next to a frame stack) or ``[MontSection = n]``.

The daemon reads mdocs while SerialEM is still writing them, so nothing here raises on content:
unreadable lines, sections and values become entries in :attr:`Mdoc.warnings`, and the
classification tells a tilt-series mdoc from a frame-set or montage mdoc:

- ``"frame_set"``: has a ``[FrameSet]`` section (even when ``[ZValue]`` sections follow, as in a
  frame-based tilt series, where one movie holds every tilt);
- ``"montage"``: ``Montage = 1`` in the header, ``[MontSection]`` sections, or ``PieceCoordinates``
  in ``[ZValue]`` sections;
- ``"tilt_series"``: ``[ZValue]`` sections otherwise;
- ``"empty"``: only a header so far (a series that has just started), ``"unknown"`` otherwise.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

_SECTION = re.compile(r"^\[\s*([A-Za-z]+)\s*=\s*(.*?)\s*\]\s*$")
_KEYVAL = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_DATETIME = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4}|\d{2})\s+(\d{1,2}):(\d{2}):(\d{2})")
_AXIS = re.compile(r"Tilt\s*axis\s*angle\s*=\s*([-+]?\d+(?:\.\d*)?)", re.IGNORECASE)
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}

SECTION_KINDS = ("ZValue", "FrameSet", "MontSection")


def parse_datetime(text: str | None) -> _dt.datetime | None:
    """``30-Nov-15  15:21:38`` or ``06-Nov-2024  23:53:01`` (any spacing) -> datetime; else None.

    Two-digit years are 2000 + yy (SerialEM has written them since 2000).
    """
    if not text:
        return None
    m = _DATETIME.search(text)
    if not m:
        return None
    day, mon, year, hh, mm, ss = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    y = int(year)
    if len(year) == 2:
        y += 2000
    try:
        return _dt.datetime(y, month, int(day), int(hh), int(mm), int(ss))
    except ValueError:
        return None


def _first_float(text: str | None) -> float | None:
    if text is None:
        return None
    parts = text.split()
    if not parts:
        return None
    try:
        v = float(parts[0])
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class MdocSection:
    """One ``[Kind = index]`` section with its raw ``Key = value`` strings."""

    kind: str
    index: int
    values: dict = field(default_factory=dict)
    line: int = 0

    def float(self, key: str) -> float | None:
        return _first_float(self.values.get(key))

    def int(self, key: str) -> int | None:
        v = self.float(key)
        return None if v is None or v != int(v) else int(v)

    @property
    def tilt_angle_deg(self) -> float | None:
        return self.float("TiltAngle")

    @property
    def exposure_dose_e_per_a2(self) -> float | None:
        """``ExposureDose``; None when absent, 0 when SerialEM did not know it (no dose calibration)."""
        return self.float("ExposureDose")

    @property
    def prior_record_dose_e_per_a2(self) -> float | None:
        """``PriorRecordDose`` when present and not negative (SerialEM writes -1 for 'unknown')."""
        v = self.float("PriorRecordDose")
        return v if v is not None and v >= 0 else None

    @property
    def num_sub_frames(self) -> int | None:
        return self.int("NumSubFrames")

    @property
    def pixel_spacing_a(self) -> float | None:
        return self.float("PixelSpacing")

    @property
    def frame_dose_e_per_a2(self) -> float | None:
        """Dose per frame from ``FrameDosesAndNumber`` (first pair), when positive."""
        v = self.values.get("FrameDosesAndNumber")
        if v is None:
            return None
        d = _first_float(v)
        return d if d is not None and d > 0 else None

    @property
    def sub_frame_name(self) -> str | None:
        """The file name of ``SubFramePath`` (a Windows or POSIX path)."""
        v = self.values.get("SubFramePath")
        if not v:
            return None
        name = PureWindowsPath(v.strip()).name  # splits on both \ and /
        return name or None

    @property
    def datetime(self) -> _dt.datetime | None:
        return parse_datetime(self.values.get("DateTime"))


@dataclass(frozen=True)
class Mdoc:
    """A parsed mdoc: header values, titles, sections, classification and parse warnings."""

    path: Path | None
    header: dict
    titles: tuple[str, ...]
    sections: tuple[MdocSection, ...]
    kind: str
    warnings: tuple[str, ...] = ()
    complete_text: bool = True  # False when the text did not end with a newline (being written)

    def sections_of(self, kind: str) -> tuple[MdocSection, ...]:
        return tuple(s for s in self.sections if s.kind == kind)

    @property
    def tilt_sections(self) -> tuple[MdocSection, ...]:
        return self.sections_of("ZValue") if self.kind == "tilt_series" else ()

    @property
    def tilt_axis_angle_deg(self) -> float | None:
        for t in self.titles:
            m = _AXIS.search(t)
            if m:
                return float(m.group(1))
        return None

    @property
    def voltage_kv(self) -> float | None:
        v = _first_float(self.header.get("Voltage"))
        return v if v is not None and v > 0 else None

    @property
    def series_name(self) -> str | None:
        """The name of the tilt series: the mdoc file name without ``.mdoc`` and the stack extension."""
        if self.path is None:
            return None
        return series_name_from_mdoc_path(self.path)


def series_name_from_mdoc_path(path: str | Path) -> str:
    name = Path(path).name
    if name.lower().endswith(".mdoc"):
        name = name[: -len(".mdoc")]
    for ext in (".mrc", ".st", ".ali", ".mrcs", ".tif", ".tiff", ".eer", ".map"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return name


def parse_mdoc_text(text: str, path: str | Path | None = None) -> Mdoc:
    """Parse mdoc text; never raises on content."""
    header: dict[str, str] = {}
    titles: list[str] = []
    sections: list[MdocSection] = []
    warnings: list[str] = []
    current: dict | None = None
    cur_kind, cur_index, cur_line = "", 0, 0
    complete_text = text.endswith("\n") or text == ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not complete_text and lines:
        # the last line may be cut in the middle of a value: keep it only when it is a full key
        pass

    def close():
        nonlocal current
        if current is not None:
            sections.append(MdocSection(kind=cur_kind, index=cur_index, values=current, line=cur_line))
        current = None

    for n, raw in enumerate(lines, start=1):
        line = raw.strip().strip("\x00")
        if not line:
            continue
        if line.startswith("["):
            m = _SECTION.match(line)
            if not m:
                warnings.append(f"line {n}: unreadable section header {line[:60]!r}")
                continue
            kind, value = m.group(1), m.group(2)
            if kind == "T":
                titles.append(value)
                continue
            if kind not in SECTION_KINDS:
                warnings.append(f"line {n}: unknown section [{kind} = {value}]")
            close()
            try:
                idx = int(float(value))
            except ValueError:
                warnings.append(f"line {n}: section [{kind} = {value}] has no number")
                idx = -1
            current, cur_kind, cur_index, cur_line = {}, kind, idx, n
            continue
        m = _KEYVAL.match(line)
        if not m:
            warnings.append(f"line {n}: not 'key = value': {line[:60]!r}")
            continue
        key, value = m.group(1), m.group(2)
        if n == len(lines) and not complete_text:
            warnings.append(f"line {n}: last line is incomplete (file being written): {key} ignored")
            continue
        target = header if current is None else current
        if key in target and target is current:
            warnings.append(f"line {n}: {key} repeated in [{cur_kind} = {cur_index}]")
        target[key] = value
    close()
    kind = classify(header, sections)
    return Mdoc(
        path=None if path is None else Path(path),
        header=header,
        titles=tuple(titles),
        sections=tuple(sections),
        kind=kind,
        warnings=tuple(warnings),
        complete_text=complete_text,
    )


def classify(header: dict, sections: list[MdocSection] | tuple[MdocSection, ...]) -> str:
    kinds = {s.kind for s in sections}
    if "FrameSet" in kinds:
        return "frame_set"
    montage = _first_float(header.get("Montage"))
    if (montage is not None and montage != 0) or "MontSection" in kinds:
        return "montage"
    zs = [s for s in sections if s.kind == "ZValue"]
    if zs and any("PieceCoordinates" in s.values for s in zs):
        return "montage"
    if zs:
        return "tilt_series"
    if not sections:
        return "empty"
    return "unknown"


def read_mdoc(path: str | Path) -> Mdoc:
    """Read and parse an mdoc file. Raises OSError only when the file cannot be read at all."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    mdoc = parse_mdoc_text(text, path)
    if "\ufffd" in text:
        mdoc = Mdoc(
            path=mdoc.path,
            header=mdoc.header,
            titles=mdoc.titles,
            sections=mdoc.sections,
            kind=mdoc.kind,
            warnings=mdoc.warnings + ("file has bytes that are not UTF-8",),
            complete_text=mdoc.complete_text,
        )
    return mdoc


def frame_mdoc_for(movie: str | Path) -> Path | None:
    """The per-movie frame mdoc SerialEM writes beside a frame stack: ``MOVIE.tif.mdoc`` or
    ``MOVIE.mdoc`` (first that exists)."""
    p = Path(movie)
    for cand in (p.with_name(p.name + ".mdoc"), p.with_suffix(".mdoc")):
        if os.path.exists(cand):
            return cand
    return None
