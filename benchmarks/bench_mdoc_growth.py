"""CPU of one change of a big growing tilt-series mdoc (issue 14, row 19).

    python -m benchmarks.bench_mdoc_growth [--sections 100000] [--changes 5]

Writes an mdoc of N SerialEM-like sections, lets the daemon's series index read it, then appends
one section at a time and measures ``SeriesIndex.note_mdoc`` (incremental: only the appended bytes
are parsed) against what each change cost before (a fresh index: the whole file parsed again).
Prints seconds per change (best and median of ``--changes``). The size cap ([watch] mdoc_max_mb,
16 MB by default) is lifted here: 100 000 such sections are 17 MB.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from framewatch.daemon.intake.series_grouping import SeriesIndex

SECTION = ("[ZValue = {z}]\nTiltAngle = {a:.2f}\nExposureDose = 3\nPixelSpacing = 5.4\nSubFramePath = D:\\data\\frames\\"
           "TS_01_{z:06d}_{a:.1f}.tif\nNumSubFrames = 8\nDateTime = {d:02d}-Mar-25  {h:02d}:{m:02d}:{s:02d}\n\n")


def section(z: int) -> str:
    t = z * 7
    return SECTION.format(z=z, a=(z % 121) - 60.0, d=1 + t // 86400 % 28, h=t // 3600 % 24, m=t // 60 % 60, s=t % 60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "TS_01.mrc.mdoc"
        p.write_text("".join(section(z) for z in range(args.sections)))
        idx = SeriesIndex(root=d, mdoc_max_bytes=1 << 30)
        idx.note_mdoc(p, 0.0)
        inc, full = [], []
        for k in range(args.changes):
            with open(p, "a") as f:
                f.write(section(args.sections + k))
            t0 = time.perf_counter()
            idx.note_mdoc(p, float(k + 1))
            inc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            SeriesIndex(root=d, mdoc_max_bytes=1 << 30).note_mdoc(p, 0.0)
            full.append(time.perf_counter() - t0)
        size_mb = p.stat().st_size / 1e6
    print(f"mdoc of {args.sections} sections ({size_mb:.1f} MB), {args.changes} appended sections:")
    print(f"  incremental (this version): best {min(inc):.3f} s, median {statistics.median(inc):.3f} s per change")
    print(f"  whole file parsed again:    best {min(full):.3f} s, median {statistics.median(full):.3f} s per change")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
