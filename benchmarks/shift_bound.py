"""How close the whole-frame alignment comes to the Cramér–Rao bound on a frame's position (issue 12).

    python -m benchmarks.shift_bound [--seeds 1] [--threads 2]

Movies of issue 12's whole-frame grid (2048² × 10 frames, 0.3 e/Å² per frame, 1.5 Å/px, no local
motion): framewatch's simulator (``framewatch.core.simulate``; jerky paths with spectrum exponents
0-3, a smooth and a fast-early path, 5 and 20 % contrast) and the second simulator of
``tests/independent_sim.py`` (``beam``/``walk``/``wobble`` paths, defocused phase-contrast spectra).
Per movie, printed:

- ``error``: the per-axis rms error of ``correct_movie``'s whole-frame trajectory against the truth,
  after removing the best constant offset, times ``n / (n - 1)``: the error of a frame's position
  against the mean of the others (what one frame's correlation with the sum of the others measures);
- ``bound``: :func:`framewatch.core.spectral_weight.shift_bound_px` for that measurement, from the
  movie's own spectral SNR estimated on its frames registered by their *true* shifts at full
  resolution (the Knapp–Carter bound for a Gaussian specimen of that power spectrum under white
  noise). No unbiased per-frame estimator beats it; a smoothness prior can, on a smooth path;
- their ratio, the trajectory smoothing rule used, and the top band of the FRC of the sum against
  the ideal over the oracle's (issue 12's score).

The bound uses the frames' mean signal power; damage makes early frames carry more than late ones.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

OURS = [(0.10, "jerky", e) for e in (0.0, 1.0, 2.0, 3.0)] + [
    (0.10, "smooth", 2.0), (0.10, "fast_early", 2.0), (0.05, "jerky", 1.0), (0.20, "jerky", 1.0)]
INDEPENDENT = [(0.10, "beam", 1.0, 3.0), (0.10, "beam", 2.0, 3.0), (0.10, "walk", 1.0, 3.0),
               (0.10, "wobble", 2.0, 3.0), (0.10, "beam", 1.0, 1.5), (0.05, "walk", 1.0, 3.0)]
OPTIONS = dict(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, patches=(0, 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="noise seeds per movie (1, 2, ...)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from independent_sim import independent_movie
    from independent_sim import oracle_correction as independent_oracle
    from sim_helpers import bound_px, frame_error_px, frc_over_oracle, quarter_band_frc, simulated

    from framewatch.core.correct import correct_movie

    kw = dict(OPTIONS, threads=args.threads)
    print(f"{'movie':34} {'error px':>8} {'bound px':>8} {'ratio':>6}  {'top band':>8}  smoothing", flush=True)
    ratios = []

    def report(name, sim_frames, gain, truth, result, top, t0):
        error = frame_error_px(result.shifts_px, truth)
        bound = bound_px(sim_frames, gain, truth, threads=args.threads)
        ratios.append(error / bound)
        print(f"{name:34} {error:8.4f} {bound:8.4f} {error / bound:6.2f}  {top:8.3f}  "
              f"{result.statistics.trajectory_smoothing}  [{time.perf_counter() - t0:.0f} s]", flush=True)

    for seed in range(1, args.seeds + 1):
        for contrast, path, exponent in OURS:
            t0 = time.perf_counter()
            spec = dict(ny=2048, nx=2048, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3,
                        contrast_rms=contrast, trajectory=path, blob_mass_exponent=exponent, seed=seed)
            sim = simulated(**spec)
            result = correct_movie(sim.frames, gain=sim.gain, **kw)
            top = float(frc_over_oracle(result, **spec)[3])
            report(f"ours {contrast:.0%} {path} e={exponent:g} s{seed}", sim.frames, sim.gain, sim.shifts_px,
                   result, top, t0)
            simulated.cache_clear()
        for contrast, path, exponent, defocus in INDEPENDENT:
            t0 = time.perf_counter()
            sim = independent_movie(size=2048, path=path, exponent=exponent, contrast_rms=contrast,
                                    defocus_um=defocus, seed=seed)
            result = correct_movie(sim.frames, gain=sim.gain, **kw)
            best = quarter_band_frc(independent_oracle(sim, **kw).dose_weighted_sum, sim.ideal)
            top = float((quarter_band_frc(result.dose_weighted_sum, sim.ideal) / best)[3])
            report(f"second {contrast:.0%} {path} a={exponent:g} {defocus:g} µm s{seed}", sim.frames, sim.gain,
                   sim.shifts_px, result, top, t0)
    r = np.array(ratios)
    print(f"error / bound over {r.size} movies: median {np.median(r):.2f}, range {r.min():.2f}-{r.max():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
