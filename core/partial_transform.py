"""A frame's forward transform done in two steps: the low ``kx`` columns first, the rest on demand.

``scipy.fft.rfft2`` transforms every row (real to complex), then every column of the half
spectrum. The Fourier-cropped alignment copy needs only the lowest ``kx`` columns, so
:class:`PartialSpectrum` transforms all rows and only those columns; :meth:`PartialSpectrum.complete`
transforms the remaining columns in place when the full spectrum is needed after all. Both steps
are the same one-dimensional transforms ``rfft2`` does, in the same order: the completed spectrum
is bit-identical to ``rfft2`` of the frame (``tests/test_partial_transform.py``).

When local motion is applied, the output comes from warped frames transformed again, so the first
pass never needs the full spectrum: at 4096 x 4096 the column pass for a 1024-pixel alignment
copy is a quarter of the full one (a frame's transform ~45 ms -> ~24 ms on 2 cores). When it is
declined, completing costs what the full transform would have cost.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["PartialSpectrum"]


def _columns_in_place(block: np.ndarray, *, threads: int) -> None:
    """Forward transform along axis 0 of ``block`` (a column slice of a half spectrum), in place."""
    out = scipy.fft.fft(block, axis=0, workers=threads, overwrite_x=True)
    if not np.shares_memory(out, block):  # scipy chose not to overwrite: copy the result in
        block[...] = out


class PartialSpectrum:
    """The half spectrum ``(ny, nx//2+1)`` complex64 of a float32 frame ``(ny, nx)``, finished only
    in its first ``head_kx`` columns until :meth:`complete` (the frame is overwritten)."""

    def __init__(self, image: np.ndarray, *, head_kx: int, threads: int):
        self._threads = threads
        self._data = scipy.fft.rfft(image, axis=1, workers=threads, overwrite_x=True)
        self._head_kx = min(int(head_kx), self._data.shape[1])
        _columns_in_place(self._data[:, : self._head_kx], threads=threads)
        self._complete = self._head_kx == self._data.shape[1]

    @property
    def head(self) -> np.ndarray:
        """The finished columns: a ``(ny, head_kx)`` view of the spectrum."""
        return self._data[:, : self._head_kx]

    def complete(self) -> np.ndarray:
        """The full half spectrum (the remaining columns transformed in place on the first call)."""
        if not self._complete:
            _columns_in_place(self._data[:, self._head_kx :], threads=self._threads)
            self._complete = True
        return self._data
