"""Replacement of bad pixels by random good neighbours, frame by frame (:class:`PixelReplacer`).

Every bad pixel takes the value of a good pixel drawn at random from the ``(2 radius + 1)**2``
window around it, a fresh draw per frame from a generator seeded with ``(seed, frame_index)``
(RELION does the same with a 5 x 5 window; MotionCor3 with 31 x 31). A bad pixel with no good pixel
in its window (inside a large dead area) draws from the window around the nearest good pixel
instead. The bad mask comes from :mod:`framewatch.core.defects`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .errors import FramewatchError

__all__ = ["PixelReplacer"]


@njit(cache=True)
def _replace_kernel(frame_flat, bad_flat, candidate_ptr, candidate_flat, draws):
    """frame[bad[i]] = frame[candidates of i][draws[i]] for every bad pixel i (candidates are good)."""
    for i in range(bad_flat.shape[0]):
        frame_flat[bad_flat[i]] = frame_flat[candidate_flat[candidate_ptr[i] + draws[i]]]



def _window_candidates(centre_y, centre_x, bad, offsets, *, chunk=65536):
    """Good pixels in the window (given offsets) around each centre: (counts (n,), flat indices grouped by centre)."""
    ny, nx = bad.shape
    counts = np.zeros(centre_y.size, dtype=np.int64)
    flats = []
    for start in range(0, centre_y.size, chunk):
        stop = min(start + chunk, centre_y.size)
        yy = centre_y[start:stop, None] + offsets[None, :, 0]
        xx = centre_x[start:stop, None] + offsets[None, :, 1]
        valid = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        valid[valid] = ~bad[yy[valid], xx[valid]]
        counts[start:stop] = valid.sum(axis=1)
        flats.append((yy * nx + xx)[valid])
    flat = np.concatenate(flats) if flats else np.zeros(0, dtype=np.int64)
    return counts, flat.astype(np.int64)



class PixelReplacer:
    """Replaces the bad pixels of every frame by random good neighbours (module docstring).

    Built once per movie from the final bad mask ``(ny, nx)``; :meth:`apply` works in place on
    each float32 frame. ``coordinates_xy`` is ``(n, 2)`` int64 (x, y) of the bad pixels, in row-major
    order.
    """

    def __init__(self, bad_mask: np.ndarray, *, radius: int = 2, seed: int = 0) -> None:
        bad = np.asarray(bad_mask, dtype=bool)
        if bad.ndim != 2:
            raise ValueError(f"bad_mask must be 2-D, got shape {bad.shape}")
        if radius < 1:
            raise ValueError(f"radius must be at least 1, got {radius}")
        self.shape = bad.shape
        self.radius = int(radius)
        self.seed = int(seed)
        ys, xs = np.nonzero(bad)
        self.coordinates_xy = np.stack([xs, ys], axis=1).astype(np.int64)
        self._bad_flat = (ys.astype(np.int64) * bad.shape[1] + xs).astype(np.int64)
        if ys.size and bad.all():
            raise FramewatchError(
                "every pixel of the frame is marked bad", fix="check the gain reference and the defect list"
            )
        self._candidate_ptr, self._candidate_flat, self._counts = self._build_candidates(bad, ys, xs)

    @property
    def n_bad(self) -> int:
        return int(self._bad_flat.size)

    def _build_candidates(self, bad, ys, xs):
        r = self.radius
        grid = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij"), axis=-1).reshape(-1, 2)
        around = grid[np.any(grid != 0, axis=1)]
        counts, flat = _window_candidates(ys, xs, bad, around)
        lonely = np.flatnonzero(counts == 0)
        if lonely.size:
            from scipy import ndimage

            _, (near_y, near_x) = ndimage.distance_transform_edt(bad, return_indices=True)
            cy, cx = near_y[ys[lonely], xs[lonely]], near_x[ys[lonely], xs[lonely]]
            extra_counts, extra_flat = _window_candidates(cy.astype(np.int64), cx.astype(np.int64), bad, grid)
            counts1 = counts.copy()
            counts[lonely] = extra_counts
            ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            merged = np.empty(int(ptr[-1]), dtype=np.int64)
            # candidates of the first pass keep their order, those of the second go to the lonely pixels
            owner1 = np.repeat(np.arange(counts1.size), counts1)
            within1 = np.arange(flat.size) - np.concatenate([[0], np.cumsum(counts1)])[owner1]
            merged[ptr[owner1] + within1] = flat
            owner2 = np.repeat(lonely, extra_counts)
            within2 = np.arange(extra_flat.size) - np.concatenate([[0], np.cumsum(extra_counts)])[
                np.repeat(np.arange(lonely.size), extra_counts)
            ]
            merged[ptr[owner2] + within2] = extra_flat
            return ptr, merged, counts
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ptr, flat, counts

    def _draws(self, frame_index: int) -> np.ndarray:
        """The candidate index chosen for every bad pixel in frame ``frame_index`` (deterministic)."""
        rng = np.random.default_rng([self.seed, int(frame_index)])
        return rng.integers(0, self._counts).astype(np.int64)

    def apply(self, frame: np.ndarray, frame_index: int) -> None:
        """Replace the bad pixels of a float32 ``(ny, nx)`` C-contiguous frame in place."""
        if self._bad_flat.size == 0:
            return
        if frame.dtype != np.float32 or frame.shape != self.shape or not frame.flags.c_contiguous:
            raise ValueError(
                f"frame must be a C-contiguous float32 array of shape {self.shape}, got {frame.dtype} {frame.shape}"
            )
        if not frame.flags.writeable:
            raise ValueError("frame is read-only")
        _replace_kernel(
            frame.reshape(-1), self._bad_flat, self._candidate_ptr, self._candidate_flat, self._draws(frame_index)
        )
