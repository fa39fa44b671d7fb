"""One measurement in a fresh process, printed as one JSON line (so peak RSS is this step's alone).

    python -m benchmarks.child floor MOVIE THREADS
    python -m benchmarks.child correct MOVIE THREADS PIXEL_A DOSE_PER_FRAME [PATCHES_X PATCHES_Y]
    python -m benchmarks.child compile THREADS
    python -m benchmarks.child sequence MOVIE THREADS PIXEL_A DOSE_PER_FRAME COPIES READ_AHEAD(0|1)
"""
from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_bytes() -> int:
    """Peak resident memory of this process image (VmHWM). ``ru_maxrss`` is not used: Linux keeps it
    across fork and exec, so it would report the parent's peak (the simulated movie) instead."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


REPEATS = 2  # steady state: the best of two runs in one process (a service corrects many movies)


def floor(movie: str, threads: int) -> dict:
    """Read and decode every frame and do one float32 rfft2 per frame: what any corrector must do.

    With the same allocator setting as a correction (``core.memory_reuse``: freed frame buffers are
    reused), so the ratio compares the work, not page faults."""
    import numpy as np
    import scipy.fft

    from framewatch.core.memory_reuse import keep_freed_memory
    from framewatch.core.movie_io import open_movie

    keep_freed_memory()

    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        with open_movie(movie) as reader:
            n = reader.n_frames
            for i in range(n):
                frame = reader.read_frame(i).astype(np.float32)
                scipy.fft.rfft2(frame, workers=threads, overwrite_x=True)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "first_s": times[0], "n_frames": n}


def correct(movie: str, threads: int, pixel_a: float, dose: float, patches=(0, 0)) -> dict:
    from framewatch.core.correct import correct_movie_file
    from framewatch.core.settings import CorrectionSettings

    settings = CorrectionSettings(
        pixel_size_a=pixel_a, dose_per_frame_e_per_a2=dose, threads=threads,
        patches=patches if isinstance(patches, str) else tuple(patches)
    )
    # compile (or load the cache) on a tiny movie first so the timing below is the steady state
    warm_start = time.perf_counter()
    warm_up(threads, patches)
    warm = time.perf_counter() - warm_start
    times, stages = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = correct_movie_file(movie, settings=settings)
        times.append(time.perf_counter() - start)
        stages.append(result.timings_s)
        decision = result.statistics.local_motion
        del result
    best = min(range(REPEATS), key=times.__getitem__)
    return {"seconds": times[best], "first_s": times[0], "warm_up_s": warm, "stages_s": stages[best],
            "local_motion": decision}


def sequence(movie: str, threads: int, pixel_a: float, dose: float, copies: int, read_ahead: bool) -> dict:
    """``framewatch correct`` of ``copies`` movies in one call (whole-frame): core.movie_sequence,
    each copy a hard link to the same file under another name. Per-movie wall times in order."""
    import os
    import tempfile
    from pathlib import Path

    from framewatch.core.movie_sequence import MovieJob, correct_movie_files
    from framewatch.core.settings import CorrectionSettings

    settings = CorrectionSettings(pixel_size_a=pixel_a, dose_per_frame_e_per_a2=dose, threads=threads, patches=(0, 0))
    warm_up(threads)
    with tempfile.TemporaryDirectory(dir=Path(movie).parent) as tmp:
        paths = []
        for k in range(copies):
            link = Path(tmp) / f"copy{k}{Path(movie).suffix}"
            os.link(movie, link)
            paths.append(link)
        jobs = [MovieJob(path=p, settings=settings) for p in paths]
        times, waited = [], []
        start = time.perf_counter()
        for outcome in correct_movie_files(jobs, read_ahead=read_ahead):
            if outcome.error is not None:
                raise outcome.error
            now = time.perf_counter()
            times.append(now - start)
            waited.append(outcome.waited_s)
            stages = outcome.result.timings_s
            outcome = None  # dropped once used, as the CLI does after writing it
            start = now
    return {"per_movie_s": times, "waited_s": waited, "after_first_mean_s": sum(times[1:]) / max(1, len(times) - 1),
            "last_stages_s": stages}


def warm_up(threads: int, patches=(0, 0)) -> None:
    from framewatch.daemon.processing.warmup import warm_up

    warm_up(threads=threads)


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "floor":
        out = floor(argv[1], int(argv[2]))
    elif kind == "correct":
        patches = (int(argv[5]), int(argv[6])) if len(argv) > 6 else (0, 0)
        if len(argv) > 5 and argv[5] == "auto":
            patches = "auto"
        out = correct(argv[1], int(argv[2]), float(argv[3]), float(argv[4]), patches)
    elif kind == "sequence":
        out = sequence(argv[1], int(argv[2]), float(argv[3]), float(argv[4]), int(argv[5]), argv[6] == "1")
    elif kind == "compile":
        start = time.perf_counter()
        warm_up(int(argv[1]))
        out = {"seconds": time.perf_counter() - start}
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    out["peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
