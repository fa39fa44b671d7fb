"""The simulator's detector counts: Poisson draws from a counter-based generator.

Every pixel of every frame draws its uniforms from SplitMix64 of a per-frame key
(:func:`frame_key` of the movie's counts seed and the frame index) and the pixel index, so a frame
is the same whatever the number of threads and whichever frames are rendered.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .simulated_transmission import _counts_of_density

__all__ = ["frame_key"]


@njit(cache=True, inline="always")
def _mix64(z):  # pragma: no cover - compiled
    """SplitMix64 finaliser (a bijective 64-bit hash)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))



@njit(cache=True, inline="always")
def _unit(z):  # pragma: no cover - compiled
    """A 64-bit hash -> uniform in (0, 1)."""
    return (float(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)



@njit(cache=True, nogil=True)
def _poisson_frame(density, c, beta, scale, sens, key, out, max_count):  # pragma: no cover - compiled
    """out[j, i] ~ Poisson(counts(density[j, i]) * sens[j, i]), clipped to ``max_count``; returns #clipped.

    Uniforms come from a counter-based stream per pixel (SplitMix64 of ``key`` and the pixel
    index), so the result does not depend on threads. Means < 10: inversion of the CDF; larger
    means: Hormann's transformed rejection with squeeze (PTRS, 1993), also exact.
    """
    ny, nx = density.shape
    golden = np.uint64(0x9E3779B97F4A7C15)
    n_clipped = 0
    for j in range(ny):
        for i in range(nx):
            mu = _counts_of_density(density[j, i], c, beta, scale) * sens[j, i]
            state = _mix64(key ^ (np.uint64(j * nx + i) * golden))
            n = 0
            if mu <= 0.0:
                n = 0
            elif mu < 10.0:
                # inversion: the smallest n with u <= P(N <= n); the first four terms without
                # branches (the common case at movie doses), then term by term
                u = _unit(state)
                p0 = math.exp(-mu)
                p1 = p0 * mu
                p2 = p1 * mu * 0.5
                p3 = p2 * mu * (1.0 / 3.0)
                c1 = p0 + p1
                c2 = c1 + p2
                c3 = c2 + p3
                n = int(u > p0) + int(u > c1) + int(u > c2) + int(u > c3)
                if n == 4:
                    n = 3
                    p = p3
                    cdf = c3
                    while u > cdf and n < 1000:
                        n += 1
                        p *= mu / n
                        cdf += p
            else:
                slam = math.sqrt(mu)
                loglam = math.log(mu)
                b = 0.931 + 2.53 * slam
                aa = -0.059 + 0.02483 * b
                log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
                vr = 0.9277 - 3.6224 / (b - 2.0)
                while True:
                    state += golden
                    uu = _unit(_mix64(state)) - 0.5
                    state += golden
                    v = _unit(_mix64(state))
                    us = 0.5 - abs(uu)
                    kk = math.floor((2.0 * aa / us + b) * uu + mu + 0.43)
                    if us >= 0.07 and v <= vr:
                        n = int(kk)
                        break
                    if kk < 0 or (us < 0.013 and v > us):
                        continue
                    log_ratio = math.log(v) + log_invalpha - math.log(aa / (us * us) + b)
                    if log_ratio <= -mu + kk * loglam - math.lgamma(kk + 1.0):
                        n = int(kk)
                        break
            if n > max_count:
                out[j, i] = max_count
                n_clipped += 1
            else:
                out[j, i] = n
    return n_clipped



def frame_key(seed: int, frame_index: int) -> np.uint64:
    mask = (1 << 64) - 1

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    return np.uint64(mix((mix(seed & mask) + 0x9E3779B97F4A7C15 * (frame_index + 1)) & mask))
