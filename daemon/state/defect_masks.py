"""The last final defect mask of a camera, given to the next streaming job and kept across restarts.

A streaming job corrects its first frames before the movie's own defect mask is known (the hot
pixels are found on the whole movie); it starts from the final mask of the camera's last movie and,
where the final mask differs, updates the frames already transformed in Fourier space
(core/streaming_correction.py). Without a mask to start from -- the first movie after a start, until
now -- every frame transformed so far is updated: on the development VM the first EER tilt after a
restart fell behind its writer (5 of 10 fractions streamed by the end, 1.5 s from the close to the
result against 0.8 s with the mask; TIFF: 0.16 s of Fourier-space updates).

:class:`DefectMaskMemory` keeps the mask of the last corrected movie (one camera: a new camera's
mask replaces it) in memory and in ``STATE/defect-mask.npz`` (written when it changes; a temporary
file renamed into place, not fsync'd: a mask lost in a crash only costs the next movie time). A file
that cannot be read (damaged, another version's) is logged (``defect_mask_unreadable``) and ignored.
The mask is only ever a hint: the final mask of every movie is its own.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from framewatch.daemon.state.records import DefectMask

FILE_NAME = "defect-mask.npz"


class DefectMaskMemory:
    def __init__(self, path: Path, *, log):
        """``path``: the state file (``STATE/defect-mask.npz``), read now if it exists; ``log``: the drift log."""
        self._path = Path(path)
        self._log = log
        self._camera: str | None = None
        self._mask: DefectMask | None = None
        if self._path.exists():
            try:
                self._camera, self._mask = read_mask_file(self._path)
            except Exception as err:  # noqa: BLE001 - damaged in any way (not a zip, a key missing, ...): ignored
                self._log.event("defect_mask_unreadable", level="warning", path=str(self._path),
                                reason=f"{type(err).__name__}: {err}",
                                note="ignored: the first streamed movie finds its hot pixels without a hint")

    def expected(self, camera: str) -> DefectMask | None:
        """The last mask of ``camera`` (records.CorrectionJob.camera), or None."""
        return self._mask if camera == self._camera else None

    def remember(self, camera: str, mask: DefectMask | None) -> None:
        """The final mask of a movie of ``camera`` just corrected; written to the state file when it
        differs from the one kept."""
        if mask is None or (camera == self._camera and mask.same_as(self._mask)):
            return
        self._camera, self._mask = camera, mask
        try:
            write_mask_file(self._path, camera, mask)
        except OSError as err:  # e.g. the state disk is full: the mask is still kept in memory
            self._log.event("defect_mask_not_saved", level="warning", path=str(self._path),
                            reason=f"{type(err).__name__}: {err}")


def write_mask_file(path: Path, camera: str, mask: DefectMask) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, camera=np.array(camera), shape=np.array(mask.shape, dtype=np.int64),
                 flat=np.asarray(mask.flat, dtype=np.int64))
    os.replace(tmp, path)


def read_mask_file(path: Path) -> tuple[str, DefectMask]:
    """``(camera, mask)`` from a file :func:`write_mask_file` wrote; ValueError when it is not valid."""
    with np.load(path, allow_pickle=False) as z:
        camera, shape, flat = str(z["camera"][()]), z["shape"], z["flat"]
    if shape.shape != (2,) or shape.dtype.kind != "i" or int(shape.min()) < 1 or int(shape.prod()) > 1 << 31:
        raise ValueError(f"frame shape {shape.tolist()} is not valid")
    ny, nx = int(shape[0]), int(shape[1])
    if flat.ndim != 1 or flat.dtype.kind != "i" or flat.size > ny * nx:
        raise ValueError(f"pixel indices of dtype {flat.dtype}, shape {flat.shape} are not valid")
    if flat.size and (int(flat[0]) < 0 or int(flat[-1]) >= ny * nx or np.any(np.diff(flat) <= 0)):
        raise ValueError("pixel indices are not sorted, unique and inside the frame")
    return camera, DefectMask((ny, nx), flat.astype(np.int64))
