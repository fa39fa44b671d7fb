"""Both pools implement the WorkerPool protocol, and the local pool knows its worker processes and a
broken pool by public means (worker-reported pids, /proc, a job's BrokenProcessPool), not executor internals."""
from __future__ import annotations

import inspect
import os
import signal
import time

import pytest

from framewatch.daemon.config.dask_options import DaskOptions
from framewatch.daemon.processing.dask_pool import DaskPool
from framewatch.daemon.processing.pool import WorkerPool
from framewatch.daemon.processing.scheduler import LocalProcessPool, _alive_child
from framewatch.daemon.state.records import CorrectionJob

PROTOCOL_METHODS = [n for n, v in vars(WorkerPool).items() if callable(v) and not n.startswith("_")]


def _shape(fn) -> list[tuple]:
    """Parameter names, kinds and defaults (annotations are documentation, spelled per module)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def _pools():
    return [LocalProcessPool(1), DaskPool(DaskOptions(address="tcp://127.0.0.1:1"))]


def test_protocol_lists_what_the_daemon_calls():
    assert set(PROTOCOL_METHODS) == {"start", "warm_up", "has_room", "submit", "finished", "notes", "describe",
                                     "broken", "restart", "abandon", "shutdown", "stream_signals"}


@pytest.mark.parametrize("pool", _pools(), ids=["local", "dask"])
def test_pool_satisfies_protocol_with_same_signatures(pool):
    assert isinstance(pool, WorkerPool)
    for name in PROTOCOL_METHODS:
        impl = getattr(type(pool), name)
        assert impl is not getattr(WorkerPool, name), f"{type(pool).__name__}.{name} is not implemented"
        assert _shape(impl) == _shape(getattr(WorkerPool, name)), name
    assert isinstance(pool.in_flight, dict) and isinstance(pool.started_at, dict)


def test_an_object_missing_a_method_is_not_a_pool():
    class NoAbandon:
        in_flight: dict = {}
        started_at: dict = {}

    assert not isinstance(NoAbandon(), WorkerPool)


def _wait(cond, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_local_pool_pids_broken_restart_and_abandon(tmp_path):
    """A real spawned worker: it reports its pid; a job on a missing movie comes back as a retryable
    error outcome; SIGKILL of the idle worker makes the pool broken (as the executor refuses jobs then);
    restart gives a healthy pool; abandon stops the worker that holds a job."""
    pool = LocalProcessPool(1)
    pool.start()
    try:
        pool.submit(CorrectionJob(1, str(tmp_path / "missing.mrc")))
        assert _wait(lambda: pool.in_flight[1].done())
        [res] = pool.finished()
        assert res.job.movie_id == 1 and res.retryable is True and not pool.in_flight
        [pid] = pool.worker_pids()
        assert pid != os.getpid() and _alive_child(pid) and not pool.broken()

        os.kill(pid, signal.SIGKILL)
        assert _wait(pool.broken, 20.0)

        pool.restart()
        assert not pool.broken()
        pool.submit(CorrectionJob(2, str(tmp_path / "missing.mrc")))
        assert _wait(lambda: len(pool.worker_pids()) == 1)
        [pid2] = pool.worker_pids()
        assert pid2 != pid
        assert pool.abandon(join_s=5.0) == [2]
        assert not _alive_child(pid2) and not pool.in_flight and not pool.started_at
    finally:
        pool.shutdown(wait=True, cancel=True)


def test_broken_process_pool_from_a_job_marks_the_pool_broken():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    pool = LocalProcessPool(1)
    pool._pool = object()  # only broken() reads it (not None = started); no process is needed for this
    fut = pool._track(Future())
    assert not pool.broken()
    fut.set_exception(BrokenProcessPool("a worker died"))
    assert pool.broken()
