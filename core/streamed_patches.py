"""Patch spectra of a movie's alignment copy, built frame by frame while the movie is written.

Local motion is measured on patches of the alignment copy registered by the whole-frame
trajectory (:mod:`framewatch.core.local_align`), and that trajectory is final only once every frame
is in: measuring the patches then took 0.3 s after the last frame of a 4096² movie (5 x 5 patches
of 340 alignment pixels), most of it registering the frames and transforming their patches.

While frames arrive, :class:`StreamedPatches` registers each by a *preliminary* shift instead (its
alignment copy correlated with the sum of the frames before it, each registered the same way), cuts
its patches, removes their means, tapers and transforms them at once, and adds their spectra to
those of its frame group (the spectrum of a group's summed patch is the sum of its frames' patch
spectra: every step is linear). When the movie is complete, :meth:`StreamedPatches.measurements`
first moves each group's patch spectra by the mean difference between its frames' final whole-frame
shifts and their preliminary ones (a phase ramp: the tapered patch shifted by a fraction of a pixel
rather than cut again from the frame shifted by it), then measures the patch trajectories from
them. Taking the difference out of the measurements instead was not enough: with two leave-one-out
passes the patch estimator is not equivariant to a shift of one group (it recovered 70-80 % of it).
What is left is the spread of the differences within a group, and the pixels that cross a patch's
tapered edge; the pooled model (:mod:`framewatch.core.separable_motion`) fits a common translation
per frame as a nuisance, so a common error of a frame does not reach the model.

The caller measures as before, on the copy registered by the final shifts, when the streamed
spectra do not fit the movie as it ended: another patch grid or frame grouping (final settings from
an mdoc written after the movie, or too few frames), a frame whose preliminary shift is more than
:data:`MAX_REGISTRATION_ERROR_PX` from its final one (the correlation with the frames before it
failed), or group spectra that would need more than :data:`STREAMED_PATCHES_MAX_BYTES`.
"""
from __future__ import annotations

import time

import numpy as np

from .fourier import irfft2, shift_phase_vectors, shift_spectrum
from .global_align import bfactor_filter
from .local_align import PatchGrid, PatchLayout, PatchMeasurements, PatchOptions, measure_patch_spectra, patch_block_spectra
from .peak import find_peak, offset_mask
from .spectral_weight import SpectralSNR

__all__ = ["MAX_REGISTRATION_ERROR_PX", "STREAMED_PATCHES_MAX_BYTES", "StreamedPatches"]

# alignment pixels: a frame's preliminary shift this far from its final one was a failed correlation
# (at 4096² and 0.3 e/A^2 per frame the two differ by a few hundredths of a pixel)
MAX_REGISTRATION_ERROR_PX = 1.0
# the frame groups' patch spectra (4096², 5 x 5 patches of 340 px: 11.6 MB per group)
STREAMED_PATCHES_MAX_BYTES = 256 << 20


class StreamedPatches:
    """Patch spectra of the frames of one movie, added one frame at a time (module docstring).

    ``align_shape`` ``(ay, ax)``: the alignment copy; ``grid``: the patches; ``group_size``: frames
    per group (frame ``i`` belongs to group ``i // group_size`` while frames arrive; a remainder
    joins the last group at the end); ``window``: the patches' taper ``(size, size)``;
    ``bfactor_px2`` (alignment pixels squared) filters the preliminary correlation, whose peak is
    searched within ``max_shift_px`` alignment pixels; ``threads`` for the transforms."""

    def __init__(self, *, align_shape: tuple[int, int], grid: PatchGrid, group_size: int, window: np.ndarray,
                 bfactor_px2: float, max_shift_px: float, threads: int):
        self._shape = (int(align_shape[0]), int(align_shape[1]))
        self.grid = grid
        self.group_size = int(group_size)
        self._window = window
        self._filt = bfactor_filter(self._shape, bfactor_px2=bfactor_px2)
        self._mask = offset_mask(self._shape, max(1.0, float(max_shift_px)))
        self._threads = int(threads)
        self._reference: np.ndarray | None = None  # the sum of the registered alignment spectra so far
        self._groups: list[np.ndarray] = []  # per group: complex64 (n_patches, size, size//2+1)
        self.preliminary_px: list[tuple[float, float]] = []  # per frame (x, y), alignment pixels
        self.dropped: str | None = None  # why the streamed spectra cannot be used, once known
        self.seconds = 0.0  # time spent in add()
        self.used = False  # measurements() gave the measurements

    @property
    def n_frames(self) -> int:
        return len(self.preliminary_px)

    def add(self, cropped: np.ndarray) -> None:
        """Take the next frame's alignment spectrum ``(ay, ax//2+1)`` complex64."""
        if self.dropped is not None:
            return
        t = time.perf_counter()
        shape = self._shape
        if self._reference is None:
            dx = dy = 0.0
        else:
            cc = irfft2(cropped * np.conj(self._reference) * self._filt, shape, threads=self._threads)
            dx, dy, _ = find_peak(cc, self._mask)
        registered = shift_spectrum(cropped, shape, -dx, -dy)
        if self._reference is None:
            self._reference = registered.copy()
        else:
            self._reference += registered
        self.preliminary_px.append((dx, dy))
        image = irfft2(registered, shape, threads=self._threads)
        size = self.grid.size_px
        blocks = np.stack([image[y0 : y0 + size, x0 : x0 + size] for x0, y0 in self.grid.corners])
        spectra = patch_block_spectra(blocks, self._window, threads=self._threads)
        k = (self.n_frames - 1) // self.group_size
        if k < len(self._groups):
            self._groups[k] += spectra
        elif (k + 1) * spectra.nbytes > STREAMED_PATCHES_MAX_BYTES:
            self._drop(f"the group spectra would need more than {STREAMED_PATCHES_MAX_BYTES >> 20} MiB")
        else:
            self._groups.append(spectra)
        self.seconds += time.perf_counter() - t

    def measurements(self, shifts_px: np.ndarray, *, layout: PatchLayout, bin_factor: float,
                     options: PatchOptions, spectral_snr: SpectralSNR | None = None) -> PatchMeasurements | None:
        """The patch measurements of the movie whose final whole-frame shifts are ``shifts_px``
        ``(n_frames, 2)`` (output pixels, frame 0 at zero) and whose patches are laid out by
        ``layout``, as :func:`~framewatch.core.local_align.measure_patches` would give them on the
        copy registered by those shifts (weighted by the whole-frame ``spectral_snr`` the same way);
        ``None`` (with :attr:`dropped` saying why) when the
        streamed spectra do not fit (module docstring). The spectra are released either way."""
        groups, self._groups, self._reference = self._groups, [], None
        final = np.asarray(shifts_px, dtype=np.float64) / bin_factor  # alignment pixels
        reason = self.dropped or self._misfit(final, layout)
        if reason is not None:
            self._drop(reason)
            return None
        if len(groups) > len(layout.bounds):  # the remainder's frames join the last group
            remainder = groups.pop()
            groups[-1] += remainder
        # each group's patches moved to where the final shifts put them: a phase ramp of the group's
        # mean difference (a tapered patch shifted by a fraction of a pixel, not cut again)
        difference = final - np.array(self.preliminary_px)
        size = self.grid.size_px
        for (a, b), spectra in zip(layout.bounds, groups):
            dx, dy = difference[a:b].mean(axis=0)
            if dx or dy:
                py, px = shift_phase_vectors((size, size), -dx, -dy)
                spectra *= py[:, None] * px[None, :]
        self.used = True
        return measure_patch_spectra(lambda start, stop: np.stack([g[start:stop] for g in groups], axis=1),
                                     layout, bin_factor=bin_factor, options=options, spectral_snr=spectral_snr)

    def _misfit(self, final: np.ndarray, layout: PatchLayout) -> str | None:
        if final.shape != (self.n_frames, 2):
            return f"{self.n_frames} frames streamed, {final.shape[0]} aligned"
        grid = layout.grid
        if (grid.shape, grid.size_px) != (self.grid.shape, self.grid.size_px) or \
                not np.array_equal(grid.corners, self.grid.corners):
            return f"patches {grid.shape} of {grid.size_px} px at the end, streamed {self.grid.shape} of {self.grid.size_px}"
        g = self.group_size
        streamed = [(s, min(s + g, self.n_frames)) for s in range(0, self.n_frames, g)]
        if len(streamed) > 1 and streamed[-1][1] - streamed[-1][0] < g:
            streamed[-2:] = [(streamed[-2][0], self.n_frames)]
        if tuple(streamed) != tuple(layout.bounds):
            return f"frame groups {list(layout.bounds)} at the end, streamed groups of {g}"
        error = float(np.abs(final - np.array(self.preliminary_px)).max())
        if error > MAX_REGISTRATION_ERROR_PX:
            return f"a preliminary shift was {error:.2f} alignment px from the final one"
        return None

    def _drop(self, reason: str) -> None:
        self.dropped = reason
        self._groups, self._reference = [], None
