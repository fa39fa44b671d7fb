"""The daemon's main loop: watch -> ready -> group -> journal -> worker -> append -> log.

One thread (this loop) owns the journal, the output files and the drift log; the inotify observer
only wakes it, and worker processes only compute. Per turn of the loop:

1. take inotify hints and, every ``scan_period_s``, a full scan of the watch root;
2. look at every watched movie: stat, probe when changed, decide completeness (readiness.py);
   a complete movie is grouped (series.py), recorded ``ready`` in the journal and queued, as long
   as the bounded queue has room;
3. hand queued movies to free workers (``processing``);
4. take finished results: append the three sections, mark the movie ``done`` with its section
   index, rewrite the tilt table, log ``tilt_corrected``; errors are retried with back-off or
   recorded ``failed``;
5. complete series whose mdoc is fully processed and quiet, or that saw no new tilt for
   ``idle_s``: write the angle-sorted stacks, ``.tlt`` and ``.star``;
6. log the backlog now and then.

Start-up resumes from the journal: movies interrupted while ``processing`` are redone (once by
default), stacks are repaired to the journal's section counts, tables are rewritten.

As a service (service.py): the lock on the state directory is taken before anything else; the
kernels are compiled before ``READY=1``; every turn sends ``STATUS=`` and, while healthy,
``WATCHDOG=1``; no new movie goes to a worker while the output disk is below its floor. Signals
are only recorded by their handlers (:class:`SignalInbox`) and handled here: SIGTERM/SIGINT stop
taking movies, let the one in a worker finish for up to ``[service] shutdown_timeout_s`` (or
abandon it: it is journalled as not done and redone at the next start), flush and exit 0; SIGHUP
reloads the configuration when it validates and keeps the old one otherwise.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from framewatch.core.errors import FramewatchError, SettingsError
from framewatch.daemon.config.configuration import DaemonConfig, reload_merge
from framewatch.daemon.config.directory_roles import check_directory_roles
from framewatch.daemon.config.processing_options import ProcessingOptions
from framewatch.daemon.intake.file_isolation import FileIsolation
from framewatch.daemon.intake.movie_intake import TICK_S, Candidate, Intake
from framewatch.daemon.intake.naming import patterns_from_config
from framewatch.daemon.intake.series_grouping import SeriesIndex
from framewatch.daemon.intake.watcher import Watcher
from framewatch.daemon.outputs.driftlog import DriftLog, operational_logger
from framewatch.daemon.outputs.interop_outputs import InteropOutputs
from framewatch.daemon.outputs.no_follow import LinkInOutputError
from framewatch.daemon.outputs.series_outputs import SeriesPaths, repair_stacks
from framewatch.daemon.processing.pool_choice import describe_pool, make_pool
from framewatch.daemon.processing.scheduler import ReadyQueue
from framewatch.daemon.service.dispatch import Processing
from framewatch.daemon.service.events import Events
from framewatch.daemon.service.lifecycle import Service, SignalInbox
from framewatch.daemon.service.series_completion import Completion
from framewatch.daemon.state.instance_lock import InstanceLock
from framewatch.daemon.state.journal import Journal
from framewatch.daemon.state.output_lock import OutputLock
from framewatch.daemon.version import framewatch_version

COMPLETION_CHECK_S = 1.0


def default_state_dir(out_dir: str | Path) -> Path:
    """``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/framewatch/<OUT path>``, else
    ``~/.local/state/framewatch/<OUT path>`` (the OUT path with / replaced by _)."""
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "framewatch"
    slug = str(Path(out_dir).resolve()).strip("/").replace("/", "_") or "root"
    return base / slug


class Daemon(Intake, Processing, Completion, Events, FileIsolation, InteropOutputs):
    """The daemon: set-up, start-up recovery, the main loop and a clean stop (the mixins hold the
    steps of the loop: intake.py, processing.py, completion.py, events.py, interop_outputs.py)."""

    def __init__(
        self,
        watch_dir: str | Path,
        out_dir: str | Path,
        *,
        state_dir: str | Path | None = None,
        config: DaemonConfig | None = None,
        options: ProcessingOptions | None = None,
        stdout=None,
        reload=None,
        notifier=None,
        disk_probe=None,
    ):
        """``reload()`` returns a fresh (DaemonConfig, ProcessingOptions) from the configuration file
        and command line, for SIGHUP; ``notifier`` and ``disk_probe`` replace the sd_notify sender
        and the free-space probe (tests)."""
        self.watch_dir = Path(watch_dir).resolve()
        if not self.watch_dir.is_dir():
            raise SettingsError("watch directory does not exist", path=self.watch_dir, fix="create it or check the path")
        self.out_dir = Path(out_dir).resolve()
        self.state_dir = Path(state_dir).resolve() if state_dir else default_state_dir(self.out_dir)
        check_directory_roles(watch_dir=self.watch_dir, out_dir=self.out_dir, state_dir=self.state_dir)
        self.cfg = config or DaemonConfig()
        self.opts = options or ProcessingOptions()
        for name, p in (("gain", self.opts.gain), ("defects", self.opts.defects)):
            if p is not None and not Path(p).is_file():
                raise SettingsError(f"{name} file not found", path=p, fix=f"check --{name}")
        self.stop_event = threading.Event()
        self._stdout = stdout
        self.started = time.time()
        self._reload = reload
        self._notifier = notifier
        self._disk_probe = disk_probe
        self.inbox = SignalInbox()
        self._abandon_now = False
        self.warmup_reports: list[dict] = []

    # ------------------------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        logging.getLogger("tifffile").setLevel(logging.ERROR)  # partial files are expected here
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.state_dir, self.out_dir, lock=getattr(self, "_lock", None))
        fmt = self.cfg.log.format
        self.oplog = operational_logger(self._stdout, json=None if fmt == "auto" else fmt == "json")
        try:
            self.log = DriftLog(self.out_dir / "framewatch.jsonl", echo=self.oplog,
                                spill=self.state_dir / "framewatch.jsonl.pending")
        except OSError as err:  # e.g. a link planted at OUT/framewatch.jsonl (opened with O_NOFOLLOW)
            raise FramewatchError(f"cannot open the drift log: {err.strerror}", path=self.out_dir / "framewatch.jsonl",
                                  fix="it must be a regular file written by framewatch "
                                      "(remove a link or anything else there)") from None
        self._setup_service()
        self.hash = self.opts.settings_hash()
        self.out_set, new_set = self.journal.output_set(self.hash, self.opts.identity())
        self.set_dir = self.out_dir / self.out_set if self.out_set else self.out_dir
        w = self.cfg.watch
        self.watcher = Watcher(
            self.watch_dir,
            patterns=w.patterns,
            ignore=w.ignore,
            exclude_dirs=(self.out_dir, self.state_dir),
            use_inotify=w.inotify,
        )
        self.watcher.start()  # before the first scan, so nothing written meanwhile is missed
        self.inbox.wake = self.watcher.wake
        self.index = SeriesIndex(patterns_from_config(list(self.cfg.series.patterns)), root=self.watch_dir,
                                 mdoc_max_bytes=int(w.mdoc_max_mb * 1e6))
        self._rejected: dict[str, tuple | None] = {}  # path -> version rejected (file_isolation.py)
        q = self.cfg.scheduler
        self.queue = ReadyQueue(q.queue_size, q.newest_first_backlog)
        self.pool = make_pool(self.cfg, on_done=self.watcher.wake.set)
        self.cands: dict[str, Candidate] = {}
        self.final: dict[str, tuple[int, int]] = {}
        self.held: dict[int, dict] = {}
        self.busy_paths: set[str] = set()
        self._order: dict[int, tuple[int, int]] = {}
        self._dispatch_order = 0
        self.hot_dirs: dict[str, float] = {}
        self._last_completion_check = 0.0
        self._last_backlog = 0.0
        self._backlog_nonzero = False
        self.log.event(
            "daemon_started",
            version=framewatch_version(),
            pid=os.getpid(),
            watch_dir=str(self.watch_dir),
            out_dir=str(self.out_dir),
            state_dir=str(self.state_dir),
            backend=self.watcher.backend,
            scan_period_s=w.scan_period_s,
            workers=q.workers,
            processing_backend=describe_pool(self.pool),
            settings_hash=self.hash,
            output_dir=str(self.set_dir),
        )
        self.log.event("output_set", settings_hash=self.hash, output_dir=str(self.set_dir), new=new_set,
                       **({"note": "settings differ from the first run: outputs go to this separate directory"}
                          if self.out_set else {}))

    def _recover(self) -> int:
        """Resume after a restart; returns the number of movies to redo."""
        j = self.journal
        redo = 0
        for row in j.in_state("processing", settings_hash=self.hash):
            n = row["interruptions"] + 1
            if n >= self.cfg.watch.max_interruptions:
                j.update(row["id"], state="failed", interruptions=n,
                         error=f"interrupted {n} times while being processed (daemon killed or crashed)")
                self._log_failed(row, "processing", f"interrupted {n} times while being processed (daemon killed or crashed)")
            else:
                j.update(row["id"], state="seen", interruptions=n)
                self.log.event("movie_interrupted", movie=row["path"], interruptions=n, redo=True)
                redo += 1
        for row in j.in_state("ready", settings_hash=self.hash):
            j.update(row["id"], state="seen")
        for s in j.all_series(self.hash):
            paths = SeriesPaths.of(self.out_dir, s["out_rel"])
            n = j.n_sections(s["id"])
            try:
                n_now, actions = repair_stacks(paths, n)
            except LinkInOutputError as err:  # a link planted in OUT: the series is left alone (no_follow.py)
                self._output_failed(s, "stacks", err)
                continue
            for path, count, what in actions:
                if what not in ("ok",):
                    self.log.event("stack_repaired", level="warning", series=s["name"], stack=str(path), sections=count,
                                   action=what)
            if n_now < n:
                for row in j.sections(s["id"]):
                    if row["z"] >= n_now:
                        j.update(row["id"], state="seen", z=None, logged=0)
                        redo += 1
            rows = j.sections(s["id"])
            self._tidy_tilt_images(paths, rows)  # a crash's temporaries; images of movies not done
            if rows:
                self._write_tables(s, paths, rows)  # output disk full: written later (processing.py)
                self._replot_stale(s, paths, rows)
                if s["complete"] and not paths.sorted_stack.exists() and self._write_sorted(s, paths, rows) is None:
                    j.update_series(s["id"], complete=0)  # completed (and written) again once there is room
        self._replay_lost_lines()  # tilt_corrected / movie_failed lines a crash kept from the log (events.py)
        return redo

    def _setup_service(self) -> None:
        from framewatch.daemon.outputs.plots import PlotWorker
        from framewatch.daemon.service.metrics import create_metrics

        metrics = create_metrics(self.cfg.metrics.address)  # a port in use stops start-up here
        self.log.listeners.append(lambda name, kw: self.service.on_event(name, kw))
        plots = None
        if self.cfg.plots.enabled:
            plots = PlotWorker(on_error=lambda key, err: self.log.event(
                "plot_failed", level="warning", series_dir=key, reason=f"{type(err).__name__}: {err}"))
        self.service = Service(log=self.log, out_dir=self.out_dir, disk_cfg=self.cfg.disk, service_cfg=self.cfg.service,
                               metrics=metrics, plots=plots, notifier=self._notifier, disk_probe=self._disk_probe)
        if metrics.address is not None:
            self.log.event("metrics_serving", address=metrics.address[0], port=metrics.address[1],
                           url=f"http://{metrics.address[0]}:{metrics.address[1]}/metrics")

    # ----------------------------------------------------------------------------- main loop
    def run(self) -> int:
        lock = self._lock = InstanceLock(self.state_dir)
        lock.acquire()  # first of all: a second daemon on this journal stops here, touching nothing
        out_lock = OutputLock(self.out_dir, state_dir=self.state_dir)
        try:
            out_lock.acquire()  # and one with another journal on the same OUT (output_lock.py)
        except BaseException:
            lock.release()
            raise
        try:
            self._setup()
            resumed = self._recover()
            _numba_cache_dir(self.state_dir)
            self._log_cache()
            if self.watcher.inotify_error:
                self.log.event("inotify_unavailable", level="warning", reason=self.watcher.inotify_error)
            self.pool.start()
            warm = self._warm_up()
            if warm is None:  # stopped during the warm-up: no movie was taken yet
                self.pool.abandon()
                self._drain()
                return 0
            self._scan(time.time())
            self.service.initial_disk_check()
            self.log.event("daemon_ready", warmup_s=round(warm, 3), known_movies=len(self.cands) + len(self.final),
                           resumed_movies=resumed, backend=self.watcher.backend, scan_period_s=self.cfg.watch.scan_period_s)
            self.service.ready(self._status())
            next_scan = time.time() + self.cfg.watch.scan_period_s
            while not self.stop_event.is_set():
                self._signals()
                if self.stop_event.is_set():
                    break
                now = time.time()
                self._hints(now)
                if now >= next_scan:
                    self._scan(now)
                    next_scan = now + self.cfg.watch.scan_period_s
                self._step(now)
                self._tick()
                self.watcher.wake.wait(TICK_S)
                self.watcher.wake.clear()
            self._drain()
            return 0
        finally:
            try:
                self._shutdown()
            finally:
                out_lock.release()
                lock.release()

    def _log_cache(self) -> None:
        from framewatch.daemon.processing.warmup import cache_status

        c = cache_status()
        self.log.event("numba_cache", level="info" if c.writable else "warning", directory=str(c.directory),
                       source=c.source, writable=c.writable, message=c.message)

    def _warm_up(self) -> float | None:
        """Compile the kernels in every worker before READY; returns the seconds (None: stopped)."""
        if not self.cfg.service.warmup:
            return 0.0
        self.service.starting("compiling kernels (warm-up)")
        t0 = time.perf_counter()

        def should_stop() -> bool:
            self._signals()
            return self.stop_event.is_set()

        try:
            reports = self.pool.warm_up(str(self.state_dir), should_stop=should_stop)
        except Exception as err:  # noqa: BLE001 - warm-up failure is not fatal: movies compile on first use
            self.log.event("warmup_failed", level="warning", reason=f"{type(err).__name__}: {err}")
            if self.pool.broken():
                self.pool.restart()
            return time.perf_counter() - t0
        if reports is None:
            return None
        warm = time.perf_counter() - t0
        self.warmup_reports = reports
        if reports:  # none: a Dask scheduler not reachable yet (its workers warm up when they join)
            slowest = max(reports, key=lambda r: r["warmup_s"])
            self.log.event("kernels_warmed", warmup_s=round(warm, 3), steps_s=slowest["steps_s"], workers=len(reports),
                           numba_cache_dir=slowest.get("numba_cache_dir"))
        return warm

    def stop(self, reason: str = "signal") -> None:
        self._stop_reason = reason
        self.stop_event.set()
        try:
            self.watcher.wake.set()
        except AttributeError:
            pass

    def _signals(self) -> None:
        """Act on the signals the handlers recorded (they do nothing else)."""
        for sig in self.inbox.drain():
            if sig in (signal.SIGTERM, signal.SIGINT):
                if self.stop_event.is_set():
                    self._abandon_now = True  # a second request: do not wait for the workers
                else:
                    self.stop(signal.Signals(sig).name)
            elif sig == signal.SIGHUP:
                self._reload_config()

    def _reload_config(self) -> None:
        notifier = self.service.notifier
        notifier.reloading()
        where = self.cfg.source
        try:
            if self._reload is None:
                raise SettingsError("no configuration file was given (--config), nothing to reload")
            new_cfg, new_opts = self._reload()
        except Exception as err:  # noqa: BLE001 - whatever is wrong with the new file, the daemon keeps running
            reason = str(err) if isinstance(err, FramewatchError) else f"{type(err).__name__}: {err}"
            self.log.event("config_reload_failed", level="error", config=where, reason=reason,
                           note="still running on the previous configuration")
            notifier.ready(self._status())
            return
        cfg, applied, restart = reload_merge(self.cfg, new_cfg)
        if new_opts.settings_hash() != self.hash and "processing" not in restart:
            restart.append("processing")
        self.cfg = cfg
        self.queue.newest_first_backlog = cfg.scheduler.newest_first_backlog
        self.service.apply_config(cfg.disk, cfg.service)
        self.log.event("config_reloaded", config=new_cfg.source, changed=applied, needs_restart=restart,
                       **({"note": "changes of needs_restart keys take effect at the next start"} if restart else {}))
        notifier.ready(self._status())

    def _oldest_wait_s(self, now: float) -> float | None:
        oldest = self.queue.oldest_ready_at()
        if oldest is None and self.pool.started_at:
            oldest = min(self.pool.started_at.values())
        return None if oldest is None else now - oldest

    def _status(self) -> str:
        return self.service.status_text(len(self.queue), len(self.pool.in_flight), len(self.cands))

    def _tick(self) -> None:
        now = time.time()
        self.service.tick(queued=len(self.queue), processing=len(self.pool.in_flight), watching=len(self.cands),
                          oldest_wait_s=self._oldest_wait_s(now), pool_broken=self.pool.broken(),
                          in_flight_since=self.pool.started_at, now=now)

    def _step(self, now: float) -> None:
        ready = []
        for cand in list(self.cands.values()):
            if now >= cand.next_check:
                r = self._guarded(cand.path, "readiness", self._evaluate, cand, now)
                if r is not None:
                    ready.append(r)
        if ready:
            self._admit(ready, now)
        self._collect(time.time())
        if not self.service.paused:  # below the disk floor: keep watching and journaling, start nothing
            self._dispatch(time.time())
        self._log_mdoc_warnings()
        if now - self._last_completion_check >= COMPLETION_CHECK_S:
            self._last_completion_check = now
            self._check_series(now)
        if now - self._last_backlog >= self.cfg.scheduler.backlog_log_s:
            self._last_backlog = now
            self._log_backlog(now)

    def _drain(self) -> None:
        """Stop taking movies; finish those in the workers within the shutdown timeout, else abandon."""
        reason = getattr(self, "_stop_reason", "signal")
        self.log.event("daemon_stopping", reason=reason, in_flight=len(self.pool.in_flight))
        self.service.stopping(reason, len(self.pool.in_flight))
        deadline = time.time() + self.cfg.service.shutdown_timeout_s
        while (self.pool.in_flight or self.held) and time.time() < deadline and not self._abandon_now:
            self._collect(time.time())
            self._signals()
            if self.pool.in_flight or self.held:
                time.sleep(0.05)
        if self.pool.in_flight:
            self._abandon_in_flight("a second stop signal" if self._abandon_now else
                                    f"still being corrected after shutdown_timeout_s = {self.cfg.service.shutdown_timeout_s:g} s")
            self._collect(time.time())  # results that waited for an abandoned, earlier movie

    def _abandon_in_flight(self, reason: str) -> None:
        now = time.time()
        started = dict(self.pool.started_at)
        for mid in self.pool.abandon():
            self._order.pop(mid, None)
            row = self.journal.get(mid)
            # back to "seen" (not an interruption): nothing of it is in the stacks, the next start corrects it
            self.journal.update(mid, state="seen", started_at=None)
            self.log.event("movie_abandoned", level="warning", movie=row["path"], series=self._series_name(row),
                           in_worker_s=round(now - started.get(mid, now), 3), reason=reason,
                           note="nothing of it was appended; the next start corrects it")

    def _shutdown(self) -> None:
        for name in ("watcher",):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.stop()
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel=True)
        service = getattr(self, "service", None)
        if service is not None:
            service.close()
        if hasattr(self, "log"):
            self.log.event("daemon_stopped", reason=getattr(self, "_stop_reason", "signal"),
                           uptime_s=round(time.time() - self.started, 3))
            self.log.close()
        if hasattr(self, "journal"):
            self.journal.close()


def _numba_cache_dir(state_dir: Path) -> None:
    """numba's ``cache=True`` needs a writable cache: the package's own ``__pycache__`` when it is
    writable, else ``STATE/numba-cache`` (e.g. under a hardened systemd unit), unless
    ``NUMBA_CACHE_DIR`` is set. Worker processes inherit the environment."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import framewatch.core as core

    if not os.access(Path(core.__file__).parent, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(state_dir / "numba-cache")
