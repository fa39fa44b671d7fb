"""Which movie-like names the daemon leaves alone, matched on the parts of a name, not on substrings.

A name is split into tokens at ``_``, ``-``, ``.`` and spaces (case-insensitive). Built in:

- partial and hidden files (``.x``, ``*.tmp``, ``*~``, ``*.part``, ``*.partial``): skipped silently
  (they become real names a moment later);
- gain and dark references: a token ``gain``, ``gainref`` or ``gainreference`` (``K3_gain.mrc``,
  ``Gain_ref_x1.m1.mrc``), or a name starting with ``CountRef``, ``CountCDSRef``, ``SuperRef``,
  ``SuperCDSRef`` or ``DarkRef`` (SerialEM) -- but not ``TS_again_001_0.0.tif``;
- outputs of framewatch and other programs: the name before its extension ends in the token
  ``_sorted``, ``_EVN``, ``_ODD`` or ``_DW`` (``TS_07_sorted.mrc``, ``TS_07_sorted_EVN.mrc``,
  ``x_DW.mrc``) -- but not ``TS_sorted_grid_001_0.0.tif``;
- the ``[watch] ignore`` globs of the configuration (whole-name globs, case-insensitive).

:func:`ignore_rule` names the rule that applies (logged once per file as ``file_ignored``), or
None; ``SILENT`` rules are not logged.
"""
from __future__ import annotations

import fnmatch
import re

PARTIAL_GLOBS = (".*", "*.tmp", "*~", "*.part", "*.partial")
GAIN_TOKENS = frozenset({"gain", "gainref", "gainreference"})
GAIN_PREFIXES = ("countref", "countcdsref", "superref", "supercdsref", "darkref")
OUTPUT_SUFFIX_TOKENS = frozenset({"sorted", "evn", "odd", "dw"})
SILENT = "partial or hidden file"
_SPLIT = re.compile(r"[_\-.\s]+")


def _stem(name: str) -> str:
    base, dot, ext = name.rpartition(".")
    return base if dot and base else name


def ignore_rule(name: str, extra_globs: tuple[str, ...] = ()) -> str | None:
    """The rule that ignores file name ``name`` (no directory), or None when it is taken."""
    low = name.lower()
    if any(fnmatch.fnmatchcase(low, g) for g in PARTIAL_GLOBS):
        return SILENT
    stem = _stem(low)
    tokens = [t for t in _SPLIT.split(stem) if t]
    if GAIN_TOKENS.intersection(tokens) or low.startswith(GAIN_PREFIXES):
        return "gain or dark reference"
    last = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    if last in OUTPUT_SUFFIX_TOKENS:
        return f"an output name (ends in _{name[len(stem) - len(last):len(stem)]})"
    for g in extra_globs:
        if fnmatch.fnmatchcase(low, g.lower()):
            return f"[watch] ignore {g!r}"
    return None
