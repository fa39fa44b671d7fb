"""Tilt-series name, acquisition index and tilt angle from a movie's file name.

Used when no tilt-series mdoc lists the movie. Each pattern is a regular expression with the named
groups ``series``, ``index`` and ``angle`` (``index`` and ``angle`` optional), matched against the
file name without its extension; the first that matches wins. ``index_base`` is the number the
acquisition software gives the first tilt (SerialEM counts from 0, Thermo Tomography 5 from 1), so
``acquisition index = index - index_base`` is 0 for the first tilt.

Defaults:

- SerialEM ``TS_07_012_-21.0.tif`` (optionally followed by ``_Oct08_07.39.05`` or other suffixes):
  series ``TS_07``, acquisition index 12, angle -21.0;
- Thermo Tomography 5 ``Position_1_003[-21.00]_fractions.tiff`` and
  ``Position_1_003_[-21.00]_...``: series ``Position_1``, index 2 (Tomo counts from 1), angle -21.0;
- Tomography 5.11+ ``Position_1_003_-21.00_20240101_123456_fractions.tiff``: same;
- SerialEM with whole-number angles ``TS_07_012_-21.tif``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from framewatch.core.errors import SettingsError
from framewatch.daemon.state.output_names import MOVIE_EXTENSIONS, movie_stem  # noqa: F401 - re-exported


@dataclass(frozen=True)
class NamePattern:
    regex: str
    index_base: int = 0
    name: str = ""

    def compiled(self) -> re.Pattern:
        return _compile(self.regex)


DEFAULT_PATTERNS: tuple[NamePattern, ...] = (
    NamePattern(r"^(?P<series>.+?)_(?P<index>\d+)_?\[(?P<angle>[-+]?\d+(?:\.\d*)?)\](?:_.*)?$", 1, "tomo5-brackets"),
    NamePattern(r"^(?P<series>.+)_(?P<index>\d+)_(?P<angle>[-+]?\d+\.\d+)(?:_.*)?$", 0, "serialem"),
    NamePattern(r"^(?P<series>.+)_(?P<index>\d{3,})_(?P<angle>[-+]?\d+)$", 0, "serialem-integer-angle"),
)

# Tomo 5.11+ names carry the date and time after the angle: TILT numbers count from 1 there too.
TOMO5_PREFIX = re.compile(r"^Position_", re.IGNORECASE)


def _compile(regex: str) -> re.Pattern:
    try:
        pat = re.compile(regex)
    except re.error as err:
        raise SettingsError(f"file-name pattern {regex!r} is not a regular expression: {err}") from None
    if "series" not in pat.groupindex:
        raise SettingsError(f"file-name pattern {regex!r} has no (?P<series>...) group")
    return pat


@dataclass(frozen=True)
class NameInfo:
    series: str
    acquisition_index: int | None
    tilt_angle_deg: float | None
    pattern: str


def parse_movie_name(path: str | Path, patterns: tuple[NamePattern, ...] = DEFAULT_PATTERNS) -> NameInfo | None:
    """Series, acquisition index (0 = first tilt) and angle from the file name; None if no pattern fits."""
    stem = movie_stem(path)
    for p in patterns:
        m = p.compiled().match(stem)
        if not m:
            continue
        gd = m.groupdict()
        series = gd.get("series")
        if not series:
            continue
        index = None
        if gd.get("index") not in (None, ""):
            base = p.index_base
            if p.name == "serialem" and TOMO5_PREFIX.match(stem):
                base = 1  # Tomography 5.11+ names without brackets
            index = int(gd["index"]) - base
        angle = None
        if gd.get("angle") not in (None, ""):
            try:
                angle = float(gd["angle"])
            except ValueError:
                angle = None
        return NameInfo(series=series, acquisition_index=index, tilt_angle_deg=angle, pattern=p.name or p.regex)
    return None


def patterns_from_config(entries: list | None) -> tuple[NamePattern, ...]:
    """``[[series.patterns]]`` tables (``regex``, ``index_base``) or plain strings -> patterns."""
    if not entries:
        return DEFAULT_PATTERNS
    out = []
    for i, e in enumerate(entries):
        where = f"[series] patterns[{i}]"
        if isinstance(e, str):
            p = NamePattern(e, 0, f"config-{i}")
        elif isinstance(e, dict) and isinstance(e.get("regex"), str):
            unknown = set(e) - {"regex", "index_base", "name"}
            if unknown:
                raise SettingsError(f"{where} has unknown key(s) {sorted(unknown)}", fix="valid: regex, index_base, name")
            base = e.get("index_base", 0)
            if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base <= 1_000_000:
                raise SettingsError(f"{where} index_base = {base!r}: expected a whole number >= 0 (the number of the first tilt)")
            name = e.get("name", f"config-{i}")
            if not isinstance(name, str):
                raise SettingsError(f"{where} name = {name!r}: expected a string")
            p = NamePattern(e["regex"], base, name)
        else:
            raise SettingsError(f"{where} = {e!r} must be a string or a table with a string 'regex'",
                                fix='e.g. [[series.patterns]] with regex = "^(?P<series>.+)_(?P<index>\\d+)$"')
        try:
            p.compiled()
        except SettingsError as err:
            raise SettingsError(f"{where}: {err.what}", fix=err.fix) from None
        out.append(p)
    return tuple(out)
