"""Start-up: resume from the journal after a restart (or a crash).

Movies interrupted while ``processing`` are redone (or failed after ``max_interruptions``), movies
left ``ready`` are watched again, every series' stacks are repaired to the journal's section count
(a section cut off sends its movie back to be corrected again), crash leftovers of the per-tilt
images go, the tables and a stale plot are rewritten, a complete series whose sorted outputs are
missing is written again, and drift-log lines a crash kept out of the log are written.
"""
from __future__ import annotations

from framewatch.daemon.outputs.no_follow import LinkInOutputError
from framewatch.daemon.outputs.series_outputs import SeriesPaths, repair_stacks


class StartupRecovery:
    def __init__(self, *, journal, log, events, tables, warnings, plots, completion, appender, run, config):
        """``journal``, ``log`` (the drift log), ``events`` (EventLog), ``tables`` (SeriesTables),
        ``warnings`` (OutputWarnings), ``plots`` (tilt_appender.PlotRefresh), ``completion``
        (SeriesCompletion: ``write_sorted``), ``appender`` (tilt_appender.TiltAppender:
        ``restore_unsynced``), ``run`` (RunContext), ``config`` (LiveConfig)."""
        self._appender = appender
        self._journal = journal
        self._log = log
        self._events = events
        self._tables = tables
        self._warnings = warnings
        self._plots = plots
        self._completion = completion
        self._run = run
        self._config = config

    def recover(self) -> int:
        """Resume after a restart; returns the number of movies to redo."""
        redo = self._interrupted()
        for s in self._journal.all_series(self._run.settings_hash):
            redo += self._series(s)
        self._events.replay_lost_lines()  # tilt_corrected / movie_failed lines a crash kept from the log
        return redo

    def _interrupted(self) -> int:
        j = self._journal
        redo = 0
        h = self._run.settings_hash
        for row in j.in_state("processing", settings_hash=h):
            n = row["interruptions"] + 1
            if n >= self._config.now.watch.max_interruptions:
                why = f"interrupted {n} times while being processed (daemon killed or crashed)"
                j.mark_failed(row["id"], error=why, interruptions=n)
                self._events.movie_failed(row, "processing", why)
            else:
                j.mark_interrupted(row["id"], interruptions=n)
                self._log.event("movie_interrupted", movie=row["path"], interruptions=n, redo=True)
                redo += 1
        for row in j.in_state("ready", settings_hash=h):
            j.requeue(row["id"])
        return redo

    def _series(self, s: dict) -> int:
        """Repair one series' stacks and rewrite its outputs; returns the movies to redo."""
        j = self._journal
        redo = 0
        paths = SeriesPaths.of(self._run.out_dir, s["out_rel"])
        n = j.n_sections(s["id"])
        try:
            n_now, actions = repair_stacks(paths, n)
        except LinkInOutputError as err:  # a link planted in OUT: the series is left alone (no_follow.py)
            self._warnings.failed(s, "stacks", err)
            return 0
        for path, count, what in actions:
            if what not in ("ok",):
                self._log.event("stack_repaired", level="warning", series=s["name"], stack=str(path), sections=count,
                                action=what)
        if n_now < n:
            for row in j.sections(s["id"]):
                if row["z"] >= n_now:
                    j.mark_section_lost(row["id"])
                    redo += 1
        rows = j.sections(s["id"])
        self._tables.tidy_tilt_images(paths, rows)  # a crash's temporaries; images of movies not done
        if self._appender.restore_unsynced(rows):  # images a crash kept from the disk
            rows = j.sections(s["id"])
        if rows:
            self._tables.write(s, paths, rows)  # output disk full: written later (SeriesTables.retry_stale)
            self._plots.replot_stale(s, paths, rows)
            if s["complete"] and not paths.sorted_stack.exists() and self._completion.write_sorted(s, paths, rows) is None:
                j.reopen_series(s["id"])  # completed (and written) again once there is room
        return redo
