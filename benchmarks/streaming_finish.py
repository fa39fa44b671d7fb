"""How long after the last frame a streamed movie is done (issue 15, the engine half).

    python -m benchmarks.streaming_finish MOVIE [--threads 2] [--patches auto|0]

In one process after a warm-up: the floor (decode + one rfft2 per frame), then the movie streamed
frame by frame through ``core.streaming_correction.StreamingCorrection`` twice: without an expected
defect mask, and with the final mask of the first run (what the daemon would carry from the previous
movie of the same camera). Prints the time of ``finish()`` (what is left once the last frame is in)
against the floor, and how many frames were updated in Fourier space and transformed again.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("movie")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--patches", default="auto")
    args = parser.parse_args(argv)
    import scipy.fft

    from benchmarks.child import warm_up
    from framewatch.core.memory_reuse import keep_freed_memory
    from framewatch.core.movie_io import open_movie
    from framewatch.core.settings import CorrectionSettings
    from framewatch.core.streaming_correction import StreamingCorrection

    keep_freed_memory()
    warm_up(args.threads)
    patches = "auto" if args.patches == "auto" else (0, 0)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, threads=args.threads, patches=patches)
    floors = []
    for _ in range(2):
        t = time.perf_counter()
        with open_movie(args.movie) as reader:
            for i in range(reader.n_frames):
                scipy.fft.rfft2(reader.read_frame(i).astype(np.float32), workers=args.threads, overwrite_x=True)
        floors.append(time.perf_counter() - t)
    floor = min(floors)
    expected = None
    for label in ("no expected mask", "previous movie's mask", "previous movie's mask"):
        with open_movie(args.movie) as reader:
            frames = [reader.read_frame(i) for i in range(reader.n_frames)]
            shape = reader.shape
        stream = StreamingCorrection(settings, shape, expected_mask=expected)
        t = time.perf_counter()
        for frame in frames:
            stream.add_frame(frame)
        streamed = time.perf_counter() - t
        t = time.perf_counter()
        result = stream.finish()
        finish = time.perf_counter() - t
        expected = stream.final_mask
        print(f"{label:24} frames in {streamed:5.2f} s  finish {finish:5.2f} s = {finish / floor:4.2f} x floor "
              f"({floor:.2f} s)  updated in Fourier space {stream.frames_updated_in_fourier_space}/{len(frames)} "
              f"({result.timings_s['fourier_update_s']:.2f} s)  transformed again "
              f"{stream.frames_transformed_again}/{len(frames)}  "
              f"local motion: {result.statistics.local_motion}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
