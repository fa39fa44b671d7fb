"""``framewatch correct``: correct one movie file and write its sums and a JSON report."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from framewatch.core.correct import correct_movie_file
from framewatch.core.errors import FramewatchError
from framewatch.core.memory_reuse import keep_freed_memory
from framewatch.core.movie_io import open_movie, write_image_mrc
from framewatch.core.result import result_summary
from framewatch.core.star import write_motion_star
from framewatch.daemon.config.processing_options import add_processing_arguments, processing_options_from_args
from framewatch.daemon.version import framewatch_version


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "correct",
        help="correct one movie: gain, defects, alignment, dose-weighted sum and even/odd half sums",
        description="Correct one movie and write PREFIX.mrc (dose-weighted sum), PREFIX_EVN.mrc and "
        "PREFIX_ODD.mrc (even/odd 0-based frames, each dose-weighted with its own normalisation) and "
        "PREFIX.json (shifts, drift statistics, settings, replaced pixels, timings).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("movie", metavar="MOVIE", help="movie file (.mrc, .mrcs, .tif, .tiff)")
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="output prefix: writes PREFIX.mrc, PREFIX_EVN.mrc, PREFIX_ODD.mrc, PREFIX.json")
    add_processing_arguments(p)
    p.add_argument("--unweighted", action="store_true", help="also write PREFIX_noDW.mrc, the plain aligned sum")
    p.add_argument("--star", action="store_true",
                   help="also write PREFIX.star, a RELION-style per-movie motion file (global shifts in unbinned "
                        "pixels relative to frame 1, hot pixels, and the local model when RELION's polynomial can "
                        "express it) for Bayesian polishing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    keep_freed_memory()  # frame-sized buffers are freed and allocated again frame after frame
    movie = Path(args.movie)
    options = processing_options_from_args(args)
    movie_dose = options.dose_per_tilt_e_per_a2
    open_kwargs = options.reading_options(movie_dose)
    with open_movie(movie, **open_kwargs) as reader:
        n_frames = reader.n_frames
    settings = dataclasses.replace(options.settings(n_frames=n_frames), unweighted_sum=args.unweighted)
    if options.gain_orientation_auto:
        settings = dataclasses.replace(
            settings, gain_orientation=auto_gain_orientation(movie, options, open_kwargs=open_kwargs)
        )
    result = correct_movie_file(
        movie, settings=settings, gain=options.gain, defects_path=options.defects, movie_dose_e_per_a2=movie_dose
    )
    prefix = Path(args.out)
    outputs = {
        prefix.with_name(prefix.name + ".mrc"): result.dose_weighted_sum,
        prefix.with_name(prefix.name + "_EVN.mrc"): result.even_sum,
        prefix.with_name(prefix.name + "_ODD.mrc"): result.odd_sum,
    }
    if result.unweighted_sum is not None:
        outputs[prefix.with_name(prefix.name + "_noDW.mrc")] = result.unweighted_sum
    report = result_summary(result)
    star_path = prefix.with_name(prefix.name + ".star") if args.star else None
    report.update(
        framewatch_version=framewatch_version(),
        movie=str(movie.resolve()),
        gain=None if options.gain is None else str(Path(options.gain).resolve()),
        defects=None if options.defects is None else str(Path(options.defects).resolve()),
        outputs={"sum": str(prefix) + ".mrc", "even": str(prefix) + "_EVN.mrc", "odd": str(prefix) + "_ODD.mrc"},
    )
    written: list[Path] = []
    try:
        if prefix.parent and not prefix.parent.exists():
            raise FramewatchError("output directory does not exist", path=prefix.parent, fix="create it or choose another --out")
        for path, image in outputs.items():
            write_image_mrc(path, image, pixel_size_a=result.pixel_size_a)
            written.append(path)
        if star_path is not None:
            report["star"] = write_result_star(star_path, result, movie=movie, gain=options.gain, defects=options.defects)
            written.append(star_path)
        json_path = prefix.with_name(prefix.name + ".json")
        tmp = json_path.with_name(json_path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1) + "\n")
        os.replace(tmp, json_path)
        written.append(json_path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for path in written:
        print(path)
    return 0


def write_result_star(path: Path, result, *, movie: Path, gain, defects) -> dict:
    """The per-movie RELION motion STAR of ``result`` (see framewatch.core.star for conventions)."""
    local_fn = None
    lm = result.local_motion
    if lm is not None and lm.model is not None:
        model = lm.model

        def relative_to_frame_0(x, y, t):  # RELION's local model is relative to frame 0, ours to the middle
            dx, dy = model.displacement(x, y, t)
            dx0, dy0 = model.displacement(x, y, np.zeros_like(np.asarray(t, dtype=float)))
            return dx - dx0, dy - dy0

        local_fn = relative_to_frame_0

    cfg = result.settings
    return write_motion_star(
        path,
        shifts_px=result.shifts_px,
        image_shape=result.dose_weighted_sum.shape,
        movie_name=str(movie),
        pixel_size_a=cfg.pixel_size_a,
        dose_per_frame_e_per_a2=cfg.dose_per_frame_e_per_a2,
        prior_dose_e_per_a2=cfg.prior_dose_e_per_a2,
        voltage_kv=cfg.voltage_kv,
        gain_name=None if gain is None else str(gain),
        defect_file=None if defects is None else str(defects),
        hot_pixels_xy=result.replaced_pixels,
        local_displacement=local_fn,
    )


def auto_gain_orientation(movie: Path, options, *, open_kwargs: dict):
    """Choose the gain orientation from this movie's raw sum, or stop with the reason."""
    from framewatch.core.gain import read_gain
    from framewatch.core.gain_auto import OrientationAccumulator, orientation_hint_from_movie

    if options.gain is None:
        raise FramewatchError("--gain-orientation auto needs a gain reference", fix="give --gain FILE")
    acc = OrientationAccumulator(max_movies=1)
    acc.add(movie, **open_kwargs)
    choice = acc.choose(
        read_gain(options.gain), hint=orientation_hint_from_movie(movie), invert=options.gain_orientation.invert,
        allow_resample=True,
    )
    if not choice.accepted:
        raise FramewatchError(f"automatic gain orientation refused: {choice.reason}", path=movie)
    o = choice.orientation
    print(f"gain orientation: rot {o.rotate_ccw_90} flip {o.flip} (margin {choice.margin:.1f} standard errors)",
          file=sys.stderr)
    return o
