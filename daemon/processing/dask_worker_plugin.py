"""What runs on a Dask worker: the framewatch worker plugin and the correction task.

:class:`FramewatchWorkerPlugin` is registered by the daemon on every worker of the cluster (Dask
runs it on the workers there now and on every worker that joins later). On each worker it

1. compares the worker's framewatch, numba, numpy and Python versions with the daemon's: a worker
   with another version is **refused** -- it reports why, naming both versions, and the daemon
   never sends it a movie (a kernel compiled by another numba, or another framewatch, would give
   other numbers or fail to unpickle the job);
2. otherwise compiles every numba kernel (``daemon.processing.warmup``, in a thread so the worker keeps
   answering the scheduler), then reports itself **ready**.

It reports through the scheduler's event log (topic :data:`EVENT_TOPIC`, one dict per worker and
registration); the daemon only hands movies to workers that reported ready for its registration
(:mod:`daemon.processing.dask_pool`). The plugin never raises: one bad worker must not stop the registration
on the others.

:func:`correct_on_worker` is the task: it runs the same correction as a local worker process
(``daemon.processing.worker.correct``) and adds the worker's address. A movie path the worker cannot see
(a share not mounted there, a wrong ``[dask] path_map``) comes back as that movie's error.
"""
from __future__ import annotations

import dataclasses
import os
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
        except Exception as err:  # noqa: BLE001 - reported, never raised (see the module docstring)
            report.update(status="refused", message=f"the framewatch worker set-up failed: {type(err).__name__}: {err}")
        worker.framewatch_report = report
        worker.log_event(EVENT_TOPIC, report)


def correct_on_worker(job: CorrectionJob) -> CorrectionOutcome:
    """The correction task: ``daemon.processing.worker.correct`` with the worker's address in ``worker``."""
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
        return CorrectionOutcome.failed(job, f"the Dask worker {where} cannot see the movie {movie} ({why}): mount the "
                                             "microscope's share on the workers at the same path, or map it with [dask] path_map",
                                        "MovieNotVisible", retryable=True, worker=where)
    return dataclasses.replace(local_worker.correct(job), worker=where)
