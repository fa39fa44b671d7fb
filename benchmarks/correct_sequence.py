"""``framewatch correct`` of several movies in one call against the floor (issue 15, item 4).

    python -m benchmarks.correct_sequence [--copies 4] [--case tilt_4k_tiff_lzw --case tilt_2k_mrc]

For each case, in fresh processes of the same run: the floor (decode + one rfft2 per frame), then
``core.movie_sequence.correct_movie_files`` of COPIES hard links to the same movie, whole-frame,
with reading ahead and without. Prints each movie's wall time, the mean after the first against the
floor (target <= 1.5x) and peak RSS against one float32 movie (target <= 2.5x).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.__main__ import Case, make_movie, run_child

SEQUENCE_CASES = (
    Case("tilt_4k_tiff_lzw", 4096, 4096, 10, "tiff"),
    Case("tilt_2k_mrc", 2048, 2048, 10, "mrc"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/framewatch-bench")
    parser.add_argument("--case", action="append")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [c for c in SEQUENCE_CASES if not args.case or c.name in args.case]
    print(f"{'case':22} {'floor s':>8} {'read ahead':>10} {'per movie s':>30} {'after 1st':>9} {'ratio':>6} {'RSS/movie':>9}")
    for case in cases:
        movie = make_movie(case, workdir)
        floor = run_child(["floor", str(movie), str(args.threads)])["seconds"]
        movie_bytes = case.ny * case.nx * case.n_frames * 4
        for ahead in (True, False):
            r = run_child(["sequence", str(movie), str(args.threads), "1.5", str(case.dose_per_frame_e_per_a2),
                           str(args.copies), "1" if ahead else "0"])
            per = " ".join(f"{t:.2f}" for t in r["per_movie_s"])
            print(f"{case.name:22} {floor:8.2f} {'yes' if ahead else 'no':>10} {per:>30} {r['after_first_mean_s']:9.2f} "
                  f"{r['after_first_mean_s'] / floor:6.2f} {r['peak_rss_bytes'] / movie_bytes:9.2f}", flush=True)
            print("    stages of the last movie (s; read and defects ran ahead in the reading thread): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["last_stages_s"].items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
