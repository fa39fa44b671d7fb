"""``framewatch check-config FILE``: validate a configuration without starting anything."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="validate a configuration file (keys, types, required values, paths) without starting",
        description="Read FILE as `framewatch watch --config FILE` would and report the first problem, naming "
        "the key (exit status 2), or summarise the configuration (exit status 0). Every option is documented "
        "in config.example.toml.",
    )
    p.add_argument("file", metavar="FILE", help="TOML configuration")
    p.add_argument("--no-dirs", action="store_true",
                   help="do not require [watch] dir and [output] dir (they will be given on the command line)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from framewatch.daemon.commands.daemon_setup import check_series_patterns
    from framewatch.daemon.config.configuration import load_config, require_dirs
    from framewatch.daemon.config.directory_roles import check_directory_roles
    from framewatch.daemon.config.processing_options import add_processing_arguments, processing_options_from_args

    cfg = load_config(args.file)
    if not args.no_dirs:
        require_dirs(cfg)
        check_directory_roles(watch_dir=Path(cfg.watch.dir).expanduser(), out_dir=Path(cfg.output.dir).expanduser(),
                              state_dir=Path(cfg.output.state_dir).expanduser() if cfg.output.state_dir else None)
    check_series_patterns(cfg)
    # the [processing] table the way `watch` reads it (no command-line options given)
    blank = argparse.ArgumentParser(add_help=False)
    add_processing_arguments(blank)
    opts = processing_options_from_args(blank.parse_args([]), cfg.raw)
    print(f"{args.file}: OK")
    print(f"  watch {cfg.watch.dir or '(from the command line)'} -> {cfg.output.dir or '(from the command line)'}"
          f"; state {cfg.output.state_dir or '(default)'}")
    print(f"  processing: pixel size {opts.pixel_size_a or '(from the mdoc)'} A, patches {_patches_text(opts.patches)}, "
          f"gain {opts.gain or 'none'}; settings hash {opts.settings_hash()}")
    o = cfg.output
    axis = "from the mdoc title only" if o.tilt_axis_deg is None else f"{o.tilt_axis_deg:g} deg unless the mdoc title has one"
    print(f"  outputs: per-tilt images {'on' if o.per_tilt_images else 'off'}; RELION project {o.relion_project_dir or '(OUT)'}; "
          f"Cs {o.spherical_aberration_mm:g} mm, amplitude contrast {o.amplitude_contrast:g}, hand {o.tomo_hand}, "
          f"tilt axis {axis}, optics group {o.optics_group or '(series name)'}")
    print(f"  workers {cfg.scheduler.workers}; metrics {cfg.metrics.address or 'off'}; "
          f"plots {'on' if cfg.plots.enabled else 'off'}; "
          f"disk warn < {cfg.disk.warn_below_gb:g} GB, floor {cfg.disk.floor_gb:g} GB")
    return 0


def _patches_text(patches) -> str:
    return patches if isinstance(patches, str) else f"{patches[0]} x {patches[1]}"
