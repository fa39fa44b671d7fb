"""``framewatch simulate``: write a synthetic movie with its gain, ideal image and ground truth."""
from __future__ import annotations

import argparse

from framewatch.core.errors import SettingsError
from framewatch.core.settings import GainOrientation
from framewatch.core.simulate import SimulationSpec, simulate_movie, write_simulation

DEFAULT_DOSE_PER_TILT_E_PER_A2 = 3.0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="write a synthetic movie with exact ground truth (for tests, benchmarks and demos)",
        description="Simulate a detector movie of a moving specimen and write PREFIX.tif (or .mrc), "
        "PREFIX_gain.mrc (multiplicative gain reference, stored so that --gain-rot/--gain-flip/"
        "--gain-invert recover it), PREFIX_ideal.mrc (noiseless expected counts per frame at the "
        "middle frame's specimen position) and PREFIX_truth.json (shifts, doses, defects, model).",
    )
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix (folders are created)")
    p.add_argument("--size", type=int, nargs=2, default=(1024, 1024), metavar=("NY", "NX"),
                   help="frame size in pixels: rows, columns (default 1024 1024)")
    p.add_argument("--frames", type=int, default=10, metavar="N", help="number of frames (default %(default)s)")
    p.add_argument("--pixel-size-a", type=float, default=1.5, metavar="A",
                   help="pixel size in Angstrom per pixel (default %(default)s)")
    dose = p.add_mutually_exclusive_group()
    dose.add_argument("--dose-per-frame", type=float, metavar="E", help="dose per frame in e/A^2")
    dose.add_argument(
        "--dose-per-tilt",
        type=float,
        metavar="E",
        help=f"dose of the whole movie in e/A^2, divided by the number of frames (default {DEFAULT_DOSE_PER_TILT_E_PER_A2})",
    )
    p.add_argument("--prior-dose", type=float, default=0.0, metavar="E",
                   help="dose received before this movie in e/A^2, recorded in the truth (default %(default)s)")
    p.add_argument(
        "--trajectory",
        choices=("drift_jump", "subpixel", "none"),
        default="drift_jump",
        help="whole-frame motion: an early jump plus linear drift (pixels), a sub-pixel wobble (< 0.9 px), "
             "or none (default %(default)s)",
    )
    p.add_argument("--jump-px", type=float, default=2.5, metavar="PX",
                   help="drift_jump: size of the early jump in pixels (default %(default)s)")
    p.add_argument("--drift-px-per-frame", type=float, default=0.4, metavar="PX",
                   help="drift_jump: linear drift in pixels per frame (default %(default)s)")
    p.add_argument("--local-amplitude-px", type=float, default=0.0, metavar="PX",
                   help="largest local (non-rigid) displacement at the last frame, in pixels (default %(default)s)")
    p.add_argument("--contrast-rms", type=float, default=0.15, metavar="C",
                   help="rms contrast of the specimen transmission, dimensionless (default %(default)s)")
    p.add_argument("--gain-rms", type=float, default=0.05, metavar="R",
                   help="rms of the pixel-to-pixel detector sensitivity, a fraction of 1 (default %(default)s)")
    p.add_argument("--format", choices=("tiff", "mrc"), default="tiff", help="movie file format (default %(default)s)")
    p.add_argument("--mrc-mode", type=int, default=None, metavar="MODE",
                   help="MRC mode of the movie (default: from the counts' dtype)")
    p.add_argument("--tiff-compression", choices=("lzw", "zip", "none"), default="lzw",
                   help="TIFF compression (default %(default)s)")
    p.add_argument("--dtype", choices=("uint8", "uint16", "float32"), default="uint8",
                   help="dtype of the counts per pixel; uint8 counts above 255 are clipped (default %(default)s)")
    p.add_argument("--gain-rot", type=int, choices=(0, 1, 2, 3), default=0, metavar="K",
                   help="store the gain so that rotating it K x 90 degrees counter-clockwise matches the movie "
                        "(default %(default)s)")
    p.add_argument("--gain-flip", choices=("none", "x", "y"), default="none",
                   help="store the gain so that flipping it (after rotating) matches the movie: none, x (left-right), "
                        "y (upside down) (default %(default)s)")
    p.add_argument("--gain-invert", action="store_true", help="store the gain inverted (count-type, 1/gain)")
    p.add_argument("--hot-pixels", type=int, default=0, metavar="N",
                   help="number of hot pixels, which get extra Poisson counts every frame (default %(default)s)")
    p.add_argument("--hot-counts", type=float, default=5.0, metavar="COUNTS",
                   help="mean extra counts per frame of a hot pixel (default %(default)s)")
    p.add_argument("--dead-column", type=int, default=None, metavar="X",
                   help="0-based column (pixels) that reads 0 in every frame (default: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed and options, same movie (default %(default)s)")
    p.set_defaults(func=run)


def spec_from_args(args: argparse.Namespace) -> SimulationSpec:
    """The SimulationSpec an argument namespace asks for (doses: per frame = per tilt / frames)."""
    if args.frames < 1:
        raise SettingsError(f"--frames {args.frames}", fix="simulate at least one frame")
    if args.dose_per_frame is not None:
        dose_per_frame = args.dose_per_frame
    else:
        per_tilt = DEFAULT_DOSE_PER_TILT_E_PER_A2 if args.dose_per_tilt is None else args.dose_per_tilt
        dose_per_frame = per_tilt / args.frames
    ny, nx = args.size
    return SimulationSpec(
        ny=ny,
        nx=nx,
        n_frames=args.frames,
        pixel_size_a=args.pixel_size_a,
        dose_per_frame_e_per_a2=dose_per_frame,
        prior_dose_e_per_a2=args.prior_dose,
        trajectory=args.trajectory,
        jump_px=args.jump_px,
        drift_px_per_frame=args.drift_px_per_frame,
        local_amplitude_px=args.local_amplitude_px,
        contrast_rms=args.contrast_rms,
        gain_rms=args.gain_rms,
        n_hot_pixels=args.hot_pixels,
        hot_counts_per_frame=args.hot_counts,
        dead_column=args.dead_column,
        dtype=args.dtype,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    orientation = GainOrientation(rotate_ccw_90=args.gain_rot, flip=args.gain_flip, invert=args.gain_invert)
    sim = simulate_movie(spec)
    paths = write_simulation(
        sim,
        args.out,
        movie_format=args.format,
        mrc_mode=args.mrc_mode,
        tiff_compression=args.tiff_compression,
        gain_orientation=orientation,
    )
    for path in paths.values():
        print(path)
    return 0
