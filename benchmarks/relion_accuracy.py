"""Whole-frame trajectories of framewatch and of RELION 5's own motion correction against the truth.

    python -m benchmarks.relion_accuracy --relion /opt/relion/bin/relion_run_motioncorr \\
        [--simulator framewatch|independent] [--trajectory jerky --trajectory smooth ...]
        [--exponent 0 --exponent 2 ...] [--seed 1] [--seeds 1]

The movies of issue 12's whole-frame acceptance (``tests/test_accuracy_global.py``): 2048² × 10
frames, 0.3 e/Å² per frame, 1.5 Å/px, 10 % rms contrast, no local motion, simulated by
``framewatch.core.simulate`` (or, with ``--simulator independent``, by the second simulator of
``tests/independent_sim.py``, which shares no code with it: paths ``beam``/``walk``/``wobble``,
spectrum exponents 1 and 2, ``--seeds`` seeds each) with a gain reference; written as float32 MRC with the gain as an MRC
file, and corrected whole-frame by ``framewatch.core.correct.correct_movie`` and by
``relion_run_motioncorr --use_own --patch_x 1 --patch_y 1 --dose_weighting`` (RELION's default
B-factor, 150 Å²). Printed per movie: the trajectory RMSE (px, after removing the best constant
offset, as the tests score it) of each, and the FRC of each dose-weighted sum against the noiseless
image over the oracle's (true shifts), quarter bands low to high. RELION's sum is registered to its
first frame; it is shifted here (in Fourier space) to its own estimate of the middle frame, the
configuration framewatch registers to and the ideal is drawn in, so both are scored alike.
The sign that relates RELION's shifts to frame positions, and the direction of that registration,
are conventions, taken as the ones that fit (a wrong one is off by the whole motion, not by a
fraction of a pixel) and printed, so a reader sees they are the same on every movie.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import mrcfile
import numpy as np
import scipy.fft

from benchmarks.relion_compare import MOVIES_STAR

TILT = dict(ny=2048, nx=2048, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, contrast_rms=0.10)


def read_relion_shifts(star: Path) -> np.ndarray:
    """``(n_frames, 2)`` (x, y) of the ``data_global_shift`` loop of RELION's per-movie STAR file."""
    rows, names, inside = [], [], False
    for line in star.read_text().splitlines():
        s = line.strip()
        if s.startswith("data_"):
            inside = s == "data_global_shift"
            continue
        if not inside or not s or s.startswith("#") or s == "loop_":
            continue
        if s.startswith("_rln"):
            names.append(s.split()[0])
        else:
            rows.append(s.split())
    if not rows:
        raise SystemExit(f"no data_global_shift loop in {star}")
    ix, iy = names.index("_rlnMicrographShiftX"), names.index("_rlnMicrographShiftY")
    return np.array([[float(r[ix]), float(r[iy])] for r in rows])


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` moved by (dx, dy) pixels (exact Fourier phase shift)."""
    ny, nx = image.shape
    ky = scipy.fft.fftfreq(ny)[:, None]
    kx = scipy.fft.rfftfreq(nx)[None, :]
    spec = scipy.fft.rfft2(image) * np.exp(-2j * np.pi * (kx * dx + ky * dy))
    return scipy.fft.irfft2(spec, s=image.shape).astype(np.float32)


def run_relion(relion: str, movie: Path, gain: Path, workdir: Path, *, dose: float,
               threads: int) -> tuple[np.ndarray, np.ndarray]:
    star = workdir / "movies.star"
    star.write_text(MOVIES_STAR.format(pixel_a=TILT["pixel_size_a"], voltage_kv=300.0, rows=f"{movie.name} 1"))
    cmd = [relion, "--i", star.name, "--o", "MotionCorr/", "--use_own", "--j", str(threads), "--first_frame_sum", "1",
           "--last_frame_sum", "-1", "--bin_factor", "1", "--dose_weighting", "--dose_per_frame", str(dose),
           "--preexposure", "0", "--patch_x", "1", "--patch_y", "1", "--gainref", gain.name]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"RELION failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    out = workdir / "MotionCorr"
    shifts = read_relion_shifts(out / f"{movie.stem}.star")
    with mrcfile.open(out / f"{movie.stem}.mrc", permissive=True) as m:
        image = np.asarray(m.data, dtype=np.float32).copy()
    return shifts, image


def own_cases(args, threads: int):
    """framewatch's simulator (``core/simulate.py``): ``(label, frames, gain, truth, ideal, oracle FRC)``."""
    from sim_helpers import oracle_frc, simulated

    for trajectory in args.trajectory or ["smooth", "jerky", "fast_early"]:
        for exponent in args.exponent or [0.0, 1.0, 2.0]:
            spec = dict(TILT, trajectory=trajectory, blob_mass_exponent=exponent, seed=args.seed)
            sim = simulated(**spec)
            yield f"{trajectory:10} {exponent:3.0f}", sim.frames, sim.gain, sim.shifts_px, sim.ideal, oracle_frc(**spec)


def independent_cases(args, threads: int):
    """The second simulator (``tests/independent_sim.py``): CTF-shaped random-field specimens, a
    B-factor damage law, pixel integration; the oracle is framewatch's correction with the true shifts."""
    from independent_sim import independent_movie, oracle_correction
    from sim_helpers import quarter_band_frc

    for path in args.trajectory or ["beam", "walk", "wobble"]:
        for exponent in args.exponent or [1.0, 2.0]:
            for seed in range(args.seed, args.seed + args.seeds):
                sim = independent_movie(size=TILT["ny"], n_frames=TILT["n_frames"], pixel_size_a=TILT["pixel_size_a"],
                                        dose_per_frame_e_per_a2=TILT["dose_per_frame_e_per_a2"],
                                        contrast_rms=TILT["contrast_rms"], path=path, exponent=exponent, seed=seed)
                oracle = oracle_correction(sim, pixel_size_a=TILT["pixel_size_a"],
                                           dose_per_frame_e_per_a2=TILT["dose_per_frame_e_per_a2"], threads=threads)
                yield (f"{path:6} {exponent:1.0f} s{seed:<2}", sim.frames, sim.gain, sim.shifts_px, sim.ideal,
                       quarter_band_frc(oracle.dose_weighted_sum, sim.ideal))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relion", required=True)
    parser.add_argument("--simulator", choices=("framewatch", "independent"), default="framewatch",
                        help="framewatch's own (core/simulate.py) or the second one (tests/independent_sim.py)")
    parser.add_argument("--trajectory", action="append", help="own: smooth/jerky/fast_early; independent: beam/walk/wobble")
    parser.add_argument("--exponent", action="append", type=float)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="independent simulator: seeds per movie kind")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from sim_helpers import quarter_band_frc, trajectory_rmse_px

    from framewatch.core.correct import correct_movie
    from framewatch.core.movie_io import write_movie

    cases = own_cases if args.simulator == "framewatch" else independent_cases
    print(f"{'movie':13}  {'framewatch RMSE, FRC/oracle':34}  {'RELION 5 RMSE, FRC/oracle':34}  conventions", flush=True)
    for label, frames, gain, truth, ideal, oracle in cases(args, args.threads):
        ours = correct_movie(frames, gain=gain, pixel_size_a=TILT["pixel_size_a"],
                             dose_per_frame_e_per_a2=TILT["dose_per_frame_e_per_a2"], patches=(0, 0),
                             threads=args.threads)
        ours_rmse = trajectory_rmse_px(ours.shifts_px, truth)
        ours_frc = quarter_band_frc(ours.dose_weighted_sum, ideal) / oracle
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            movie, gain_file = tmp / "movie.mrc", tmp / "gain.mrc"
            write_movie(movie, np.asarray(frames, dtype=np.float32), pixel_size_a=TILT["pixel_size_a"])
            with mrcfile.new(gain_file) as m:
                m.set_data(np.asarray(gain, dtype=np.float32))
            shifts, image = run_relion(args.relion, movie, gain_file, tmp, dose=TILT["dose_per_frame_e_per_a2"],
                                       threads=args.threads)
        errors = {sign: trajectory_rmse_px(sign * shifts, truth) for sign in (-1.0, 1.0)}
        sign = min(errors, key=errors.get)
        middle = sign * (shifts[len(shifts) // 2] - shifts[0])
        scores = {d: quarter_band_frc(shifted(image, d * middle[0], d * middle[1]), ideal) / oracle
                  for d in (-1.0, 1.0)}
        direction = max(scores, key=lambda d: float(scores[d].sum()))
        theirs_frc = scores[direction]
        fmt = lambda r, f: f"{r:.3f}, " + "/".join(f"{v:.3f}" for v in f)  # noqa: E731
        print(f"{label:13}  {fmt(ours_rmse, ours_frc):34}  {fmt(errors[sign], theirs_frc):34}  "
              f"{'+' if sign > 0 else '-'}{'+' if direction > 0 else '-'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
