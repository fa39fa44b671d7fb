"""Series completion: every tilt of the mdoc processed and the mdoc quiet, the expected number of
tilts in, or no new tilt for a while; then the angle-sorted stacks, .tlt and .star are written.
When the output disk is full they are not, and the series stays open until they can be.

A mixin of :class:`framewatch.daemon.service.daemon.Daemon`.
"""
from __future__ import annotations

import os

from framewatch.daemon.intake.naming import parse_movie_name
from framewatch.daemon.outputs.series_outputs import SeriesPaths, write_sorted


class Completion:
    def _check_series(self, now: float) -> None:
        self._retry_outputs()  # tables the full output disk kept back
        final_names = None
        for s in self.journal.all_series(self.hash):
            if s["complete"]:
                continue
            movies = self.journal.series_movies(s["id"])
            done = [m for m in movies if m["state"] == "done"]
            if not done:
                continue
            pending = any(m["state"] in ("seen", "ready", "processing") for m in movies)
            if not pending:
                for c in self.cands.values():
                    ni = parse_movie_name(c.path, self.index.patterns)
                    e = self.index.entry_for(c.path)
                    if (ni is not None and ni.series == s["name"]) or (e is not None and e[1].series_name == s["name"]):
                        pending = True
                        break
            if pending:
                continue
            reason = None
            n_final = sum(1 for m in movies if m["state"] in ("done", "failed"))
            if self.cfg.series.expected_tilts and n_final >= self.cfg.series.expected_tilts:
                reason = "expected_tilts"
            mdoc_paths = {m["info"]["tilt"].get("mdoc_path") for m in done if m.get("info")} - {None}
            if reason is None and mdoc_paths:
                if final_names is None:
                    final_names = {os.path.basename(p) for p in self.final}
                # done or failed: what this run saw, and what the journal knows (a failed movie
                # whose file is gone is never seen again after a restart)
                finished = final_names | {os.path.basename(m["path"]) for m in movies if m["state"] in ("done", "failed")}
                ok = True
                for mp in mdoc_paths:
                    names = self.index.mdoc_names(mp)
                    changed = self.index.mdoc_changed_at(mp)
                    if not names or changed is None or now - changed < self.cfg.series.mdoc_quiet_s or not set(names) <= finished:
                        ok = False
                if ok:
                    reason = "mdoc"
            last = s["last_tilt_at"] or max((m["done_at"] or 0) for m in done)
            if reason is None and now - last >= self.cfg.series.idle_s:
                reason = "idle"
            if reason:
                self._complete_series(s, done, reason, now)

    def _complete_series(self, s: dict, done: list[dict], reason: str, now: float) -> None:
        paths = SeriesPaths.of(self.out_dir, s["out_rel"])
        rows = self.journal.sections(s["id"])
        n_sorted = self._write_sorted(s, paths, rows)
        if n_sorted is None:
            return  # no room: tried again at the next check
        self.journal.update_series(s["id"], complete=1, completed_at=now, completed_sections=len(rows))
        self.log.event(
            "series_completed",
            series=s["name"],
            output_dir=str(paths.dir),
            reason=reason,
            n_tilts=len(rows),
            n_sorted=n_sorted,
            sorted_stack=str(paths.sorted_stack),
            duration_s=round(now - (s["started_at"] or now), 3),
        )

    def _write_sorted(self, s: dict, paths: SeriesPaths, rows: list[dict]) -> int | None:
        """The angle-sorted outputs; None when they could not be written (output disk full)."""
        try:
            n = write_sorted(paths, rows, self.cfg.series.angle_tolerance_deg, pixel_size_a=self._px(rows[0]))
        except OSError as err:
            self._output_failed(s, "sorted stacks", err)
            return None
        self._output_ok(s, "sorted stacks")
        return n
