"""A bounded queue of movies ready to process and a pool of worker processes.

The queue holds at most ``queue_size`` movie ids (the movies themselves stay on disk; what does not
fit stays watched and is queued when there is room), so memory does not grow however far behind the
daemon falls. It hands out the oldest acquisition first, or the newest when more than
``newest_first_backlog`` are waiting (if that option is > 0). At most ``workers`` movies are in
the worker processes at a time, and their results are taken one by one, so at most ``workers``
sets of sums are in memory.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

from framewatch.daemon.processing import worker
from framewatch.daemon.processing.pool import WorkerPool
from framewatch.daemon.processing.stream_signals import StreamSignals
from framewatch.daemon.state.records import CorrectionJob, CorrectionOutcome, QueueItem

WARMUP_ROUNDS = 3  # rounds of warm-up tasks until every worker process has sent a report


class ReadyQueue:
    def __init__(self, maxsize: int, newest_first_backlog: int = 0):
        self.maxsize = maxsize
        self.newest_first_backlog = newest_first_backlog
        self._items: list[QueueItem] = []

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def __contains__(self, movie_id: int) -> bool:
        return any(i.movie_id == movie_id for i in self._items)

    def put(self, item: QueueItem, *, over_capacity: bool = False) -> None:
        """Queue ``item``; ``over_capacity``: even when full (a streamed movie, in a worker already,
        passes through the queue only to keep its place)."""
        if self.full() and not over_capacity:
            raise OverflowError("ready queue is full")
        self._items.append(item)
        self._items.sort()

    def pop(self) -> QueueItem:
        if self.newest_first_backlog and len(self._items) > self.newest_first_backlog:
            return self._items.pop()
        return self._items.pop(0)

    def items(self) -> list[QueueItem]:
        """The queued items, oldest acquisition first (a copy)."""
        return list(self._items)

    def oldest_ready_at(self) -> float | None:
        return min((i.ready_at for i in self._items), default=None)

    def remove(self, movie_id: int) -> None:
        self._items = [i for i in self._items if i.movie_id != movie_id]


class LocalProcessPool(WorkerPool):
    """``workers`` spawned processes on this machine; ``submit`` only when ``has_room``.

    Implements :class:`framewatch.daemon.processing.pool.WorkerPool` with public means only: a
    broken pool is known from a job's ``BrokenProcessPool`` exception or from a worker process that
    is gone; the worker pids come from the workers themselves (``worker.init_worker`` puts
    ``os.getpid()`` on a queue), and their liveness from ``/proc``.
    """

    backend = "local"
    streams = True  # its workers see this machine's files: they can follow a movie while it is written
    same_machine = True  # a worker hands its sums over through tmpfs (sums_handover.py)

    def __init__(self, workers: int, *, on_done=None):
        self.workers = workers
        self._on_done = on_done
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: cf.ProcessPoolExecutor | None = None
        self._pid_queue = None  # workers report their pid here (a fresh queue per executor)
        self._pids: set[int] = set()
        self._broken_seen = False
        self.in_flight: dict[int, cf.Future] = {}
        self.started_at: dict[int, float] = {}
        self._jobs: dict[int, CorrectionJob] = {}

    def start(self) -> None:
        self._pid_queue = self._ctx.SimpleQueue()
        self._pids = set()
        self._broken_seen = False
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._ctx, initializer=worker.init_worker,
            initargs=(os.getpid(), self._pid_queue),
        )

    def describe(self) -> str:
        return "local"

    def notes(self) -> list[tuple[str, dict]]:
        return []  # the daemon logs everything about local workers itself

    def _track(self, fut: cf.Future) -> cf.Future:
        fut.add_done_callback(self._note_broken)
        return fut

    def _note_broken(self, fut: cf.Future) -> None:
        if not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool):
            self._broken_seen = True

    def worker_pids(self) -> set[int]:
        """The pids of the worker processes started so far (those that reported in)."""
        q = self._pid_queue
        while q is not None and not q.empty():
            self._pids.add(q.get())
        return set(self._pids)

    def warm_up(self, tmp_dir: str, timeout_s: float = 600.0, *, should_stop=None, full_size=None) -> list[dict] | None:
        """Run the warm-up in every worker (in parallel; ``full_size``: warmup.FullSizeWarmup or
        None); returns one report per worker process, or None when ``should_stop()`` became true
        meanwhile (a stop requested during start-up).

        The executor hands a task to whichever process is free, so one process may take two
        warm-ups while another, still starting, takes none: the processes that sent no report are
        given another round (at most ``WARMUP_ROUNDS``), so every worker's memory is warm."""
        deadline = time.monotonic() + timeout_s
        reports: dict[int, dict] = {}
        for _ in range(WARMUP_ROUNDS):
            missing = self.workers - len(reports)
            futs = [self._track(self._pool.submit(worker.warm_up, tmp_dir, full_size=full_size)) for _ in range(missing)]
            while True:
                done, _ = cf.wait(futs, timeout=0.2)
                if len(done) == len(futs):
                    break
                if should_stop is not None and should_stop():
                    return None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the kernel warm-up took more than {timeout_s:g} s")
            for f in futs:
                r = f.result()
                reports.setdefault(r["pid"], r)
            if len(reports) >= self.workers:
                break
        return list(reports.values())

    def has_room(self) -> bool:
        return len(self.in_flight) < self.workers

    def stream_signals(self, directory) -> StreamSignals:
        """Files in ``directory`` (the daemon's ``<state>/streams``), which its workers read."""
        return StreamSignals(directory)

    def submit(self, job: CorrectionJob) -> None:
        fut = self._track(self._pool.submit(worker.correct, job))
        self.in_flight[job.movie_id] = fut
        self.started_at[job.movie_id] = time.time()
        self._jobs[job.movie_id] = job
        if self._on_done is not None:
            fut.add_done_callback(lambda _f: self._on_done())

    def finished(self) -> list[CorrectionOutcome]:
        """Outcomes of finished jobs (a dead worker process: ``interrupted``)."""
        out = []
        for mid, fut in list(self.in_flight.items()):
            if fut.done():
                del self.in_flight[mid]
                self.started_at.pop(mid, None)
                job = self._jobs.pop(mid)
                try:
                    out.append(fut.result())
                except BaseException as err:  # noqa: BLE001 - BrokenProcessPool etc.
                    out.append(CorrectionOutcome.lost(job, err))
        return out

    def broken(self) -> bool:
        """A job ended with ``BrokenProcessPool``, or a worker process is gone (killed while idle:
        the executor refuses new jobs then)."""
        if self._pool is None:
            return False
        return self._broken_seen or any(not _alive_child(pid) for pid in self.worker_pids())

    def abandon(self, join_s: float = 5.0) -> list[int]:
        """Stop every worker process now (their movies are dropped: the caller journals them);
        returns the movie ids that were in flight."""
        mids = list(self.in_flight)
        pids = self.worker_pids() if self._pool is not None else set()
        self.in_flight.clear()
        self.started_at.clear()
        self._jobs.clear()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            live = [p for p in pids if _alive_child(p)]
            for pid in live:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + join_s
            while any(_alive_child(p) for p in live) and time.monotonic() < deadline:
                time.sleep(0.02)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return mids

    def restart(self) -> None:
        self.shutdown(wait=False, cancel=True)
        self.start()

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=cancel)
            self._pool = None


def _alive_child(pid: int) -> bool:
    """True when ``pid`` is a running (not zombie) child of this process, read from ``/proc/<pid>/stat``
    (a pid reused by another process is not our worker)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
    return fields[0] != b"Z" and int(fields[1]) == os.getpid()
