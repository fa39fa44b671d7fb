"""Processing: handing queued movies to the workers, taking their results (retry with back-off,
failure, worker death), and appending the sections in order, then the journal, tables and log.

A full output disk fails no movie: an append that finds no room (``ENOSPC``, ``EDQUOT``,
``EFBIG``) is undone (the stacks are cut back to the journal's count), the movie goes back to the
front of the queue -- it keeps its place in the series' order -- and no movie is handed to a
worker for a while (``retry_backoff_s``, doubling up to a minute, until an append succeeds). Tables
that could not be rewritten are rewritten by :meth:`Processing._retry_outputs`.

A mixin of :class:`framewatch.daemon.service.daemon.Daemon`.
"""
from __future__ import annotations

import errno
import time

import numpy as np

from framewatch.core.errors import FramewatchError
from framewatch.daemon.intake.movie_intake import Candidate
from framewatch.daemon.outputs.no_follow import LinkInOutputError
from framewatch.daemon.outputs.quality import flag_reasons
from framewatch.daemon.outputs.series_outputs import SeriesPaths, append_tilt, records_of, repair_stacks, rewrite_tables
from framewatch.daemon.outputs.tilt_images import remove_tilt_images, write_tilt_images
from framewatch.daemon.processing.gain_session import session_gain_orientation
from framewatch.daemon.state import faults
from framewatch.daemon.state.records import QueueItem

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# an output directory that is not writable for a while: permissions changed under the daemon, a
# share remounted read-only, a network file system's I/O error or stale handle
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ESTALE)
OUT_FULL_MAX_WAIT_S = 60.0


def no_room(err: BaseException) -> bool:
    """True for the errors of a full output file system (or a file-size limit)."""
    return isinstance(err, OSError) and err.errno in NO_ROOM


def transient(err: BaseException) -> bool:
    """True for the output errors that go away by themselves: no room, or not writable for now.
    A link planted in OUT (no_follow.py) is not one of them."""
    return isinstance(err, OSError) and not isinstance(err, LinkInOutputError) and err.errno in NO_ROOM + NOT_WRITABLE


class Processing:
    _out_full_until = 0.0  # no dispatch before this time: the output disk was full
    _out_full_count = 0  # appends that found no room since the last one that succeeded

    def _dispatch(self, now: float) -> None:
        gain_session = session_gain_orientation(self)
        while self.pool.has_room() and len(self.queue) and time.time() >= self._out_full_until:
            if not gain_session.ready():  # gain_orientation auto: undecided (movies wait) or refused (they fail)
                break
            item = self.queue.pop()
            row = self.journal.get(item.movie_id)
            res = row["info"]["resolved"]
            try:
                settings = gain_session.apply(self.opts.settings(
                    n_frames=row["n_frames"],
                    pixel_size_a=res["pixel_size_a"],
                    dose_per_frame_e_per_a2=res["dose_per_frame_e_per_a2"],
                    prior_dose_e_per_a2=res["prior_dose_e_per_a2"] if res["prior_dose_e_per_a2"] is not None else 0.0,
                    voltage_kv=res["voltage_kv"],
                ))
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
                "movie_dose_e_per_a2": res.get("dose_e_per_a2"),  # EER: groups the raw frames by dose
            }
            self.journal.update(item.movie_id, state="processing", started_at=time.time())
            self.pool.submit(item.movie_id, job)
            self._dispatch_order += 1
            # a movie back from a full disk keeps its place: later ones of its series wait for it
            self._order.setdefault(item.movie_id, (item.series_id, self._dispatch_order))

    def _collect(self, now: float) -> None:
        if self.log.pending:
            self.log.flush()  # lines the full output disk held back
        finished = self.pool.finished()
        for name, kw in self.pool.notes():  # the Dask pool's connection and worker lines
            self.log.event(name, **kw)
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
                    self.log.event("movie_retry", level="warning", movie=row["path"], attempt=attempts, retry_in_s=delay,
                                   reason=res["error"])
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
            earlier = [m for m, (s, o) in self._order.items() if s == sid and o < order and m != mid
                       and (m in self.held or m in self.pool.in_flight or m in self.queue)]
            if earlier:
                if self.stop_event.is_set() and all(m in self.queue for m in earlier):
                    # stopping, and an earlier movie of the series waits in the queue (the disk was
                    # full): this one is corrected again at the next start, after it
                    self.held.pop(mid)
                    self._order.pop(mid, None)
                    self.journal.update(mid, state="seen", started_at=None)
                continue
            res = self.held.pop(mid)
            place = self._order.pop(mid, None)
            if not self._append(mid, res) and place is not None and not self.queue.newest_first_backlog:
                # back in the queue (no room on disk): it stays first, later ones of its series wait
                # (not with newest-first, which takes it last: they would pile up in memory)
                self._order[mid] = place

    def _retrack(self, row: dict, now: float, delay: float = 0.0) -> None:
        self.busy_paths.discard(row["path"])
        self.cands[row["path"]] = Candidate(row["path"], row["id"], next_check=now + delay, backoff_until=now + delay)

    def _finish_path(self, row: dict) -> None:
        self.busy_paths.discard(row["path"])
        self.final[row["path"]] = (row["size"], row["mtime_ns"])

    def _px(self, row: dict) -> float:
        """Pixel size of the outputs: the movie's, times the Fourier binning (``--bin``)."""
        return float(row["info"]["resolved"]["pixel_size_a"]) * self.opts.fourier_bin

    def _append(self, mid: int, res: dict) -> bool:
        """Append one result; False when the output disk had no room (the movie is queued again)."""
        row = self.journal.get(mid)
        s = self.journal.series(row["series_id"])
        paths = SeriesPaths.of(self.out_dir, s["out_rel"])
        z = self.journal.n_sections(s["id"])
        px = self._px(row)
        t0 = time.time()
        images = (res["dose_weighted_sum"], res["even_sum"], res["odd_sum"])
        try:
            if self.cfg.output.per_tilt_images:  # first: a tilt in the stacks always has its images
                paths.make_dir()  # OUT/SERIES checked for links first (no_follow.py)
                write_tilt_images(paths.dir, row["path"], images, pixel_size_a=px)
            append_tilt(paths, z, images, pixel_size_a=px)
        except (OSError, ValueError, RuntimeError) as err:
            try:
                repair_stacks(paths, z)
                remove_tilt_images(paths.dir, row["path"])
            except OSError:
                pass  # cut back at the next append (append_tilt repairs first) or start
            if transient(err):  # the movie is fine: corrected and appended again later
                return not self._out_of_space(row, err)
            self.journal.update(mid, state="failed", error=f"append failed: {err}")
            self._log_failed(row, "append", f"{type(err).__name__}: {err}")
            self._finish_path(row)
            return True
        self._out_full_count = 0
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
        info["worker"] = {"pid": res.get("pid"), "where": res.get("worker") or f"local:{res.get('pid')}",
                          "n_replaced_pixels": res.get("n_replaced_pixels"), "notes": res.get("notes", []),
                          "shifts_px": res.get("shifts_px")}
        if res.get("n_raw_frames"):  # EER: raw frames grouped into fractions, the dose per frame is per fraction
            info["resolved"] = dict(info["resolved"], dose_per_frame_e_per_a2=res["dose_per_frame_e_per_a2"],
                                    n_raw_frames=res["n_raw_frames"])
            self.journal.update(mid, n_frames=res["n_frames"])
        faults.checkpoint("before_journal_done")
        self.journal.mark_done(mid, z=z, stats=stats, flags=flags, timings=timings, info=info, now=done)
        if s["complete"]:
            self.journal.update_series(s["id"], complete=0)
            self.log.event("series_reopened", series=s["name"], output_dir=str(paths.dir), n_tilts=z + 1)
        rows = self.journal.sections(s["id"])
        recs = self._write_tables(s, paths, rows)
        self._log_tilt(self.journal.get(mid), rows=rows)
        faults.checkpoint("after_tilt_logged")
        self.journal.update(mid, logged=1)
        self._replot(paths, rows, recs)
        self._finish_path(self.journal.get(mid))
        return True

    def _replot(self, paths: SeriesPaths, rows: list[dict], recs: list[dict]) -> None:
        """Redraw the series' drift plot (in the background)."""
        if self.cfg.plots.enabled:
            traj = {r["z"]: np.asarray(r["info"]["worker"]["shifts_px"]) for r in rows
                    if (r.get("info") or {}).get("worker", {}).get("shifts_px")}
            self.service.tilt_appended(paths.dir, recs, traj, self.cfg.thresholds, self.cfg.plots.latest_trajectories)

    def _replot_stale(self, s: dict, paths: SeriesPaths, rows: list[dict]) -> None:
        """At start-up: redraw a plot that misses the series' latest tilt, or whose drawing was cut
        short (the daemon died before the plot thread finished it; found by the torture run)."""
        if not (self.cfg.plots.enabled and rows):
            return
        from framewatch.daemon.outputs.plots import plot_path

        plot = plot_path(paths.dir)
        tmp = plot.with_name(f".{plot.name}.tmp")
        try:
            drawn = plot.stat().st_mtime
        except OSError:
            drawn = 0.0
        if tmp.exists() or drawn < (s["last_tilt_at"] or 0.0):
            tmp.unlink(missing_ok=True)
            self._replot(paths, rows, records_of(rows, self.cfg.series.angle_tolerance_deg)[0])

    def _out_of_space(self, row: dict, err: OSError) -> bool:
        """No room on the output disk: the movie is fine. Queue it again (it keeps its place in
        the series) and hand nothing to the workers for a while. False when the queue was full
        and it waits on disk instead."""
        mid = row["id"]
        self._out_full_count += 1
        delay = min(max(self.cfg.watch.retry_backoff_s, 0.1) * 2 ** (self._out_full_count - 1), OUT_FULL_MAX_WAIT_S)
        now = time.time()
        self._out_full_until = now + delay
        if no_room(err):
            why, when = "output disk full", "when there is room"
        else:
            why, when = "output directory not writable", "when the output directory is writable again"
        self.journal.update(mid, state="ready", started_at=None, error=f"append failed, {why}: {err}")
        self.log.event("movie_retry", level="warning", movie=row["path"], attempt=row["attempts"], retry_in_s=round(delay, 3),
                       reason=f"{why} ({type(err).__name__}: {err}); the movie is corrected again {when}")
        if self.queue.full():  # wait on disk instead (back-pressure)
            self.journal.update(mid, state="seen")
            self._retrack(row, now, delay=delay)
            return False
        self.queue.put(QueueItem(row["acq_time"], mid, now, row["series_id"]))
        return True

    def _stale(self) -> set:
        """Series whose tables could not be written (the output disk was full)."""
        return self.__dict__.setdefault("_stale_tables", set())

    def _output_failed(self, s: dict, what: str, err: OSError) -> None:
        key = (s["id"], what)
        warned = self.__dict__.setdefault("_output_warned", set())
        if key not in warned:  # once until it works again
            warned.add(key)
            note = ("written again as soon as there is room" if no_room(err) else
                    "written again as soon as the output directory is writable" if transient(err) else
                    "not written until the cause is removed")
            self.log.event("output_write_failed", level="warning", series=s["name"], what=what,
                           reason=f"{type(err).__name__}: {err}",
                           note=note)

    def _output_ok(self, s: dict, what: str) -> None:
        self.__dict__.setdefault("_output_warned", set()).discard((s["id"], what))

    def _write_tables(self, s: dict, paths: SeriesPaths, rows: list[dict]) -> list[dict]:
        """Rewrite the tilt table, .rawtlt and the RELION tables of a series; returns its records. When the output
        disk is full the series is remembered and :meth:`_retry_outputs` writes them later."""
        recs, _ = records_of(rows, self.cfg.series.angle_tolerance_deg)
        try:
            rewrite_tables(paths, rows, self.cfg.series.angle_tolerance_deg, series_name=s["name"])
            self._write_relion_tables(s, paths, rows)  # interop_outputs.py
        except OSError as err:
            self._stale().add(s["id"])
            self._output_failed(s, "tables", err)
            return recs
        self._stale().discard(s["id"])
        self._output_ok(s, "tables")
        return recs

    def _retry_outputs(self) -> None:
        for sid in list(self._stale()):
            s = self.journal.series(sid)
            self._write_tables(s, SeriesPaths.of(self.out_dir, s["out_rel"]), self.journal.sections(sid))
