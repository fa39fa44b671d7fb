"""``framewatch batch DIR --out OUT``: correct every movie already under DIR (see service/batch.py)."""
from __future__ import annotations

import argparse
import os
import sys

from framewatch.daemon.commands.daemon_setup import load_daemon_setup
from framewatch.daemon.config.processing_options import add_processing_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="correct every movie already under DIR (a finished session), then stop",
        description="Process every movie already under DIR the way `framewatch watch` would (same grouping, prior dose, "
        "outputs, journal and settings hash): a second run resumes, a changed setting writes a new output set. "
        "Shows a progress bar with ETA on a terminal and a summary at the end. Exit status 0 when every movie is done, "
        "1 when some failed (listed). Corrects in local worker processes, or on a Dask cluster with --dask-address "
        "or [scheduler] backend = \"dask\".",
    )
    p.add_argument("movie_dir", metavar="DIR", help="the session's directory (searched recursively)")
    p.add_argument("--out", metavar="OUT", required=True, help="output directory")
    p.add_argument("--state", metavar="STATE", help="journal directory (default: [output] state_dir, else $STATE_DIRECTORY, "
                   "else ~/.local/state/framewatch/<OUT>)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration ([processing], [series], [scheduler], [dask] ...)")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: [scheduler] workers, 1)")
    p.add_argument("--dask-address", metavar="ADDRESS", help="correct on the Dask cluster of this scheduler (tcp://HOST:8786)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    add_processing_arguments(p)
    p.set_defaults(func=run)


def load(args: argparse.Namespace):
    """The configuration file with the command line on top, as `watch` reads it: (batch config, ProcessingOptions)."""
    from framewatch.daemon.service.batch import batch_config

    cfg, options = load_daemon_setup(args, watch_dir=args.movie_dir, require_directories=False)
    return batch_config(cfg), options


def run(args: argparse.Namespace) -> int:
    # imported here: the daemon's modules cost the other commands 0.1 s of start-up
    from framewatch.daemon.service.batch import BatchRun, Progress, summary_text

    cfg, options = load(args)
    tty = sys.stderr.isatty() and not args.no_progress
    # on a terminal the progress bar replaces the event lines (they are all in OUT/framewatch.jsonl)
    sink = open(os.devnull, "w") if tty else None  # noqa: SIM115 - closed below
    try:
        batch = BatchRun(cfg.watch.dir, cfg.output.dir, state_dir=cfg.output.state_dir or None, config=cfg, options=options,
                         stdout=sink, progress=Progress(sys.stderr, enabled=tty))
        batch.inbox.install()  # Ctrl-C / SIGTERM: stop cleanly; a second run resumes
        try:
            rc = batch.run()
        finally:
            batch.inbox.restore()
    finally:
        if sink is not None:
            sink.close()
    if batch.summary is None:
        print(f"framewatch batch: stopped before every movie was processed; run it again to resume (outputs in {batch.out_dir})",
              file=sys.stderr)
        return rc
    print(summary_text(batch.summary, batch.set_dir), file=sys.stderr)
    return rc
