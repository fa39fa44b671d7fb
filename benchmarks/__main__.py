"""Run the benchmarks: ``python -m benchmarks [--quick] [--threads N] [--json FILE]``.

Each case simulates a movie (or reuses one in the work directory), then measures in fresh
processes, in the same run (each time the best of two runs in one process, after the kernels are
compiled: the steady state of a service; the first run's time is in the JSON): the floor (read +
decode + one float32 rfft2 per frame), whole-frame correction, correction with the defaults (local
motion by evidence, ``--patches auto``), Numba compilation cold and cached, and peak RSS against
the float32 size of the movie. Targets (2 cores): whole-frame <= 1.6x the floor, defaults (local
motion included) <= 2.5x, peak RSS <= 2.5x the float32 movie.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str
    ny: int
    nx: int
    n_frames: int
    movie_format: str  # "tiff" (LZW) or "mrc"
    dose_per_frame_e_per_a2: float = 0.3


CASES = (
    Case("tilt_4k_tiff_lzw", 4096, 4096, 10, "tiff"),
    Case("k3_5760x4092_tiff_lzw", 4092, 5760, 10, "tiff"),
    Case("spa_4k_40_mrc_int8", 4096, 4096, 40, "mrc", dose_per_frame_e_per_a2=1.0),
    Case("tilt_2k_tiff_lzw", 2048, 2048, 10, "tiff"),
)
QUICK = (Case("tilt_2k_tiff_lzw", 2048, 2048, 10, "tiff"),)


def run_child(args: list[str], env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", *args],
        check=True, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_movie(case: Case, workdir: Path) -> Path:
    from framewatch.core.movie_io import write_movie
    from framewatch.core.simulate import SimulationSpec, simulate_movie

    path = workdir / f"{case.name}.{'tif' if case.movie_format == 'tiff' else 'mrc'}"
    if not path.exists():
        sim = simulate_movie(SimulationSpec(ny=case.ny, nx=case.nx, n_frames=case.n_frames, local_amplitude_px=2.0,
                                            dose_per_frame_e_per_a2=case.dose_per_frame_e_per_a2, seed=1))
        write_movie(path, sim.frames, tiff_compression="lzw", pixel_size_a=1.5)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the 2k case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads (default: all cores)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "framewatch-bench",
                        help="where simulated movies are kept between runs")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--case", action="append", help="run only the named case(s)")
    parser.add_argument("--replay", action="store_true", help="also replay a 10-tilt 4k series through the daemon")
    parser.add_argument("--replay-pace-s", type=float, default=8.0, help="seconds per tilt in the replay")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    cases = QUICK if args.quick else CASES
    if args.case:
        cases = tuple(c for c in CASES if c.name in args.case)

    cold_dir = tempfile.mkdtemp(prefix="numba-cold-")
    env_cold = dict(os.environ, NUMBA_CACHE_DIR=cold_dir)
    cold = run_child(["compile", str(args.threads)], env_cold)
    cached = run_child(["compile", str(args.threads)], env_cold)
    env = dict(os.environ, NUMBA_CACHE_DIR=cold_dir)
    print(f"threads {args.threads}; numba compile+warm-up: cold {cold['seconds']:.1f} s, cached {cached['seconds']:.1f} s")
    print(f"{'case':24s} {'floor s':>8s} {'mode':>6s} {'correct s':>9s} {'ratio':>6s} {'target':>6s} "
          f"{'peak RSS':>9s} {'RSS/movie':>9s}")
    results = {"threads": args.threads, "cpu_count": os.cpu_count(), "compile_cold_s": cold["seconds"],
               "compile_cached_s": cached["seconds"], "cases": []}
    for case in cases:
        movie = make_movie(case, args.workdir)
        floor = run_child(["floor", str(movie), str(args.threads)], env)
        movie_f32 = case.ny * case.nx * case.n_frames * 4
        for mode, patches, target in (("whole", (0, 0), 1.6), ("defaults", "auto", 2.5)):
            corr = run_child(["correct", str(movie), str(args.threads), "1.5", str(case.dose_per_frame_e_per_a2),
                              *(["auto"] if patches == "auto" else [str(patches[0]), str(patches[1])])], env)
            ratio = corr["seconds"] / floor["seconds"]
            rss = corr["peak_rss_bytes"] / movie_f32
            print(f"{case.name:24s} {floor['seconds']:8.2f} {mode:>6s} {corr['seconds']:9.2f} {ratio:6.2f} "
                  f"{target:6.1f} {corr['peak_rss_bytes'] / 2**30:8.2f}G {rss:9.2f}")
            print("    stages: " + ", ".join(f"{k} {v:.2f}" for k, v in corr["stages_s"].items()))
            print(f"    local_motion: {corr['local_motion']}")
            results["cases"].append({"case": case.__dict__, "mode": mode, "floor_s": floor["seconds"],
                                     "correct_s": corr["seconds"], "ratio_to_floor": ratio, "target_ratio": target,
                                     "peak_rss_bytes": corr["peak_rss_bytes"], "peak_rss_over_float32_movie": rss,
                                     "stages_s": corr["stages_s"], "local_motion": corr["local_motion"]})
    if args.replay:
        from .daemon_replay import replay

        with tempfile.TemporaryDirectory(prefix="framewatch-replay-") as tmp:
            rep = replay(tilts=10, size=4096, frames=10, pace_s=args.replay_pace_s, frame_interval_s=0.05,
                         workdir=Path(tmp))
        print(f"daemon replay, 10 tilts 4096^2 x 10, one per {args.replay_pace_s:g} s: complete->appended latency "
              f"median {rep['latency_median_s']:.2f} s, max {rep['latency_max_s']:.2f} s, correction median "
              f"{sorted(rep['correct_s'])[len(rep['correct_s']) // 2]:.2f} s, peak backlog {rep['peak_backlog']}")
        results["daemon_replay"] = rep
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
