"""``framewatch plot OUT/SERIES``: draw a series' drift overview on demand (see plots.py)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw the drift overview PNG of a tilt series from its tilt table and the drift log",
        description="Draw OUT/SERIES/SERIES.drift.png (the daemon redraws it after every tilt): per-tilt total, "
        "early and late motion against tilt angle and acquisition order with the thresholds, the frame "
        "trajectories of the latest tilts, the largest frame jump and the FRC crossing. Reads "
        "SERIES.tilts.tsv and the drift log framewatch.jsonl above it.",
    )
    p.add_argument("series_dir", metavar="OUT/SERIES", help="a series directory written by `framewatch watch`")
    p.add_argument("-o", "--output", metavar="PNG", help="where to write the PNG (default OUT/SERIES/SERIES.drift.png)")
    p.add_argument("--config", metavar="FILE", help="take the thresholds to draw from this configuration's [thresholds]")
    p.add_argument("--log", metavar="JSONL", help="the drift log (default: framewatch.jsonl above the series directory)")
    p.add_argument("--latest", type=int, default=5, metavar="N", help="trajectories of the latest N tilts (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from framewatch.daemon.config.configuration import Thresholds, load_config
    from framewatch.daemon.outputs.plots import load_series, plot_path, render_series_plot

    thresholds = load_config(args.config).thresholds if args.config else Thresholds()
    data = load_series(args.series_dir, log_path=args.log)
    out = Path(args.output) if args.output else plot_path(args.series_dir)
    render_series_plot(data, out, thresholds=thresholds, latest=max(0, args.latest))
    print(f"{out}  ({len(data.records)} tilts, trajectories of {min(len(data.trajectories), max(0, args.latest))})")
    return 0
