"""Replacement of bad pixels by random good neighbours, frame by frame (:class:`PixelReplacer`).

Every bad pixel takes the value of a good pixel drawn at random from the ``(2 radius + 1)**2``
window around it, a fresh draw per frame (RELION does the same with a 5 x 5 window; MotionCor3 with
31 x 31). A bad pixel with no good pixel in its window (inside a large dead area) draws from the
window around the nearest good pixel instead. The bad mask comes from :mod:`framewatch.core.defects`.

The draw of bad pixel ``p`` in frame ``f`` is a hash of ``(seed, f, flat index of p)`` (splitmix64
steps) modulo its number of candidates, so it depends on nothing else: two masks that differ in a
few pixels give the same replacement everywhere except at pixels whose own status or list of
candidates differs (:meth:`PixelReplacer.pixels_drawn_differently`). That is what lets a streamed
frame corrected with a provisional mask be updated in Fourier space
(:mod:`framewatch.core.streaming_correction`) instead of transformed again. The modulo bias is below
``count / 2**64``: uniform for any window.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .errors import FramewatchError

__all__ = ["PixelReplacer"]


_MASK64 = (1 << 64) - 1


@njit(cache=True, nogil=True)
def _splitmix64(z):  # pragma: no cover - compiled (inlined into the kernels below)
    """One splitmix64 step: a well-mixed uint64 of the uint64 ``z``."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _draw(frame_key, flat, count):  # pragma: no cover - compiled
    """The candidate index (0 <= draw < count) of the bad pixel at ``flat`` in the frame of ``frame_key``."""
    return np.int64(_splitmix64(frame_key + np.uint64(flat)) % np.uint64(count))


@njit(cache=True, nogil=True)
def _replace_kernel(frame_flat, bad_flat, candidate_ptr, candidate_flat, frame_key):  # pragma: no cover - compiled
    """frame[bad[i]] = frame[candidates of i][draw of i] for every bad pixel i (candidates are good)."""
    for i in range(bad_flat.shape[0]):
        draw = _draw(frame_key, bad_flat[i], candidate_ptr[i + 1] - candidate_ptr[i])
        frame_flat[bad_flat[i]] = frame_flat[candidate_flat[candidate_ptr[i] + draw]]


@njit(cache=True, nogil=True)
def _source_kernel(flat_px, bad_flat, candidate_ptr, candidate_flat, frame_key, out):  # pragma: no cover - compiled
    """out[j]: the pixel whose value pixel ``flat_px[j]`` has after the replacement (itself when good)."""
    for j in range(flat_px.shape[0]):
        p = flat_px[j]
        i = np.searchsorted(bad_flat, p)
        if i < bad_flat.shape[0] and bad_flat[i] == p:
            draw = _draw(frame_key, p, candidate_ptr[i + 1] - candidate_ptr[i])
            out[j] = candidate_flat[candidate_ptr[i] + draw]
        else:
            out[j] = p



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



def _splitmix64_py(z: int) -> int:
    """:func:`_splitmix64` on Python integers (the per-frame key, once per call)."""
    z = (int(z) + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class PixelReplacer:
    """Replaces the bad pixels of every frame by random good neighbours (module docstring).

    Built once per movie from the final bad mask ``(ny, nx)``; :meth:`apply` works in place on
    each float32 frame; :meth:`source_pixels` says, for a few pixels, which pixel's value each takes.
    ``coordinates_xy`` is ``(n, 2)`` int64 (x, y) of the bad pixels, in row-major order.
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

    def _frame_key(self, frame_index: int) -> np.uint64:
        """The hash of ``(seed, frame_index)`` every draw of that frame starts from."""
        if int(frame_index) < 0:
            raise ValueError(f"frame_index must be >= 0, got {frame_index}")
        return np.uint64(_splitmix64_py((_splitmix64_py(self.seed & _MASK64) + int(frame_index)) & _MASK64))

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
            frame.reshape(-1), self._bad_flat, self._candidate_ptr, self._candidate_flat, self._frame_key(frame_index)
        )

    def source_pixels(self, flat_px: np.ndarray, frame_index: int) -> np.ndarray:
        """For row-major flat pixel indices ``(m,)``: the flat index of the pixel whose value each has
        in frame ``frame_index`` after :meth:`apply` (its drawn candidate when bad, itself when good),
        int64 ``(m,)``. Only those pixels are looked at, not the frame."""
        flat = np.ascontiguousarray(flat_px, dtype=np.int64)
        if flat.ndim != 1:
            raise ValueError(f"flat_px must be 1-D, got shape {flat.shape}")
        size = self.shape[0] * self.shape[1]
        if flat.size and (flat.min() < 0 or flat.max() >= size):
            raise ValueError(f"flat_px must lie in [0, {size}) for a frame of shape {self.shape}")
        out = np.empty(flat.size, dtype=np.int64)
        _source_kernel(flat, self._bad_flat, self._candidate_ptr, self._candidate_flat, self._frame_key(frame_index),
                       out)
        return out

    def pixels_drawn_differently(self, other: PixelReplacer) -> np.ndarray:
        """Ascending flat indices (int64) of the pixels whose replacement may differ between this
        replacer and ``other`` in some frame: bad in one mask only, or bad in both with another list
        of candidates. Everywhere else the two give the same corrected frame (same seed and radius;
        otherwise every pixel bad in either is listed)."""
        if other.shape != self.shape:
            raise ValueError(f"replacers of different frame shapes {self.shape} and {other.shape}")
        either = np.union1d(self._bad_flat, other._bad_flat)
        if (other.seed, other.radius) != (self.seed, self.radius):
            return either
        changed = np.setxor1d(self._bad_flat, other._bad_flat, assume_unique=True)
        _, ia, ib = np.intersect1d(self._bad_flat, other._bad_flat, assume_unique=True, return_indices=True)
        counts_a, counts_b = self._counts[ia], other._counts[ib]
        differ = counts_a != counts_b
        same_count = np.flatnonzero(~differ)
        if same_count.size:  # compare the candidate lists of those with equal counts, element by element
            n = counts_a[same_count]
            owner = np.repeat(np.arange(same_count.size), n)
            within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            a = self._candidate_flat[self._candidate_ptr[ia[same_count]][owner] + within]
            b = other._candidate_flat[other._candidate_ptr[ib[same_count]][owner] + within]
            differ[same_count] = np.bincount(owner, weights=a != b, minlength=same_count.size) > 0
        return np.union1d(changed, self._bad_flat[ia[differ]])
