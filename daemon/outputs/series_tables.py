"""The tables of a series, rewritten from the journal after every append and at start-up: the tilt
table and ``.rawtlt`` (series_outputs.py), the RELION 5 tables ``SERIES.star`` and
``tilt_series.star`` (relion_tables.py); and, at start-up, the tidying of the per-tilt images
(tilt_images.py).

When the output disk is full (or not writable for now) a series' tables are remembered as stale and
written again by :meth:`SeriesTables.retry_stale` (the series completion check calls it).
"""
from __future__ import annotations

from framewatch.daemon.outputs.no_follow import atomic_write_text
from framewatch.daemon.outputs.output_warnings import OutputWarnings
from framewatch.daemon.outputs.relion_tables import GLOBAL_TABLE, GlobalRow, RelionSettings, global_table, series_table
from framewatch.daemon.outputs.series_outputs import SeriesPaths, records_of, rewrite_tables
from framewatch.daemon.outputs.tilt_images import tidy_tilt_images
from framewatch.daemon.state.records import TiltRecord


class SeriesTables:
    """Rewrites the tables of the series of one run (one settings hash)."""

    def __init__(self, *, journal, log, run, config, warnings: OutputWarnings):
        """``journal`` (state/journal.py), ``log`` (the drift log), ``run`` (state/run_context.RunContext),
        ``config`` (state/run_context.LiveConfig), ``warnings``: the run's output warnings."""
        self._journal = journal
        self._log = log
        self._run = run
        self._config = config
        self._warnings = warnings
        self._stale: set[int] = set()  # series whose tables could not be written (the output disk was full)

    def paths(self, s: dict) -> SeriesPaths:
        return SeriesPaths.of(self._run.out_dir, s["out_rel"])

    def write(self, s: dict, paths: SeriesPaths, rows: list[dict], *, relion_only: bool = False) -> list[TiltRecord]:
        """Rewrite the tilt table, .rawtlt and the RELION tables of a series; returns its records. When the
        output disk is full the series is remembered and :meth:`retry_stale` writes them later.
        ``relion_only``: only the RELION tables (a tilt's per-tilt images are in place: nothing else
        changed), unless the others are still to be written."""
        tolerance = self._config.now.series.angle_tolerance_deg
        recs, _ = records_of(rows, tolerance)
        try:
            if not relion_only or s["id"] in self._stale:
                rewrite_tables(paths, rows, tolerance, series_name=s["name"])
            self._write_relion_tables(s, paths, rows)
        except OSError as err:
            self._stale.add(s["id"])
            self._warnings.failed(s, "tables", err)
            return recs
        self._stale.discard(s["id"])
        self._warnings.ok(s, "tables")
        return recs

    def retry_stale(self) -> None:
        for sid in list(self._stale):
            s = self._journal.series(sid)
            self.write(s, self.paths(s), self._journal.sections(sid))

    def _relion_settings(self) -> RelionSettings:
        return RelionSettings.from_output_options(self._config.now.output, self._run.out_dir)

    def _write_relion_tables(self, s: dict, paths: SeriesPaths, rows: list[dict]) -> None:
        """``SERIES.star`` of this series, then ``tilt_series.star``; raises OSError (disk full). A
        tilt whose per-tilt images are still being written (``images_synced = 0``) is listed once
        they are there (tilt_appender.py rewrites the tables then)."""
        rows = [r for r in rows if r.get("images_synced") != 0]
        _, kept = records_of(rows, self._config.now.series.angle_tolerance_deg)
        if kept:
            atomic_write_text(paths.star, series_table(s["name"], paths.dir, kept, self._relion_settings()))
        self._write_global_table()

    def _write_global_table(self) -> None:
        entries = []
        for s in self._journal.all_series(self._run.settings_hash):
            rows = self._journal.sections(s["id"])
            if not rows:
                continue
            paths = self.paths(s)
            if not paths.star.exists():
                continue  # its table is not written yet (the disk was full): listed once it is
            res = rows[0]["info"]["resolved"]
            px = float(res["pixel_size_a"])
            entries.append(GlobalRow(series=s["name"], series_star=paths.star, voltage_kv=float(res["voltage_kv"]),
                                     pixel_size_a=px, tilt_series_pixel_size_a=px * self._run.fourier_bin))
        if entries:
            atomic_write_text(self._run.set_dir / GLOBAL_TABLE, global_table(entries, self._relion_settings()))

    def tidy_tilt_images(self, paths: SeriesPaths, rows: list[dict]) -> None:
        """At start-up: leftovers of a crash and images of movies that are not done go."""
        for p in tidy_tilt_images(paths.dir, [r["path"] for r in rows]):
            self._log.event("tilt_image_removed", level="info", path=str(p),
                            reason="temporary left by a crash" if p.name.startswith(".") else "its movie is not done")
