"""Real-space binning by an integer factor (the alignment copy when patches are used)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True, fastmath=True)
def _bin_kernel(image, factor, out):  # pragma: no cover - compiled
    oy, ox = out.shape
    scale = np.float32(1.0 / (factor * factor))
    for j in numba.prange(oy):
        for i in range(ox):
            acc = np.float32(0.0)
            for dy in range(factor):
                row = j * factor + dy
                for dx in range(factor):
                    acc += image[row, i * factor + dx]
            out[j, i] = acc * scale


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor x factor`` blocks: float32 ``(ny // factor, nx // factor)``.

    Rows and columns beyond the last whole block are left out. Binned pixel (i, j) covers movie
    pixels ``i*factor .. i*factor + factor - 1``, so its centre is at ``(i + 0.5) * factor - 0.5``.
    """
    if factor < 1:
        raise ValueError(f"bin factor {factor} must be >= 1")
    image = np.ascontiguousarray(image, dtype=np.float32)
    out = np.empty((image.shape[0] // factor, image.shape[1] // factor), dtype=np.float32)
    _bin_kernel(image, int(factor), out)
    return out
