"""The ``framewatch`` command line: one subcommand module each, registered here."""
from __future__ import annotations

import argparse
import importlib
import sys

from framewatch.core.errors import FramewatchError
from framewatch.daemon.version import framewatch_version

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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FramewatchError as err:
        print(f"framewatch {args.command}: error: {err}", file=sys.stderr)
        return getattr(err, "exit_status", 2)  # 2: usage or configuration; 1: the environment (e.g. OUT not writable)
    except KeyboardInterrupt:
        print(f"framewatch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
