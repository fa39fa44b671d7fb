"""Which worker pool corrects the movies: ``[scheduler] backend``.

``"local"`` (the default): ``[scheduler] workers`` processes on this machine
(:class:`daemon.processing.scheduler.LocalProcessPool`). ``"dask"``: tasks on a Dask cluster
(:class:`daemon.processing.dask_pool.DaskPool`, the ``framewatch[dask]`` extra); dask is imported only then,
so the default install and the local backend never import it.
"""
from __future__ import annotations

from framewatch.core.errors import SettingsError
from framewatch.daemon.processing.pool import WorkerPool
from framewatch.daemon.processing.scheduler import LocalProcessPool


def make_pool(cfg, *, on_done=None) -> WorkerPool:
    """The pool for the configuration ``cfg`` (a DaemonConfig); ``on_done()`` wakes the daemon's loop."""
    if cfg.scheduler.backend == "dask":
        try:
            import distributed  # noqa: F401 - only to say clearly that it is missing
        except ImportError:
            raise SettingsError("[scheduler] backend = \"dask\" needs the Dask extra, which is not installed",
                                fix="pip install 'framewatch[dask]' (dask[distributed] and dask-jobqueue)") from None
        from framewatch.daemon.processing.dask_pool import DaskPool

        return DaskPool(cfg.dask, on_done=on_done, warmup=cfg.service.warmup)
    return LocalProcessPool(cfg.scheduler.workers, on_done=on_done)


def describe_pool(pool: WorkerPool) -> str:
    """``local`` or ``dask tcp://host:8786`` for the ``daemon_started`` line."""
    return pool.describe()
