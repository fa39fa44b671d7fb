"""The outputs other programs start from: the RELION 5 tables (relion_tables.py), rewritten with
the tilt table after every append and at start-up, and the tidying of the per-tilt images
(tilt_images.py) at start-up.

A mixin of :class:`framewatch.daemon.pipeline.Daemon`.
"""
from __future__ import annotations

from framewatch.daemon.outputs.no_follow import atomic_write_text
from framewatch.daemon.outputs.relion_tables import GLOBAL_TABLE, GlobalRow, RelionSettings, global_table, series_table
from framewatch.daemon.outputs.series_outputs import SeriesPaths, records_of
from framewatch.daemon.outputs.tilt_images import tidy_tilt_images


class InteropOutputs:
    def _relion_settings(self) -> RelionSettings:
        return RelionSettings.from_output_options(self.cfg.output, self.out_dir)

    def _write_relion_tables(self, s: dict, paths: SeriesPaths, rows: list[dict]) -> None:
        """``SERIES.star`` of this series, then ``tilt_series.star``; raises OSError (disk full)."""
        _, kept = records_of(rows, self.cfg.series.angle_tolerance_deg)
        if kept:
            atomic_write_text(paths.star, series_table(s["name"], paths.dir, kept, self._relion_settings()))
        self._write_global_table()

    def _write_global_table(self) -> None:
        entries = []
        for s in self.journal.all_series(self.hash):
            rows = self.journal.sections(s["id"])
            if not rows:
                continue
            paths = SeriesPaths.of(self.out_dir, s["out_rel"])
            if not paths.star.exists():
                continue  # its table is not written yet (the disk was full): listed once it is
            res = rows[0]["info"]["resolved"]
            px = float(res["pixel_size_a"])
            entries.append(GlobalRow(series=s["name"], series_star=paths.star, voltage_kv=float(res["voltage_kv"]),
                                     pixel_size_a=px, tilt_series_pixel_size_a=px * self.opts.fourier_bin))
        if entries:
            atomic_write_text(self.set_dir / GLOBAL_TABLE, global_table(entries, self._relion_settings()))

    def _tidy_tilt_images(self, paths: SeriesPaths, rows: list[dict]) -> None:
        """At start-up: leftovers of a crash and images of movies that are not done go."""
        for p in tidy_tilt_images(paths.dir, [r["path"] for r in rows]):
            self.log.event("tilt_image_removed", level="info", path=str(p),
                           reason="temporary left by a crash" if p.name.startswith(".") else "its movie is not done")
