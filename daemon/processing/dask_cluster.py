"""Starting a Dask cluster on a batch system through dask-jobqueue (``[dask] cluster``).

``[dask.jobqueue]`` is passed to the dask-jobqueue cluster class of the batch system (Slurm,
PBS, SGE, LSF): ``cores``, ``memory``, ``processes``, ``walltime``, ``queue``, ``account`` (the
``project`` of SGE and LSF), ``job_extra_directives`` and the other keys of
:data:`daemon.config.dask_options.JOBQUEUE_KEYS`; ``adapt_minimum`` / ``adapt_maximum`` make it adaptive
(workers are asked for while movies wait and given back when idle), else one job is started
(``adapt_minimum``, default 1). The scheduler runs inside the daemon's process; the workers
connect to it from the batch jobs, so the job's node must reach the daemon's host. The job script
exports ``MALLOC_ARENA_MAX=1`` first unless ``job_script_prologue`` sets it (see
:func:`daemon.processing.dask_worker_plugin.arena_advice`).
"""
from __future__ import annotations

from framewatch.core.errors import SettingsError
from framewatch.daemon.config.dask_options import DaskOptions

_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}


def jobqueue_kwargs(options: DaskOptions) -> dict:
    """The keyword arguments of the dask-jobqueue cluster class for ``[dask.jobqueue]``."""
    kw = options.jobqueue.as_dict()
    kw.pop("adapt_minimum", None)
    kw.pop("adapt_maximum", None)
    # one single-threaded worker process per core unless told otherwise: one movie per process at a
    # time (its numba kernels use [processing] threads), like the local pool's worker processes
    kw.setdefault("processes", kw.get("cores", 1))
    prologue = list(kw.get("job_script_prologue", ()))
    if not any("MALLOC_ARENA_MAX" in line for line in prologue):  # dask_worker_plugin.arena_advice
        kw["job_script_prologue"] = ["export MALLOC_ARENA_MAX=1", *prologue]
    if options.cluster in ("sge", "lsf") and "account" in kw:
        kw["project"] = kw.pop("account")  # their name for the accounting project
    return kw


def jobqueue_cluster_class(name: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise SettingsError(f"[dask] cluster = {name!r} needs dask-jobqueue, which is not installed",
                            fix="pip install 'framewatch[dask]'") from None
    return getattr(dask_jobqueue, _CLASSES[name])


def make_jobqueue_cluster(options: DaskOptions, **extra):
    """The dask-jobqueue cluster object (not scaled yet); ``extra`` goes to its constructor too
    (e.g. ``scheduler_options``)."""
    cls = jobqueue_cluster_class(options.cluster)
    return cls(**jobqueue_kwargs(options), **extra)


def job_script(options: DaskOptions) -> str:
    """The batch script one worker job would be submitted with (for ``check-config`` and tests)."""
    cluster = make_jobqueue_cluster(options, scheduler_options={"host": "127.0.0.1"})
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def start_jobqueue_cluster(options: DaskOptions):
    """Start the cluster: adaptive between ``adapt_minimum`` and ``adapt_maximum`` workers when
    either is given, else ``adapt_minimum`` (1) fixed jobs."""
    cluster = make_jobqueue_cluster(options)
    jq = options.jobqueue.as_dict()
    lo, hi = jq.get("adapt_minimum"), jq.get("adapt_maximum")
    if hi is not None:
        cluster.adapt(minimum=lo or 0, maximum=hi)
    else:
        cluster.scale(lo if lo is not None else 1)
    return cluster
