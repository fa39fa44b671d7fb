"""The last final defect mask of a camera, kept for the next streaming job and across restarts
(daemon/state/defect_masks.py, records.DefectMask), with the real drift log."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framewatch.core.settings import CorrectionSettings
from framewatch.daemon.outputs.driftlog import DriftLog
from framewatch.daemon.state.defect_masks import DefectMaskMemory, read_mask_file, write_mask_file
from framewatch.daemon.state.records import CorrectionJob, DefectMask


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.data())
def test_a_mask_from_coordinates_gives_back_the_same_pixels(ny, nx, data):
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=ny * nx, max_size=ny * nx)), bool).reshape(ny, nx)
    ys, xs = np.nonzero(mask)
    m = DefectMask.from_coordinates_xy(np.stack([xs, ys], axis=1), (ny, nx))
    assert np.array_equal(m.as_array(), mask)
    assert m.flat.size == mask.sum() and np.all(np.diff(m.flat) > 0)


def test_the_mask_is_kept_across_a_restart_for_its_camera_only(tmp_path):
    path = tmp_path / "defect-mask.npz"
    log = DriftLog(tmp_path / "framewatch.jsonl")
    mask = DefectMask.from_coordinates_xy([[3, 1], [0, 0], [7, 5]], (6, 8))
    first = DefectMaskMemory(path, log=log)
    assert first.expected("cam") is None and not path.exists()
    first.remember("cam", mask)
    again = DefectMaskMemory(path, log=log)  # the next start
    kept = again.expected("cam")
    assert kept is not None and kept.shape == (6, 8) and kept.flat.tolist() == [0, 11, 47]
    assert again.expected("another camera") is None
    # a new camera's mask replaces it; the same mask again writes nothing
    other = DefectMask.from_coordinates_xy([[1, 1]], (6, 8))
    again.remember("other", other)
    before = path.stat().st_mtime_ns
    again.remember("other", DefectMask.from_coordinates_xy([[1, 1]], (6, 8)))
    assert path.stat().st_mtime_ns == before
    third = DefectMaskMemory(path, log=log)
    assert third.expected("cam") is None and third.expected("other").flat.tolist() == [9]
    log.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "outside", "unsorted"])
def test_a_damaged_mask_file_is_logged_once_and_ignored(tmp_path, damage):
    path = tmp_path / "defect-mask.npz"
    if damage == "garbage":
        path.write_bytes(b"not a mask")
    elif damage == "truncated":
        write_mask_file(path, "cam", DefectMask.from_coordinates_xy([[1, 2]] * 3, (4, 4)))
        path.write_bytes(path.read_bytes()[:40])
    else:
        flat = np.array([3, 99] if damage == "outside" else [5, 2], np.int64)
        write_mask_file(path, "cam", DefectMask((4, 4), flat))
        with pytest.raises(ValueError):
            read_mask_file(path)
    log = DriftLog(tmp_path / "framewatch.jsonl")
    memory = DefectMaskMemory(path, log=log)
    log.close()
    assert memory.expected("cam") is None
    [e] = [e for e in _events(tmp_path / "framewatch.jsonl") if e["event"] == "defect_mask_unreadable"]
    assert e["level"] == "warning" and e["path"] == str(path)
    # the next mask replaces the damaged file
    memory.remember("cam", DefectMask.from_coordinates_xy([[2, 3]], (4, 4)))
    assert read_mask_file(path)[1].flat.tolist() == [14]


def test_the_camera_is_the_gain_the_defects_the_orientation_and_the_binning(tmp_path):
    s = CorrectionSettings(pixel_size_a=1.0, dose_per_frame_e_per_a2=0.5)
    job = CorrectionJob(1, "a.tif", settings=s, gain="/g.mrc", defects=None)
    assert job.camera == CorrectionJob(2, "b.tif", settings=s, gain="/g.mrc").camera
    assert job.camera != CorrectionJob(2, "b.tif", settings=s, gain="/other.mrc").camera
    assert job.camera != CorrectionJob(2, "b.tif", settings=s, gain="/g.mrc", defects="/d.txt").camera
    binned = dataclasses.replace(s, fourier_bin=2)
    assert job.camera != CorrectionJob(2, "b.tif", settings=binned, gain="/g.mrc").camera
