"""The kernel warm-up before the daemon says it is ready: numba's cache directory (checked and
logged), then the kernels compiled in every worker of the pool (processing/warmup.py)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from framewatch.core.image_stats import image_stats

# The full-size warm-up of a state directory that has corrected no movie yet (KernelWarmup._from_gain):
# frames of a tomography tilt (8-12 are usual), and values that only stand in where the options give none
NEW_STATE_FRAMES = 10
STAND_IN_PIXEL_SIZE_A = 1.0
STAND_IN_DOSE_PER_FRAME_E_PER_A2 = 0.3
# A gain larger than this on a side is a super-resolution one (K2 7676 x 7420, K3 11520 x 8184), whose
# movies may be saved at half its size (the gain is then binned for them): no guess from it, since a
# worker keeps the memory of the largest movie it corrected. Counting-mode sizes are 3710-5760 px.
MAX_GAIN_WARMUP_SIDE_PX = 6144


class KernelWarmup:
    def __init__(self, *, pool, log, service, config, state_dir: Path, journal=None, run=None, sums_dir: str | None = None):
        """``pool`` (processing/pool.WorkerPool), ``log`` (the drift log), ``service`` (lifecycle.Service:
        ``starting``), ``config`` (LiveConfig), ``state_dir``: the daemon's STATE directory;
        ``journal`` (state/journal.py) and ``run`` (state/run_context.RunContext): the last movie's size
        and the processing options for the full-size warm-up (none without them); ``sums_dir``: the
        sums hand-over directory of a local pool."""
        self._pool = pool
        self._log = log
        self._service = service
        self._config = config
        self._state_dir = state_dir
        self._journal = journal
        self._run = run
        self._sums_dir = sums_dir
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
        full_size = self.full_size()
        try:
            reports = self._pool.warm_up(str(self._state_dir), should_stop=should_stop, full_size=full_size)
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
        for r in reports:
            if r.get("full_size_error"):
                self._log.event("warmup_full_size_skipped", level="warning", reason=r["full_size_error"])
        if reports:  # none: a Dask scheduler not reachable yet (its workers warm up when they join)
            slowest = max(reports, key=lambda r: r["warmup_s"])
            self._log.event("kernels_warmed", warmup_s=round(warm, 3), steps_s=slowest["steps_s"], workers=len(reports),
                            numba_cache_dir=slowest.get("numba_cache_dir"), daemon_s=round(main_s, 3),
                            full_size=None if full_size is None else [full_size.n_frames, *full_size.frame_shape],
                            full_size_from=None if full_size is None else full_size.source)
        return warm

    def full_size(self):
        """The synthetic movie of the full-size warm-up (processing/warmup.FullSizeWarmup): the frame
        count and shape of the movie the journal recorded last, corrected with the daemon's processing
        options and that movie's own values (pixel size, dose); before any movie was corrected in this
        state directory, the gain reference's shape (the camera's) and :data:`NEW_STATE_FRAMES` frames.
        None when switched off (``[service] warmup_full_size``), when there is nothing to go by (no
        movie corrected, no gain), or when the pool's workers do not live as long as the daemon (Dask)."""
        if not self._config.now.service.warmup_full_size or self._journal is None or self._run is None:
            return None
        if not self._pool.same_machine:
            return None
        row = self._journal.last_done()
        if row is None:
            return self._from_gain()
        info = row.get("info") or {}
        shape = (info.get("worker") or {}).get("frame_shape")
        if not shape or len(shape) != 2 or not row.get("n_frames"):
            return None  # a journal of a version that did not record it
        return self._movie(int(row["n_frames"]), shape, info.get("resolved") or {}, source="last movie")

    def _from_gain(self):
        """The first start of a state directory: the gain reference gives the frame shape (a movie
        of it, oriented, has the same size in bytes), stand-in values where the options give none
        (the pixel size and the dose change no buffer's size)."""
        from framewatch.core.errors import FramewatchError
        from framewatch.core.gain import read_gain

        gain = self._run.opts.gain
        if gain is None:
            return None
        try:
            shape = read_gain(gain).shape
        except (FramewatchError, OSError) as err:  # the daemon reports a bad gain with the first movie
            self._log.event("warmup_full_size_skipped", level="warning", reason=str(err))
            return None
        if max(shape) > MAX_GAIN_WARMUP_SIDE_PX:
            self._log.event("warmup_full_size_skipped", level="info",
                            reason=f"the gain reference is {shape[1]} x {shape[0]} (super-resolution): the movies' "
                                   "size is known once the first is corrected")
            return None
        stand_in = {"pixel_size_a": STAND_IN_PIXEL_SIZE_A, "dose_per_frame_e_per_a2": STAND_IN_DOSE_PER_FRAME_E_PER_A2}
        return self._movie(NEW_STATE_FRAMES, shape, stand_in, source="gain reference")

    def _movie(self, n_frames: int, shape, resolved: dict, *, source: str):
        from framewatch.core.errors import FramewatchError
        from framewatch.daemon.processing.warmup import FullSizeWarmup
        from framewatch.daemon.service.correction_jobs import resolved_settings

        try:
            settings = resolved_settings(resolved, opts=self._run.opts, n_frames=n_frames)
        except FramewatchError as err:  # the options changed since: no full-size warm-up, the kernels still
            self._log.event("warmup_full_size_skipped", level="warning", reason=str(err))
            return None
        return FullSizeWarmup(
            n_frames=n_frames, frame_shape=(int(shape[0]), int(shape[1])), settings=settings,
            gain=self._run.opts.gain is not None, streaming=bool(self._config.now.scheduler.streaming and self._pool.streams),
            sums_dir=self._sums_dir, source=source)


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
