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

import dataclasses
import datetime as _dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from framewatch.core.movie_io.registry import movie_suffixes
from framewatch.daemon.intake.mdoc_values import RANGES, YEAR_RANGE, check_value, first_number, usable

_SECTION = re.compile(r"^\[\s*([A-Za-z]+)\s*=\s*(.*?)\s*\]\s*$")
_KEYVAL = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_DATETIME = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4}|\d{2})\s+(\d{1,2}):(\d{2}):(\d{2})")
_AXIS = re.compile(r"Tilt\s*axis\s*angle\s*=\s*([-+]?\d+(?:\.\d*)?)", re.IGNORECASE)
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}

SECTION_KINDS = ("ZValue", "FrameSet", "MontSection")
DEFAULT_MAX_BYTES = 16_000_000  # [watch] mdoc_max_mb


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
    if not YEAR_RANGE[0] <= y <= YEAR_RANGE[1]:
        return None  # year 1 or 9999: not a time the acquisition can have (mdoc_values.py)
    try:
        return _dt.datetime(y, month, int(day), int(hh), int(mm), int(ss))
    except ValueError:
        return None


def _first_float(text: str | None) -> float | None:
    v = first_number(text)
    return v if v is not None and math.isfinite(v) else None


def _checked(key: str, text: str | None) -> float | None:
    """The first number of a value when it is in its plausible range (mdoc_values.py), else None."""
    v = first_number(text)
    return v if usable(key, v) else None


@dataclass(frozen=True)
class MdocSection:
    """One ``[Kind = index]`` section with its raw ``Key = value`` strings."""

    kind: str
    index: int
    values: dict = field(default_factory=dict)
    line: int = 0
    when: _dt.datetime | None = None  # DateTime, parsed once when the section is closed

    def float(self, key: str) -> float | None:
        if key in RANGES:
            return _checked(key, self.values.get(key))
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
        v = self.float("PixelSpacing")
        return v if v else None

    @property
    def frame_dose_e_per_a2(self) -> float | None:
        """Dose per frame from ``FrameDosesAndNumber`` (first pair), when positive."""
        v = self.values.get("FrameDosesAndNumber")
        if v is None:
            return None
        d = _checked("FrameDosesAndNumber", v)
        return d if d is not None and d > 0 else None

    @property
    def sub_frame_name(self) -> str | None:
        """The file name of ``SubFramePath`` (a Windows or POSIX path)."""
        v = self.values.get("SubFramePath")
        if not v:
            return None
        name = v.strip().replace("\\", "/").rsplit("/", 1)[-1]  # a Windows or POSIX path (as PureWindowsPath.name)
        if len(name) == 2 and name[1] == ":":
            return None  # a bare drive "D:"
        return name or None

    @property
    def datetime(self) -> _dt.datetime | None:
        if self.when is not None or "DateTime" not in self.values:
            return self.when
        return parse_datetime(self.values.get("DateTime"))


@dataclass(frozen=True)
class Mdoc:
    """A parsed mdoc: header values, titles, sections, classification and parse warnings."""

    path: Path | None
    header: dict
    titles: tuple[str, ...]
    sections: tuple[MdocSection, ...]
    kind: str
    warnings: tuple[str, ...] = ()  # at most MAX_KEPT_WARNINGS, each cut to WARNING_CHARS
    complete_text: bool = True  # False when the text did not end with a newline (being written)
    n_warnings: int = 0  # every warning, also those not kept

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
        return _checked("Voltage", self.header.get("Voltage"))

    @property
    def series_name(self) -> str | None:
        """The name of the tilt series: the mdoc file name without ``.mdoc`` and the stack extension."""
        if self.path is None:
            return None
        return series_name_from_mdoc_path(self.path)


# suffixes of the stack an mdoc describes (``TS_01.mrc.mdoc``): every movie suffix of core's format
# registry, and IMOD's aligned stack and map
STACK_SUFFIXES = (*movie_suffixes(), ".ali", ".map")


def series_name_from_mdoc_path(path: str | Path) -> str:
    name = Path(path).name
    if name.lower().endswith(".mdoc"):
        name = name[: -len(".mdoc")]
    for ext in STACK_SUFFIXES:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return name


MAX_KEPT_WARNINGS = 200  # warnings kept as text per parse (the count goes on: Mdoc.n_warnings)
WARNING_CHARS = 200  # one warning is cut to this many characters


class MdocParser:
    """The state of parsing one mdoc, fed complete lines as the file grows (incremental: the text
    already fed is never parsed again; mdoc_follow.py checks that it did not change).

    :meth:`feed` takes text that ends with a newline; :meth:`snapshot` gives the :class:`Mdoc` of
    what was fed plus a last line still being written (``tail``). Warnings collect until
    :meth:`snapshot` takes them: a snapshot holds the warnings of the text fed since the last one."""

    def __init__(self) -> None:
        self.header: dict[str, str] = {}
        self.titles: list[str] = []
        self.sections: list[MdocSection] = []
        self.current: dict | None = None
        self.cur_kind, self.cur_index, self.cur_line = "", 0, 0
        self.line_no = 0
        self._warns: list[str] = []
        self._n_warns = 0

    def _warn(self, msg: str) -> None:
        self._n_warns += 1
        if len(self._warns) < MAX_KEPT_WARNINGS:
            self._warns.append(msg if len(msg) <= WARNING_CHARS else msg[: WARNING_CHARS - 3] + "...")

    def _close(self) -> None:
        if self.current is not None:
            self.sections.append(_section(self.cur_kind, self.cur_index, self.current, self.cur_line))
        self.current = None

    def feed(self, text: str) -> None:
        """Parse complete lines (``text`` is empty or ends with a line end)."""
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for raw in lines:
            self.line_no += 1
            self._line(raw, self.line_no, last_incomplete=False)

    def _line(self, raw: str, n: int, *, last_incomplete: bool) -> None:
        line = raw.strip().strip("\x00")
        if not line:
            return
        if line.startswith("["):
            m = _SECTION.match(line)
            if not m:
                self._warn(f"line {n}: unreadable section header {line[:60]!r}")
                return
            kind, value = m.group(1), m.group(2)
            if kind == "T":
                self.titles.append(value)
                return
            if kind not in SECTION_KINDS:
                self._warn(f"line {n}: unknown section [{kind} = {value[:40]}]")
            self._close()
            try:
                idx = int(float(value))
            except (ValueError, OverflowError):
                self._warn(f"line {n}: section [{kind} = {value[:40]}] has no number")
                idx = -1
            self.current, self.cur_kind, self.cur_index, self.cur_line = {}, kind, idx, n
            return
        m = _KEYVAL.match(line)
        if not m:
            self._warn(f"line {n}: not 'key = value': {line[:60]!r}")
            return
        key, value = m.group(1), m.group(2)
        if last_incomplete:
            self._warn(f"line {n}: last line is incomplete (file being written): {key} ignored")
            return
        problem = check_value(key, value)
        if problem is None and key == "DateTime" and parse_datetime(value) is None:
            problem = (f"DateTime = {value[:40]!r} is not a date and time with a year in "
                       f"{YEAR_RANGE[0]}..{YEAR_RANGE[1]}: not used (the file's mtime orders the tilt)")
        if problem is not None:
            self._warn(f"line {n}: {problem}")
        target = self.header if self.current is None else self.current
        if key in target and target is self.current:
            self._warn(f"line {n}: {key} repeated in [{self.cur_kind} = {self.cur_index}]")
        target[key] = value

    def snapshot(self, path: str | Path | None = None, tail: str = "") -> Mdoc:
        """The mdoc as fed so far, with ``tail`` (a last line without its line end) looked at but not
        kept; takes the warnings collected since the last snapshot."""
        sections = list(self.sections)
        if self.current is not None:
            sections.append(_section(self.cur_kind, self.cur_index, dict(self.current), self.cur_line))
        header, titles = self.header, list(self.titles)
        complete_text = tail == ""
        line = tail.strip().strip("\x00")
        m = _SECTION.match(line) if line.startswith("[") else None
        if m is not None and m.group(1) == "T":
            titles.append(m.group(2))
        elif m is not None:  # a section header being written: an empty section (its values follow)
            try:
                idx = int(float(m.group(2)))
            except (ValueError, OverflowError):
                idx = -1
            sections.append(_section(m.group(1), idx, {}, self.line_no + 1))
        elif line:  # a value being written may be cut: looked at (a warning), never kept
            self._line(tail, self.line_no + 1, last_incomplete=True)
        warnings, n = tuple(self._warns), self._n_warns
        self._warns, self._n_warns = [], 0
        return Mdoc(path=None if path is None else Path(path), header=dict(header), titles=tuple(titles),
                    sections=tuple(sections), kind=classify(header, sections), warnings=warnings,
                    complete_text=complete_text, n_warnings=n)


def _section(kind: str, index: int, values: dict, line: int) -> MdocSection:
    return MdocSection(kind=kind, index=index, values=values, line=line, when=parse_datetime(values.get("DateTime")))


def split_complete(text: str) -> tuple[str, str]:
    """(the text up to and including its last line end, the unfinished last line)."""
    cut = max(text.rfind("\n"), text.rfind("\r")) + 1
    return text[:cut], text[cut:]


def parse_mdoc_text(text: str, path: str | Path | None = None) -> Mdoc:
    """Parse mdoc text; never raises on content."""
    parser = MdocParser()
    done, tail = split_complete(text)
    parser.feed(done)
    return parser.snapshot(path, tail)


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


def read_mdoc(path: str | Path, *, root: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Mdoc:
    """Read and parse an mdoc file: never blocks, refuses what is not a regular file, a path leading
    outside ``root`` and a file over ``max_bytes`` (safe_open.py). Raises OSError (RefusedFile)
    only when the file cannot or must not be read at all."""
    from framewatch.daemon.intake.safe_open import read_regular

    data, _ = read_regular(path, root=root, max_bytes=max_bytes)
    return parse_mdoc_bytes(data, path)



def decode_mdoc(data: bytes) -> tuple[str, bool]:
    """(text, whether it had bytes that are not UTF-8)."""
    text = data.decode("utf-8", errors="replace")
    return text, "\ufffd" in text


def parse_mdoc_bytes(data: bytes, path: str | Path | None = None) -> Mdoc:
    text, bad = decode_mdoc(data)
    mdoc = parse_mdoc_text(text, path)
    if bad:
        mdoc = dataclasses.replace(mdoc, warnings=mdoc.warnings + ("file has bytes that are not UTF-8",),
                                   n_warnings=mdoc.n_warnings + 1)
    return mdoc


def frame_mdoc_for(movie: str | Path) -> Path | None:
    """The per-movie frame mdoc SerialEM writes beside a frame stack: ``MOVIE.tif.mdoc`` or
    ``MOVIE.mdoc`` (first that exists)."""
    p = Path(movie)
    for cand in (p.with_name(p.name + ".mdoc"), p.with_suffix(".mdoc")):
        if os.path.lexists(cand):  # whatever it is: reading it checks that it may be read
            return cand
    return None
