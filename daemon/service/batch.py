"""``framewatch batch``: the daemon run once over movies that are already complete, then stopped.

:class:`BatchRun` is the watch daemon (:class:`daemon.service.daemon.Daemon`) with three differences:

- every file under DIR is finished, so nothing waits for it to settle: ``settle_s``,
  ``tiff_stable_s`` and ``mdoc_wait_s`` are 0 and inotify is off (one scan finds everything; a file
  that fails its completeness check is recorded failed at once);
- when nothing is left -- no movie watched, queued, in a worker or waiting to be appended -- every
  series with a new section is completed (reason ``batch``: sorted stacks, ``.tlt``, ``.star``) and
  the run stops (``batch_finished``);
- progress (per movie, with an ETA) goes to a terminal, and the result is an exit code: 0 when
  every movie under DIR is done, 1 when some failed (listed, with their reasons).

The grouping, prior dose, outputs, journal and settings hash are the daemon's own, so a second run
with the same settings resumes (done movies are skipped) and a changed setting writes a new output
set (``OUT/settings-<hash8>/``). The pool is the daemon's: local processes, or a Dask cluster.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from framewatch.daemon.service.daemon import Daemon

BAR_WIDTH = 28


def batch_config(cfg):
    """The daemon configuration for already complete files (see the module docstring)."""
    watch = dataclasses.replace(cfg.watch, settle_s=0.0, tiff_stable_s=0.0, mdoc_wait_s=0.0, inotify=False)
    return dataclasses.replace(cfg, watch=watch)


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    movies: int  # movies under DIR with these settings
    done: int  # done in this run
    already_done: int  # done by an earlier run (resumed)
    failed: tuple[tuple[str, str], ...]  # (movie, reason)
    duration_s: float

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Progress:
    """One line on a terminal, rewritten per movie: a bar, counts, seconds per movie and the ETA."""

    def __init__(self, stream=None, *, enabled: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = (hasattr(self.stream, "isatty") and self.stream.isatty()) if enabled is None else enabled
        self._shown = False

    def update(self, *, finished: int, total: int, failed: int, s_per_movie: float | None, eta_s: float | None) -> None:
        if not self.enabled or total <= 0:
            return
        filled = int(BAR_WIDTH * finished / total)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        rate = f"  {s_per_movie:.1f} s/movie" if s_per_movie else ""
        eta = f"  ETA {_clock(eta_s)}" if eta_s is not None else ""
        fail = f"  {failed} failed" if failed else ""
        self.stream.write(f"\r[{bar}] {finished}/{total} movies{fail}{rate}{eta}   ")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def _clock(s: float) -> str:
    s = max(0, int(round(s)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class BatchRun(Daemon):
    """The daemon over a finished session, stopping when every movie is done or failed."""

    def __init__(self, movie_dir, out_dir, *, progress: Progress | None = None, **kw):
        super().__init__(movie_dir, out_dir, **kw)
        self.progress = progress or Progress(enabled=False)
        self.summary: BatchSummary | None = None
        self._t_start = time.time()
        self._first_result_at: float | None = None
        self._done_now = 0
        self._failed_now = 0
        self._total: int | None = None
        self._already = 0
        self._already_done = 0
        self._failed_before = 0

    def _setup(self) -> None:
        super()._setup()
        self.log.listeners.append(self._count)

    def _count(self, name: str, fields: dict) -> None:
        if name == "tilt_corrected" and not fields.get("replayed"):
            self._done_now += 1
        elif name == "movie_failed" and not fields.get("replayed"):
            self._failed_now += 1
        else:
            return
        if self._first_result_at is None:
            self._first_result_at = time.time()
        self._show()

    def _show(self) -> None:
        if self._total is None:
            return
        finished = self._already + self._done_now + self._failed_now
        per = eta = None
        n = self._done_now + self._failed_now
        if n:
            per = (time.time() - self._t_start) / n
            eta = per * max(0, self._total - finished)
        self.progress.update(finished=finished, total=self._total, failed=self._failed_now + self._failed_before, s_per_movie=per,
                             eta_s=eta)

    def _step(self, now: float) -> None:
        if self._total is None:  # after the first scan: every movie under DIR is known
            rows = self._rows()
            self._already = sum(1 for r in rows if r["state"] in ("done", "failed"))
            self._failed_before = sum(1 for r in rows if r["state"] == "failed")
            self._already_done = self._already - self._failed_before
            self._total = self._already + self.intake.watching
            self._show()
        super()._step(now)
        if not (self.intake.watching or len(self.queue) or self.dispatcher.busy):
            self._finish(time.time())

    def _rows(self) -> list[dict]:
        """This run's movies in the journal: under DIR, with these settings (latest version of each path)."""
        root = str(self.watch_dir) + "/"
        latest: dict[str, dict] = {}
        for r in self.journal.in_state("seen", "ready", "processing", "done", "failed", settings_hash=self.hash):
            if r["path"].startswith(root) and (r["path"] not in latest or r["id"] > latest[r["path"]]["id"]):
                latest[r["path"]] = r
        return list(latest.values())

    def _finish(self, now: float) -> None:
        self.appender.settle(wait=True)  # the last per-tilt images, so the series' tables list every tilt
        for s in self.journal.all_series(self.hash):
            if s["complete"]:
                continue
            movies = self.journal.series_movies(s["id"])
            done = [m for m in movies if m["state"] == "done"]
            if done:
                self.completion.complete(s, done, "batch", now)
        rows = self._rows()
        failed = tuple(sorted((r["path"], r["error"] or "") for r in rows if r["state"] == "failed"))
        self.summary = BatchSummary(movies=len(rows), done=self._done_now, already_done=self._already_done, failed=failed,
                                    duration_s=round(now - self._t_start, 3))
        self._show()
        self.log.event("batch_finished", level="error" if failed else "info", movies=len(rows), done=self._done_now,
                       already_done=self._already_done, failed=len(failed), failed_movies=[p for p, _ in failed],
                       duration_s=self.summary.duration_s)
        self.stop("batch finished")

    def run(self) -> int:
        try:
            rc = super().run()
        finally:
            self.progress.close()
        if rc != 0 or self.summary is None:  # stopped by a signal before the end: resumable
            return rc if rc != 0 else 1
        return self.summary.exit_code


def summary_text(s: BatchSummary, out_dir: Path, *, stopped: bool = False) -> str:
    lines = [f"framewatch batch: {s.movies} movies: {s.done} corrected now, {s.already_done} done before, {len(s.failed)} failed "
             f"({s.duration_s:.1f} s); outputs in {out_dir}"]
    for path, why in s.failed:
        lines.append(f"  failed: {path}: {why}")
    return "\n".join(lines)
