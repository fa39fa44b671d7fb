"""Streamed correction against ``correct_movie`` of the same frames, over a grid of simulated movies.

    python -m benchmarks.streaming_equality [--size 1024] [--seed 3]

For every combination of specimen contrast (5, 10, 20 %), dose per frame (0.3 and 1 e/A^2), local
motion (none, 2 px) and trajectory (smooth, jerky), a 10-frame movie with 4 hot pixels and a gain
is streamed frame by frame through ``StreamingCorrection`` (defaults: local motion by evidence) and
corrected whole. Prints per movie both decisions, whether the stream's patch spectra were used (or
why not), the largest difference of the patch shifts, the smallest correlation of the three sums and
the largest difference of the whole-frame shifts; then the worst of each over the grid.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from framewatch.core.correct import correct_movie
    from framewatch.core.settings import CorrectionSettings
    from framewatch.core.simulate import SimulationSpec, simulate_movie
    from framewatch.core.streaming_correction import StreamingCorrection

    worst_patch, worst_corr, worst_shift, disagreements = 0.0, 1.0, 0.0, 0
    print(f"{'contrast':>8} {'dose':>5} {'local':>5} {'path':>6} {'stream':>9} {'whole':>9} {'patches':>40} "
          f"{'patch px':>9} {'min corr':>12} {'shift px':>9}")
    grid = itertools.product((0.05, 0.10, 0.20), (0.3, 1.0), (0.0, 2.0), ("smooth", "jerky"))
    for contrast, dose, local_px, path in grid:
        sim = simulate_movie(SimulationSpec(ny=args.size, nx=args.size, n_frames=10, dose_per_frame_e_per_a2=dose,
                                            contrast_rms=contrast, local_amplitude_px=local_px, trajectory=path,
                                            n_hot_pixels=4, seed=args.seed))
        settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=dose, threads=args.threads)
        stream = StreamingCorrection(settings, sim.frames[0].shape, gain=sim.gain)
        for frame in sim.frames:
            stream.add_frame(frame)
        streamed = stream.finish()
        whole = correct_movie(sim.frames, gain=sim.gain, settings=settings)
        a, b = streamed.local_motion.patches, whole.local_motion.patches
        patch = float(np.abs(a.shifts_px - b.shifts_px).max()) if a is not None and b is not None else 0.0
        corr = min(float(np.corrcoef(getattr(streamed, k).ravel(), getattr(whole, k).ravel())[0, 1])
                   for k in ("dose_weighted_sum", "even_sum", "odd_sum"))
        shift = float(np.abs(streamed.shifts_px - whole.shifts_px).max())
        used = "used" if stream.patches_from_stream else f"not: {(stream.streamed_patches_dropped or 'none')[:35]}"
        disagreements += streamed.local_motion.decision != whole.local_motion.decision
        worst_patch, worst_corr, worst_shift = max(worst_patch, patch), min(worst_corr, corr), max(worst_shift, shift)
        print(f"{contrast:8.2f} {dose:5.1f} {local_px:5.1f} {path:>6} {streamed.local_motion.decision:>9} "
              f"{whole.local_motion.decision:>9} {used:>40} {patch:9.5f} {corr:12.10f} {shift:9.2e}", flush=True)
    print(f"worst: patch shifts {worst_patch:.4f} px, sums correlation {worst_corr:.12f}, whole-frame shifts "
          f"{worst_shift:.1e} px, decisions that differ {disagreements}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
