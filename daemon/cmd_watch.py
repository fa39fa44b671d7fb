"""``framewatch watch WATCH_DIR --out OUT``: the on-the-fly daemon (see pipeline.py)."""
from __future__ import annotations

import argparse
import signal

from .config import load_config, with_overrides
from .pipeline import Daemon
from .processing_options import add_processing_arguments, processing_options_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "watch",
        help="watch a directory, correct every complete movie and grow the tilt-series stacks",
        description="Watch WATCH_DIR (recursively; inotify plus a periodic scan) for detector movies; "
        "correct each once it is complete and append it to OUT/SERIES/SERIES.mrc (+ _EVN, _ODD), "
        "with the tilt table, and the drift log OUT/framewatch.jsonl. Resumes from the journal in STATE.",
    )
    p.add_argument("watch_dir", metavar="WATCH_DIR", help="directory the acquisition software writes movies to")
    p.add_argument("--out", required=True, metavar="OUT", help="output directory")
    p.add_argument("--state", metavar="STATE", help="journal directory (default: $STATE_DIRECTORY, else ~/.local/state/framewatch/<OUT>)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration ([processing], [watch], [series], [scheduler], [thresholds])")
    g = p.add_argument_group("watching and scheduling (override the configuration)")
    g.add_argument("--scan-period", type=float, metavar="S", help="seconds between full scans (default 3)")
    g.add_argument("--no-inotify", action="store_true", default=None, help="scan only (e.g. on network shares)")
    g.add_argument("--settle", type=float, metavar="S", help="seconds a file must stay unchanged when no other signal says it is complete (default 10)")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes (default 1)")
    g.add_argument("--newest-first", type=int, metavar="N", help="take the newest movie first when more than N wait (default: off)")
    g.add_argument("--series-idle", type=float, metavar="S", help="a series with no new tilt for S seconds is complete (default 300)")
    add_processing_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    cfg = with_overrides(
        cfg,
        watch__scan_period_s=args.scan_period,
        watch__inotify=False if args.no_inotify else None,
        watch__settle_s=args.settle,
        scheduler__workers=args.workers,
        scheduler__newest_first_backlog=args.newest_first,
        series__idle_s=args.series_idle,
    )
    options = processing_options_from_args(args, cfg.raw)
    daemon = Daemon(args.watch_dir, args.out, state_dir=args.state, config=cfg, options=options)

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if daemon.stop_event.is_set():
            raise KeyboardInterrupt
        daemon.stop(name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return daemon.run()
