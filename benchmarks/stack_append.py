"""How long the daemon's append of one tilt takes on a disk: three float32 sections (the dose-weighted,
EVN and ODD sums) appended to their stacks and fsync'd, as ``daemon.outputs.stack.append_sections``
does before the ``tilt_corrected`` line (issue 15: the part of a tilt's latency that is the disk's).

    python -m benchmarks.stack_append [--dir DIR] [--size 4096] [--appends 6]

The stacks are written into a new temporary folder in ``DIR`` (default: the current directory, i.e.
the disk the outputs would go to) and removed afterwards. Prints each append's seconds and the
bytes per second; the first one or two are often faster while the disk's write burst lasts.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stack_append", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=Path.cwd(), help="the disk to measure (a folder on it)")
    p.add_argument("--size", type=int, default=4096, help="section size in pixels (square)")
    p.add_argument("--appends", type=int, default=6)
    args = p.parse_args(argv)
    from framewatch.daemon.outputs.stack import append_sections

    rng = np.random.default_rng(0)
    images = [rng.random((args.size, args.size), dtype=np.float32) for _ in range(3)]
    nbytes = sum(a.nbytes for a in images)
    with tempfile.TemporaryDirectory(prefix="framewatch-append-", dir=args.dir) as tmp:
        paths = [Path(tmp) / name for name in ("TS_01.mrc", "TS_01_EVN.mrc", "TS_01_ODD.mrc")]
        seconds = []
        for _ in range(args.appends):
            t = time.perf_counter()
            append_sections(list(zip(paths, images)), pixel_size_a=1.5)
            seconds.append(time.perf_counter() - t)
    print(f"{args.appends} appends of 3 x {args.size}^2 float32 sections ({nbytes / 2**20:.0f} MiB each) in {args.dir}")
    print("seconds: " + " ".join(f"{s:.3f}" for s in seconds))
    steady = sorted(seconds)[len(seconds) // 2]
    print(f"median {steady:.3f} s = {nbytes / steady / 1e6:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
