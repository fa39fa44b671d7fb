"""Whole-frame trajectories of framewatch and of RELION 5's own motion correction against the truth.

    python -m benchmarks.relion_accuracy --relion /opt/relion/bin/relion_run_motioncorr \\
        [--trajectory jerky --trajectory smooth ...] [--exponent 0 --exponent 2 ...] [--seed 1]

The movies of issue 12's whole-frame acceptance (``tests/test_accuracy_global.py``): 2048² × 10
frames, 0.3 e/Å² per frame, 1.5 Å/px, 10 % rms contrast, no local motion, simulated by
``framewatch.core.simulate`` with a gain reference; written as float32 MRC with the gain as an MRC
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relion", required=True)
    parser.add_argument("--trajectory", action="append")
    parser.add_argument("--exponent", action="append", type=float)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from sim_helpers import oracle_frc, quarter_band_frc, simulated, trajectory_rmse_px

    from framewatch.core.correct import correct_movie
    from framewatch.core.movie_io import write_movie

    trajectories = args.trajectory or ["smooth", "jerky", "fast_early"]
    exponents = args.exponent or [0.0, 1.0, 2.0]
    print(f"{'path':10} {'e':>3}  {'framewatch RMSE, FRC/oracle':34}  {'RELION 5 RMSE, FRC/oracle':34}  conventions", flush=True)
    for trajectory in trajectories:
        for exponent in exponents:
            spec = dict(TILT, trajectory=trajectory, blob_mass_exponent=exponent, seed=args.seed)
            sim = simulated(**spec)
            oracle = oracle_frc(**spec)
            ours = correct_movie(sim.frames, gain=sim.gain, pixel_size_a=TILT["pixel_size_a"],
                                 dose_per_frame_e_per_a2=TILT["dose_per_frame_e_per_a2"], patches=(0, 0),
                                 threads=args.threads)
            ours_rmse = trajectory_rmse_px(ours.shifts_px, sim.shifts_px)
            ours_frc = quarter_band_frc(ours.dose_weighted_sum, sim.ideal) / oracle
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                movie, gain = tmp / "movie.mrc", tmp / "gain.mrc"
                write_movie(movie, np.asarray(sim.frames, dtype=np.float32), pixel_size_a=TILT["pixel_size_a"])
                with mrcfile.new(gain) as m:
                    m.set_data(np.asarray(sim.gain, dtype=np.float32))
                shifts, image = run_relion(args.relion, movie, gain, tmp, dose=TILT["dose_per_frame_e_per_a2"],
                                           threads=args.threads)
            errors = {sign: trajectory_rmse_px(sign * shifts, sim.shifts_px) for sign in (-1.0, 1.0)}
            sign = min(errors, key=errors.get)
            middle = sign * (shifts[len(shifts) // 2] - shifts[0])
            scores = {d: quarter_band_frc(shifted(image, d * middle[0], d * middle[1]), sim.ideal) / oracle
                      for d in (-1.0, 1.0)}
            direction = max(scores, key=lambda d: float(scores[d].sum()))
            theirs_frc = scores[direction]
            fmt = lambda r, f: f"{r:.3f}, " + "/".join(f"{v:.3f}" for v in f)  # noqa: E731
            print(f"{trajectory:10} {exponent:3.0f}  {fmt(ours_rmse, ours_frc):34}  {fmt(errors[sign], theirs_frc):34}  "
                  f"{'+' if sign > 0 else '-'}{'+' if direction > 0 else '-'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
