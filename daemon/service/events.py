"""The daemon's drift-log lines for tilts, failures, series, mdoc warnings and the backlog
(:class:`EventLog`, one per run; the other parts call it to write them)."""
from __future__ import annotations

from framewatch.daemon.outputs.series_outputs import SeriesPaths, records_of
from framewatch.daemon.outputs.tilt_lines import tilt_corrected_fields, tilt_flagged_fields
from framewatch.daemon.outputs.tilt_table import tilt_record
from framewatch.daemon.state import faults


class EventLog:
    """Writes the lines that need the journal (a movie's series, its section's record)."""

    def __init__(self, *, journal, log, run, config):
        """``journal`` (state/journal.py), ``log`` (outputs/driftlog.DriftLog), ``run``
        (state/run_context.RunContext), ``config`` (state/run_context.LiveConfig)."""
        self._journal = journal
        self._log = log
        self._run = run
        self._config = config
        self._backlog_nonzero = False

    def series_name(self, row: dict) -> str | None:
        if row.get("series_id") is None:
            return None
        return self._journal.series(row["series_id"])["name"]

    def series_started(self, s: dict, info) -> None:
        self._log.event("series_started", series=s["name"], output_dir=str(self._run.out_dir / s["out_rel"]),
                        grouping=info.grouping, mdoc=info.mdoc_path)

    def movie_failed(self, row: dict, stage: str, reason: str, *, replayed: bool = False) -> None:
        """The ``movie_failed`` line of a movie the journal has just recorded failed; the journal
        notes the stage first and that the line is written after (see :meth:`replay_lost_lines`)."""
        self._journal.note_fail_stage(row["id"], stage)
        faults.checkpoint("before_failed_logged")
        self._log.event("movie_failed", level="error", movie=row["path"], series=self.series_name(row), stage=stage,
                        reason=reason,
                        attempts=row.get("attempts", 0), **({"replayed": True} if replayed else {}))
        faults.checkpoint("after_failed_logged")
        self._journal.mark_logged(row["id"])

    def replay_lost_lines(self) -> None:
        """At start-up: a movie whose final state (done or failed) the journal has but whose drift-log
        line a crash kept out of the log gets that line now, with ``"replayed": true``; one whose
        line made it (it is among the log's last lines) is only marked, so no line is written twice."""
        rows = [r for r in self._journal.in_state("done", "failed", settings_hash=self._run.settings_hash) if not r["logged"]]
        if not rows:
            return
        recent = self._log.recent_lines()
        for row in rows:
            event = "tilt_corrected" if row["state"] == "done" else "movie_failed"
            since = row["seen_at"] or 0.0
            if not any(e.get("event") == event and e.get("movie") == row["path"] and _epoch(e.get("timestamp")) >= since
                       and (event == "movie_failed" or e.get("z") == row["z"]) for e in recent):
                if event == "tilt_corrected":
                    self.tilt_corrected(row, replayed=True)
                else:
                    self.movie_failed(row, row.get("fail_stage") or "unknown", row["error"] or "", replayed=True)
            self._journal.mark_logged(row["id"])

    def tilt_corrected(self, row: dict, *, rows: list[dict] | None = None, replayed: bool = False) -> None:
        """``tilt_corrected`` (and ``tilt_flagged``) of a done movie; ``rows``: its series' sections."""
        s = self._journal.series(row["series_id"])
        paths = SeriesPaths.of(self._run.out_dir, s["out_rel"])
        if rows is None:
            rows = self._journal.sections(s["id"])
        recs, _ = records_of(rows, self._config.now.series.angle_tolerance_deg)
        rec = next((r for r in recs if r.z == row["z"]), None) or tilt_record(row)
        self._log.event("tilt_corrected", **tilt_corrected_fields(rec, series=s["name"], output_dir=str(paths.dir),
                                                                  replayed=replayed))
        flagged = tilt_flagged_fields(rec, series=s["name"], output_dir=str(paths.dir))
        if flagged is not None:
            self._log.event("tilt_flagged", level="warning", **flagged)

    def mdoc_warnings(self, index) -> None:
        """One ``mdoc_warning`` per read of an mdoc that found something: ``n_warnings`` (all of
        them) and at most ``[watch] mdoc_warning_lines`` samples, each at most 200 characters (mdoc.py),
        so one change of a junk mdoc adds a bounded line to the log (issue 14, row 8)."""
        n_lines = self._config.now.watch.mdoc_warning_lines
        warnings, index.warnings = index.warnings, []
        for p, n, samples in warnings:
            kw = {"more": n - min(n, n_lines)} if n > n_lines else {}
            self._log.event("mdoc_warning", level="warning", mdoc=p, warnings=list(samples[:n_lines]), n_warnings=n, **kw)

    def backlog(self, *, queued: int, processing: int, watching: int, oldest_wait_s: float | None) -> None:
        """The ``backlog`` line, while there is one and once when it is gone."""
        if queued + processing == 0 and not self._backlog_nonzero:
            return
        self._backlog_nonzero = queued + processing > 0
        self._log.event("backlog", queued=queued, processing=processing, watching=watching,
                        oldest_wait_s=None if oldest_wait_s is None else round(oldest_wait_s, 3))


def _epoch(timestamp) -> float:
    """Seconds since the epoch of a drift-log timestamp (ISO 8601, UTC); 0 when unreadable."""
    import datetime as _dt

    try:
        return _dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
