"""Local motion by evidence on movies of the second simulator (``tests/independent_sim.py``), which
shares no code with ``framewatch.core.simulate``: the defaults (``--patches auto``) against
whole-frame alignment and the oracle (the true global shifts and local field), quarter-band FRC
against the ideal image.

    python -m benchmarks.accuracy_independent [--seed 7] [--threads 2]

2048² × 10 frames, 0.3 e/Å² per frame, 1.5 Å/px, 3 µm defocus; contrast 5, 10 and 15 % with no
field and with a 3 px field (``beam`` path, spectrum a = 1), and three more movies with a 2 px field
and other paths and spectra. Prints one line per movie: whole-frame / oracle, defaults / oracle, the
smallest band ratio defaults / whole-frame (the no-harm rule asks >= 0.99), and the decision with
its statistic. About 8 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

CASES = [(c, a, "beam", 1.0) for c in (0.05, 0.10, 0.15) for a in (0.0, 3.0)] + [
    (0.10, 2.0, "walk", 2.0), (0.15, 2.0, "wobble", 2.0), (0.05, 2.0, "walk", 1.0)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from independent_sim import independent_movie, oracle_correction
    from sim_helpers import quarter_band_frc

    from framewatch.core.correct import correct_movie

    kw = dict(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, threads=args.threads)
    fmt = lambda f: "/".join(f"{v:.3f}" for v in f)  # noqa: E731
    print(f"{'contrast':>8} {'field px':>8} {'path':6} {'a':>2}  {'whole / oracle':23}  {'defaults / oracle':23}  "
          f"{'min ratio':>9}  decision", flush=True)
    worst = np.inf
    for contrast, amplitude, path, exponent in CASES:
        t = time.perf_counter()
        sim = independent_movie(size=2048, path=path, exponent=exponent, contrast_rms=contrast,
                                local_amplitude_px=amplitude, seed=args.seed)
        whole = correct_movie(sim.frames, gain=sim.gain, patches=(0, 0), **kw)
        defaults = correct_movie(sim.frames, gain=sim.gain, **kw)
        oracle = oracle_correction(sim, **kw)
        best = quarter_band_frc(oracle.dose_weighted_sum, sim.ideal)
        fw = quarter_band_frc(whole.dose_weighted_sum, sim.ideal) / best
        fd = quarter_band_frc(defaults.dose_weighted_sum, sim.ideal) / best
        ratio = float(np.min(fd / fw))
        worst = min(worst, ratio)
        st = defaults.statistics
        z = "" if st.local_evidence_z is None else (
            f" (z {st.local_evidence_z:.2f}, field unc {st.local_field_uncertainty_px:.3f} px)")
        print(f"{contrast:8.2f} {amplitude:8.0f} {path:6} {exponent:2.0f}  {fmt(fw):23}  {fmt(fd):23}  {ratio:9.4f}  "
              f"{st.local_motion}{z}  [{time.perf_counter() - t:.0f} s]", flush=True)
    print(f"smallest band ratio defaults / whole-frame over {len(CASES)} movies: {worst:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
