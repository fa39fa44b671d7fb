"""Processing: handing queued movies to the workers, taking their results (retry with back-off,
failure, worker death), and appending the sections in order, then the journal, tables and log.

A mixin of :class:`framewatch.daemon.pipeline.Daemon`.
"""
from __future__ import annotations

import time

import numpy as np

from framewatch.core.errors import FramewatchError

from . import faults
from .intake import Candidate
from .outputs import SeriesPaths, append_tilt, repair_stacks, rewrite_tables
from .quality import flag_reasons


class Processing:
    def _dispatch(self, now: float) -> None:
        while self.pool.has_room() and len(self.queue):
            item = self.queue.pop()
            row = self.journal.get(item.movie_id)
            res = row["info"]["resolved"]
            try:
                settings = self.opts.settings(
                    n_frames=row["n_frames"],
                    pixel_size_a=res["pixel_size_a"],
                    dose_per_frame_e_per_a2=res["dose_per_frame_e_per_a2"],
                    prior_dose_e_per_a2=res["prior_dose_e_per_a2"] if res["prior_dose_e_per_a2"] is not None else 0.0,
                    voltage_kv=res["voltage_kv"],
                )
            except FramewatchError as err:
                self.journal.update(item.movie_id, state="failed", error=str(err))
                self._log_failed(row, "settings", str(err))
                self._finish_path(row)
                continue
            job = {
                "movie": row["path"],
                "settings": settings,
                "gain": None if self.opts.gain is None else str(self.opts.gain),
                "defects": None if self.opts.defects is None else str(self.opts.defects),
                "expected_frames": row["n_frames"],
            }
            self.journal.update(item.movie_id, state="processing", started_at=time.time())
            self.pool.submit(item.movie_id, job)
            self._dispatch_order += 1
            self._order[item.movie_id] = (item.series_id, self._dispatch_order)

    def _collect(self, now: float) -> None:
        finished = self.pool.finished()
        broken = False
        for mid, res in finished:
            row = self.journal.get(mid)
            if isinstance(res, BaseException):
                broken = True
                self._order.pop(mid, None)
                n = row["interruptions"] + 1
                why = f"worker process died ({type(res).__name__})"
                if n >= self.cfg.watch.max_interruptions:
                    self.journal.update(mid, state="failed", interruptions=n, error=why)
                    self._log_failed(row, "correct", why)
                    self._finish_path(row)
                else:
                    self.journal.update(mid, state="seen", interruptions=n)
                    self.log.event("movie_interrupted", movie=row["path"], interruptions=n, redo=True, reason=why)
                    self._retrack(row, now)
            elif "error" in res:
                self._order.pop(mid, None)
                attempts = row["attempts"] + 1
                if res.get("retryable") and attempts < self.cfg.watch.max_attempts:
                    delay = self.cfg.watch.retry_backoff_s * 2 ** (attempts - 1)
                    self.journal.update(mid, state="seen", attempts=attempts, error=res["error"])
                    self.log.event("movie_retry", level="warning", movie=row["path"], attempt=attempts, retry_in_s=delay, reason=res["error"])
                    self._retrack(row, now, delay=delay)
                else:
                    self.journal.update(mid, state="failed", attempts=attempts, error=res["error"])
                    self._log_failed(self.journal.get(mid), "correct", res["error"])
                    self._finish_path(row)
            else:
                self.held[mid] = res
        if broken and self.pool.broken():
            self.pool.restart()
        # append in dispatch order within a series (several workers may finish out of order)
        for mid in sorted(self.held, key=lambda m: self._order.get(m, (0, 0))[1]):
            sid, order = self._order.get(mid, (None, 0))
            earlier = [m for m, (s, o) in self._order.items() if s == sid and o < order and m != mid]
            if earlier:
                continue
            res = self.held.pop(mid)
            self._order.pop(mid, None)
            self._append(mid, res)

    def _retrack(self, row: dict, now: float, delay: float = 0.0) -> None:
        self.busy_paths.discard(row["path"])
        self.cands[row["path"]] = Candidate(row["path"], row["id"], next_check=now + delay, backoff_until=now + delay)

    def _finish_path(self, row: dict) -> None:
        self.busy_paths.discard(row["path"])
        self.final[row["path"]] = (row["size"], row["mtime_ns"])

    def _px(self, row: dict) -> float:
        return float(row["info"]["resolved"]["pixel_size_a"])

    def _append(self, mid: int, res: dict) -> None:
        row = self.journal.get(mid)
        s = self.journal.series(row["series_id"])
        paths = SeriesPaths.of(self.out_dir, s["out_rel"])
        z = self.journal.n_sections(s["id"])
        px = self._px(row)
        t0 = time.time()
        try:
            append_tilt(paths, z, (res["dose_weighted_sum"], res["even_sum"], res["odd_sum"]), pixel_size_a=px)
        except (OSError, ValueError, RuntimeError) as err:
            self.journal.update(mid, state="failed", error=f"append failed: {err}")
            self._log_failed(row, "append", f"{type(err).__name__}: {err}")
            repair_stacks(paths, z)
            self._finish_path(row)
            return
        done = time.time()
        stats = dict(res["statistics"])
        flags = list(row["info"]["tilt"].get("flags") or []) + flag_reasons(stats, self.cfg.thresholds, pixel_size_a=px)
        complete_at = row["complete_at"] or row["ready_at"] or t0
        timings = {
            "wait_s": round((row["started_at"] or t0) - complete_at, 4),
            "correct_s": round(res.get("worker_s", 0.0), 4),
            "append_s": round(done - t0, 4),
            "latency_s": round(done - complete_at, 4),
            "engine": res.get("engine_timings_s", {}),
        }
        info = dict(row["info"])
        info["worker"] = {"pid": res.get("pid"), "n_replaced_pixels": res.get("n_replaced_pixels"), "notes": res.get("notes", []),
                          "shifts_px": res.get("shifts_px")}
        faults.checkpoint("before_journal_done")
        self.journal.mark_done(mid, z=z, stats=stats, flags=flags, timings=timings, info=info, now=done)
        if s["complete"]:
            self.journal.update_series(s["id"], complete=0)
            self.log.event("series_reopened", series=s["name"], output_dir=str(paths.dir), n_tilts=z + 1)
        rows = self.journal.sections(s["id"])
        recs = rewrite_tables(paths, rows, self.cfg.series.angle_tolerance_deg)
        self._log_tilt(self.journal.get(mid), rows=rows)
        if self.cfg.plots.enabled:
            traj = {r["z"]: np.asarray(r["info"]["worker"]["shifts_px"]) for r in rows
                    if (r.get("info") or {}).get("worker", {}).get("shifts_px")}
            self.service.tilt_appended(paths.dir, recs, traj, self.cfg.thresholds, self.cfg.plots.latest_trajectories)
        self.journal.update(mid, logged=1)
        self._finish_path(self.journal.get(mid))
