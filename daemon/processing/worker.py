"""What runs in a worker process: correct one movie and hand back the sums and statistics.

Workers are started with the ``spawn`` method (the daemon has threads), die with the daemon
(``PR_SET_PDEATHSIG``), ignore SIGINT (the daemon drains them), and compile the numba kernels on a
tiny movie before the daemon reports ready. Errors come back as data, never as an exception that
might not pickle: a :class:`CorrectionOutcome` with ``error``, ``kind`` and ``retryable``. Retryable errors are
those of reading the movie (it may still be changing); settings, gain and defect errors are not.
"""
from __future__ import annotations

import ctypes
import os
import signal
import time

import numpy as np

from framewatch.daemon.state import faults
from framewatch.daemon.state.records import CorrectionJob, CorrectionOutcome, DefectMask

_PR_SET_PDEATHSIG = 1
_gain_cache: dict = {}


def init_worker(parent_pid: int, pid_queue=None) -> None:
    """Set up a worker process; it reports ``os.getpid()`` on ``pid_queue`` (a multiprocessing
    SimpleQueue) so the pool knows its processes without reading executor internals."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:  # not Linux
        pass
    if os.getppid() != parent_pid:  # the daemon died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if pid_queue is not None:
        pid_queue.put(os.getpid())


def warm_up(tmp_dir: str | None = None, patches: tuple[int, int] = (2, 2), full_size=None) -> dict:
    """Compile (or load from numba's cache) every kernel of the engine on tiny synthetic movies
    (warmup.py), then, given ``full_size`` (warmup.FullSizeWarmup), correct one synthetic movie of
    the size the daemon last saw; returns the report as a dict (``warmup_s``, ``steps_s``, the cache
    directory, ``pid``; ``full_size_error`` when that movie could not be corrected)."""
    from framewatch.daemon.processing.warmup import warm_full_size
    from framewatch.daemon.processing.warmup import warm_up as run

    report = run(patches=patches).as_dict()
    if full_size is not None:
        t = time.perf_counter()
        try:
            warm_full_size(full_size)
        except Exception as err:  # noqa: BLE001 - e.g. no memory for it now: the kernels are warm all the same
            report["full_size_error"] = f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - t
        report["steps_s"][full_size.label] = round(seconds, 3)
        report["warmup_s"] = round(report["warmup_s"] + seconds, 3)
    report["pid"] = os.getpid()
    return report


def oriented_gain(path, orientation, shape, movie):
    """Gain oriented for the movie, cached by file identity (a new gain file is re-read)."""
    from framewatch.core.gain import load_gain_for_movie

    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, orientation, tuple(shape))
    g = _gain_cache.get(key)
    if g is None:
        _gain_cache.clear()
        g = load_gain_for_movie(path, orientation=orientation, movie_shape=shape, movie_path=movie, allow_resample=True)
        _gain_cache[key] = g
    return g


def correct(job: CorrectionJob) -> CorrectionOutcome:
    """Correct ``job.movie`` with its settings, gain and defects; the outcome holds the three sums
    (``(ny, nx)`` float32), the statistics and the frame shifts, or the error as data. A streaming
    job (``job.stream``) follows the movie while it is written (stream_worker.py)."""
    if job.stream is not None:
        from framewatch.daemon.processing.stream_worker import stream

        return stream(job)
    return correct_complete(job)


def correct_complete(job: CorrectionJob) -> CorrectionOutcome:
    """Correct a movie found complete: read every frame of the file, then correct it."""
    from framewatch.core.correct import correct_movie_file, movie_reading_options
    from framewatch.core.movie_io import open_movie

    t0 = time.perf_counter()
    movie = job.movie
    settings = job.settings
    try:
        movie_dose = job.movie_dose_e_per_a2  # EER: the dose of the whole movie
        with open_movie(movie, **movie_reading_options(settings, movie_dose)) as reader:
            n_frames = getattr(reader, "n_raw_frames", reader.n_frames)  # EER: the raw frames (TIFF pages)
            shape = reader.shape  # the structure only: every frame is decoded once, by the correction
            faults.checkpoint("worker_reading", movie)
        if job.expected_frames is not None and n_frames != job.expected_frames:
            return CorrectionOutcome.failed(job, f"the movie now has {n_frames} frames, {job.expected_frames} when it was "
                                                 "found complete", "FrameCountChanged", retryable=True)
        gain = None
        if job.gain:
            gain = oriented_gain(job.gain, settings.gain_orientation, shape, movie)
        result = correct_movie_file(movie, settings=settings, gain=gain, defects_path=job.defects,
                                    movie_dose_e_per_a2=movie_dose)
    except Exception as err:  # noqa: BLE001 - a decoder error etc.: report, never kill the worker
        return failure(job, err)
    faults.checkpoint("worker_corrected")
    return outcome(job, result, n_raw_frames=n_frames, started=t0)


def where() -> str:
    """Where a correction runs, as outcomes say it: ``local:PID``."""
    return f"local:{os.getpid()}"


def failure(job: CorrectionJob, err: Exception) -> CorrectionOutcome:
    """The outcome of a correction that raised ``err``: retryable when reading again may succeed
    (the file may still be changing); settings, gain, defect and content errors fail again."""
    from framewatch.core.errors import DefectFileError, GainError, MovieContentError, MovieFormatError, SettingsError

    if isinstance(err, (SettingsError, GainError, DefectFileError, MovieContentError)):
        return CorrectionOutcome.failed(job, str(err), type(err).__name__, retryable=False)
    if isinstance(err, (MovieFormatError, OSError, ValueError, IndexError)):
        return CorrectionOutcome.failed(job, str(err), type(err).__name__, retryable=True)
    return CorrectionOutcome.failed(job, f"{type(err).__name__}: {err}", type(err).__name__, retryable=True)


def outcome(job: CorrectionJob, result, *, n_raw_frames: int, started: float,
            streamed_frames: int | None = None, mask_hint_pixels: int | None = None) -> CorrectionOutcome:
    """The outcome of a finished correction (``result``: core's MovieResult); the sums go through a
    hand-over file when the job has a ``sums_dir`` (sums_handover.py), else in the outcome. It
    carries the movie's final defect mask (the next streaming job of its camera starts with it)."""
    sums = (result.dose_weighted_sum, result.even_sum, result.odd_sum)
    sums_file = None
    timings = {k: float(v) for k, v in result.timings_s.items()}
    if job.sums_dir is not None:
        from framewatch.daemon.processing.sums_handover import put_sums

        t = time.perf_counter()
        sums_file = put_sums(job.sums_dir, job.movie_id, sums)
        timings["handover_s"] = time.perf_counter() - t
        sums = (None, None, None)
    else:
        sums = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in sums)
    return CorrectionOutcome(
        job,
        dose_weighted_sum=sums[0],
        even_sum=sums[1],
        odd_sum=sums[2],
        sums_file=sums_file,
        sums_shape=tuple(result.dose_weighted_sum.shape) if sums_file is not None else None,
        statistics=result.statistics.as_dict(),
        shifts_px=[[float(x), float(y)] for x, y in result.shifts_px],
        n_frames=result.n_frames,
        n_raw_frames=n_raw_frames if n_raw_frames != result.n_frames else None,  # EER: raw frames grouped into n_frames
        dose_per_frame_e_per_a2=float(result.settings.dose_per_frame_e_per_a2),  # EER: the dose per fraction
        n_replaced_pixels=int(len(result.replaced_pixels)),
        engine_timings_s=timings,
        notes=tuple(result.notes),
        worker_s=time.perf_counter() - started,
        pid=os.getpid(),
        worker=where(),  # where it ran (a Dask task replaces it with the worker's address)
        streamed_frames=streamed_frames,
        defect_mask=DefectMask.from_coordinates_xy(result.replaced_pixels, result.frame_shape),
        mask_hint_pixels=mask_hint_pixels,
    )
