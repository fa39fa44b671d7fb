"""``framewatch watch [WATCH_DIR] [--out OUT] [--config FILE]``: the on-the-fly daemon (see pipeline.py)."""
from __future__ import annotations

import argparse

from framewatch.daemon.commands.daemon_setup import load_daemon_setup
from framewatch.daemon.config.processing_options import add_processing_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "watch",
        help="watch a directory, correct every complete movie and grow the tilt-series stacks",
        description="Watch WATCH_DIR (recursively; inotify plus a periodic scan) for detector movies; "
        "correct each once it is complete and append it to OUT/SERIES/SERIES.mrc (+ _EVN, _ODD), "
        "with the tilt table, and the drift log OUT/framewatch.jsonl. Resumes from the journal in STATE. "
        "WATCH_DIR and OUT may come from the configuration ([watch] dir, [output] dir). "
        "Signals: TERM/INT stop cleanly (exit 0), HUP reloads the configuration.",
    )
    p.add_argument("watch_dir", nargs="?", metavar="WATCH_DIR",
                   help="directory the acquisition software writes movies to (default: [watch] dir)")
    p.add_argument("--out", metavar="OUT", help="output directory (default: [output] dir)")
    p.add_argument("--state", metavar="STATE",
                   help="journal directory (default: [output] state_dir, else $STATE_DIRECTORY, "
                        "else ~/.local/state/framewatch/<OUT>)")
    p.add_argument("--config", metavar="FILE",
                   help="TOML configuration (every option: config.example.toml; check it with `framewatch check-config FILE`)")
    g = p.add_argument_group("watching and scheduling (override the configuration)")
    g.add_argument("--scan-period", type=float, metavar="S", help="seconds between full scans (default 3)")
    g.add_argument("--no-inotify", action="store_true", default=None, help="scan only (e.g. on network shares)")
    g.add_argument("--settle", type=float, metavar="S",
                   help="seconds a file must stay unchanged when no other signal says it is complete (default 10)")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes (default 1)")
    g.add_argument("--no-streaming", action="store_true", default=None,
                   help="correct a movie only once it is complete (default: a free worker follows it while it is written)")
    g.add_argument("--newest-first", type=int, metavar="N",
                   help="take the newest movie first when more than N wait (default: off)")
    g.add_argument("--series-idle", type=float, metavar="S",
                   help="a series with no new tilt for S seconds is complete (default 300)")
    g.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics here (default: [metrics] address; off)")
    g.add_argument("--dask-address", metavar="ADDRESS",
                   help="correct on the Dask cluster of this scheduler (tcp://HOST:8786): sets [scheduler] backend = \"dask\" "
                        "and [dask] address; needs pip install 'framewatch[dask]'")
    add_processing_arguments(p)
    p.set_defaults(func=run)


def load(args: argparse.Namespace):
    """The configuration file with the command line on top: (DaemonConfig, ProcessingOptions)."""
    return load_daemon_setup(
        args,
        watch_dir=args.watch_dir,
        require_directories=True,
        watch__scan_period_s=args.scan_period,
        watch__inotify=False if args.no_inotify else None,
        watch__settle_s=args.settle,
        scheduler__newest_first_backlog=args.newest_first,
        scheduler__streaming=False if args.no_streaming else None,
        series__idle_s=args.series_idle,
        metrics__address=args.metrics,
    )


def run(args: argparse.Namespace) -> int:
    from framewatch.daemon.service.daemon import Daemon  # here: the other commands do not need it (0.1 s)

    cfg, options = load(args)
    daemon = Daemon(cfg.watch.dir, cfg.output.dir, state_dir=cfg.output.state_dir or None, config=cfg, options=options,
                    reload=lambda: load(args), inbox=getattr(args, "signal_inbox", None))
    # handlers only record the signal; the main loop acts on it. From the command line they were
    # installed before the imports (cli._hold_stop_signals): a signal since then is still pending.
    daemon.inbox.install()
    try:
        return daemon.run()
    finally:
        daemon.inbox.restore()
