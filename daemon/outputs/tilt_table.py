"""The text outputs of a series, rewritten atomically (temporary file, fsync, rename):

- ``SERIES.tilts.tsv``: one row per section of the growing stacks (z order = acquisition order as
  processed): movie, angle, acquisition index and time, doses, prior dose and its rule, where each
  value came from, every drift statistic, flags, and timings;
- ``SERIES.rawtlt``: the angles in section order (IMOD);
- ``SERIES.tlt``: the angles of ``SERIES_sorted.mrc`` (ascending);
- the RELION 5 tables (``SERIES.star``, ``tilt_series.star``) and the AreTomo/IMOD angle files of
  the sorted stacks are written by relion_tables.py and sorted_angles.py.

Values of the tilt table are escaped so that one row is one line whatever a file name holds: a
backslash as ``\\\\``, tab ``\\t``, line feed ``\\n``, carriage return ``\\r``, and every other control
character or line separator (U+0085, U+2028, U+2029, ...) as ``\\xHH`` / ``\\uHHHH``;
:func:`read_tsv` undoes it. Rows are separated by ``\\n`` only.

A re-acquired tilt (an angle within the tolerance of an earlier section's) keeps both sections in
the growing stacks: the later is flagged ``reacquired``, the earlier ``superseded``; the sorted
outputs hold only the latest acquisition of each angle.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

from framewatch.daemon.state.records import STAT_KEYS, TILT_PLACE_KEYS, TiltRecord

TSV_COLUMNS = (
    *TILT_PLACE_KEYS,
    "dose_e_per_a2",
    "dose_per_frame_e_per_a2",
    "prior_dose_e_per_a2",
    "prior_dose_rule",
    "pixel_size_a",
    "voltage_kv",
    "angle_source",
    "order_source",
    "index_source",
    "dose_source",
    "pixel_size_source",
    "voltage_source",
    *STAT_KEYS,
    "max_frame_shift_a",
    "flags",
    "complete_signal",
    "wait_s",
    "correct_s",
    "append_s",
    "latency_s",
    "movie_path",
)


def tilt_record(row: Mapping) -> TiltRecord:
    """The record of a done journal row (its flat view has the keys of TSV_COLUMNS and a few more)."""
    return TiltRecord.from_row(row)


def mark_reacquired(records: list[TiltRecord], tolerance_deg: float) -> tuple[list[TiltRecord], list[TiltRecord]]:
    """The records in z order with ``superseded`` / ``reacquired`` flags, and those kept for the
    sorted outputs: the latest section of each angle."""
    by_z = sorted(records, key=lambda r: r.z)
    marked: list[TiltRecord] = []
    keep: list[TiltRecord] = []
    for i, r in enumerate(by_z):
        later = [q for q in by_z[i + 1 :] if _same_angle(q, r, tolerance_deg)]
        earlier = [q for q in by_z[:i] if _same_angle(q, r, tolerance_deg)]
        flags = [f for f in r.flags if not f.startswith(("superseded", "reacquired"))]
        if earlier:
            flags.append(f"reacquired (earlier z={','.join(str(q.z) for q in earlier)})")
        if later:
            flags.append(f"superseded (by z={later[-1].z})")
        r = r.with_flags(flags)
        marked.append(r)
        if not later:
            keep.append(r)
    return marked, keep


def _same_angle(a: TiltRecord, b: TiltRecord, tol: float) -> bool:
    x, y = a.tilt_angle_deg, b.tilt_angle_deg
    return x is not None and y is not None and abs(x - y) <= tol


def sorted_records(kept: list[TiltRecord]) -> list[TiltRecord]:
    return sorted(kept, key=lambda r: (r.tilt_angle_deg, r.z))


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPE = re.compile(r"\\(\\|t|n|r|x[0-9a-f]{2}|u[0-9a-f]{4})")


def escape_field(text: str) -> str:
    """One tilt-table value with backslash, tab, line breaks and other control characters escaped."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif o < 0x20 or 0x7F <= o < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def unescape_field(text: str) -> str:
    def one(m: re.Match) -> str:
        code = m.group(1)
        if code[0] in "xu":
            return chr(int(code[1:], 16))
        return {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}[code]

    return _UNESCAPE.sub(one, text)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return escape_field("; ".join(str(x) for x in v))
    return escape_field(str(v))


def tsv_text(records: list[TiltRecord] | list[dict]) -> str:
    """The tilt table of the records (TiltRecords, or dicts with the same keys)."""
    extra = sorted({k for r in records for k in r} - set(TSV_COLUMNS) - {"tilt_axis_angle_deg", "defocus_um"})
    cols = list(TSV_COLUMNS[:-1]) + extra + ["movie_path"]
    lines = ["\t".join(escape_field(c) for c in cols)]
    for r in sorted(records, key=lambda r: r["z"]):
        lines.append("\t".join(_fmt(r.get(c)) for c in cols))
    return "\n".join(lines) + "\n"


def read_tsv(path: str | Path) -> list[dict]:
    """The tilt table as a list of dicts of strings (escapes undone; rows split on ``\\n`` only)."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    head = [unescape_field(c) for c in lines[0].split("\t")]
    return [dict(zip(head, (unescape_field(v) for v in line.split("\t")))) for line in lines[1:] if line]


def angles_text(angles) -> str:
    return "".join(f"{a:.2f}\n" for a in angles)


def read_star_loop(path: str | Path, block: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of one loop of a framewatch STAR file (the first loop, or ``block``)."""
    from framewatch.core.star import read_star

    blocks = read_star(path)
    for name, content in blocks.items():
        if (block is None or name == block) and content and all(isinstance(v, list) for v in content.values()):
            cols = list(content)
            n = len(content[cols[0]])
            return cols, [[content[c][i] for c in cols] for i in range(n)]
    return [], []
