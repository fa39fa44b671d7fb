"""``framewatch correct`` beside RELION 5's own motion correction, same movies, same machine, same run.

    python -m benchmarks.relion_compare --relion /opt/relion/bin/relion_run_motioncorr \\
        [--copies 4] [--case tilt_4k_tiff_lzw --case tilt_2k_mrc] [--threads 2] [--rounds 2] [--program framewatch]

RELION is not a dependency of framewatch; build it once (the recipe is in benchmarks/RESULTS.md).
For each case (the movies of :mod:`benchmarks.correct_sequence`: 4096²×10 LZW TIFF and 2048²×10
MRC, simulated with 2 px of local motion) and each mode (whole-frame; 5 × 5 patches), both programs
run as a user would run them, in fresh processes: on one movie and on ``COPIES`` hard links to it in
one call. Printed per program: the wall time of one movie (start-up and kernel loading included),
the time per movie after the first (from the times the first and the last movie's output files were
last written: the steady state of a session) and the peak RSS of the one-movie and the
``COPIES``-movie runs (``/usr/bin/time``), each the best of ``ROUNDS``, with the floor (decode + one
rfft2 per frame, :mod:`benchmarks.child`) measured in the same run.

Both write a dose-weighted sum per movie (0.3 e/Å² per frame, 1.5 Å/px, 300 kV); framewatch also
writes its even/odd half sums and RELION its even/odd sums too (``--even_odd_split``, as its
tomography pipeline runs it); RELION's B-factor is its default (150 Å²). framewatch's 5 × 5 mode is
``--patches 5 5``: the evidence rule still decides, and the line says what it decided.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.__main__ import make_movie, run_child
from benchmarks.correct_sequence import SEQUENCE_CASES

PIXEL_A = 1.5
VOLTAGE_KV = 300.0

MOVIES_STAR = """\
data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographOriginalPixelSize #3
_rlnVoltage #4
_rlnSphericalAberration #5
_rlnAmplitudeContrast #6
opticsGroup1 1 {pixel_a} {voltage_kv} 2.7 0.1


data_movies

loop_
_rlnMicrographMovieName #1
_rlnOpticsGroup #2
{rows}
"""


def timed(cmd: list[str], *, cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``cmd`` run to the end in ``cwd`` (fails loudly)."""
    report = cwd / "time.txt"
    proc = subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%e %M", *cmd], cwd=cwd,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    wall, rss_kb = report.read_text().split()[-2:]
    return float(wall), int(rss_kb) * 1024


def framewatch_cmd(movies: list[Path], out: Path, case, *, patches: tuple[int, int], threads: int) -> list[str]:
    return [sys.executable, "-m", "framewatch.daemon.commands.cli", "correct", *map(str, movies), "--out-dir", str(out),
            "--pixel-size-a", str(PIXEL_A), "--dose-per-frame", str(case.dose_per_frame_e_per_a2),
            "--voltage-kv", str(VOLTAGE_KV), "--patches", str(patches[0]), str(patches[1]), "--threads", str(threads)]


def relion_cmd(relion: str, movies: list[Path], out: Path, case, *, patches: tuple[int, int], threads: int) -> list[str]:
    star = out.parent / f"{out.name}_movies.star"
    rows = "\n".join(f"{m} 1" for m in movies)
    star.write_text(MOVIES_STAR.format(pixel_a=PIXEL_A, voltage_kv=VOLTAGE_KV, rows=rows))
    return [relion, "--i", str(star), "--o", f"{out}/", "--use_own", "--j", str(threads),
            "--first_frame_sum", "1", "--last_frame_sum", "-1", "--bin_factor", "1",
            "--dose_weighting", "--dose_per_frame", str(case.dose_per_frame_e_per_a2), "--preexposure", "0",
            "--patch_x", str(max(1, patches[0])), "--patch_y", str(max(1, patches[1])), "--even_odd_split", "--skip_logfile"]


def local_decision(out: Path, movie: Path) -> str:
    """framewatch's local-motion decision for ``movie`` from its PREFIX.json."""
    record = json.loads((out / f"{movie.stem}.json").read_text())
    stats = record.get("statistics", record)
    return str(stats.get("local_motion", "?")).split(" (")[0]


def measure(program: str, case, movie: Path, *, relion: str, copies: int, patches: tuple[int, int], threads: int,
            rounds: int, workdir: Path) -> dict:
    best: dict = {}
    for _ in range(rounds):
        for n in (1, copies):
            with tempfile.TemporaryDirectory(dir=workdir) as tmp:
                tmp = Path(tmp)
                links = []
                for k in range(n):
                    link = tmp / f"{case.name}_{k}{movie.suffix}"
                    os.link(movie, link)
                    links.append(link)
                out = tmp / "out"
                if program == "framewatch":
                    out.mkdir()
                    cmd = framewatch_cmd(links, out, case, patches=patches, threads=threads)
                else:
                    cmd = relion_cmd(relion, links, out, case, patches=patches, threads=threads)
                wall, rss = timed(cmd, cwd=tmp)
                if program == "framewatch" and n == 1 and patches != (0, 0):
                    best["decision"] = local_decision(out, links[0])
                if n == 1:
                    if wall < best.get("one_s", float("inf")):
                        best["one_s"], best["rss_bytes"] = wall, rss
                else:
                    done = [finished_at(out, link) for link in links]
                    best["per_movie_s"] = min(best.get("per_movie_s", float("inf")), (done[-1] - done[0]) / (n - 1))
                    best["many_rss_bytes"] = min(best.get("many_rss_bytes", rss), rss)
    return best


def finished_at(out: Path, movie: Path) -> float:
    """When the last output file of ``movie`` was written (its files are named after its stem)."""
    times = [p.stat().st_mtime for p in out.rglob(f"{movie.stem}*") if p.is_file()]
    if not times:
        raise SystemExit(f"no output of {movie.name} under {out}")
    return max(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relion", required=True, help="relion_run_motioncorr of a RELION 5 build")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/framewatch-bench")
    parser.add_argument("--case", action="append")
    parser.add_argument("--program", action="append", choices=("framewatch", "relion"),
                        help="measure only this program (default: both)")
    args = parser.parse_args(argv)
    relion = shutil.which(args.relion) or args.relion
    if not Path(relion).is_file():
        raise SystemExit(f"relion_run_motioncorr not found at {args.relion}: build RELION 5 (benchmarks/RESULTS.md)")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [c for c in SEQUENCE_CASES if not args.case or c.name in args.case]
    print(f"{'case':18} {'mode':6} {'program':10} {'floor s':>7} {'1 movie s':>9} {'per movie s':>11} "
          f"{'x floor':>7} {'RSS 1':>6} {f'RSS {args.copies}':>6}  local motion", flush=True)
    for case in cases:
        movie = make_movie(case, workdir)
        floor = run_child(["floor", str(movie), str(args.threads)])["seconds"]
        for mode, patches in (("whole", (0, 0)), ("5x5", (5, 5))):
            for program in args.program or ("framewatch", "relion"):
                r = measure(program, case, movie, relion=relion, copies=args.copies, patches=patches,
                            threads=args.threads, rounds=args.rounds, workdir=workdir)
                print(f"{case.name:18} {mode:6} {program:10} {floor:7.2f} {r['one_s']:9.2f} {r['per_movie_s']:11.2f} "
                      f"{r['per_movie_s'] / floor:7.2f} {r['rss_bytes'] / 2**30:5.2f}G {r['many_rss_bytes'] / 2**30:5.2f}G"
                      f"  {r.get('decision', '')}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
