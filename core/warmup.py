"""Compile every Numba kernel of the correction pipeline before the first real movie.

Numba compiles a kernel on its first call (or loads it from ``NUMBA_CACHE_DIR`` / the package's
``__pycache__`` when cached). A service must not make its first movie wait for that, so
:func:`warm_up_kernels` corrects a tiny synthetic movie through every path: whole-frame alignment,
patch alignment, a known local warp (so the resampler compiles even when the tiny movie's patches
would fall back), super-resolution cropping and the frame sums.
"""
from __future__ import annotations

import time

import numpy as np


def warm_up_kernels(*, threads: int = 0) -> float:
    """Run the pipeline once on tiny movies; returns the seconds it took (compile or cache load)."""
    from .correct import correct_movie
    from .simulate import SimulationSpec, simulate_movie

    started = time.perf_counter()
    sim = simulate_movie(SimulationSpec(ny=128, nx=128, n_frames=4, dose_per_frame_e_per_a2=1.0, seed=1), threads=1)
    options = dict(gain=sim.gain, pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, threads=threads)
    correct_movie(sim.frames, **options)
    correct_movie(sim.frames, patches=(2, 2), **options)
    correct_movie(
        sim.frames,
        patches=(2, 2),
        shifts_px=np.zeros((4, 2)),
        local_displacement_px=lambda x, y, t: (0.1 * np.ones_like(x), -0.1 * np.ones_like(y)),
        **options,
    )
    correct_movie(sim.frames, fourier_bin=2, **options)
    return time.perf_counter() - started
