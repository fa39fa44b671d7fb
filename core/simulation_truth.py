"""The simulator's ground truth, its files, and the scoring every accuracy test uses.

:func:`truth_dict` (JSON-able truth), :func:`write_simulation` (movie, gain, ideal image and truth
files), :func:`oracle_correction` (the correction with the true motion) and
:func:`quarter_band_frc` (FRC against the ideal image per quarter band of Nyquist).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from .errors import SettingsError
from .settings import GainOrientation
from .simulated_local_motion import local_time_profile, true_local_displacement
from .simulated_specimen import BLOB_SIGMA_RANGE_PX, BLOB_TRUNCATION_SIGMAS
from .simulated_transmission import TRANSMISSION_FLOOR, TRANSMISSION_KNEE
from .simulation_spec import SHIFT_CONVENTION, SimulatedMovie

__all__ = ["truth_dict", "write_simulation", "oracle_correction", "quarter_band_frc"]


def truth_dict(sim: SimulatedMovie) -> dict:
    """The ground truth as a JSON-able dict (no arrays of image size)."""
    spec = sim.spec
    n = spec.n_frames
    accumulated = [spec.prior_dose_e_per_a2 + (i + 1) * spec.dose_per_frame_e_per_a2 for i in range(n)]
    return {
        "spec": spec.as_dict(),
        "shape": [n, spec.ny, spec.nx],
        "pixel_size_a": spec.pixel_size_a,
        "shifts_px": [[float(x), float(y)] for x, y in sim.shifts_px],
        "shift_convention": SHIFT_CONVENTION,
        "trajectory": sim.trajectory_info,
        "reference_frame": sim.middle_frame,
        "ideal_description": "expected counts per frame, no noise, no gain, specimen as in frame n_frames // 2",
        "hot_pixels_xy": sim.hot_pixels_xy.tolist(),
        "dead_column": sim.dead_column,
        "local_motion": {
            "amplitude_px": spec.local_amplitude_px,
            "model": "d(x, y, t) = a(t) * (u(x, y), v(x, y)) at frame-0 coordinates; "
                     "u = sum_k A_k sin(2 pi (p_k x / nx + q_k y / ny) + phi_k) "
                     "+ sum_b ax_b exp(-|(x, y) - c_b|^2 / (2 sigma_b^2)) - offset_u (v likewise, ay_b); "
                     "a(t) = (1 - exp(-t / tau)) / (1 - exp(-(n - 1) / tau))",
            "tau_frames": spec.local_tau_frames,
            "a_t": local_time_profile(n, tau_frames=spec.local_tau_frames).tolist(),
            "bumps": sim.local_bumps.tolist(),
            "bump_columns": ["x_px", "y_px", "sigma_px", "ax_px", "ay_px"],
            "modes_u": sim.local_modes[0].tolist(),
            "modes_v": sim.local_modes[1].tolist(),
            "mode_columns": ["p_cycles_per_nx", "q_cycles_per_ny", "amplitude_px", "phase_rad"],
            "offset_px": sim.local_offset_px.tolist(),
        },
        "dose_per_frame_e_per_a2": spec.dose_per_frame_e_per_a2,
        "prior_dose_e_per_a2": spec.prior_dose_e_per_a2,
        "accumulated_dose_e_per_a2": accumulated,
        "dose_rule": "N_i = prior_dose + (i + 1) * dose_per_frame (end of frame i, 0-based)",
        "expected_counts_per_frame_px": sim.counts_per_frame_px,
        "specimen": {
            "n_blobs": int(sim.blobs.shape[0]),
            "blob_sigma_range_px": list(BLOB_SIGMA_RANGE_PX),
            "n_large_features": spec.n_large_features,
            "truncation_sigmas": BLOB_TRUNCATION_SIGMAS,
            "transmission": "T = g(1 + c (B - beta)); g(t) = t for t >= knee, else floor + (knee - floor) "
                            "exp((t - knee) / (knee - floor)); counts = dose_per_frame * pixel_size^2 * T",
            "transmission_floor": TRANSMISSION_FLOOR,
            "transmission_knee": TRANSMISSION_KNEE,
            "contrast_scale": sim.contrast_scale,
            "density_offset": sim.density_offset,
            "contrast_rms": spec.contrast_rms,
            "blob_mass_exponent": spec.blob_mass_exponent,
        },
        "gain": "multiplicative: corrected = raw * gain; true gain = 1 / sensitivity",
        "counts_clipped": sim.counts_clipped,
        "n_clipped_counts": sim.n_clipped_counts,
    }



def write_simulation(
    sim: SimulatedMovie,
    prefix: str | os.PathLike,
    *,
    movie_format: str = "tiff",
    mrc_mode: int | None = None,
    tiff_compression: str = "lzw",
    gain_orientation: GainOrientation = GainOrientation(),
) -> dict[str, Path]:
    """Write PREFIX.tif|.mrc, PREFIX_gain.mrc, PREFIX_ideal.mrc and PREFIX_truth.json.

    The gain is stored so that applying ``gain_orientation`` to the file gives the movie-oriented
    ``sim.gain``. Returns the paths by role: "movie", "gain", "ideal", "truth".
    """
    from .gain import unorient_gain
    from .movie_io import write_image_mrc, write_movie

    if movie_format not in ("tiff", "mrc"):
        raise SettingsError(f"movie format {movie_format!r} is not tiff or mrc")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {
        "movie": Path(f"{prefix}.{'tif' if movie_format == 'tiff' else 'mrc'}"),
        "gain": Path(f"{prefix}_gain.mrc"),
        "ideal": Path(f"{prefix}_ideal.mrc"),
        "truth": Path(f"{prefix}_truth.json"),
    }
    px = sim.spec.pixel_size_a
    write_movie(paths["movie"], sim.frames, mrc_mode=mrc_mode, tiff_compression=tiff_compression, pixel_size_a=px)
    stored_gain = np.ascontiguousarray(unorient_gain(sim.gain, gain_orientation), dtype=np.float32)
    write_image_mrc(paths["gain"], stored_gain, pixel_size_a=px)
    write_image_mrc(paths["ideal"], sim.ideal, pixel_size_a=px)
    truth = truth_dict(sim)
    truth["gain_orientation"] = dataclasses.asdict(gain_orientation)
    truth["files"] = {role: path.name for role, path in paths.items()}
    truth["movie_format"] = movie_format
    paths["truth"].write_text(json.dumps(truth, indent=1) + "\n")
    return paths



def oracle_correction(sim: SimulatedMovie, **options):
    """``correct_movie`` of ``sim``'s frames with its true global (and local) motion: the oracle sum.

    The same noisy frames, gain, defect handling and dose weighting as a real run; only the motion
    is given instead of measured. ``options`` are ``correct_movie`` options (``pixel_size_a`` and
    ``dose_per_frame_e_per_a2`` default to the simulation's). With local motion the true field
    (:func:`true_local_displacement`) is applied; ``patches`` then defaults to (5, 5) only because
    ``correct_movie`` needs a patch grid to accept a given field (the grid is not used).
    Returns the ``MovieResult``; score it with :func:`quarter_band_frc` against ``sim.ideal``.
    """
    from .correct import correct_movie

    opts = dict(pixel_size_a=sim.spec.pixel_size_a, dose_per_frame_e_per_a2=sim.spec.dose_per_frame_e_per_a2)
    opts.update(options)
    if sim.spec.has_local_motion:
        patches = opts.get("patches")
        if not isinstance(patches, (tuple, list)) or min(patches) < 2:  # "auto" or none
            opts["patches"] = (5, 5)
        return correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px,
                             local_displacement_px=true_local_displacement(sim), **opts)
    opts["patches"] = (0, 0)  # whole-frame: the true shifts are all the motion there is
    return correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px, **opts)



def quarter_band_frc(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """FRC of ``image`` against ``reference`` (both ``(ny, nx)``), averaged over the four quarter
    bands of Nyquist (low to high): ``(4,)``. The scoring of every accuracy test: ``reference`` is
    ``sim.ideal`` (noiseless, the middle frame's configuration)."""
    from .frc import band_averaged_frc, frc_curve

    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    freq, frc = frc_curve(np.fft.rfft2(a), np.fft.rfft2(b), a.shape)
    return band_averaged_frc(freq, frc)
