"""Resampling of a frame through a smooth displacement field, with cubic B-spline interpolation.

Local (patch-based) motion correction leaves, for each frame, a smooth residual displacement field
``d(x, y) = (dx, dy)`` in movie pixels: a specimen feature at ``(x, y)`` in the reference
configuration appears at ``(x + dx, y + dy)`` in the frame (the DESIGN convention). The corrected
frame is therefore the frame *sampled* at the displaced positions::

    corrected[y, x] = frame(x + dx(x, y), y + dy(x, y))

so a constant integer field ``(3, -2)`` gives ``corrected[y, x] == frame[y - 2, x + 3]``.

Interpolation of the IMAGE: cubic B-spline (Unser, Aldroubi & Eden 1991; Thevenaz, Blu & Unser
2000). The image is first turned into B-spline coefficients ``c`` such that
``sum_{k,l} c[l, k] b3(x - k) b3(y - l)`` passes through every pixel value; this "prefilter" is the
inverse of the sampled kernel ``(1, 4, 1) / 6`` along each axis, computed as a causal and an
anti-causal first-order recursive filter with the pole ``z = sqrt(3) - 2`` and gain
``(1 - z)(1 - 1/z) = 6``. The image is then evaluated at any real position with 4 x 4 taps. Unlike
bilinear interpolation (the amplitude of a half-pixel shift falls to ``cos(pi f)``: 0.31 at 0.8
Nyquist) or nearest-pixel resampling, a prefiltered cubic B-spline keeps about 0.66 of the
amplitude at 0.8 Nyquist for the worst (half-pixel, on-axis) shift and is exact at integer shifts
(averaged over the 0.8 Nyquist ring, a half-pixel shift in x and y keeps 0.78 against bilinear's
0.35; tests/test_resample.py measures it).

Boundary: MIRROR (whole-sample symmetric, ``... c b | a b c ... | b a ...``, period ``2n - 2``,
the same as ``scipy.ndimage`` ``mode='mirror'``) for both the prefilter and the evaluation, so
positions up to the frame edge and a little beyond are well defined and no dark border appears.

Interpolation of the FIELD: the displacement is given on a coarse regular grid (the field is
smooth): ``field[j, i]`` is the displacement at pixel ``(x = i * step, y = j * step)``; the grid
shape is :func:`field_grid_shape` and its last node lies at or beyond the last pixel. Inside the
kernel the displacement at each pixel is the bilinear interpolation of the four surrounding nodes.

All images are float32 ``(ny, nx)``, C order, x the fast axis; displacements are in movie pixels.
The numba kernels run on the numba thread pool, in parallel over rows (warp) or strips of rows
(prefilter).

The prefilter is linear and shift-invariant, so it can also be applied after the warp, in Fourier
space (:func:`prefilter_factors`): the correction warps each frame with the taps on its raw pixels
and folds the prefilter into the weighted sums, which saves one pass over every frame. The two
orders differ only where the field changes across the kernel's few pixels (a smooth local field:
~1e-3 px per pixel) and in a band at the edges (mirror here, periodic in Fourier space).

The prefilter is :mod:`framewatch.core.bspline_prefilter`, the warp and its grid
:mod:`framewatch.core.image_warp`; this module keeps their public names.
"""
from __future__ import annotations

from .bspline_prefilter import bspline_prefilter, prefilter_factors
from .image_warp import field_grid_shape, warp_image

__all__ = ["bspline_prefilter", "field_grid_shape", "prefilter_factors", "warp_image"]
