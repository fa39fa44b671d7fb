"""Dispatching: handing queued movies to the worker pool as :class:`CorrectionJob`\\ s, taking their
:class:`CorrectionOutcome`\\ s (retry with back-off, failure, worker death), and handing the
corrections to the :class:`TiltAppender` in dispatch order within each series.

A full output disk fails no movie: an append that finds no room (``ENOSPC``, ``EDQUOT``,
``EFBIG``) is undone (the stacks are cut back to the journal's count), the movie goes back to the
front of the queue -- it keeps its place in the series' order -- and no movie is handed to a
worker for a while (``retry_backoff_s``, doubling up to a minute, until an append succeeds). Tables
that could not be rewritten are rewritten by :meth:`SeriesTables.retry_stale`.

Streaming jobs (stream_dispatch.py) are started here when nothing waits in the queue, and ended here
when their movie reaches the queue (complete): from then on they are like any job.
"""
from __future__ import annotations

import time

from framewatch.core.errors import FramewatchError
from framewatch.daemon.outputs.output_warnings import no_room
from framewatch.daemon.processing.gain_session import SessionGainOrientation
from framewatch.daemon.processing.sums_handover import with_sums_taken
from framewatch.daemon.service.correction_jobs import correction_job
from framewatch.daemon.service.stream_dispatch import StreamStarter
from framewatch.daemon.service.tilt_appender import TiltAppender
from framewatch.daemon.state.records import CorrectionOutcome, QueueItem

OUT_FULL_MAX_WAIT_S = 60.0


class Dispatcher:
    """Owns the movies between the queue and their append: in the pool, or held for their turn."""

    def __init__(self, *, pool, queue, journal, log, events, intake, appender: TiltAppender, streams: StreamStarter,
                 run, config, stop_event, sums_dir: str | None = None):
        """``pool`` (processing/pool.WorkerPool), ``queue`` (processing/scheduler.ReadyQueue), ``journal``,
        ``log`` (the drift log), ``events`` (events.EventLog), ``intake`` (MovieIntake: ``retrack``,
        ``finish``), ``appender``, ``streams`` (the streaming jobs), ``run`` (RunContext), ``config``
        (LiveConfig), ``stop_event``: set while the daemon stops (a held result behind a queued movie is
        then left for the next start), ``sums_dir``: the hand-over directory of a local pool, or None."""
        self._pool = pool
        self._queue = queue
        self._journal = journal
        self._log = log
        self._events = events
        self._intake = intake
        self._appender = appender
        self.streams = streams
        self.sums_dir = sums_dir  # local workers hand their sums over through files here (sums_handover.py)
        self._run = run
        self._config = config
        self._stop_event = stop_event
        self.held: dict[int, CorrectionOutcome] = {}  # corrections waiting for an earlier movie of their series
        self._order: dict[int, tuple[int, int]] = {}  # movie id -> (series id, dispatch number)
        self._dispatch_order = 0
        self._out_full_until = 0.0  # no dispatch before this time: the output disk was full
        self._out_full_count = 0  # appends that found no room since the last one that succeeded
        self._gain: SessionGainOrientation | None = None

    @property
    def busy(self) -> bool:
        """Movies in the pool or held for their turn."""
        return bool(self._pool.in_flight or self.held)

    def _gain_session(self) -> SessionGainOrientation:
        if self._gain is None:
            self._gain = SessionGainOrientation(journal=self._journal, log=self._log, queue=self._queue, opts=self._run.opts,
                                                settings_hash=self._run.settings_hash, fail=self.fail)
        return self._gain

    def fail(self, mid: int, stage: str, reason: str) -> None:
        """Record a queued movie failed (its line, and its path final)."""
        row = self._journal.get(mid)
        self._journal.mark_failed(mid, error=reason)
        self._events.movie_failed(self._journal.get(mid), stage, reason)
        self._intake.finish(row)

    def dispatch(self, now: float) -> None:
        gain_session = self._gain_session()
        self._end_streams(gain_session)
        while self._pool.has_room() and len(self._queue) and time.time() >= self._out_full_until:
            if not gain_session.ready():  # gain_orientation auto: undecided (movies wait) or refused (they fail)
                break
            item = self._queue.pop()
            job = self._job(item.movie_id, gain_session)
            if job is None:
                continue
            self._journal.mark_processing(item.movie_id, started_at=time.time())
            self._pool.submit(job)
            self._number(item)
        if not self._stop_event.is_set() and time.time() >= self._out_full_until:
            self.streams.start(gain_session)

    def _job(self, mid: int, gain_session):
        """The job of a complete movie, or None when its settings fail (recorded failed)."""
        row = self._journal.get(mid)
        try:
            return correction_job(row, opts=self._run.opts, gain_session=gain_session, sums_dir=self.sums_dir)
        except FramewatchError as err:
            self._order.pop(mid, None)  # numbered early (before a streamed movie of its series)
            self._journal.mark_failed(mid, error=str(err))
            self._events.movie_failed(row, "settings", str(err))
            self._intake.finish(row)
            return None

    def _number(self, item: QueueItem) -> None:
        self._dispatch_order += 1
        # a movie back from a full disk keeps its place: later ones of its series wait for it
        self._order.setdefault(item.movie_id, (item.series_id, self._dispatch_order))

    def _end_streams(self, gain_session) -> None:
        """Streamed movies found complete leave the queue at once: their job ends with the final
        settings (it is in a worker already); streams of movies no longer watched are cancelled.
        Complete movies of the same series acquired before a streamed one and still queued take their
        place in the series first, so its correction waits for theirs (acquisition order)."""
        queued = self._queue.items()
        for item in queued:
            if not self.streams.registry.is_open(item.movie_id):
                continue
            for earlier in queued:
                if earlier.series_id == item.series_id and earlier < item and earlier.movie_id in self._queue:
                    self._number(earlier)
            self._queue.remove(item.movie_id)
            job = self._job(item.movie_id, gain_session)
            if job is None:
                self.streams.registry.cancel(item.movie_id, "its settings are not valid (recorded failed)")
                continue
            self.streams.end(job)
            self._number(item)
        self.streams.cancel_unwatched()

    def collect(self, now: float) -> None:
        """Take the pool's outcomes; append the corrections whose turn it is."""
        if self._log.pending:
            self._log.flush()  # lines the full output disk held back
        finished = self._pool.finished()
        for name, kw in self._pool.notes():  # the Dask pool's connection and worker lines
            self._log.event(name, **kw)
        broken = False
        for out in map(with_sums_taken, finished):
            unfinished = out.interrupted or out.error is not None
            if out.dropped or (unfinished and self.streams.registry.is_open(out.job.movie_id)):
                # a stream that ended before its movie was complete (or its place died): a drop, whatever
                # the reason (e.g. a Dask worker found the file already deleted); the movie's row may be gone
                broken = broken or out.interrupted
                final = self.streams.dropped(out)  # followed, never complete: intake still watches it
                if final is not None:  # ... or complete by now: the finished file, as any complete movie
                    self._resubmit(final, now)
                continue
            self.streams.returned(out)
            if out.interrupted:
                broken = True
                self._interrupted(out, now)
            elif out.error is not None:
                self._error(out, now)
            else:
                self.held[out.job.movie_id] = out
        if broken and self._pool.broken():
            self._pool.restart()
        self._append_in_order()

    def _resubmit(self, job, now: float) -> None:
        """Correct a complete movie whose stream was dropped before it saw the end (its slot is free)."""
        if self._pool.has_room() and not self._pool.broken():
            self._pool.submit(job)
            return
        self._error(CorrectionOutcome.failed(job, "its stream was dropped and no worker was free", "StreamDropped",
                                             retryable=True), now)

    def _interrupted(self, out: CorrectionOutcome, now: float) -> None:
        mid = out.job.movie_id
        row = self._journal.get(mid)
        self._order.pop(mid, None)
        n = row["interruptions"] + 1
        why = f"worker process died ({out.kind})"
        if n >= self._config.now.watch.max_interruptions:
            self._journal.mark_failed(mid, error=why, interruptions=n)
            self._events.movie_failed(row, "correct", why)
            self._intake.finish(row)
        else:
            self._journal.mark_interrupted(mid, interruptions=n)
            self._log.event("movie_interrupted", movie=row["path"], interruptions=n, redo=True, reason=why)
            self._intake.retrack(row, now)

    def _error(self, out: CorrectionOutcome, now: float) -> None:
        mid = out.job.movie_id
        row = self._journal.get(mid)
        self._order.pop(mid, None)
        attempts = row["attempts"] + 1
        w = self._config.now.watch
        if out.retryable and attempts < w.max_attempts:
            delay = w.retry_backoff_s * 2 ** (attempts - 1)
            self._journal.mark_retry(mid, attempts=attempts, error=out.error)
            self._log.event("movie_retry", level="warning", movie=row["path"], attempt=attempts, retry_in_s=delay,
                            reason=out.error)
            self._intake.retrack(row, now, delay=delay)
        else:
            self._journal.mark_failed(mid, error=out.error, attempts=attempts)
            self._events.movie_failed(self._journal.get(mid), "correct", out.error)
            self._intake.finish(row)

    def _append_in_order(self) -> None:
        """Append in dispatch order within a series (several workers may finish out of order)."""
        for mid in sorted(self.held, key=lambda m: self._order.get(m, (0, 0))[1]):
            sid, order = self._order.get(mid, (None, 0))
            earlier = [m for m, (s, o) in self._order.items() if s == sid and o < order and m != mid
                       and (m in self.held or m in self._pool.in_flight or m in self._queue)]
            if earlier:
                if self._stop_event.is_set() and all(m in self._queue for m in earlier):
                    # stopping, and an earlier movie of the series waits in the queue (the disk was
                    # full): this one is corrected again at the next start, after it
                    self.held.pop(mid)
                    self._order.pop(mid, None)
                    self._journal.requeue(mid, left_worker=True)
                continue
            out = self.held.pop(mid)
            place = self._order.pop(mid, None)
            if not self._append(mid, out) and place is not None and not self._queue.newest_first_backlog:
                # back in the queue (no room on disk): it stays first, later ones of its series wait
                # (not with newest-first, which takes it last: they would pile up in memory)
                self._order[mid] = place

    def _append(self, mid: int, out: CorrectionOutcome) -> bool:
        """Append one correction; False when the output disk had no room (the movie is queued again)."""
        res = self._appender.append(mid, out)
        if res.retry_error is not None:
            return not self._out_of_space(res.row, res.retry_error)
        if res.appended:
            self._out_full_count = 0
        return True

    def _out_of_space(self, row: dict, err: OSError) -> bool:
        """No room on the output disk: the movie is fine. Queue it again (it keeps its place in
        the series) and hand nothing to the workers for a while. False when the queue was full
        and it waits on disk instead."""
        mid = row["id"]
        self._out_full_count += 1
        delay = min(max(self._config.now.watch.retry_backoff_s, 0.1) * 2 ** (self._out_full_count - 1), OUT_FULL_MAX_WAIT_S)
        now = time.time()
        self._out_full_until = now + delay
        if no_room(err):
            why, when = "output disk full", "when there is room"
        else:
            why, when = "output directory not writable", "when the output directory is writable again"
        self._journal.mark_ready(mid, after_append=True, error=f"append failed, {why}: {err}")
        self._log.event("movie_retry", level="warning", movie=row["path"], attempt=row["attempts"], retry_in_s=round(delay, 3),
                        reason=f"{why} ({type(err).__name__}: {err}); the movie is corrected again {when}")
        if self._queue.full():  # wait on disk instead (back-pressure)
            self._journal.requeue(mid)
            self._intake.retrack(row, now, delay=delay)
            return False
        self._queue.put(QueueItem(row["acq_time"], mid, now, row["series_id"]))
        return True

    def abandon_in_flight(self, reason: str) -> None:
        """Stop the movies in the pool now: back to ``seen`` (not an interruption), the next start corrects them."""
        now = time.time()
        started = dict(self._pool.started_at)
        for mid in self._pool.abandon():
            self._order.pop(mid, None)
            if self.streams.registry.is_open(mid):  # followed, not complete yet: nothing to undo
                self.streams.registry.returned(mid)
                continue
            self.streams.registry.returned(mid)
            row = self._journal.get(mid)
            # nothing of it is in the stacks, the next start corrects it
            self._journal.requeue(mid, left_worker=True)
            self._log.event("movie_abandoned", level="warning", movie=row["path"], series=self._events.series_name(row),
                            in_worker_s=round(now - started.get(mid, now), 3), reason=reason,
                            note="nothing of it was appended; the next start corrects it")
