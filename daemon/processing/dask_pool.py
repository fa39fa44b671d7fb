"""The worker pool on a Dask cluster: each movie's correction is one Dask task.

The :class:`framewatch.daemon.processing.pool.WorkerPool` interface, as the local pool, so the daemon's loop does
not know where corrections run. The daemon stays the only writer of stacks, tables and journal:
a task reads its movie from the shared file system and returns the three sums and the statistics
(see benchmarks/RESULTS.md for why arrays are returned rather than written to a staging folder).

- **Connection.** A background thread connects to the scheduler (``[dask] address``, or a cluster
  it starts through dask-jobqueue, :mod:`daemon.processing.dask_cluster`), registers the worker plugin
  (:mod:`daemon.processing.dask_worker_plugin`: version check, kernel warm-up) and follows the cluster's
  workers every ``ROSTER_PERIOD_S``. When the scheduler cannot be reached -- at start or later --
  it tries again with a back-off doubling up to ``reconnect_max_s``; meanwhile ``has_room`` is
  false, so complete movies wait in the daemon's queue and on disk (the daemon logs the backlog)
  and nothing is failed for it. Tasks lost with the connection are submitted again once it is back.
- **Workers.** Only workers that reported ready for this daemon's registration get movies; a
  refused worker (another framewatch/numba/numpy/Python version) is logged once and never used.
  ``has_room`` while fewer movies are in flight than those workers have threads.
- **Tasks** are submitted with ``pure=False`` (every submission runs), ``retries`` (a task that
  raised runs again) and restricted to the ready workers. A worker that dies mid-task is Dask's
  business: the scheduler runs the task on another worker (up to
  ``distributed.scheduler.allowed-failures`` deaths, then the future errs with KilledWorker and the
  daemon counts an interruption, as for a local worker process). A task whose every allowed worker
  is gone is cancelled and submitted again to the ready workers.
- **Streaming.** A streaming job (a movie still being written) is a task like any other; it hears
  that its movie is complete, or that it should stop, through a variable on the scheduler
  (:mod:`daemon.processing.dask_stream_signals`), which is set before the task is sent (again). Its
  worker follows the file where ``path_map`` says it is; a file the worker sees late or changed is
  read afresh once complete, as on a local worker.
- The main loop alone touches ``in_flight``; the thread only updates the roster and queues log
  lines, which :meth:`DaskPool.finished` hands to the daemon's log (the daemon is the only writer).
"""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from framewatch.daemon.config.dask_options import DaskOptions, map_path
from framewatch.daemon.processing.dask_stream_signals import DaskStreamSignals
from framewatch.daemon.processing.pool import WorkerPool
from framewatch.daemon.state.records import CorrectionJob, CorrectionOutcome

ROSTER_PERIOD_S = 0.5
FIRST_BACKOFF_S = 1.0
RESULT_TIMEOUT_S = 120.0


@dataclass
class _Task:
    job: CorrectionJob  # the daemon's, its paths as the workers see them (path_map)
    future: object = None  # a distributed.Future; None while waiting to be (re)submitted
    workers: frozenset = frozenset()
    client: object = None
    resubmissions: int = 0
    lost: str | None = None  # why it must be sent again (logged when it is)


@dataclass
class WorkerState:
    address: str
    nthreads: int
    name: str = ""
    ready: bool = False
    refused: str | None = None
    warmup_s: float | None = None
    report: dict = field(default_factory=dict)


class DaskPool(WorkerPool):
    """Corrections as tasks on a Dask cluster; see the module docstring."""

    backend = "dask"
    streams = True  # its workers follow a movie where path_map says it is; the signals go through the scheduler
    same_machine = False  # its workers may be other machines: the sums come back as the task's result

    def __init__(self, options: DaskOptions, *, on_done=None, warmup: bool = True):
        if not options.address and not options.cluster:
            from framewatch.core.errors import SettingsError

            raise SettingsError("[scheduler] backend = \"dask\" needs a scheduler", fix="give --dask-address tcp://HOST:8786, "
                                "or [dask] address, or [dask] cluster = \"slurm\" with a [dask.jobqueue] table")
        self.options = options
        self._on_done = on_done
        self._warmup = warmup
        self.in_flight: dict[int, _Task] = {}
        self.started_at: dict[int, float] = {}
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerState] = {}  # alive workers of the cluster
        self._client = None
        self._cluster = None
        self._notes: deque = deque()  # (event, fields) for the daemon's log
        self._stop = threading.Event()
        self._attempted = threading.Event()  # the first connection attempt has ended (either way)
        self._thread: threading.Thread | None = None
        self._token = uuid.uuid4().hex
        self._events_seen = 0
        self._reports: dict[str, dict] = {}  # worker address -> its plugin's last report (this registration)
        self._announced: set[tuple[str, str]] = set()
        self._signals = DaskStreamSignals(client=lambda: self._client if self.connected() else None,
                                          worker_job=self._worker_job, note=self._note)

    # ----------------------------------------------------------------------------- life cycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._link, name="framewatch-dask-link", daemon=True)
            self._thread.start()

    def warm_up(self, tmp_dir: str, timeout_s: float = 600.0, *, should_stop=None, full_size=None) -> list[dict] | None:
        """Wait for the first connection attempt (its plugin registration compiles the kernels on the
        workers there now) and return their warm-up reports; [] when the scheduler is not reachable
        (movies wait for it); None when ``should_stop()`` became true meanwhile. ``full_size`` is not
        used: Dask workers come and go with the cluster, and the first movie of each warms its memory."""
        deadline = time.monotonic() + timeout_s
        while not self._attempted.wait(0.2):
            if should_stop is not None and should_stop():
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Dask workers' warm-up took more than {timeout_s:g} s")
        with self._lock:
            return [dict(w.report) for w in self._workers.values() if w.ready and w.report.get("warmup_s") is not None]

    def broken(self) -> bool:
        return False  # a lost scheduler is waited for, never a broken pool

    def restart(self) -> None:
        pass  # reconnecting is the link thread's job

    def connected(self) -> bool:
        c = self._client
        return c is not None and getattr(c, "status", "") == "running"

    def ready_workers(self) -> dict[str, int]:
        """Address -> threads of the workers that get movies."""
        with self._lock:
            return {a: w.nthreads for a, w in self._workers.items() if w.ready}

    def capacity(self) -> int:
        return sum(self.ready_workers().values()) if self.connected() else 0

    def has_room(self) -> bool:
        return len(self.in_flight) < self.capacity()

    def describe(self) -> str:
        return f"dask {self.options.describe()}"

    # ------------------------------------------------------------------------------- the work
    def stream_signals(self, directory) -> DaskStreamSignals:
        """The signals of its streaming jobs: variables on the scheduler (``directory`` is not used:
        its workers need not see the daemon's state directory)."""
        return self._signals

    def _worker_job(self, job: CorrectionJob) -> CorrectionJob:
        """``job`` with its paths as the workers see them (``[dask] path_map``)."""
        pm = self.options.path_map
        return dataclasses.replace(job, movie=map_path(job.movie, pm), gain=map_path(job.gain, pm),
                                   defects=map_path(job.defects, pm))

    def submit(self, job: CorrectionJob) -> None:
        task = _Task(self._worker_job(job))
        self.in_flight[job.movie_id] = task
        self.started_at[job.movie_id] = time.time()
        self._send(job.movie_id, task)

    def _send(self, movie_id: int, task: _Task) -> None:
        from framewatch.daemon.processing.dask_worker_plugin import correct_on_worker

        client = self._client
        workers = sorted(self.ready_workers())
        if client is None or not self.connected() or not workers:
            task.future = None
            return
        try:
            if task.job.stream is not None:  # its signal first, so the worker's first look finds it
                self._signals.opened(movie_id, client)
            key = f"framewatch-correct-{movie_id}-{uuid.uuid4().hex[:8]}"
            fut = client.submit(correct_on_worker, task.job, key=key, pure=False, retries=self.options.retries, workers=workers,
                                allow_other_workers=False)
        except Exception:  # noqa: BLE001 - the client closed meanwhile: sent again when connected
            task.future = None
            return
        task.future, task.workers, task.client = fut, frozenset(workers), client
        if self._on_done is not None:
            fut.add_done_callback(lambda _f: self._on_done())

    def finished(self) -> list[CorrectionOutcome]:
        """Outcomes of finished tasks (a task whose workers all died: ``interrupted``); also sends
        again the tasks a lost connection or lost workers took away."""
        from framewatch.daemon.processing.dask_worker_plugin import from_wire  # imports distributed

        out = []
        alive = set(self.ready_workers())
        for mid, task in list(self.in_flight.items()):
            fut = task.future
            if fut is None or task.client is not self._client:
                if fut is not None:
                    task.lost = "the connection to the scheduler was lost"
                if self.connected() and alive:
                    if task.lost:
                        self._note("dask_task_resubmitted", movie=task.job.movie, reason=task.lost)
                        task.resubmissions += 1
                        task.lost = None
                    self._send(mid, task)
                continue
            status = fut.status
            if status == "finished":
                try:
                    res = from_wire(fut.result(timeout=RESULT_TIMEOUT_S))
                except Exception as err:  # noqa: BLE001 - the worker holding it died: Dask recomputes it
                    if fut.status in ("pending", "lost"):
                        continue
                    res = CorrectionOutcome.lost(task.job, err)
                self._take(mid)
                out.append(res)
            elif status == "error":
                self._take(mid)
                out.append(CorrectionOutcome.lost(task.job, fut.exception()))
            elif status in ("cancelled", "lost"):
                task.future = None  # the connection went: sent again once it is back
                task.lost = "the connection to the scheduler was lost"
            elif alive and not (task.workers & alive):
                # every worker it may run on is gone (not refused ones: those never get tasks)
                fut.cancel()
                self._note("dask_task_resubmitted", movie=task.job.movie,
                           reason="every worker it was sent to has left the cluster")
                task.future = None
                task.resubmissions += 1
                self._send(mid, task)
        return out

    def _take(self, mid: int) -> None:
        task = self.in_flight.pop(mid, None)
        self.started_at.pop(mid, None)
        if task is not None and task.future is not None:
            task.future.release()

    def notes(self) -> list[tuple[str, dict]]:
        """Log lines the link thread queued (connection, workers), for the daemon to write."""
        out = []
        while self._notes:
            out.append(self._notes.popleft())
        return out

    def _note(self, event: str, **fields) -> None:
        self._notes.append((event, fields))
        if self._on_done is not None:
            self._on_done()  # wake the loop so the line is written soon

    def abandon(self, join_s: float = 5.0) -> list[int]:
        mids = list(self.in_flight)
        for task in self.in_flight.values():
            if task.future is not None:
                try:
                    task.future.cancel()
                except Exception:  # noqa: BLE001 - the client is gone already
                    pass
        self.in_flight.clear()
        self.started_at.clear()
        return mids

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        if cancel:
            self.abandon()
        self._stop.set()
        self._signals.close()
        if self._thread is not None:
            self._thread.join(self.options.connect_timeout_s + 5)
            self._thread = None
        self._close_client()
        if self._cluster is not None:
            try:
                self._cluster.close()
            except Exception:  # noqa: BLE001 - closing a batch cluster whose jobs are already gone
                pass
            self._cluster = None

    # ---------------------------------------------------------------------- the link thread
    def _close_client(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            try:
                c.close(timeout=2)
            except Exception:  # noqa: BLE001 - it may be half gone already
                pass

    def _link(self) -> None:
        backoff = FIRST_BACKOFF_S
        where = self.options.describe()
        was_connected = False
        while not self._stop.is_set():
            if not self.connected():
                if self._client is not None:
                    self._close_client()
                    with self._lock:
                        self._workers.clear()
                    self._note("dask_disconnected", level="warning", scheduler=where,
                               note="movies wait; tasks in flight are sent again when it is back")
                try:
                    self._connect()
                except Exception as err:  # noqa: BLE001 - unreachable: movies wait, try again later
                    self._close_client()
                    self._note("dask_unreachable", level="warning", scheduler=where, reason=f"{type(err).__name__}: {err}",
                               retry_in_s=round(backoff, 3), note="movies wait for it; none is failed for this")
                    self._attempted.set()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.options.reconnect_max_s)
                    continue
                backoff = FIRST_BACKOFF_S
                with self._lock:
                    n = len(self._workers)
                    ready = sum(1 for w in self._workers.values() if w.ready)
                self._note("dask_connected", scheduler=where, address=self._client.scheduler.address, workers=n,
                           ready_workers=ready, reconnected=was_connected)
                was_connected = True
                self._attempted.set()
            try:
                self._refresh()
            except Exception:  # noqa: BLE001 - the scheduler went away: reconnect at the next turn
                pass
            self._stop.wait(ROSTER_PERIOD_S)

    def _connect(self) -> None:
        from distributed import Client

        from framewatch.daemon.processing.dask_worker_plugin import FramewatchWorkerPlugin, versions

        o = self.options
        if o.cluster and self._cluster is None:
            from framewatch.daemon.processing.dask_cluster import start_jobqueue_cluster

            self._cluster = start_jobqueue_cluster(o)
        target = self._cluster if self._cluster is not None else o.address
        self._client = Client(target, timeout=o.connect_timeout_s, set_as_default=False)
        self._events_seen = 0
        self._reports = {}
        self._token = uuid.uuid4().hex  # reports of an earlier registration are not taken
        # runs the plugin's set-up (version check, warm-up) on every worker there now; it never raises
        self._client.register_plugin(FramewatchWorkerPlugin(versions(), self._token, warmup=self._warmup))
        self._refresh()

    def _refresh(self) -> None:
        """The cluster's workers now, and the plugin's reports (ready / refused)."""
        client = self._client
        if client is None:
            return
        info = client.scheduler_info(n_workers=-1)
        alive = {a: (int(w.get("nthreads", 1)), str(w.get("name", ""))) for a, w in info.get("workers", {}).items()}
        events = client.get_events(_topic())
        new = list(events)[self._events_seen:]
        self._events_seen += len(new)
        fresh: dict[str, dict] = {}
        for _, msg in new:
            if isinstance(msg, dict) and msg.get("token") == self._token:
                fresh[msg.get("worker")] = self._reports[msg.get("worker")] = dict(msg)
        with self._lock:
            gone = [a for a in self._workers if a not in alive]
            for a in gone:
                w = self._workers.pop(a)
                if w.ready:
                    self._note("dask_worker_left", level="warning", worker=a, worker_name=w.name)
            joined = set()
            for a, (nthreads, name) in alive.items():
                if a not in self._workers:
                    self._workers[a] = WorkerState(a, nthreads, name)
                    joined.add(a)
                else:
                    self._workers[a].nthreads = nthreads
            # a report is kept by address: one that came before its worker was listed, or a worker
            # listed again after a gap (the scheduler went away and came back), takes its last report
            for a, w in self._workers.items():
                report = fresh.get(a) or (self._reports.get(a) if a in joined else None)
                if report is not None:
                    self._take_report(w, report)

    def _take_report(self, w: WorkerState, msg: dict) -> None:
        """Mark ``w`` ready or refused from its plugin's report ``msg`` (and say so in the log)."""
        w.report = dict(msg)
        if msg.get("status") == "ready":
            w.ready, w.refused, w.warmup_s = True, None, msg.get("warmup_s")
            advice = msg.get("advice")
            self._note("dask_worker_ready", worker=w.address, worker_name=w.name, nthreads=w.nthreads,
                       warmup_s=w.warmup_s, versions=msg.get("versions"),
                       **({"level": "warning", "advice": advice} if advice else {}))
        else:
            w.ready, w.refused = False, str(msg.get("message"))
            if (w.address, w.refused) not in self._announced:
                self._announced.add((w.address, w.refused))
                self._note("dask_worker_refused", level="error", worker=w.address, worker_name=w.name, reason=w.refused,
                           worker_versions=msg.get("versions"))

def _topic() -> str:
    from framewatch.daemon.processing.dask_worker_plugin import EVENT_TOPIC

    return EVENT_TOPIC
