"""Two source trees measured alternately on one movie, with the floor between them (a shared machine).

    python -m benchmarks.interleaved MOVIE [--rounds 3] [--kinds floor,whole,auto,seq]
        [--old-python /work/venv/bin/python --old-tree /work/main --old-cache /tmp/numba-main]

Each round runs, in fresh processes (``benchmarks.child``, each the best of two runs in-process):
the floor, then for each kind the OLD tree's engine and this tree's. The best of the rounds is kept
per kind and tree, so the two engines and the floor see the same load; the ratios to the floor of
the same run are what to compare. ``seq``: ``framewatch correct`` of 4 copies, read ahead,
whole-frame (the mean per movie after the first). ``auto``: the defaults (local motion by evidence).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _child(python: str, tree: str, cache: str, args: list[str]) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([python, "-m", "benchmarks.child", *args], cwd=tree, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(kind: str, movie: str, run) -> tuple[float, dict]:
    if kind == "floor":
        res = run(["floor", movie, "2"])
        return res["seconds"], res
    if kind == "seq":
        res = run(["sequence", movie, "2", "1.5", "0.3", "4", "1"])
        return res["after_first_mean_s"], res
    res = run(["correct", movie, "2", "1.5", "0.3", *(["auto"] if kind == "auto" else ["0", "0"])])
    return res["seconds"], res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("movie")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="floor,whole,auto,seq")
    parser.add_argument("--old-python", default="/work/venv/bin/python")
    parser.add_argument("--old-tree", default="/work/main")
    parser.add_argument("--old-cache", default="/tmp/numba-main")
    args = parser.parse_args(argv)
    cache = os.environ.get("NUMBA_CACHE_DIR", "/tmp/numba-new")
    trees = {"old": lambda a: _child(args.old_python, args.old_tree, args.old_cache, a),
             "new": lambda a: _child(sys.executable, str(HERE), cache, a)}
    best: dict[str, tuple[float, dict]] = {}
    loads = []
    for _ in range(args.rounds):
        loads.append(open("/proc/loadavg").read().split()[0])
        for kind in args.kinds.split(","):
            for name in ["new"] if kind == "floor" else ["old", "new"]:
                key = kind if kind == "floor" else f"{kind}/{name}"
                value, res = _measure(kind, args.movie, trees[name])
                if key not in best or value < best[key][0]:
                    best[key] = (value, res)
    loads.append(open("/proc/loadavg").read().split()[0])
    print(f"{args.movie}; 1-min load average at each round's start and at the end: {' '.join(loads)}")
    floor = best["floor"][0]
    for key, (value, res) in sorted(best.items()):
        print(f"{key:12s} {value:6.3f} s  ratio {value / floor:5.2f}  peak RSS {res['peak_rss_bytes'] / 2**30:5.2f} GiB")
        stages = res.get("stages_s") or res.get("last_stages_s")
        if stages:
            print("      " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
