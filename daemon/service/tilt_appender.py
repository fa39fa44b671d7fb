"""Appending one corrected movie to its series: the three stacks, then the journal (``done`` with its
section index), the tables, the ``tilt_corrected`` line and the plot, then the per-tilt images.

The stacks are appended and fsync'd before the journal records the movie done, so a crash in
between leaves it not done and start-up cuts the stacks back. The per-tilt images, copies of the
new sections, are written (fsync'd, renamed) in a second thread after the ``tilt_corrected`` line:
at 4096² their 192 MiB took the disk 0.3-0.5 s, which no longer delays the line. Until they are in
place the journal holds ``images_synced = 0``, the RELION tables leave the tilt out (they are
rewritten by :meth:`TiltAppender.settle` once the images are there) and the series does not
complete; a start after a crash writes them again from the stacks (``tilt_images_rewritten``).

An append that fails is undone (the stacks are cut back to the journal's count, the images go). A
transient error (no room, not writable for now: output_warnings.py) is handed back to the
dispatcher, which queues the movie again; any other error fails the movie (stage ``append``).
"""
from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from framewatch.daemon.outputs.output_warnings import transient
from framewatch.daemon.outputs.quality import flag_reasons
from framewatch.daemon.outputs.series_outputs import SeriesPaths, append_tilt, records_of, repair_stacks
from framewatch.daemon.outputs.tilt_images import (
    remove_tilt_images,
    restore_tilt_images,
    tilt_image_paths,
    write_tilt_images,
)
from framewatch.daemon.state import faults
from framewatch.daemon.state.records import CorrectionOutcome, TiltRecord

IMAGE_RETRY_S = 2.0  # per-tilt images that could not be written are tried again after this (a full disk fails fast)


@dataclass(frozen=True)
class AppendResult:
    """``appended``: the movie is in its stacks and done. ``retry_error``: the output was not writable
    for now; nothing of it was kept, ``row`` is its journal row (the movie is corrected again later)."""

    appended: bool
    retry_error: OSError | None = None
    row: dict | None = None


class PlotRefresh:
    """Redraws a series' drift plot in the background (lifecycle.Service's plot worker)."""

    def __init__(self, *, service, config):
        """``service``: the lifecycle Service (``tilt_appended``); ``config``: state/run_context.LiveConfig."""
        self._service = service
        self._config = config

    def replot(self, paths: SeriesPaths, rows: list[dict], recs: list[TiltRecord]) -> None:
        """Redraw the series' drift plot (in the background)."""
        cfg = self._config.now
        if cfg.plots.enabled:
            traj = {r["z"]: np.asarray(r["info"]["worker"]["shifts_px"]) for r in rows
                    if (r.get("info") or {}).get("worker", {}).get("shifts_px")}
            self._service.tilt_appended(paths.dir, recs, traj, cfg.thresholds, cfg.plots.latest_trajectories)

    def replot_stale(self, s: dict, paths: SeriesPaths, rows: list[dict]) -> None:
        """At start-up: redraw a plot that misses the series' latest tilt, or whose drawing was cut
        short (the daemon died before the plot thread finished it; found by the torture run)."""
        cfg = self._config.now
        if not (cfg.plots.enabled and rows):
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
            self.replot(paths, rows, records_of(rows, cfg.series.angle_tolerance_deg)[0])


class TiltAppender:
    """Appends corrections to their series (module docstring)."""

    def __init__(self, *, journal, log, events, tables, plots: PlotRefresh, intake, run, config):
        """``journal`` (state/journal.py), ``log`` (the drift log), ``events`` (events.EventLog),
        ``tables`` (outputs/series_tables.SeriesTables), ``intake`` (intake/movie_intake.MovieIntake:
        ``finish``), ``run`` (state/run_context.RunContext), ``config`` (state/run_context.LiveConfig)."""
        self._journal = journal
        self._log = log
        self._events = events
        self._tables = tables
        self._plots = plots
        self._intake = intake
        self._run = run
        self._config = config
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="framewatch-tilt-images")
        self._pending: dict = {}  # movie id -> the future writing its per-tilt images
        self._retry_at: dict = {}  # movie id -> when to write its images again (monotonic s)

    def append(self, mid: int, out: CorrectionOutcome) -> AppendResult:
        """Append one correction as the next section of its series' stacks (its per-tilt images follow)."""
        j = self._journal
        row = j.get(mid)
        s = j.series(row["series_id"])
        paths = SeriesPaths.of(self._run.out_dir, s["out_rel"])
        z = j.n_sections(s["id"])
        px = self._run.output_pixel_size_a(row)
        t0 = time.time()
        images = out.sums
        with_images = self._config.now.output.per_tilt_images
        try:
            append_tilt(paths, z, images, pixel_size_a=px)
        except (OSError, ValueError, RuntimeError) as err:
            try:
                repair_stacks(paths, z)
                remove_tilt_images(paths.dir, row["path"])
            except OSError:
                pass  # cut back at the next append (append_tilt repairs first) or start
            if transient(err):  # the movie is fine: corrected and appended again later
                return AppendResult(False, retry_error=err, row=row)
            j.mark_failed(mid, error=f"append failed: {err}")
            self._events.movie_failed(row, "append", f"{type(err).__name__}: {err}")
            self._intake.finish(row)
            return AppendResult(False)
        self._record_done(row, s, paths, z, out, t0=t0, px=px, images=with_images)
        if with_images:
            self._pending[mid] = self._writer.submit(_write_images, paths.dir, row["path"], images, px)
        return AppendResult(True)

    def settle(self, *, wait: bool = False) -> None:
        """Record the per-tilt images written since (``wait``: all of them, at stop) and rewrite their
        series' tables, which list a tilt once its images are there. Images that could not be
        written (no room): ``output_write_failed`` once, then written from the stacks every
        ``IMAGE_RETRY_S``; at stop, left to the next start."""
        now = time.monotonic()
        for mid, due in list(self._retry_at.items()):
            row = self._journal.get(mid)
            if row is None or row["state"] != "done" or row.get("images_synced") != 0:  # redone or gone since
                del self._retry_at[mid]
            elif now >= due and mid not in self._pending:
                self._pending[mid] = self._writer.submit(self._restore_job(row))
        for mid, fut in list(self._pending.items()):
            if not (wait or fut.done()):
                continue
            del self._pending[mid]
            row = self._journal.get(mid)
            try:
                fut.result()
            except Exception as err:  # noqa: BLE001 - whatever kept the images back, the daemon goes on (retried)
                if mid not in self._retry_at:
                    self._write_failed(row, err)
                self._retry_at[mid] = now + IMAGE_RETRY_S
                continue
            if self._retry_at.pop(mid, None) is not None:
                self._rewritten(row, "written from the stacks after a failed write")
            self._images_done(row)

    def restore_unsynced(self, rows: list[dict]) -> bool:
        """At start-up: done movies (``rows`` of one series) whose per-tilt images were not known to
        be on disk when the daemon stopped get them again from the stacks; returns whether any did."""
        any_done = False
        for row in rows:
            if row.get("images_synced") != 0:
                continue
            try:
                self._restore_job(row)()
            except Exception as err:  # noqa: BLE001 - as in settle: retried, the start goes on
                self._write_failed(row, err)
                self._retry_at[row["id"]] = time.monotonic() + IMAGE_RETRY_S
                continue
            self._journal.mark_images_synced(row["id"])
            any_done = True
            self._rewritten(row, "not known to be on disk when the daemon stopped")
        return any_done

    def _restore_job(self, row: dict):
        """A call that writes a done movie's per-tilt images, durably, from its section of the series'
        stacks (built here, so the writer thread never touches the journal)."""
        paths = self._paths(row)
        return functools.partial(restore_tilt_images, paths.dir, row["path"], paths.stacks, row["z"],
                                 pixel_size_a=self._run.output_pixel_size_a(row))

    def _write_failed(self, row: dict, err: Exception) -> None:
        self._log.event("output_write_failed", level="error", series=self._journal.series(row["series_id"])["name"],
                        what="per-tilt images", reason=f"{type(err).__name__}: {err}", movie=row["path"],
                        note=f"written from the stacks every {IMAGE_RETRY_S:g} s, or at the next start")

    def _rewritten(self, row: dict, reason: str) -> None:
        paths = tilt_image_paths(self._paths(row).dir, row["path"])
        self._log.event("tilt_images_rewritten", level="warning", movie=row["path"], z=row["z"],
                        paths=[str(p) for p in paths], reason=reason)

    def _images_done(self, row: dict) -> None:
        self._journal.mark_images_synced(row["id"])
        s = self._journal.series(row["series_id"])
        self._tables.write(s, self._paths(row), self._journal.sections(s["id"]), relion_only=True)  # they list it now

    def _paths(self, row: dict) -> SeriesPaths:
        return SeriesPaths.of(self._run.out_dir, self._journal.series(row["series_id"])["out_rel"])

    def _record_done(self, row: dict, s: dict, paths: SeriesPaths, z: int, out: CorrectionOutcome, *, t0: float,
                     px: float, images: bool) -> None:
        """The journal (done, section ``z``), the tables, the ``tilt_corrected`` line, the plot."""
        j = self._journal
        mid = row["id"]
        done = time.time()
        stats = dict(out.statistics)
        flags = list(row["info"]["tilt"].get("flags") or []) + flag_reasons(stats, self._config.now.thresholds, pixel_size_a=px)
        complete_at = row["complete_at"] or row["ready_at"] or t0
        timings = {
            "wait_s": round((row["started_at"] or t0) - complete_at, 4),
            "correct_s": round(out.worker_s, 4),
            "append_s": round(done - t0, 4),
            "latency_s": round(done - complete_at, 4),
            "engine": dict(out.engine_timings_s),
        }
        if out.streamed_frames is not None:  # corrected while written; correct_s is the time after it was complete
            timings["streamed_frames"] = out.streamed_frames
        info = dict(row["info"])
        out_shape = out.sums_shape or np.shape(out.dose_weighted_sum)
        frame_shape = out.defect_mask.shape if out.defect_mask is not None else \
            [int(v) * self._run.fourier_bin for v in out_shape]
        info["worker"] = {"pid": out.pid, "where": out.worker or f"local:{out.pid}", "n_replaced_pixels": out.n_replaced_pixels,
                          "notes": list(out.notes), "shifts_px": out.shifts_px,
                          "frame_shape": [int(v) for v in frame_shape]}  # the next start's warm-up
        if out.mask_hint_pixels is not None:  # a stream that started from the camera's last defect mask
            info["worker"]["mask_hint_pixels"] = out.mask_hint_pixels
        if out.n_raw_frames:  # EER: raw frames grouped into fractions, the dose per frame is per fraction
            info["resolved"] = dict(info["resolved"], dose_per_frame_e_per_a2=out.dose_per_frame_e_per_a2,
                                    n_raw_frames=out.n_raw_frames)
            j.set_frames(mid, out.n_frames)
        faults.checkpoint("before_journal_done")
        j.mark_done(mid, z=z, stats=stats, flags=flags, timings=timings, info=info, now=done,
                    images_synced=False if images else None)
        if s["complete"]:
            j.reopen_series(s["id"])
            self._log.event("series_reopened", series=s["name"], output_dir=str(paths.dir), n_tilts=z + 1)
        rows = j.sections(s["id"])
        recs = self._tables.write(s, paths, rows)
        self._events.tilt_corrected(j.get(mid), rows=rows)
        faults.checkpoint("after_tilt_logged")
        j.mark_logged(mid)
        self._plots.replot(paths, rows, recs)
        self._intake.finish(j.get(mid))


def _write_images(series_dir, movie, images, pixel_size_a: float) -> None:
    """The per-tilt images, durably, in the writer thread (a crash test can stop the daemon first)."""
    faults.checkpoint("before_images_written")
    write_tilt_images(series_dir, movie, images, pixel_size_a=pixel_size_a)
