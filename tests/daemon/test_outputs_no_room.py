"""Whole-file outputs (sorted stacks, tables) that fail half-way -- the output disk full, found by
the torture run -- leave the old file as it was and no temporary file behind."""
import errno

import numpy as np
import pytest

from framewatch.core import atomic_write
from framewatch.core.atomic_write import atomic_write_text
from framewatch.daemon.outputs.stack import write_stack


def no_room(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_sorted_stack_that_does_not_fit(tmp_path):
    path = tmp_path / "TS_01_sorted.mrc"
    write_stack(path, [np.ones((8, 8), np.float32)], pixel_size_a=1.0)
    before = path.read_bytes()

    def sections():
        yield np.zeros((8, 8), np.float32)
        no_room()

    with pytest.raises(OSError):
        write_stack(path, sections(), pixel_size_a=1.0)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_table_that_does_not_fit(tmp_path, monkeypatch):
    path = tmp_path / "TS_01.tilts.tsv"
    atomic_write_text(path, "old\n")
    monkeypatch.setattr(atomic_write.os, "fsync", no_room)
    with pytest.raises(OSError):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_plot_that_does_not_fit(tmp_path, monkeypatch):
    import matplotlib.figure

    from framewatch.daemon.outputs.plots import SeriesPlotData, normalise_record, render_series_plot

    recs = [normalise_record({"z": z, "tilt_angle_deg": 3.0 * z, "acquisition_index": z, "total_motion_a": 2.0,
                              "early_motion_a": 1.0, "late_motion_a": 1.0, "max_frame_shift_a": 0.5, "frc_0_143_a": 8.0,
                              "pixel_size_a": 1.5, "movie": f"m{z}.tif"}) for z in range(3)]
    data = SeriesPlotData("TS_01", recs, {z: np.zeros((6, 2)) for z in range(3)})
    path = tmp_path / "TS_01.drift.png"
    render_series_plot(data, path)
    before = path.read_bytes()

    def savefig(self, fname, **kw):
        open(fname, "wb").close()  # the file is created, then the disk is full
        no_room()

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    with pytest.raises(OSError):
        render_series_plot(data, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
