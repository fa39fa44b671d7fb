"""The set-up shared by the two daemon commands, ``watch`` and ``batch``: the configuration file with
the command line on top, the ``[series]`` patterns checked, the processing options merged."""
from __future__ import annotations

import argparse

from framewatch.core.errors import SettingsError
from framewatch.daemon.config.configuration import DaemonConfig, load_config, require_dirs, with_overrides
from framewatch.daemon.config.processing_options import ProcessingOptions, processing_options_from_args
from framewatch.daemon.intake.naming import patterns_from_config

__all__ = ["check_series_patterns", "load_daemon_setup"]


def load_daemon_setup(args: argparse.Namespace, *, watch_dir: str | None, require_directories: bool,
                      **overrides) -> tuple[DaemonConfig, ProcessingOptions]:
    """(DaemonConfig, ProcessingOptions) of a daemon command: ``args.config`` read, then the flags
    both commands share (``--out``, ``--state``, ``--workers``, ``--dask-address``) and
    ``overrides`` (``table__key=value``, None = not given) over it; the watch and output
    directories required when ``require_directories``; the ``[series]`` patterns compiled."""
    cfg = load_config(args.config)
    cfg = with_overrides(
        cfg,
        watch__dir=watch_dir,
        output__dir=args.out,
        output__state_dir=args.state,
        scheduler__workers=args.workers,
        dask__address=args.dask_address,
        scheduler__backend="dask" if args.dask_address else None,
        **overrides,
    )
    if require_directories:
        require_dirs(cfg)
    check_series_patterns(cfg)  # a bad pattern stops here, naming the file
    return cfg, processing_options_from_args(args, cfg.raw)


def check_series_patterns(cfg: DaemonConfig) -> None:
    """``[series] patterns`` as start-up compiles them (bad regex, index_base, non-table entry):
    a SettingsError naming the file, for `watch`, SIGHUP and `check-config` alike."""
    try:
        patterns_from_config(list(cfg.series.patterns))
    except SettingsError as err:
        raise SettingsError(err.what, path=cfg.source, fix=err.fix) from None
