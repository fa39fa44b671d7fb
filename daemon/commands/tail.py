"""``framewatch tail [OUT]``: the drift log as a live table, one row per tilt.

Follows ``OUT/framewatch.jsonl`` like ``tail -f`` (waits for it to appear, notices truncation and
replacement); plain text with ANSI colours when stdout is a terminal, so it works over ssh.
``--once`` prints what is there and exits. Rows: ``tilt_corrected`` (flags in red when the tilt is
flagged, green "ok" otherwise), ``movie_failed`` (red), and a line when a series completes.

Text from the log (series and file names, reasons, flags) is printed with every control character,
escape sequence, line separator and bidirectional-text control rendered visibly (``\\x1b``,
``\\x0d``, ``\\u2028``), so a file name can neither split a row nor drive the terminal.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

COLUMNS = (
    ("series", 12, "<"),
    ("z", 3, ">"),
    ("angle", 7, ">"),
    ("total A", 8, ">"),
    ("early A", 8, ">"),
    ("late A", 8, ">"),
    ("jump A", 7, ">"),
    ("FRC.143 A", 9, ">"),
    ("flags", 0, "<"),
)
RED, GREEN, YELLOW, DIM, RESET = "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[0m"
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def visible(value) -> str:
    """``str(value)`` with control characters (C0, DEL, C1), line and paragraph separators and
    bidirectional controls as ``\\xHH`` / ``\\uHHHH``; a backslash stays as it is."""
    out = []
    for ch in str(value):
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0 or ch in "\u2028\u2029" or ch in _BIDI:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tail",
        help="show the drift log as a live table (one row per tilt)",
        description="Follow OUT/framewatch.jsonl like `tail -f` and print one table row per tilt: series, "
        "section, angle, total/early/late motion, largest frame jump (Angstrom), FRC 0.143 crossing, flags.",
    )
    p.add_argument("out", nargs="?", default=".", metavar="OUT",
                   help="output directory of `framewatch watch` (or the .jsonl file)")
    p.add_argument("--once", action="store_true", help="print the table so far and exit")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours (default when not a terminal)")
    p.add_argument("--series", metavar="NAME", help="only this series")
    p.set_defaults(func=run)


def _num(v, fmt="{:.2f}") -> str:
    if v is None:
        return "-"
    try:
        return fmt.format(float(v))
    except (TypeError, ValueError):
        return visible(v)


def header() -> str:
    return "  ".join(f"{name:{align}{width}}" if width else name for name, width, align in COLUMNS)


def format_line(ev: dict, *, color: bool) -> str | None:
    """A table row (or a note) for one drift-log event; None for events the table does not show."""
    kind = ev.get("event")

    def paint(text, code):
        return f"{code}{text}{RESET}" if color else text

    if kind == "tilt_corrected":
        flags = [visible(f) for f in ev.get("flags") or []]
        vals = (
            visible(ev.get("series", ""))[:12],
            _num(ev.get("z"), "{:.0f}"),
            _num(ev.get("tilt_angle_deg"), "{:.1f}"),
            _num(ev.get("total_motion_a")),
            _num(ev.get("early_motion_a")),
            _num(ev.get("late_motion_a")),
            _num(ev.get("max_frame_shift_a")),
            _num(ev.get("frc_0_143_a"), "{:.1f}"),
        )
        cells = [f"{v:{align}{width}}" for v, (_, width, align) in zip(vals, COLUMNS)]
        flag_text = paint("; ".join(flags), RED) if flags else paint("ok", GREEN)
        return "  ".join(cells + [flag_text])
    if kind == "movie_failed":
        return paint(f"{visible(ev.get('series') or '?')[:12]:<12}  failed: {visible(Path(str(ev.get('movie'))).name)}: "
                     f"{visible(ev.get('reason'))}", RED)
    if kind == "series_completed":
        return paint(f"-- {visible(ev.get('series'))}: complete ({visible(ev.get('reason'))}), "
                     f"{visible(ev.get('n_tilts'))} tilts, "
                     f"sorted stack {visible(ev.get('sorted_stack'))}", YELLOW)
    if kind == "series_reopened":
        return paint(f"-- {visible(ev.get('series'))}: a new tilt after completion; sorted outputs will be rewritten", YELLOW)
    if kind == "disk_floor":
        return paint(f"-- PAUSED: output disk {_gb(ev.get('free_bytes'))} free, below the floor {_gb(ev.get('floor_bytes'))}: "
                     "no new movie is corrected until space returns", RED)
    if kind == "disk_resumed":
        return paint(f"-- resumed: output disk {_gb(ev.get('free_bytes'))} free", GREEN)
    if kind == "movie_abandoned":
        return paint(f"-- {visible(Path(str(ev.get('movie'))).name)}: abandoned at shutdown, corrected at the next start", YELLOW)
    if kind == "daemon_unhealthy":
        return paint(f"-- UNHEALTHY: {visible(ev.get('reason'))}", RED)
    return None


def _gb(n) -> str:
    return "?" if not isinstance(n, (int, float)) else f"{n / 1e9:.1f} GB"


def _log_path(out: str) -> Path:
    p = Path(out)
    return p if p.suffix == ".jsonl" else p / "framewatch.jsonl"


def follow(path: Path, *, once: bool, poll_s: float = 0.3, stop=None):
    """Yield parsed events from ``path``; with ``once`` stop at the end, else follow it."""
    f = None
    ino = None
    buf = ""
    while True:
        if f is None:
            try:
                f = open(path, "r", encoding="utf-8", errors="replace")
                ino = os.fstat(f.fileno()).st_ino
                buf = ""
            except FileNotFoundError:
                if once:
                    return
                time.sleep(poll_s)
                continue
        chunk = f.read()
        if chunk:
            buf += chunk
            *lines, buf = buf.split("\n")
            for line in lines:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line after a crash
            continue
        if once:
            return
        if stop is not None and stop.is_set():
            return
        try:
            st = os.stat(path)
            if st.st_ino != ino or st.st_size < f.tell():  # replaced or truncated
                f.close()
                f = None
                continue
        except FileNotFoundError:
            pass
        time.sleep(poll_s)


def run(args: argparse.Namespace, *, stream=None, stop=None) -> int:
    stream = stream or sys.stdout
    color = not args.no_color and hasattr(stream, "isatty") and stream.isatty()
    path = _log_path(args.out)
    if args.once and not path.exists():
        print(f"framewatch tail: no drift log at {path}", file=sys.stderr)
        return 1
    print(header(), file=stream, flush=True)
    try:
        for ev in follow(path, once=args.once, stop=stop):
            if args.series and ev.get("series") not in (None, args.series):
                continue
            line = format_line(ev, color=color)
            if line is not None:
                print(line, file=stream, flush=True)
    except KeyboardInterrupt:
        return 0
    return 0
