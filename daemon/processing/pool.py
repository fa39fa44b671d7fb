"""The worker-pool interface: where corrections run, as the daemon's loop sees it.

:class:`WorkerPool` is exactly what :class:`framewatch.daemon.service.daemon.Daemon` (and its
dispatch, events and batch parts) call. Two pools implement it: the local process pool
(:class:`framewatch.daemon.processing.scheduler.LocalProcessPool`) and the Dask pool
(:class:`framewatch.daemon.processing.dask_pool.DaskPool`); :func:`pool_choice.make_pool` picks one
from ``[scheduler] backend``. A new place to run corrections (another cluster, a GPU node) is a new
class with these members; nothing else in the daemon changes.

What goes in and out:

- a **job** (``submit``) is a :class:`framewatch.daemon.state.records.CorrectionJob`, what
  :func:`framewatch.daemon.processing.worker.correct` takes: the movie id and path, the correction
  settings, gain and defect files (plain data, picklable);
- an **outcome** (``finished``) is a :class:`framewatch.daemon.state.records.CorrectionOutcome`
  holding its job: the three sums as ``(ny, nx)`` float32 arrays, the frame shifts ``(n_frames, 2)``
  px and the statistics; or ``error``, ``kind`` and ``retryable`` for a movie the worker could not
  correct; or ``interrupted`` (with the exception's class as ``kind``) when the place the movie ran
  in died (``BrokenProcessPool``, ``KilledWorker``, ...);
- ``in_flight`` maps movie id -> an opaque handle (only its keys and length are read);
  ``started_at`` maps movie id -> the submission time (``time.time()``, s);
- ``streams``: True when its workers can take streaming jobs (a job with ``stream``: follow a movie
  while it is written, processing/stream_worker.py); the daemon submits none to a pool where it is
  False. ``stream_signals(directory)`` gives the daemon's side of the channel those jobs hear from
  (``end``, ``cancel``, ``clear``, ``reset``, ``channel``): files in ``directory`` for the local pool,
  variables on the scheduler for Dask;
- ``same_machine``: True when its workers run on this machine, so a worker hands its sums over
  through a file on tmpfs (processing/sums_handover.py) instead of the result.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from framewatch.daemon.state.records import CorrectionJob, CorrectionOutcome


@runtime_checkable
class WorkerPool(Protocol):
    """Runs corrections somewhere; the daemon's main loop is its only caller (one thread)."""

    in_flight: Mapping[int, object]
    started_at: Mapping[int, float]
    streams: bool
    same_machine: bool

    def start(self) -> None:
        """Start the workers (or the connection to them); returns without waiting for them."""

    def warm_up(self, tmp_dir: str, timeout_s: float = 600.0, *,
                should_stop: Callable[[], bool] | None = None, full_size=None) -> list[dict] | None:
        """Compile the kernels where corrections run; one report dict per worker (``warmup_s``,
        ``steps_s``, ...), [] when no worker is reachable yet, None when ``should_stop()`` became true.
        ``full_size`` (processing/warmup.FullSizeWarmup): also correct one synthetic movie of that
        size in every worker, where the pool's workers live as long as the daemon (local)."""

    def has_room(self) -> bool:
        """True when one more movie may be submitted now."""

    def stream_signals(self, directory):
        """The daemon's side of the streaming jobs' channel (module docstring); one object per pool."""

    def submit(self, job: CorrectionJob) -> None:
        """Start correcting one movie (only when :meth:`has_room`); ``job`` as in the module docstring."""

    def finished(self) -> list[CorrectionOutcome]:
        """The outcomes that arrived since the last call, each once; their movies leave ``in_flight``."""

    def notes(self) -> list[tuple[str, dict]]:
        """Log lines ``(event, fields)`` the pool wants in the drift log (the daemon is its only writer)."""

    def describe(self) -> str:
        """Where corrections run, for the ``daemon_started`` line (``local``, ``dask tcp://host:8786``)."""

    def broken(self) -> bool:
        """True when the pool can no longer run jobs until :meth:`restart`."""

    def restart(self) -> None:
        """Replace a broken pool by a fresh one (movies in flight were already reported lost)."""

    def abandon(self, join_s: float = 5.0) -> list[int]:
        """Stop every job now; returns the movie ids that were in flight (the caller journals them)."""

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        """Release the workers; ``cancel`` drops jobs not yet started."""
