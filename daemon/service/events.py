"""The daemon's drift-log lines for tilts, failures, series, mdoc warnings and the backlog.

A mixin of :class:`framewatch.daemon.service.daemon.Daemon`.
"""
from __future__ import annotations

from framewatch.daemon.outputs.driftlog import STAT_KEYS
from framewatch.daemon.outputs.series_outputs import SeriesPaths, records_of
from framewatch.daemon.outputs.tilt_table import tilt_record
from framewatch.daemon.state import faults


class Events:
    def _series_name(self, row: dict) -> str | None:
        if row.get("series_id") is None:
            return None
        return self.journal.series(row["series_id"])["name"]

    def _log_series_started(self, s: dict, info) -> None:
        self.log.event("series_started", series=s["name"], output_dir=str(self.out_dir / s["out_rel"]), grouping=info.grouping,
                       mdoc=info.mdoc_path)

    def _log_failed(self, row: dict, stage: str, reason: str, *, replayed: bool = False) -> None:
        """The ``movie_failed`` line of a movie the journal has just recorded failed; the journal
        notes the stage first and that the line is written after (see :meth:`_replay_lost_lines`)."""
        self.journal.update(row["id"], fail_stage=stage)
        faults.checkpoint("before_failed_logged")
        self.log.event("movie_failed", level="error", movie=row["path"], series=self._series_name(row), stage=stage,
                       reason=reason,
                       attempts=row.get("attempts", 0), **({"replayed": True} if replayed else {}))
        faults.checkpoint("after_failed_logged")
        self.journal.update(row["id"], logged=1)

    def _replay_lost_lines(self) -> None:
        """At start-up: a movie whose final state (done or failed) the journal has but whose drift-log
        line a crash kept out of the log gets that line now, with ``"replayed": true``; one whose
        line made it (it is among the log's last lines) is only marked, so no line is written twice."""
        rows = [r for r in self.journal.in_state("done", "failed", settings_hash=self.hash) if not r["logged"]]
        if not rows:
            return
        recent = self.log.recent_lines()
        for row in rows:
            event = "tilt_corrected" if row["state"] == "done" else "movie_failed"
            since = row["seen_at"] or 0.0
            if not any(e.get("event") == event and e.get("movie") == row["path"] and _epoch(e.get("timestamp")) >= since
                       and (event == "movie_failed" or e.get("z") == row["z"]) for e in recent):
                if event == "tilt_corrected":
                    self._log_tilt(row, replayed=True)
                else:
                    self._log_failed(row, row.get("fail_stage") or "unknown", row["error"] or "", replayed=True)
            self.journal.update(row["id"], logged=1)

    def _log_tilt(self, row: dict, *, rows: list[dict] | None = None, replayed: bool = False) -> None:
        s = self.journal.series(row["series_id"])
        paths = SeriesPaths.of(self.out_dir, s["out_rel"])
        if rows is None:
            rows = self.journal.sections(s["id"])
        recs, _ = records_of(rows, self.cfg.series.angle_tolerance_deg)
        rec = next((r for r in recs if r["z"] == row["z"]), None) or tilt_record(row)
        res = row["info"]["resolved"]
        timings = row.get("timings") or {}
        stats = row.get("stats") or {}
        flags = rec["flags"]
        reacquired = any(f.startswith("reacquired") for f in flags)
        kw = dict(
            series=s["name"],
            output_dir=str(paths.dir),
            z=row["z"],
            movie=row["path"],
            tilt_angle_deg=row["angle_deg"],
            acquisition_index=row["acq_index"],
            acquisition_time=rec["acquisition_time"],
            n_frames=row["n_frames"],
            pixel_size_a=res["pixel_size_a"],
            voltage_kv=res["voltage_kv"],
            dose_e_per_a2=res["dose_e_per_a2"],
            dose_per_frame_e_per_a2=res["dose_per_frame_e_per_a2"],
            prior_dose_e_per_a2=res["prior_dose_e_per_a2"],
            prior_dose_rule=res["prior_dose_rule"],
            sources={**res["sources"], "tilt_angle": row["info"]["tilt"]["angle_source"],
                     "acquisition_order": row["info"]["tilt"]["order_source"]},
            **{k: stats.get(k) for k in dict.fromkeys([*STAT_KEYS, *stats])},
            max_frame_shift_a=rec["max_frame_shift_a"],
            flags=flags,
            reacquired=reacquired,
            complete_signal=row["info"].get("complete_signal"),
            wait_s=timings.get("wait_s"),
            correct_s=timings.get("correct_s"),
            append_s=timings.get("append_s"),
            latency_s=timings.get("latency_s"),
            worker=(row["info"].get("worker") or {}).get("where"),
        )
        shifts = (row["info"].get("worker") or {}).get("shifts_px")
        if shifts:  # the frame trajectory (x, y px per frame; frame 0 = origin), for plots
            kw["shifts_px"] = [[round(float(x), 3), round(float(y), 3)] for x, y in shifts]
        if replayed:
            kw["replayed"] = True
        self.log.event("tilt_corrected", **kw)
        threshold_flags = [f for f in (row.get("flags") or []) if f not in ("angle_unknown",)]
        if threshold_flags or reacquired:
            self.log.event("tilt_flagged", level="warning", series=s["name"], output_dir=str(paths.dir), z=row["z"],
                           movie=row["path"],
                           tilt_angle_deg=row["angle_deg"], reasons=[f for f in flags if f != "angle_unknown"])

    def _log_mdoc_warnings(self) -> None:
        """One ``mdoc_warning`` per read of an mdoc that found something: ``n_warnings`` (all of
        them) and at most ``[watch] mdoc_warning_lines`` samples, each at most 200 characters (mdoc.py),
        so one change of a junk mdoc adds a bounded line to the log (issue 14, row 8)."""
        n_lines = self.cfg.watch.mdoc_warning_lines
        warnings, self.index.warnings = self.index.warnings, []
        for p, n, samples in warnings:
            kw = {"more": n - min(n, n_lines)} if n > n_lines else {}
            self.log.event("mdoc_warning", level="warning", mdoc=p, warnings=list(samples[:n_lines]), n_warnings=n, **kw)

    def _log_backlog(self, now: float) -> None:
        queued, processing = len(self.queue), len(self.pool.in_flight)
        total = queued + processing
        if total == 0 and not self._backlog_nonzero:
            return
        self._backlog_nonzero = total > 0
        wait_s = self._oldest_wait_s(now)
        self.log.event("backlog", queued=queued, processing=processing, watching=len(self.cands),
                       oldest_wait_s=None if wait_s is None else round(wait_s, 3))


def _epoch(timestamp) -> float:
    """Seconds since the epoch of a drift-log timestamp (ISO 8601, UTC); 0 when unreadable."""
    import datetime as _dt

    try:
        return _dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
