"""The streaming signals over a Dask scheduler: how a Dask worker following a movie hears that it is
complete, or that it should stop, without seeing the daemon's state directory.

The local pool's workers read two files in the daemon's state directory (stream_signals.py). A Dask
worker may be another machine that sees only the movies (through ``[dask] path_map``), so the same
two signals go through the scheduler instead: one Dask ``Variable`` per streaming movie, named
``<prefix>-<movie id>`` (the prefix is new for every daemon start, so a later run never reads an
earlier run's signal), whose value is a small dict:

- ``{"open": True}``: set before the task is sent (so the worker's first look finds it);
- ``{"end": <the final job, pickled>}``: the movie is complete (its paths as the workers see them);
- ``{"cancel": <reason>}``: drop the movie. A cancelled movie is never ended afterwards (with files,
  a cancel file wins over an end file the same way).

The daemon's side (:class:`DaskStreamSignals`) changes the variables from one thread of its own, in
the order they were asked for, so the daemon's loop never waits for the scheduler; it keeps the last
value of every open movie and sets it again when the pool sends a task again (a lost connection, a
restarted scheduler). The variable is deleted when the job came back.

The worker's side (:class:`DaskStreamControl`) reads the variable at most every
:data:`MIN_LOOK_S`, and also stops when its task is no longer wanted -- the daemon cancelled the
future, or the daemon's client is gone (a daemon killed mid-stream): Dask then marks the running
task ``cancelled`` on the worker, and the stream returns at its next look instead of following a
movie nobody waits for (measured on localhost: 30 ms after the client closed).
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import pickle
import time
import uuid

from framewatch.daemon.state.records import CorrectionJob, StreamChannel

MIN_LOOK_S = 0.02  # the worker reads the variable at most this often (its loop polls every 0.05 s)
GET_TIMEOUT_S = 5.0  # a worker's read of a variable that is not there (a restarted scheduler) gives up after this
SET_TIMEOUT_S = 10.0  # the daemon's write of a variable
SET_ATTEMPTS = 3  # a write that fails is tried again this often in all ...
SET_RETRY_S = 1.0  # ... this far apart


class DaskStreamSignals:
    """The daemon's side (module docstring). ``client()``: the pool's connected client or None;
    ``worker_job(job)``: ``job`` with its paths as the workers see them; ``note(event, **fields)``:
    a line for the daemon's log."""

    def __init__(self, *, client, worker_job, note):
        self._client = client
        self._worker_job = worker_job
        self._note = note
        self.prefix = f"framewatch-stream-{uuid.uuid4().hex[:12]}"
        self._values: dict[int, dict] = {}  # movie id -> the last value asked for (open movies)
        self._thread = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="framewatch-dask-signals")
        self._failed_once = False

    @property
    def channel(self) -> StreamChannel:
        return StreamChannel("dask", self.prefix)

    def name(self, movie_id: int) -> str:
        return f"{self.prefix}-{movie_id}"

    def reset(self) -> None:
        """Forget every movie (at start-up; the prefix is this run's own)."""
        self._values.clear()

    def opened(self, movie_id: int, client) -> None:
        """Before the pool sends the task of movie ``movie_id`` (again): its variable, set now and
        waited for (raises when the scheduler cannot take it; the pool sends the task later)."""
        from distributed import Variable

        value = self._values.setdefault(movie_id, {"open": True})
        Variable(self.name(movie_id), client=client).set(value, timeout=SET_TIMEOUT_S)

    def end(self, job: CorrectionJob) -> None:
        """The movie is complete: the worker finishes with ``job`` (unless the movie was cancelled)."""
        if "cancel" in self._values.get(job.movie_id, {}):
            return
        data = pickle.dumps(self._worker_job(job), protocol=pickle.HIGHEST_PROTOCOL)
        self._put(job.movie_id, {"end": data})

    def cancel(self, movie_id: int, reason: str) -> None:
        self._put(movie_id, {"cancel": str(reason)})

    def clear(self, movie_id: int) -> None:
        """The job came back: its variable is deleted."""
        if self._values.pop(movie_id, None) is not None:
            self._run(self.name(movie_id), None)

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=False)

    def _put(self, movie_id: int, value: dict) -> None:
        self._values[movie_id] = value
        self._run(self.name(movie_id), value)

    def _run(self, name: str, value: dict | None) -> None:
        with contextlib.suppress(RuntimeError):  # closed: the daemon stops, its client with it
            self._thread.submit(self._change, name, value)

    def _change(self, name: str, value: dict | None) -> None:
        """On the signal thread: set (or delete, ``value`` None) one variable."""
        from distributed import Variable

        for attempt in range(SET_ATTEMPTS):
            client = self._client()
            if client is None:  # not connected: set again when the task is sent again
                return
            try:
                variable = Variable(name, client=client)
                if value is None:
                    variable.delete()
                else:
                    variable.set(value, timeout=SET_TIMEOUT_S)
                return
            except Exception as err:  # noqa: BLE001 - tried again; a lost connection sends the task again with its value
                if attempt + 1 < SET_ATTEMPTS:
                    time.sleep(SET_RETRY_S)
                elif not self._failed_once:
                    self._failed_once = True
                    self._note("dask_stream_signal_failed", level="warning", variable=name,
                               reason=f"{type(err).__name__}: {err}",
                               note="the streaming job hears it when its task is sent again after the connection is back")


class DaskStreamControl:
    """The worker's side for one movie (module docstring): ``end()``, ``cancelled()``, ``cancel_reason()``,
    as processing/stream_signals.StreamControl. Outside a Dask worker (a test calling it directly)
    only the variable is read."""

    def __init__(self, prefix: str, movie_id: int):
        from distributed import Variable, get_worker

        self._variable = Variable(f"{prefix}-{movie_id}")
        try:
            self._worker = get_worker()
            self._key = self._worker.get_current_task()
        except ValueError:
            self._worker = self._key = None
        self._value: dict = {}
        self._looked = float("-inf")
        self._reason: str | None = None
        self.final_job: CorrectionJob | None = None

    def end(self) -> CorrectionJob | None:
        if self.final_job is None:
            data = self._look().get("end")
            if data is not None:
                self.final_job = pickle.loads(data)  # noqa: S301 - the daemon's own job, through its scheduler
        return self.final_job

    def cancelled(self) -> bool:
        if not self._wanted():
            self._reason = "the daemon no longer waits for this task (it stopped, or sent the movie elsewhere)"
            return True
        reason = self._look().get("cancel")
        if reason is not None:
            self._reason = str(reason)
            return True
        return False

    def cancel_reason(self) -> str:
        return self._reason or "cancelled by the daemon"

    def _wanted(self) -> bool:
        if self._worker is None:
            return True
        state = self._worker.state.tasks.get(self._key)
        return state is not None and state.state in ("executing", "long-running")

    def _look(self) -> dict:
        now = time.monotonic()
        if now - self._looked >= MIN_LOOK_S:
            self._looked = now
            try:
                value = self._variable.get(timeout=GET_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - not there (a restarted scheduler) or unreachable: no news yet
                value = None
            if isinstance(value, dict):
                self._value = value
        return self._value
