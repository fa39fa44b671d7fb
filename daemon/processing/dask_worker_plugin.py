"""What runs on a Dask worker: the framewatch worker plugin and the correction task.

:class:`FramewatchWorkerPlugin` is registered by the daemon on every worker of the cluster (Dask
runs it on the workers there now and on every worker that joins later). On each worker it

1. compares the worker's framewatch, numba, numpy and Python versions with the daemon's: a worker
   with another version is **refused** -- it reports why, naming both versions, and the daemon
   never sends it a movie (a kernel compiled by another numba, or another framewatch, would give
   other numbers or fail to unpickle the job);
2. otherwise compiles every numba kernel (``daemon.processing.warmup``, in a thread so the worker keeps
   answering the scheduler), then reports itself **ready**.

The ready report also says whether the worker was started with one glibc malloc arena
(:func:`arena_advice`): a Dask worker corrects in threads, and glibc gives each thread an arena whose
heaps cannot hold a 4096² frame, so every frame buffer is then a fresh ``mmap`` (zero-filled pages).
Measured on the streamed replay (``python -m benchmarks.daemon_replay --dask-workers 1``, 4096² × 10
LZW): a worker's frames before the end 1.76-1.81 s without, 0.66 s with ``MALLOC_ARENA_MAX=1``; the
tilt 3.4-3.5 × the floor without, 3.0 × with. Only the environment at the worker's start can set
it (glibc fixes the arena limit when the first thread allocates), so the daemon logs the advice.

It reports through the scheduler's event log (topic :data:`EVENT_TOPIC`, one dict per worker and
registration); the daemon only hands movies to workers that reported ready for its registration
(:mod:`daemon.processing.dask_pool`). The plugin never raises: one bad worker must not stop the registration
on the others.

:func:`correct_on_worker` is the task: it runs the same correction as a local worker process
(``daemon.processing.worker.correct``), adds the worker's address and returns the outcome as
:func:`to_wire` packs it (the daemon unpacks it with :func:`from_wire`). A movie path the worker cannot see
(a share not mounted there, a wrong ``[dask] path_map``) comes back as that movie's error.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import platform
import time

from distributed.diagnostics.plugin import WorkerPlugin

from framewatch.daemon.state.records import CorrectionJob, CorrectionOutcome

EVENT_TOPIC = "framewatch-worker"
PLUGIN_NAME = "framewatch"


def versions() -> dict[str, str]:
    """The versions a worker must share with the daemon."""
    import numba
    import numpy

    from framewatch.daemon.version import framewatch_version

    return {"framewatch": framewatch_version(), "numba": numba.__version__, "numpy": numpy.__version__,
            "python": ".".join(platform.python_version_tuple()[:2])}


def arena_advice(environ) -> str | None:
    """Advice when this process runs on glibc with more than one malloc arena (module docstring), else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    if environ.get("MALLOC_ARENA_MAX", "").strip() == "1" or "glibc.malloc.arena_max=1" in environ.get("GLIBC_TUNABLES", ""):
        return None
    return ("start this worker with MALLOC_ARENA_MAX=1 in its environment: its task threads then reuse frame "
            "buffers instead of mapping fresh memory for each (a streamed 4096² tilt 3.5 -> 3.0 x the floor)")


def version_mismatch(daemon: dict[str, str], worker: dict[str, str]) -> str | None:
    """A sentence naming every differing package with both versions, or None when they agree."""
    diffs = [f"{name} {worker.get(name)} on the worker, {want} in the daemon"
             for name, want in daemon.items() if worker.get(name) != want]
    if not diffs:
        return None
    return ("refused: " + "; ".join(diffs)
            + " -- install the daemon's versions on the worker (pip install 'framewatch[dask]==...' in the workers' environment)")


class FramewatchWorkerPlugin(WorkerPlugin):
    """Version check and kernel warm-up on every worker (see the module docstring)."""

    name = PLUGIN_NAME
    idempotent = False  # registering again (a restarted daemon) checks and warms every worker again

    def __init__(self, daemon_versions: dict[str, str], token: str, *, warmup: bool = True):
        self.daemon_versions = dict(daemon_versions)
        self.token = token  # the daemon's registration: reports of an earlier one are not taken
        self.warmup = warmup

    async def setup(self, worker) -> None:
        import asyncio

        report = {"token": self.token, "worker": worker.address, "name": str(worker.name), "nthreads": worker.state.nthreads,
                  "pid": os.getpid()}
        try:
            mine = versions()
            report["versions"] = mine
            why = version_mismatch(self.daemon_versions, mine)
            if why is not None:
                report.update(status="refused", message=why)
            else:
                if self.warmup:
                    from framewatch.daemon.processing.warmup import warm_up

                    t0 = time.perf_counter()
                    res = await asyncio.get_running_loop().run_in_executor(None, warm_up)
                    report.update(warmup_s=round(time.perf_counter() - t0, 3),
                                  steps_s={k: round(v, 3) for k, v in res.steps_s.items()})
                report["status"] = "ready"
                advice = arena_advice(os.environ)
                if advice is not None:
                    report["advice"] = advice
        except Exception as err:  # noqa: BLE001 - reported, never raised (see the module docstring)
            report.update(status="refused", message=f"the framewatch worker set-up failed: {type(err).__name__}: {err}")
        worker.framewatch_report = report
        worker.log_event(EVENT_TOPIC, report)


def correct_on_worker(job: CorrectionJob) -> tuple:
    """The correction task: ``daemon.processing.worker.correct`` with the worker's address in ``worker``,
    packed by :func:`to_wire`."""
    from distributed import get_worker

    from framewatch.daemon.processing import worker as local_worker

    try:
        where = get_worker().address
    except ValueError:  # run outside a worker (a test calling it directly)
        where = f"local:{os.getpid()}"
    movie = job.movie
    if not os.path.exists(movie):
        visible = os.path.isdir(os.path.dirname(movie))
        why = ("the file is not there" if visible else f"its directory {os.path.dirname(movie)} is not there either")
        return to_wire(CorrectionOutcome.failed(
            job, f"the Dask worker {where} cannot see the movie {movie} ({why}): mount the microscope's share on the "
                 "workers at the same path, or map it with [dask] path_map", "MovieNotVisible", retryable=True, worker=where))
    return to_wire(dataclasses.replace(local_worker.correct(job), worker=where))


def to_wire(outcome: CorrectionOutcome) -> tuple:
    """The task's result: ``(the outcome without its sums, pickled; dose-weighted; even; odd)``.

    Dask sends a tuple of bytes and arrays without copying them, but pickles an object holding arrays
    as a whole: measured on localhost, three 4096² float32 sums in the outcome took 0.6-1.35 s to
    reach the daemon, as this tuple 0.2-0.48 s."""
    light = dataclasses.replace(outcome, dose_weighted_sum=None, even_sum=None, odd_sum=None)
    return (pickle.dumps(light, protocol=pickle.HIGHEST_PROTOCOL), *outcome.sums)


def from_wire(result: tuple) -> CorrectionOutcome:
    """The outcome of a task's ``result`` (:func:`to_wire`)."""
    data, dose_weighted, even, odd = result
    outcome = pickle.loads(data)  # noqa: S301 - a result of this daemon's own task
    return dataclasses.replace(outcome, dose_weighted_sum=dose_weighted, even_sum=even, odd_sum=odd)
