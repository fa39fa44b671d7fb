"""Streaming: a free worker corrects a movie while the acquisition writes it (``[scheduler] streaming``).

When a watched movie has its first frame on disk, no complete movie waits in the queue, and the pool
has room and can stream (``WorkerPool.streams``: the local and the Dask pool), :class:`StreamStarter`
submits a streaming job for it with provisional settings (the mdoc and options known now; what the
first pass needs: frame geometry, gain orientation, alignment binning). The movie stays ``seen`` in the
journal and intake keeps deciding when it is complete, by the same rules as ever. Then:

- found complete (it reaches the queue): the job is ended at once with the final job -- the settings
  resolved from its mdoc line, the frame count -- and the movie is ``processing``; it bypasses the
  queue (it is in a worker already), and its outcome is handled like any correction's;
- no longer watched without being queued (deleted, found broken, failed on its settings): the job is
  cancelled and comes back ``dropped``; so does a job whose file was truncated or replaced while it
  was followed. Nothing of a dropped job is kept; the movie goes on by the normal path;
- the daemon stops: jobs not ended are cancelled; a daemon killed mid-stream leaves the movie
  ``seen`` (or ``processing`` once ended), and the next start corrects it from disk.

Each movie is followed at most once (a dropped one is never followed again). Memory: at most
``workers`` movies stream at once; each holds its decoded frames (native dtype) and their half
spectra and alignment copies, as a correction of the complete movie does.
"""
from __future__ import annotations

import dataclasses
import time

from framewatch.core.errors import FramewatchError
from framewatch.daemon.intake.dose_precedence import resolve
from framewatch.daemon.service.correction_jobs import movie_job
from framewatch.daemon.state.records import CorrectionJob, CorrectionOutcome


class StreamStarter:
    """Starts, ends and cancels streaming jobs (module docstring); the Dispatcher calls it."""

    def __init__(self, *, pool, queue, journal, log, intake, registry, masks, run, config):
        """``registry`` (processing/stream_registry.StreamRegistry), ``masks`` (state/defect_masks.
        DefectMaskMemory: each job starts from the last final defect mask of its camera); the others as
        for the Dispatcher."""
        self._pool = pool
        self._queue = queue
        self._journal = journal
        self._log = log
        self._intake = intake
        self.registry = registry
        self._masks = masks
        self._run = run
        self._config = config

    @property
    def enabled(self) -> bool:
        return bool(self._config.now.scheduler.streaming and getattr(self._pool, "streams", False))

    def start(self, gain_session) -> None:
        """Follow watched movies that have frames on disk while the pool has room and no complete
        movie waits (complete movies always go first)."""
        if not self.enabled or len(self._queue) or not gain_session.ready():
            return
        while self._pool.has_room():
            offered = self._intake.stream_candidates(1)
            if not offered:
                return
            mid, path, info, n_frames = offered[0]
            try:
                job = self._provisional_job(mid, path, info, n_frames, gain_session)
            except FramewatchError:  # e.g. no pixel size: the normal path says so when the movie is complete
                continue
            self._pool.submit(job)
            self.registry.started(mid, path)
            self._log.event("stream_started", movie=path, frames_on_disk=n_frames)

    def _provisional_job(self, mid: int, path: str, info, n_frames: int, gain_session) -> CorrectionJob:
        """The job to follow the movie with: the values known now (a dose is applied at the end only,
        so a stand-in serves until the mdoc line is written; the final job replaces it)."""
        n_guess = max(1, info.expected_frames or n_frames)
        resolved = resolve(info, self._run.opts, n_guess).as_dict()
        resolved["dose_per_frame_e_per_a2"] = resolved["dose_per_frame_e_per_a2"] or 1.0
        job = movie_job(mid, path, resolved, opts=self._run.opts, gain_session=gain_session, n_frames=n_guess,
                        stream=self.registry.signals.channel)
        # the frame count is not known until the movie is complete
        return dataclasses.replace(job, expected_frames=None, expected_mask=self._masks.expected(job.camera))

    def end(self, final: CorrectionJob) -> None:
        """The movie of an open stream is complete: the job finishes with ``final``."""
        self._journal.mark_processing(final.movie_id, started_at=time.time())
        self.registry.end(final)

    def cancel_unwatched(self) -> None:
        """Cancel the open streams whose movie intake no longer watches and that are not queued
        (deleted, found broken, failed): their outcome comes back ``dropped``."""
        for mid, path in self.registry.open_streams().items():
            if path in self._intake.cands or mid in self._queue:
                continue
            row = self._journal.get(mid)
            state = row["state"] if row else "gone"
            reason = (f"the movie failed before it was complete: {row['error']}" if state == "failed" and row.get("error")
                      else f"the movie is no longer watched ({state})")
            self.registry.cancel(mid, reason)

    def cancel_all(self, reason: str) -> None:
        for mid in self.registry.open_streams():
            self.registry.cancel(mid, reason)

    def returned(self, out: CorrectionOutcome) -> None:
        """Any other outcome: the job is no longer a stream (if it was one); a stream that dropped
        what it had streamed after its movie was complete says so (it read the finished file afresh).
        A correction's final defect mask is the next streaming job's hint (streamed or not)."""
        self.registry.returned(out.job.movie_id)
        if out.ok:
            self._masks.remember(out.job.camera, out.defect_mask)
        if out.fallback is not None:
            self._log.event("stream_dropped", movie=out.job.movie, reason=out.fallback,
                            note="the movie was complete: it was corrected from the finished file")

    def dropped(self, out: CorrectionOutcome) -> CorrectionJob | None:
        """A job came back without a correction: nothing was appended. Returns the final job when the
        movie had been found complete meanwhile (the worker dropped its stream before it saw the end:
        the caller corrects the finished file with it); else intake goes on with the movie."""
        mid = out.job.movie_id
        final = self.registry.ended_job(mid)
        self.registry.returned(mid)
        if final is not None:
            self._log.event("stream_dropped", movie=out.job.movie, reason=out.error,
                            note="the movie was complete: it is corrected from the finished file")
            return final
        watched = out.job.movie in self._intake.cands
        self._log.event("stream_dropped", movie=out.job.movie, reason=out.error,
                        **({"note": "it is corrected from the finished file, by the normal path"} if watched else {}))
        return None
