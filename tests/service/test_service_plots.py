"""The per-series drift PNG, live (from records) and on demand (framewatch plot OUT/SERIES)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from framewatch.daemon.outputs.plots import PlotWorker, load_series, plot_path, render_series_plot
from framewatch.daemon.outputs.tilt_table import tsv_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_series(out, name="TS_01", n=6, *, shifts=True):
    d = out / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    recs = []
    with open(out / "framewatch.jsonl", "a") as log:
        log.write('{"event": "daemon_ready"}\n')
        for z in range(n):
            total = 2.0 + z
            recs.append(dict(z=z, movie=f"{name}_{z:03d}.tif", movie_path=f"/acq/{name}_{z:03d}.tif",
                             tilt_angle_deg=3.0 * ((z + 1) // 2) * (-1) ** z,
                             acquisition_index=z, total_motion_a=total, early_motion_a=total / 3, late_motion_a=2 * total / 3,
                             max_frame_shift_a=total / 4, frc_0_143_a=5.0, pixel_size_a=1.5,
                             flags=["total motion 7.00 A > 6 A"] if total > 6 else []))
            if shifts:
                t = np.cumsum(rng.normal(0, 0.5, (8, 2)), axis=0)
                t -= t[0]
                log.write(json.dumps({"event": "tilt_corrected", "output_dir": str(d), "z": z, "shifts_px": t.tolist()}) + "\n")
        log.write('{"event": "tilt_corrected", "output_dir": "/elsewhere", "z": 0, "shifts_px": [[0, 0]]}\n')
        log.write('{"event": "tilt_corr')  # a line being written
    (d / f"{name}.tilts.tsv").write_text(tsv_text(recs))
    return d


class TestPlots:
    def test_load_series(self, tmp_path):
        """Records from the tilt table, trajectories of this series only from the drift log."""
        d = write_series(tmp_path / "OUT")
        data = load_series(d)
        assert data.name == "TS_01" and len(data.records) == 6
        assert sorted(data.trajectories) == list(range(6))
        assert data.trajectories[0].shape == (8, 2)
        assert data.records[5]["flags"] and not data.records[0]["flags"]
        assert data.records[2]["total_motion_a"] == 4.0

    def test_render(self, tmp_path):
        d = write_series(tmp_path / "OUT")
        p = render_series_plot(load_series(d), plot_path(d), thresholds={"total_motion_a": 6.0, "early_motion_a": 1.5})
        assert p == d / "TS_01.drift.png"
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 20_000
        assert not list(d.glob(".*tmp"))

    def test_render_without_trajectories_or_values(self, tmp_path):
        """An old log without shifts and a tilt without statistics still give a plot."""
        d = write_series(tmp_path / "OUT", shifts=False)
        data = load_series(d)
        data.records[0]["total_motion_a"] = float("nan")
        assert render_series_plot(data, tmp_path / "x.png").stat().st_size > 10_000

    def test_cli(self, tmp_path, capsys):
        """framewatch plot OUT/SERIES writes SERIES.drift.png."""
        from framewatch.daemon.commands import plot as cmd_plot

        d = write_series(tmp_path / "OUT")
        import argparse

        args = argparse.Namespace(series_dir=str(d), output=None, config=None, log=None, latest=3)
        assert cmd_plot.run(args) == 0
        assert (d / "TS_01.drift.png").read_bytes()[:8] == PNG_MAGIC
        assert "TS_01.drift.png" in capsys.readouterr().out

    def test_cli_not_a_series(self, tmp_path):
        from framewatch.core.errors import FramewatchError
        from framewatch.daemon.outputs.plots import load_series

        with pytest.raises(FramewatchError, match="tilts.tsv"):
            load_series(tmp_path)

    def test_worker_coalesces_and_survives_errors(self):
        """Only the latest request per series is drawn; a failing plot is reported, not raised."""
        import threading

        gate = threading.Event()
        done, errors = [], []
        w = PlotWorker(on_error=lambda k, e: errors.append((k, str(e))))
        w.submit("block", lambda: gate.wait(5))
        for i in range(5):
            w.submit("TS", lambda i=i: done.append(i))

        def boom():
            raise RuntimeError("no font")

        w.submit("bad", boom)
        gate.set()
        assert w.wait_idle(10)
        w.close()
        assert done == [4]
        assert errors == [("bad", "no font")]
