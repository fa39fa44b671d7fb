"""The kernel warm-up before the daemon says it is ready: numba's cache directory (checked and
logged), then the kernels compiled in every worker of the pool (processing/warmup.py)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from framewatch.core.image_stats import image_stats


class KernelWarmup:
    def __init__(self, *, pool, log, service, config, state_dir: Path):
        """``pool`` (processing/pool.WorkerPool), ``log`` (the drift log), ``service`` (lifecycle.Service:
        ``starting``), ``config`` (LiveConfig), ``state_dir``: the daemon's STATE directory."""
        self._pool = pool
        self._log = log
        self._service = service
        self._config = config
        self._state_dir = state_dir
        self.reports: list[dict] = []  # one per worker, from the last warm-up

    def prepare_cache(self) -> None:
        """Choose numba's cache directory (before the workers start) and log it (``numba_cache``)."""
        from framewatch.daemon.processing.warmup import cache_status

        numba_cache_dir(self._state_dir)
        c = cache_status()
        self._log.event("numba_cache", level="info" if c.writable else "warning", directory=str(c.directory),
                        source=c.source, writable=c.writable, message=c.message)

    def warm_up(self, should_stop) -> float | None:
        """Compile the kernels in every worker before READY; returns the seconds (None: stopped,
        ``should_stop()`` became true)."""
        if not self._config.now.service.warmup:
            return 0.0
        self._service.starting("compiling kernels (warm-up)")
        t0 = time.perf_counter()
        try:
            reports = self._pool.warm_up(str(self._state_dir), should_stop=should_stop)
        except Exception as err:  # noqa: BLE001 - warm-up failure is not fatal: movies compile on first use
            self._log.event("warmup_failed", level="warning", reason=f"{type(err).__name__}: {err}")
            if self._pool.broken():
                self._pool.restart()
            return time.perf_counter() - t0
        if reports is None:
            return None
        t_main = time.perf_counter()
        _warm_main_process()
        main_s = time.perf_counter() - t_main
        warm = time.perf_counter() - t0
        self.reports = reports
        if reports:  # none: a Dask scheduler not reachable yet (its workers warm up when they join)
            slowest = max(reports, key=lambda r: r["warmup_s"])
            self._log.event("kernels_warmed", warmup_s=round(warm, 3), steps_s=slowest["steps_s"], workers=len(reports),
                            numba_cache_dir=slowest.get("numba_cache_dir"), daemon_s=round(main_s, 3))
        return warm


def _warm_main_process() -> None:
    """The kernels the daemon's own process runs: the header statistics of every appended section
    and per-tilt image (core/image_stats.py)."""
    image_stats(np.zeros((2, 2), np.float32))


def numba_cache_dir(state_dir: Path) -> None:
    """numba's ``cache=True`` needs a writable cache: the package's own ``__pycache__`` when it is
    writable, else ``STATE/numba-cache`` (e.g. under a hardened systemd unit), unless
    ``NUMBA_CACHE_DIR`` is set. Worker processes inherit the environment."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import framewatch.core as core

    if not os.access(Path(core.__file__).parent, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(state_dir / "numba-cache")
