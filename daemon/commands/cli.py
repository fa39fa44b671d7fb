"""The ``framewatch`` command line: one subcommand module each, registered here."""
from __future__ import annotations

import argparse
import importlib
import sys

from framewatch.daemon.version import framewatch_version

# framewatch.core (numpy, scipy, numba) is imported only in main(), after a daemon's stop signals
# are held: importing it takes a second or more on a loaded machine.

# Each module has ``register(subparsers)`` which adds its parser and sets ``func(args) -> int``.
COMMAND_MODULES = (
    "framewatch.daemon.commands.simulate",
    "framewatch.daemon.commands.correct",
    "framewatch.daemon.commands.watch",
    "framewatch.daemon.commands.batch",
    "framewatch.daemon.commands.tail",
    "framewatch.daemon.commands.demo",
    "framewatch.daemon.commands.check_config",
    "framewatch.daemon.commands.plot",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framewatch",
        description="On-the-fly motion correction and tilt-series assembly for cryo-EM detector movies.",
    )
    parser.add_argument("--version", action="version", version=f"framewatch {framewatch_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    early_inbox = _hold_stop_signals(sys.argv[1:] if argv is None else argv)
    from framewatch.core.errors import FramewatchError

    parser = build_parser()
    args = parser.parse_args(argv)
    if early_inbox is not None:
        args.signal_inbox = early_inbox
    try:
        return int(args.func(args) or 0)
    except FramewatchError as err:
        print(f"framewatch {args.command}: error: {err}", file=sys.stderr)
        return getattr(err, "exit_status", 2)  # 2: usage or configuration; 1: the environment (e.g. OUT not writable)
    except KeyboardInterrupt:
        print(f"framewatch {args.command}: interrupted", file=sys.stderr)
        return 130


def _hold_stop_signals(argv: list[str]):
    """For ``watch``: a :class:`SignalInbox` installed before anything heavy is imported, so a
    SIGTERM or SIGINT during the imports and set-up is recorded and the daemon stops cleanly (exit 0)
    once its main loop runs, instead of the process ending by the signal. ``None`` for other commands
    (their Ctrl-C stays a KeyboardInterrupt)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command != "watch":
        return None
    from framewatch.daemon.service.lifecycle import SignalInbox

    return SignalInbox().install()


if __name__ == "__main__":
    sys.exit(main())
