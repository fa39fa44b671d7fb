#!/usr/bin/env python
"""Run the torture run of `framewatch watch` and print its summary.

    python -m tests.torture --seed 7 --restarts 20 --profile long      (from the repository's top)
    tests/torture/run_torture.py --seed 7 --restarts 20 --profile long

``--profile short`` is the version the default test run uses (< 2 minutes); ``long`` replays four
series of 14 tilts with every fault twice and at least ``--restarts`` SIGKILLs. The exit status is
0 when every check passed. Root is needed for the tmpfs output disk and the permission fault (see
torture.py for what is done otherwise).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.torture.torture import PROFILES, run_torture
else:
    from .torture import PROFILES, run_torture


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.torture", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1, help="fixes the plan: series, faults, kill delays (default 1)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="long")
    p.add_argument("--restarts", type=int, help="at least this many SIGKILL restarts (default: the profile's)")
    p.add_argument("--dir", type=Path, help="work here (default: a temporary directory, removed unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the working directory")
    p.add_argument("--disk-method", choices=["tmpfs", "rlimit"],
                   help="how to make the output disk full (default: tmpfs, else rlimit)")
    p.add_argument("--json", type=Path, help="also write the summary as JSON here")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)
    base = args.dir or Path(tempfile.mkdtemp(prefix="framewatch-torture-"))
    base.mkdir(parents=True, exist_ok=True)
    log = (lambda *_: None) if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        summary = run_torture(base, seed=args.seed, profile=args.profile, restarts=args.restarts, log=log,
                              disk_method=args.disk_method, save_outputs=bool(args.keep or args.dir))
    finally:
        if not (args.keep or args.dir):
            shutil.rmtree(base, ignore_errors=True)
    print(summary.text())
    if args.keep or args.dir:
        print(f"working directory: {base}")
    if args.json:
        args.json.write_text(json.dumps(summary.as_dict(), indent=1, default=str))
    return 0 if not summary.problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
