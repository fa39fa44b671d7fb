"""``framewatch correct``: correct movie files and write each one's sums and a JSON report.

One movie: ``--out PREFIX``. Several: ``--out-dir DIR`` (each movie's outputs are named after its
file name without the suffix). Kernels are compiled once per call, the next movie is read while
this one is corrected (:mod:`framewatch.core.movie_sequence`), and a movie's outputs are written
while the next one is corrected. A movie that fails gets one line on
stderr; the others are still corrected, and the exit status says that one failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framewatch.core.atomic_write import atomic_write_text
from framewatch.core.errors import FramewatchError
from framewatch.core.memory_reuse import keep_freed_memory
from framewatch.core.movie_io import open_movie, write_image_mrc
from framewatch.core.movie_io.registry import movie_suffixes
from framewatch.core.movie_sequence import MovieJob, correct_movie_files
from framewatch.core.result import result_summary
from framewatch.core.star import write_motion_star
from framewatch.daemon.config.processing_options import add_processing_arguments, processing_options_from_args
from framewatch.daemon.state.output_names import movie_stem
from framewatch.daemon.version import framewatch_version


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "correct",
        help="correct movies: gain, defects, alignment, dose-weighted sum and even/odd half sums",
        description="Correct movies and write, per movie, PREFIX.mrc (dose-weighted sum), PREFIX_EVN.mrc and "
        "PREFIX_ODD.mrc (even/odd 0-based frames, each dose-weighted with its own normalisation) and "
        "PREFIX.json (shifts, drift statistics, settings, replaced pixels, timings). With several movies the "
        "next is read while this one is corrected.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("movies", nargs="+", metavar="MOVIE", help=f"movie file(s) ({', '.join(movie_suffixes())})")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", metavar="PREFIX",
                     help="output prefix of one movie: writes PREFIX.mrc, PREFIX_EVN.mrc, PREFIX_ODD.mrc, PREFIX.json")
    out.add_argument("--out-dir", metavar="DIR",
                     help="output directory for any number of movies: DIR/NAME.mrc, ... with NAME the movie's file "
                          "name without its suffix")
    add_processing_arguments(p)
    p.add_argument("--unweighted", action="store_true", help="also write PREFIX_noDW.mrc, the plain aligned sum")
    p.add_argument("--star", action="store_true",
                   help="also write PREFIX.star, a RELION-style per-movie motion file (global shifts in unbinned "
                        "pixels relative to frame 1, hot pixels, and the local model when RELION's polynomial can "
                        "express it) for Bayesian polishing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    keep_freed_memory()  # frame-sized buffers are freed and allocated again frame after frame
    movies = [Path(m) for m in args.movies]
    prefixes = output_prefixes(movies, out=args.out, out_dir=args.out_dir)
    options = processing_options_from_args(args)
    movie_dose = options.dose_per_tilt_e_per_a2
    open_kwargs = options.reading_options(movie_dose)
    single = len(movies) == 1
    failed: list[FramewatchError | OSError] = []

    def failure(err: FramewatchError | OSError) -> None:
        if single:
            raise err
        failed.append(err)
        print(f"framewatch correct: error: {err}", file=sys.stderr)

    orientation = auto_gain_orientation(movies, options, open_kwargs=open_kwargs) if options.gain_orientation_auto else None
    jobs = []
    for movie in movies:
        try:
            with open_movie(movie, **open_kwargs) as reader:
                n_frames = reader.n_frames
        except (FramewatchError, OSError) as err:
            failure(err)
            continue
        settings = dataclasses.replace(options.settings(n_frames=n_frames), unweighted_sum=args.unweighted)
        if orientation is not None:
            settings = dataclasses.replace(settings, gain_orientation=orientation)
        jobs.append(MovieJob(path=movie, settings=settings, gain=options.gain, defects_path=options.defects,
                             movie_dose_e_per_a2=movie_dose))
    # Each movie's outputs are written (fsync'd: disk-bound) by a writer thread while the next movie is
    # corrected; at most one movie's sums wait to be written, and movies are reported in order.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="framewatch-write") as writer:
        writing: Future | None = None
        for outcome in correct_movie_files(jobs):
            print_paths(wait_written(writing, failure))
            writing = None
            if outcome.error is not None:
                failure(outcome.error)
            else:
                planned = plan_outputs(prefixes[outcome.job.path], outcome.result, movie=outcome.job.path,
                                       options=options, star=args.star)
                writing = writer.submit(planned.write)
            outcome = planned = None  # the writer holds the sums, each until it is on disk
        print_paths(wait_written(writing, failure))
    if failed:
        return max(getattr(err, "exit_status", 2) for err in failed)  # as a single failing movie (cli.main)
    return 0


def wait_written(writing: Future | None, failure) -> list[Path]:
    """Wait for a movie's outputs to be written and return their paths; on an error hand it to
    ``failure`` and return none."""
    if writing is None:
        return []
    try:
        return writing.result()
    except (FramewatchError, OSError) as err:
        failure(err)
        return []


def print_paths(paths: list[Path]) -> None:
    """The command's standard output: one written file per line, movie after movie."""
    for path in paths:
        print(path)


def output_prefixes(movies: list[Path], *, out: str | None, out_dir: str | None) -> dict[Path, Path]:
    """The output prefix of each movie: ``--out`` (one movie) or ``--out-dir/NAME`` (checked up front)."""
    if out is not None:
        if len(movies) > 1:
            raise FramewatchError(f"--out names the outputs of one movie, but {len(movies)} were given",
                                  fix="use --out-dir DIR for several movies")
        return {movies[0]: Path(out)}
    directory = Path(out_dir)
    if not directory.is_dir():
        raise FramewatchError("output directory does not exist", path=directory, fix="create it or choose another --out-dir")
    prefixes: dict[Path, Path] = {}
    for movie in movies:
        prefix = directory / movie_stem(movie.name)
        twin = next((m for m, p in prefixes.items() if p == prefix), None)
        if twin is not None:
            raise FramewatchError(f"{twin} and {movie} would both write {prefix}.mrc",
                                  fix="correct them in two calls with different --out-dir")
        prefixes[movie] = prefix
    return prefixes


@dataclass
class OutputPlan:
    """What to write for one movie: ``images`` (path -> float32 image, in order), the STAR file
    (its path and the result without its images), the JSON ``report`` (written last). :meth:`write`
    drops each image once it is on disk, so a writer thread holds a movie's sums no longer than that."""

    images: dict[Path, np.ndarray]
    pixel_size_a: float
    star_path: Path | None
    star_result: object
    star_kwargs: dict
    json_path: Path
    report: dict

    def write(self) -> list[Path]:
        """Write everything; all or nothing. Returns the paths written."""
        written: list[Path] = []
        try:
            if self.json_path.parent and not self.json_path.parent.exists():
                raise FramewatchError("output directory does not exist", path=self.json_path.parent,
                                      fix="create it or choose another --out")
            for path in list(self.images):
                write_image_mrc(path, self.images.pop(path), pixel_size_a=self.pixel_size_a)
                written.append(path)
            if self.star_path is not None:
                self.report["star"] = write_result_star(self.star_path, self.star_result, **self.star_kwargs)
                written.append(self.star_path)
            atomic_write_text(self.json_path, json.dumps(self.report, indent=1) + "\n")
            written.append(self.json_path)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        finally:
            self.images.clear()
        return written


def plan_outputs(prefix: Path, result, *, movie: Path, options, star: bool) -> OutputPlan:
    """The :class:`OutputPlan` of one movie's ``result``: PREFIX.mrc, _EVN, _ODD (_noDW), .star, .json."""
    images = {
        prefix.with_name(prefix.name + ".mrc"): result.dose_weighted_sum,
        prefix.with_name(prefix.name + "_EVN.mrc"): result.even_sum,
        prefix.with_name(prefix.name + "_ODD.mrc"): result.odd_sum,
    }
    if result.unweighted_sum is not None:
        images[prefix.with_name(prefix.name + "_noDW.mrc")] = result.unweighted_sum
    report = result_summary(result)
    report.update(
        framewatch_version=framewatch_version(),
        movie=str(movie.resolve()),
        gain=None if options.gain is None else str(Path(options.gain).resolve()),
        defects=None if options.defects is None else str(Path(options.defects).resolve()),
        outputs={"sum": str(prefix) + ".mrc", "even": str(prefix) + "_EVN.mrc", "odd": str(prefix) + "_ODD.mrc"},
    )
    return OutputPlan(
        images=images,
        pixel_size_a=result.pixel_size_a,
        star_path=prefix.with_name(prefix.name + ".star") if star else None,
        star_result=dataclasses.replace(result, dose_weighted_sum=None, even_sum=None, odd_sum=None,
                                        unweighted_sum=None) if star else None,
        star_kwargs=dict(image_shape=result.dose_weighted_sum.shape, movie=movie, gain=options.gain,
                         defects=options.defects),
        json_path=prefix.with_name(prefix.name + ".json"),
        report=report,
    )


def write_result_star(path: Path, result, *, image_shape: tuple[int, int], movie: Path, gain, defects) -> dict:
    """The per-movie RELION motion STAR of ``result`` (its images are not used; ``image_shape``
    ``(ny, nx)`` of its sums; see framewatch.core.star for conventions)."""
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
        image_shape=image_shape,
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


def auto_gain_orientation(movies: list[Path], options, *, open_kwargs: dict, max_movies: int = 5):
    """Choose the gain orientation from the raw sums of up to ``max_movies`` of the movies, or stop
    with the reason (one orientation for the whole call: the movies come from one camera)."""
    from framewatch.core.gain import read_gain
    from framewatch.core.gain_auto import OrientationAccumulator, orientation_hint_from_movie

    if options.gain is None:
        raise FramewatchError("--gain-orientation auto needs a gain reference", fix="give --gain FILE")
    used = movies[:max_movies]
    acc = OrientationAccumulator(max_movies=len(used))
    for movie in used:
        acc.add(movie, **open_kwargs)
    choice = acc.choose(
        read_gain(options.gain), hint=orientation_hint_from_movie(used[0]), invert=options.gain_orientation.invert,
        allow_resample=True,
    )
    if not choice.accepted:
        raise FramewatchError(f"automatic gain orientation refused: {choice.reason}", path=used[0])
    o = choice.orientation
    print(f"gain orientation: rot {o.rotate_ccw_90} flip {o.flip} (margin {choice.margin:.1f} standard errors, "
          f"{len(used)} movie(s))", file=sys.stderr)
    return o
