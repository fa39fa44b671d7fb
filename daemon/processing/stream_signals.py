"""How the daemon tells a streaming worker that its movie is complete, or that it should stop.

A streaming job (a :class:`~framewatch.daemon.state.records.CorrectionJob` with ``stream``)
follows its movie while the acquisition writes it; only the daemon decides when the movie is
complete (readiness.py: the frame mdoc, the format's self-check, the tilt-series mdoc, the settle
time). The daemon says so through two files in its signal directory (``<state>/streams``), which the worker
polls between frames:

- ``<movie id>.end``: the final job (the settings resolved from the mdoc line, the frame count the
  movie was found complete with), pickled and written atomically; the worker finishes with it;
- ``<movie id>.cancel``: a reason; the worker drops the movie (it was deleted, found broken, or the
  daemon stops) and returns a ``StreamDropped`` outcome.

Files, not a pipe: a process-pool task has no channel of its own, and a file survives whichever side
dies first (the daemon clears the directory at start-up, so a signal is never read by a later run).
The directory is the daemon's private state; nothing else writes there. This is the local pool's
channel (its workers share this machine's files); a Dask worker hears the same two signals through
the scheduler (processing/dask_stream_signals.py). :func:`control_for` gives a worker the control of
its job's channel.
"""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

from framewatch.core.atomic_write import atomic_path
from framewatch.daemon.state.records import CorrectionJob, StreamChannel

END_SUFFIX = ".end"
CANCEL_SUFFIX = ".cancel"


class StreamSignals:
    """The daemon's side: write the end and cancel signals of its streaming jobs."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    @property
    def channel(self) -> StreamChannel:
        """What a streaming job is given to hear from these signals."""
        return StreamChannel("files", str(self.directory))

    def reset(self) -> None:
        """Remove every signal (at start-up: no job of an earlier run is alive)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)

    def end(self, job: CorrectionJob) -> None:
        """The movie of ``job`` is complete: finish it with ``job`` (final settings and frame count)."""
        with atomic_path(self.directory / f"{job.movie_id}{END_SUFFIX}") as tmp:
            tmp.write_bytes(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))

    def cancel(self, movie_id: int, reason: str) -> None:
        """Stop following movie ``movie_id`` (``reason`` is reported back in the outcome)."""
        with atomic_path(self.directory / f"{movie_id}{CANCEL_SUFFIX}") as tmp:
            tmp.write_text(reason)

    def clear(self, movie_id: int) -> None:
        """Forget the signals of a movie whose job came back."""
        for suffix in (END_SUFFIX, CANCEL_SUFFIX):
            (self.directory / f"{movie_id}{suffix}").unlink(missing_ok=True)


class StreamControl:
    """The worker's side for one movie: core's stream control (``end()``, ``cancelled()``)."""

    def __init__(self, directory: str | os.PathLike, movie_id: int):
        self._end = Path(directory) / f"{movie_id}{END_SUFFIX}"
        self._cancel = Path(directory) / f"{movie_id}{CANCEL_SUFFIX}"
        self.final_job: CorrectionJob | None = None

    def end(self) -> CorrectionJob | None:
        """The final job once the daemon found the movie complete, else None."""
        if self.final_job is None:
            try:
                data = self._end.read_bytes()
            except FileNotFoundError:
                return None
            self.final_job = pickle.loads(data)  # noqa: S301 - the daemon's own private state directory
        return self.final_job

    def cancelled(self) -> bool:
        return self._cancel.exists()

    def cancel_reason(self) -> str:
        try:
            return self._cancel.read_text().strip() or "cancelled by the daemon"
        except OSError:
            return "cancelled by the daemon"


def control_for(channel: StreamChannel, movie_id: int):
    """The worker's control of movie ``movie_id`` over ``channel``: ``end()`` -> the final job or None,
    ``cancelled()``, ``cancel_reason()``."""
    if channel.kind == "dask":
        from framewatch.daemon.processing.dask_stream_signals import DaskStreamControl

        return DaskStreamControl(channel.where, movie_id)
    return StreamControl(channel.where, movie_id)
