"""The text outputs of a series, rewritten atomically (temporary file, fsync, rename):

- ``SERIES.tilts.tsv``: one row per section of the growing stacks (z order = acquisition order as
  processed): movie, angle, acquisition index and time, doses, prior dose and its rule, where each
  value came from, every drift statistic, flags, and timings;
- ``SERIES.rawtlt``: the angles in section order (IMOD);
- ``SERIES.tlt``: the angles of ``SERIES_sorted.mrc`` (ascending);
- ``SERIES.star``: RELION-5-style tilt-series table of the sorted stack, with ``rlnAccumMotion*``.

A re-acquired tilt (an angle within the tolerance of an earlier section's) keeps both sections in
the growing stacks: the later is flagged ``reacquired``, the earlier ``superseded``; the sorted
outputs hold only the latest acquisition of each angle.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path

from framewatch.daemon.outputs.driftlog import STAT_KEYS
from framewatch.daemon.outputs.stack import fsync_dir

TSV_COLUMNS = (
    "z",
    "movie",
    "tilt_angle_deg",
    "acquisition_index",
    "acquisition_time",
    "n_frames",
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


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. the disk is full: the old file stays as it was
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _iso(t) -> str:
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(float(t)).isoformat(timespec="seconds")


def tilt_record(row: dict) -> dict:
    """A flat record of a done journal row (the keys of TSV_COLUMNS and a few more)."""
    info = row.get("info") or {}
    tilt = info.get("tilt", {})
    res = info.get("resolved", {})
    sources = res.get("sources", {})
    stats = row.get("stats") or {}
    timings = row.get("timings") or {}
    rec = {
        "z": row.get("z"),
        "movie": Path(row["path"]).name,
        "movie_path": row["path"],
        "tilt_angle_deg": row.get("angle_deg"),
        "acquisition_index": row.get("acq_index"),
        "acquisition_time": _iso(row.get("acq_time")),
        "n_frames": row.get("n_frames"),
        "dose_e_per_a2": res.get("dose_e_per_a2"),
        "dose_per_frame_e_per_a2": res.get("dose_per_frame_e_per_a2"),
        "prior_dose_e_per_a2": res.get("prior_dose_e_per_a2"),
        "prior_dose_rule": res.get("prior_dose_rule"),
        "pixel_size_a": res.get("pixel_size_a"),
        "voltage_kv": res.get("voltage_kv"),
        "angle_source": tilt.get("angle_source"),
        "order_source": tilt.get("order_source"),
        "index_source": tilt.get("index_source"),
        "dose_source": sources.get("dose"),
        "pixel_size_source": sources.get("pixel_size_a"),
        "voltage_source": sources.get("voltage_kv"),
        "tilt_axis_angle_deg": tilt.get("tilt_axis_angle_deg"),
        "defocus_um": tilt.get("defocus_um"),
        "flags": list(row.get("flags") or []),
        "complete_signal": info.get("complete_signal"),
        **{k: timings.get(k) for k in ("wait_s", "correct_s", "append_s", "latency_s")},
    }
    for k in STAT_KEYS:
        rec[k] = stats.get(k)
    for k, v in stats.items():  # statistics added to the engine later appear too
        rec.setdefault(k, v)
    px = rec["pixel_size_a"]
    mfs = stats.get("max_frame_shift_px")
    rec["max_frame_shift_a"] = None if mfs is None or px is None else mfs * px
    return rec


def mark_reacquired(records: list[dict], tolerance_deg: float) -> list[dict]:
    """Add ``superseded`` / ``reacquired`` flags (in place) and return the records kept for sorted
    outputs: the latest section of each angle."""
    by_z = sorted(records, key=lambda r: r["z"])
    keep: list[dict] = []
    for i, r in enumerate(by_z):
        later = [q for q in by_z[i + 1 :] if _same_angle(q, r, tolerance_deg)]
        earlier = [q for q in by_z[:i] if _same_angle(q, r, tolerance_deg)]
        flags = [f for f in r["flags"] if not f.startswith(("superseded", "reacquired"))]
        if earlier:
            flags.append(f"reacquired (earlier z={','.join(str(q['z']) for q in earlier)})")
        if later:
            flags.append(f"superseded (by z={later[-1]['z']})")
        else:
            keep.append(r)
        r["flags"] = flags
    return keep


def _same_angle(a: dict, b: dict, tol: float) -> bool:
    x, y = a.get("tilt_angle_deg"), b.get("tilt_angle_deg")
    return x is not None and y is not None and abs(x - y) <= tol


def sorted_records(kept: list[dict]) -> list[dict]:
    return sorted(kept, key=lambda r: (r["tilt_angle_deg"], r["z"]))


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
        return "; ".join(str(x) for x in v)
    return str(v).replace("\t", " ").replace("\n", " ")


def tsv_text(records: list[dict]) -> str:
    extra = sorted({k for r in records for k in r} - set(TSV_COLUMNS) - {"tilt_axis_angle_deg", "defocus_um"})
    cols = list(TSV_COLUMNS[:-1]) + extra + ["movie_path"]
    lines = ["\t".join(cols)]
    for r in sorted(records, key=lambda r: r["z"]):
        lines.append("\t".join(_fmt(r.get(c)) for c in cols))
    return "\n".join(lines) + "\n"


def read_tsv(path: str | Path) -> list[dict]:
    """The tilt table as a list of dicts of strings."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line]


def angles_text(angles) -> str:
    return "".join(f"{a:.2f}\n" for a in angles)


def star_text(series: str, sorted_recs: list[dict], *, sorted_stack: str, evn_stack: str, odd_stack: str) -> str:
    cols = (
        "rlnMicrographMovieName",
        "rlnTomoTiltMovieFrameCount",
        "rlnTomoNominalStageTiltAngle",
        "rlnTomoNominalTiltAxisAngle",
        "rlnMicrographPreExposure",
        "rlnTomoNominalDefocus",
        "rlnMicrographName",
        "rlnMicrographNameEven",
        "rlnMicrographNameOdd",
        "rlnMicrographOriginalPixelSize",
        "rlnAccumMotionTotal",
        "rlnAccumMotionEarly",
        "rlnAccumMotionLate",
    )
    out = [
        "",
        "# written by framewatch: one row per section of the angle-sorted stack;",
        "# rlnMicrographName etc. are sections (1-based) of the sorted stacks; rlnAccumMotion* in Angstrom;",
        "# rlnMicrographPreExposure is the dose (e/A^2) received before this tilt.",
        "",
        f"data_{series}",
        "",
        "loop_",
    ]
    out += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    for k, r in enumerate(sorted_recs, start=1):
        vals = (
            r["movie_path"],
            r.get("n_frames"),
            r.get("tilt_angle_deg"),
            r.get("tilt_axis_angle_deg") if r.get("tilt_axis_angle_deg") is not None else 0.0,
            r.get("prior_dose_e_per_a2"),
            r.get("defocus_um") if r.get("defocus_um") is not None else 0.0,
            f"{k:06d}@{sorted_stack}",
            f"{k:06d}@{evn_stack}",
            f"{k:06d}@{odd_stack}",
            r.get("pixel_size_a"),
            r.get("total_motion_a"),
            r.get("early_motion_a"),
            r.get("late_motion_a"),
        )
        out.append("  ".join(_star(v) for v in vals))
    return "\n".join(out) + "\n\n"


def _star(v) -> str:
    if v is None:
        return "0"
    if isinstance(v, float):
        return f"{v:.6f}" if math.isfinite(v) else "0"
    s = str(v)
    return f'"{s}"' if (not s or any(c.isspace() for c in s)) else s


def read_star_loop(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the single loop of a framewatch STAR file (for tests and users)."""
    import shlex

    cols, rows, in_loop = [], [], False
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s == "loop_":
            in_loop = True
            continue
        if not in_loop or not s or s.startswith("#"):
            continue
        if s.startswith("_"):
            cols.append(s.split()[0][1:])
        else:
            rows.append(shlex.split(s))
    return cols, rows
