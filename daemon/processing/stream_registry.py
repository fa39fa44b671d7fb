"""Which movies are being followed by a streaming job, and which of those are complete.

A streaming job is in the worker pool under its movie's id like any job (``in_flight``), so at most
``workers`` movies stream at once. The registry knows the rest: the path each job follows, whether
the daemon has ended it (sent the final job: the movie is ``processing`` in the journal, and its
outcome is handled like any correction's) or not yet (the movie is still ``seen``: intake watches it
as ever, and a job that comes back ``dropped`` leaves nothing behind). The signals to the jobs go
through :class:`~framewatch.daemon.processing.stream_signals.StreamSignals`.
"""
from __future__ import annotations

from framewatch.daemon.processing.stream_signals import StreamSignals
from framewatch.daemon.state.records import CorrectionJob


class StreamRegistry:
    """The streaming jobs in the pool (module docstring); the daemon's loop is its only user."""

    def __init__(self, signals: StreamSignals):
        self.signals = signals
        self._paths: dict[int, str] = {}  # movie id -> path, every streaming job in the pool
        self._ended: dict[int, CorrectionJob] = {}  # those whose movie was found complete -> the final job sent

    def __len__(self) -> int:
        return len(self._paths)

    def following(self, path: str) -> bool:
        """A job follows ``path`` and its movie is not complete yet."""
        return any(p == path and mid not in self._ended for mid, p in self._paths.items())

    def is_open(self, movie_id: int) -> bool:
        """A job follows movie ``movie_id`` and has not been ended."""
        return movie_id in self._paths and movie_id not in self._ended

    def open_streams(self) -> dict[int, str]:
        """Movie id -> path of the jobs not ended yet (a copy)."""
        return {mid: p for mid, p in self._paths.items() if mid not in self._ended}

    def started(self, movie_id: int, path: str) -> None:
        self._paths[movie_id] = path

    def end(self, job: CorrectionJob) -> None:
        """The movie is complete: its job finishes with ``job`` (final settings, frame count)."""
        self.signals.end(job)
        self._ended[job.movie_id] = job

    def ended_job(self, movie_id: int) -> CorrectionJob | None:
        """The final job sent to the stream of ``movie_id``, if it was ended."""
        return self._ended.get(movie_id)

    def cancel(self, movie_id: int, reason: str) -> None:
        """Stop a job whose movie is not complete; it comes back ``dropped``."""
        if self.is_open(movie_id):
            self.signals.cancel(movie_id, reason)

    def returned(self, movie_id: int) -> None:
        """The job of ``movie_id`` came back (or was abandoned): forget it and its signals."""
        if self._paths.pop(movie_id, None) is not None:
            self._ended.pop(movie_id, None)
            self.signals.clear(movie_id)
