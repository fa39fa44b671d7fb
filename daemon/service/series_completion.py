"""Series completion: every tilt of the mdoc processed and the mdoc quiet, the expected number of
tilts in, or no new tilt for a while; then the angle-sorted stacks, .tlt and .star are written.
When the output disk is full they are not, and the series stays open until they can be.
"""
from __future__ import annotations

import os

from framewatch.daemon.intake.naming import parse_movie_name
from framewatch.daemon.outputs.output_warnings import OutputWarnings
from framewatch.daemon.outputs.series_outputs import SeriesPaths, write_sorted


class SeriesCompletion:
    """Decides when a series is complete and writes its sorted outputs."""

    def __init__(self, *, journal, log, index, intake, tables, warnings: OutputWarnings, run, config):
        """``journal``, ``log`` (the drift log), ``index`` (series_grouping.SeriesIndex), ``intake``
        (MovieIntake: the movies still watched, the paths finished), ``tables`` (SeriesTables:
        ``retry_stale``), ``warnings``, ``run`` (RunContext), ``config`` (LiveConfig)."""
        self._journal = journal
        self._log = log
        self._index = index
        self._intake = intake
        self._tables = tables
        self._warnings = warnings
        self._run = run
        self._config = config

    def check(self, now: float) -> None:
        self._tables.retry_stale()  # tables the full output disk kept back
        final_names = None
        for s in self._journal.all_series(self._run.settings_hash):
            if s["complete"]:
                continue
            movies = self._journal.series_movies(s["id"])
            done = [m for m in movies if m["state"] == "done"]
            if not done or self._pending(s, movies):
                continue
            cfg = self._config.now.series
            reason = None
            n_final = sum(1 for m in movies if m["state"] in ("done", "failed"))
            if cfg.expected_tilts and n_final >= cfg.expected_tilts:
                reason = "expected_tilts"
            mdoc_paths = {m["info"]["tilt"].get("mdoc_path") for m in done if m.get("info")} - {None}
            if reason is None and mdoc_paths:
                if final_names is None:
                    final_names = self._intake.final_names()
                # done or failed: what this run saw, and what the journal knows (a failed movie
                # whose file is gone is never seen again after a restart)
                finished = final_names | {os.path.basename(m["path"]) for m in movies if m["state"] in ("done", "failed")}
                if all([self._mdoc_finished(mp, finished, now) for mp in mdoc_paths]):  # every mdoc looked at
                    reason = "mdoc"
            last = s["last_tilt_at"] or max((m["done_at"] or 0) for m in done)
            if reason is None and now - last >= cfg.idle_s:
                reason = "idle"
            if reason:
                self.complete(s, done, reason, now)

    def _pending(self, s: dict, movies: list[dict]) -> bool:
        """A movie of the series is still to be processed, or watched, or its per-tilt images are
        still being written (tilt_appender.py)."""
        if any(m["state"] in ("seen", "ready", "processing") or m.get("images_synced") == 0 for m in movies):
            return True
        for c in self._intake.cands.values():
            ni = parse_movie_name(c.path, self._index.patterns)
            e = self._index.entry_for(c.path)
            if (ni is not None and ni.series == s["name"]) or (e is not None and e[1].series_name == s["name"]):
                return True
        return False

    def _mdoc_finished(self, mdoc_path: str, finished: set[str], now: float) -> bool:
        """Every movie the mdoc lists is done or failed, and the mdoc has been quiet long enough."""
        names = self._index.mdoc_names(mdoc_path)
        changed = self._index.mdoc_changed_at(mdoc_path)
        return bool(names) and changed is not None and now - changed >= self._config.now.series.mdoc_quiet_s \
            and set(names) <= finished

    def complete(self, s: dict, done: list[dict], reason: str, now: float) -> None:
        paths = SeriesPaths.of(self._run.out_dir, s["out_rel"])
        rows = self._journal.sections(s["id"])
        n_sorted = self.write_sorted(s, paths, rows)
        if n_sorted is None:
            return  # no room: tried again at the next check
        self._journal.mark_series_complete(s["id"], completed_at=now, n_sections=len(rows))
        self._log.event(
            "series_completed",
            series=s["name"],
            output_dir=str(paths.dir),
            reason=reason,
            n_tilts=len(rows),
            n_sorted=n_sorted,
            sorted_stack=str(paths.sorted_stack),
            duration_s=round(now - (s["started_at"] or now), 3),
        )

    def write_sorted(self, s: dict, paths: SeriesPaths, rows: list[dict]) -> int | None:
        """The angle-sorted outputs; None when they could not be written (output disk full)."""
        try:
            n = write_sorted(paths, rows, self._config.now.series.angle_tolerance_deg,
                             pixel_size_a=self._run.output_pixel_size_a(rows[0]))
        except OSError as err:
            self._warnings.failed(s, "sorted stacks", err)
            return None
        self._warnings.ok(s, "sorted stacks")
        return n
