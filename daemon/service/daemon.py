"""The daemon's main loop: watch -> ready -> group -> journal -> worker -> append -> log.

One thread (this loop) owns the journal, the output files and the drift log; the inotify observer
only wakes it, and worker processes only compute. The loop's steps are parts that the daemon builds
at set-up, each owning its state. Per turn of the loop:

1. take inotify hints and, every ``scan_period_s``, a full scan of the watch root (``MovieIntake``);
2. look at every watched movie: stat, probe when changed, decide completeness (readiness.py);
   a complete movie is grouped (series_grouping.py), recorded ``ready`` in the journal and queued,
   as long as the bounded queue has room (``MovieIntake``);
3. hand queued movies to free workers as jobs (``CorrectionJob``, ``Dispatcher``);
4. take their outcomes: append the three sections, mark the movie ``done`` with its section
   index, rewrite the tilt table, log ``tilt_corrected`` (``TiltAppender``); errors are retried
   with back-off or recorded ``failed`` (``Dispatcher``);
5. complete series whose mdoc is fully processed and quiet, or that saw no new tilt for
   ``idle_s``: write the angle-sorted stacks, ``.tlt`` and ``.star`` (``SeriesCompletion``);
6. log the backlog now and then (``EventLog``).

Start-up resumes from the journal (``StartupRecovery``): movies interrupted while ``processing``
are redone (once by default), stacks are repaired to the journal's section counts, tables are rewritten.

As a service (lifecycle.py): the lock on the state directory is taken before anything else; the
kernels are compiled before ``READY=1`` (``KernelWarmup``); every turn sends ``STATUS=`` and, while
healthy, ``WATCHDOG=1``; no new movie goes to a worker while the output disk is below its floor.
Signals are only recorded by their handlers (:class:`SignalInbox`) and handled here: SIGTERM/SIGINT
stop taking movies, let the one in a worker finish for up to ``[service] shutdown_timeout_s`` (or
abandon it: it is journalled as not done and redone at the next start), flush and exit 0; SIGHUP
reloads the configuration when it validates and keeps the old one otherwise.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from framewatch.core.errors import FramewatchError, SettingsError
from framewatch.daemon.config.configuration import DaemonConfig, reload_merge
from framewatch.daemon.config.directory_roles import check_directory_roles
from framewatch.daemon.config.processing_options import ProcessingOptions
from framewatch.daemon.intake.movie_intake import TICK_S, MovieIntake
from framewatch.daemon.intake.naming import patterns_from_config
from framewatch.daemon.intake.series_grouping import SeriesIndex
from framewatch.daemon.intake.watcher import Watcher
from framewatch.daemon.outputs.driftlog import DriftLog, operational_logger
from framewatch.daemon.outputs.output_warnings import OutputWarnings
from framewatch.daemon.outputs.series_tables import SeriesTables
from framewatch.daemon.processing.pool_choice import describe_pool, make_pool
from framewatch.daemon.processing.scheduler import ReadyQueue
from framewatch.daemon.processing.stream_registry import StreamRegistry
from framewatch.daemon.processing.sums_handover import handover_dir, reset
from framewatch.daemon.service.dispatch import Dispatcher
from framewatch.daemon.service.events import EventLog
from framewatch.daemon.service.kernel_warmup import KernelWarmup
from framewatch.daemon.service.lifecycle import Service, SignalInbox
from framewatch.daemon.service.series_completion import SeriesCompletion
from framewatch.daemon.service.startup_recovery import StartupRecovery
from framewatch.daemon.service.stream_dispatch import StreamStarter
from framewatch.daemon.service.tilt_appender import PlotRefresh, TiltAppender
from framewatch.daemon.state.defect_masks import FILE_NAME as DEFECT_MASK_FILE
from framewatch.daemon.state.defect_masks import DefectMaskMemory
from framewatch.daemon.state.instance_lock import InstanceLock
from framewatch.daemon.state.journal import Journal
from framewatch.daemon.state.output_lock import OutputLock
from framewatch.daemon.state.run_context import LiveConfig, RunContext
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


class Daemon:
    """The daemon: it builds its parts (:meth:`_setup`), resumes from the journal, runs the main
    loop and stops cleanly. The parts own their state and get their collaborators when they are
    built: :class:`MovieIntake` (watching, readiness, queueing), :class:`Dispatcher` (the pool, the
    results, their order), :class:`TiltAppender` (stacks, journal, tables, line, plot),
    :class:`SeriesCompletion`, :class:`EventLog`, :class:`StartupRecovery`, :class:`KernelWarmup`."""

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
        inbox: SignalInbox | None = None,
    ):
        """``reload()`` returns a fresh (DaemonConfig, ProcessingOptions) from the configuration file
        and command line, for SIGHUP; ``notifier`` and ``disk_probe`` replace the sd_notify sender
        and the free-space probe (tests); ``inbox``: a signal inbox installed earlier (signals it
        holds are acted on when the main loop starts)."""
        self.watch_dir = Path(watch_dir).resolve()
        if not self.watch_dir.is_dir():
            raise SettingsError("watch directory does not exist", path=self.watch_dir, fix="create it or check the path")
        self.out_dir = Path(out_dir).resolve()
        self.state_dir = Path(state_dir).resolve() if state_dir else default_state_dir(self.out_dir)
        check_directory_roles(watch_dir=self.watch_dir, out_dir=self.out_dir, state_dir=self.state_dir)
        self.config = LiveConfig(config or DaemonConfig())
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
        self.inbox = inbox if inbox is not None else SignalInbox()
        self._abandon_now = False
        self._stop_reason = "signal"
        self._lock: InstanceLock | None = None
        self._last_completion_check = 0.0
        self._last_backlog = 0.0
        self.journal = self.log = self.watcher = self.pool = self.service = None
        self.warmup: KernelWarmup | None = None

    @property
    def cfg(self) -> DaemonConfig:
        """The configuration now (SIGHUP may replace it)."""
        return self.config.now

    @property
    def hash(self) -> str:
        """The settings hash of this run (journal rows and series carry it)."""
        return self.run_context.settings_hash

    @property
    def set_dir(self) -> Path:
        """Where this run's outputs go: OUT, or OUT/settings-<hash8> for settings other than the first."""
        return self.run_context.set_dir

    @property
    def warmup_reports(self) -> list[dict]:
        return [] if self.warmup is None else self.warmup.reports

    # ------------------------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        logging.getLogger("tifffile").setLevel(logging.ERROR)  # partial files are expected here
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.state_dir, self.out_dir, lock=self._lock)
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
        settings_hash = self.opts.settings_hash()
        out_set, new_set = self.journal.output_set(settings_hash, self.opts.identity())
        self.run_context = RunContext(watch_dir=self.watch_dir, out_dir=self.out_dir, state_dir=self.state_dir,
                                      settings_hash=settings_hash, out_set=out_set,
                                      set_dir=self.out_dir / out_set if out_set else self.out_dir, opts=self.opts)
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
        q = self.cfg.scheduler
        self.queue = ReadyQueue(q.queue_size, q.newest_first_backlog)
        self.pool = make_pool(self.cfg, on_done=self.watcher.wake.set)
        self._build_parts()
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
            settings_hash=settings_hash,
            output_dir=str(self.run_context.set_dir),
        )
        self.log.event("output_set", settings_hash=settings_hash, output_dir=str(self.run_context.set_dir), new=new_set,
                       **({"note": "settings differ from the first run: outputs go to this separate directory"}
                          if out_set else {}))

    def _build_parts(self) -> None:
        """The parts of the loop, each with its collaborators (see the class docstring)."""
        common = dict(journal=self.journal, log=self.log, run=self.run_context, config=self.config)
        self.events = EventLog(**common)
        warnings = OutputWarnings(self.log)
        tables = SeriesTables(**common, warnings=warnings)
        plots = PlotRefresh(service=self.service, config=self.config)
        signals = self.pool.stream_signals(self.state_dir / "streams")
        signals.reset()  # no job of an earlier run is alive
        registry = StreamRegistry(signals)
        self.intake = MovieIntake(**common, events=self.events, watcher=self.watcher, index=self.index, queue=self.queue,
                                  metrics=self.service.metrics, streams=registry)
        appender = self.appender = TiltAppender(**common, events=self.events, tables=tables, plots=plots, intake=self.intake)
        masks = DefectMaskMemory(self.state_dir / DEFECT_MASK_FILE, log=self.log)
        streams = StreamStarter(**common, pool=self.pool, queue=self.queue, intake=self.intake, registry=registry,
                                masks=masks)
        sums_dir = self._sums_dir = None
        if self.pool.same_machine:  # its workers see this machine's tmpfs
            sums_dir = self._sums_dir = handover_dir(self.state_dir)
            reset(sums_dir)  # what a crash left there
        self.dispatcher = Dispatcher(**common, pool=self.pool, queue=self.queue, events=self.events, intake=self.intake,
                                     appender=appender, streams=streams, stop_event=self.stop_event,
                                     sums_dir=None if sums_dir is None else str(sums_dir))
        self.completion = SeriesCompletion(**common, index=self.index, intake=self.intake, tables=tables, warnings=warnings)
        self.recovery = StartupRecovery(**common, events=self.events, tables=tables, warnings=warnings, plots=plots,
                                        completion=self.completion, appender=appender)
        self.warmup = KernelWarmup(pool=self.pool, log=self.log, service=self.service, config=self.config,
                                   state_dir=self.state_dir, journal=self.journal, run=self.run_context,
                                   sums_dir=None if sums_dir is None else str(sums_dir))

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
            return self._run_loop()
        finally:
            try:
                self._shutdown()
            finally:
                out_lock.release()
                lock.release()

    def _run_loop(self) -> int:
        resumed = self.recovery.recover()
        self.warmup.prepare_cache()
        if self.watcher.inotify_error:
            self.log.event("inotify_unavailable", level="warning", reason=self.watcher.inotify_error)
        self.pool.start()
        warm = self.warmup.warm_up(should_stop=self._should_stop)
        if warm is None:  # stopped during the warm-up: no movie was taken yet
            self.pool.abandon()
            self._drain()
            return 0
        self.intake.scan(time.time())
        self.service.initial_disk_check()
        self.log.event("daemon_ready", warmup_s=round(warm, 3), known_movies=self.intake.watching + self.intake.n_final,
                       resumed_movies=resumed, backend=self.watcher.backend, scan_period_s=self.cfg.watch.scan_period_s)
        self.service.ready(self._status())
        next_scan = time.time() + self.cfg.watch.scan_period_s
        while not self.stop_event.is_set():
            self._signals()
            if self.stop_event.is_set():
                break
            now = time.time()
            self.intake.hints(now)
            if now >= next_scan:
                self.intake.scan(now)
                next_scan = now + self.cfg.watch.scan_period_s
            self._step(now)
            self._tick()
            self.watcher.wake.wait(TICK_S)
            self.watcher.wake.clear()
        self._drain()
        return 0

    def _should_stop(self) -> bool:
        self._signals()
        return self.stop_event.is_set()

    def stop(self, reason: str = "signal") -> None:
        self._stop_reason = reason
        self.stop_event.set()
        if self.watcher is not None:
            self.watcher.wake.set()

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
        self.config.replace(cfg)
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
        return self.service.status_text(len(self.queue), len(self.pool.in_flight), self.intake.watching)

    def _tick(self) -> None:
        now = time.time()
        self.service.tick(queued=len(self.queue), processing=len(self.pool.in_flight), watching=self.intake.watching,
                          oldest_wait_s=self._oldest_wait_s(now), pool_broken=self.pool.broken(),
                          in_flight_since=self.pool.started_at, now=now)

    def _step(self, now: float) -> None:
        self.intake.step(now)
        self.dispatcher.collect(time.time())
        self.appender.settle()  # per-tilt images made durable since
        if not self.service.paused:  # below the disk floor: keep watching and journaling, start nothing
            self.dispatcher.dispatch(time.time())
        self.events.mdoc_warnings(self.index)
        if now - self._last_completion_check >= COMPLETION_CHECK_S:
            self._last_completion_check = now
            self.completion.check(now)
        if now - self._last_backlog >= self.cfg.scheduler.backlog_log_s:
            self._last_backlog = now
            self.events.backlog(queued=len(self.queue), processing=len(self.pool.in_flight), watching=self.intake.watching,
                                oldest_wait_s=self._oldest_wait_s(now))

    def _drain(self) -> None:
        """Stop taking movies; finish those in the workers within the shutdown timeout, else abandon."""
        reason = self._stop_reason
        self.dispatcher.streams.cancel_all("the daemon stops; the movie is corrected at the next start")
        self.log.event("daemon_stopping", reason=reason, in_flight=len(self.pool.in_flight))
        self.service.stopping(reason, len(self.pool.in_flight))
        deadline = time.time() + self.cfg.service.shutdown_timeout_s
        while self.dispatcher.busy and time.time() < deadline and not self._abandon_now:
            self.dispatcher.collect(time.time())
            self._signals()
            if self.dispatcher.busy:
                time.sleep(0.05)
        if self.pool.in_flight:
            self.dispatcher.abandon_in_flight("a second stop signal" if self._abandon_now else
                                              f"still being corrected after shutdown_timeout_s = "
                                              f"{self.cfg.service.shutdown_timeout_s:g} s")
            self.dispatcher.collect(time.time())  # results that waited for an abandoned, earlier movie
        self.appender.settle(wait=True)

    def _shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel=True)
        if getattr(self, "_sums_dir", None) is not None:
            shutil.rmtree(self._sums_dir, ignore_errors=True)  # empty unless a result was never collected
        if self.service is not None:
            self.service.close()
        if self.log is not None:
            self.log.event("daemon_stopped", reason=self._stop_reason, uptime_s=round(time.time() - self.started, 3))
            self.log.close()
        if self.journal is not None:
            self.journal.close()
