"""Intake: finding movies (inotify hints, hot directories, full scans), deciding they are complete,
grouping them, and queueing them in acquisition order while the queue has room (back-pressure).

:class:`MovieIntake` owns what is watched: the candidates (movies not complete yet), the paths
being processed (queued or in a worker) and the final versions of paths (done or failed), and the
directories listed every turn; the service hands it back a movie to watch again (:meth:`retrack`)
or one that is finished (:meth:`finish`).
"""
from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from framewatch.daemon.intake.dose_precedence import resolve
from framewatch.daemon.intake.file_isolation import FileIsolation, version_of
from framewatch.daemon.intake.readiness import Observation, decide, frame_mdoc_count, refresh_probe, stat_key
from framewatch.daemon.state.output_names import series_out_name
from framewatch.daemon.state.records import QueueItem

TICK_S = 0.25
HOT_DIR_S = 300.0


@dataclass
class Candidate:
    path: str
    row_id: int
    obs: Observation | None = None
    next_check: float = 0.0
    mdoc_wait_since: float | None = None
    backoff_until: float = 0.0
    complete_since: float | None = None  # when it was first found complete
    complete_key: tuple | None = None  # (stat, frames) it was found complete with
    stream_tried: bool = False  # offered to a streaming job once (stream_dispatch.py)


class MovieIntake:
    """Finds, watches, decides and queues movies (module docstring)."""

    def __init__(self, *, journal, log, events, watcher, index, queue, run, config, metrics, streams=None):
        """``journal`` (state/journal.py), ``log`` (the drift log), ``events`` (the service's EventLog:
        ``movie_failed``, ``series_started``, ``series_name``), ``watcher`` (watcher.py), ``index``
        (series_grouping.SeriesIndex), ``queue`` (processing/scheduler.ReadyQueue), ``run``
        (state/run_context.RunContext), ``config`` (state/run_context.LiveConfig), ``metrics``
        (``movie_seen()``), ``streams`` (processing/stream_registry.StreamRegistry: ``following(path)``;
        a followed movie's last frame is decoded by its job, not here, and it is never held back by a
        full queue: it is in a worker already)."""
        self._journal = journal
        self._log = log
        self._events = events
        self._watcher = watcher
        self._index = index
        self._queue = queue
        self._run = run
        self._config = config
        self._metrics = metrics
        self._streams = streams
        self._isolation = FileIsolation(log=log, fail_candidate=self._fail_candidate)
        self.cands: dict[str, Candidate] = {}
        self._final: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) of its done or failed version
        self._busy_paths: set[str] = set()  # queued or in a worker
        self._hot_dirs: dict[str, float] = {}

    # --------------------------------------------------------------------- what the service reads
    @property
    def watching(self) -> int:
        return len(self.cands)

    @property
    def n_final(self) -> int:
        return len(self._final)

    def final_names(self) -> set[str]:
        """The file names of the paths done or failed in this run."""
        return {os.path.basename(p) for p in self._final}

    def retrack(self, row: dict, now: float, delay: float = 0.0) -> None:
        """Watch a movie again (a retry, an interruption, back on disk from a full queue)."""
        self._busy_paths.discard(row["path"])
        self.cands[row["path"]] = Candidate(row["path"], row["id"], next_check=now + delay, backoff_until=now + delay)

    def finish(self, row: dict) -> None:
        """A movie is done or failed: its path is not looked at again until the file changes."""
        self._busy_paths.discard(row["path"])
        self._final[row["path"]] = (row["size"], row["mtime_ns"])

    def step(self, now: float) -> None:
        """Look at the watched movies due for a look; queue those found complete."""
        ready = []
        for cand in list(self.cands.values()):
            if now >= cand.next_check:
                r = self._isolation.guarded(cand.path, "readiness", self.evaluate, cand, now)
                if r is not None:
                    ready.append(r)
        if ready:
            self.admit(ready, now)

    def _fail_candidate(self, path: str, stage: str, reason: str) -> bool:
        cand = self.cands.pop(path, None)
        if cand is None:
            return False
        self._fail(cand.row_id, stage, reason)
        self._final[path] = (lambda v: None if v is None else v[:2])(version_of(path))
        return True

    def _fail(self, mid: int, stage: str, reason: str, **fields) -> None:
        self._journal.mark_failed(mid, error=reason, **fields)
        self._events.movie_failed(self._journal.get(mid), stage, reason)

    def hints(self, now: float) -> None:
        for p in self._watcher.drain_hints():
            kind = self._isolation.guarded(p, "watch", self._watcher.accept, p)
            if kind == "mdoc":
                self._note_mdoc(p, now)
            elif kind == "movie":
                self._isolation.guarded(p, "watch", self._track, p, now)
        self._log_ignored()
        # directories where movies appeared recently are listed every turn (network shares raise
        # no events; the full scan is slower)
        for d, t in list(self._hot_dirs.items()):
            if now - t > HOT_DIR_S:
                del self._hot_dirs[d]
                continue
            movies, mdocs = self._watcher.scan_dir(d)
            for p in mdocs:
                self._note_mdoc(str(p), now)
            for p in movies:
                p = str(p)
                if p not in self.cands and p not in self._final and p not in self._busy_paths:
                    self._isolation.guarded(p, "watch", self._track, p, now)

    def _log_ignored(self) -> None:
        """One ``file_ignored`` line per movie-like name an ignore rule took out (watcher.py)."""
        for path, rule in self._watcher.drain_ignored():
            self._log.event("file_ignored", path=path, rule=rule)

    def _note_mdoc(self, p: str, now: float) -> None:
        if self._isolation.guarded(p, "mdoc", self._index.note_mdoc, p, now, mdoc=True) is not None:
            for c in self.cands.values():  # a frame mdoc or a new tilt-series line: look again now
                if now >= c.backoff_until:
                    c.next_check = now

    def scan(self, now: float) -> None:
        movies, mdocs = self._watcher.scan()
        for p in mdocs:
            self._note_mdoc(str(p), now)
        for p in movies:
            self._isolation.guarded(str(p), "watch", self._track, str(p), now)
        self._log_ignored()
        self._missing_seen()

    def _missing_seen(self) -> None:
        """Journal rows still to be processed whose file is gone and that nothing watches (it
        went while the daemon was down): forget them, or fail them if they were complete."""
        for row in self._journal.in_state("seen", settings_hash=self._run.settings_hash):
            p = row["path"]
            if p in self.cands or p in self._busy_paths or os.path.lexists(p):
                continue
            self._file_gone(row)

    def _track(self, path: str, now: float) -> None:
        c = self.cands.get(path)
        if c is not None:
            if now >= c.backoff_until:
                c.next_check = now
            return
        if path in self._busy_paths or self._isolation.is_rejected(path):
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode):  # a FIFO, socket or device named like a movie: never opened
            self._isolation.reject_file(path, "watch",
                                        "not a regular file (a FIFO, socket or device): only regular files are read")
            return
        ident = (st.st_size, st.st_mtime_ns)
        fin = self._final.get(path)
        if fin is not None and fin == ident:
            return
        row = self._journal.latest(path, self._run.settings_hash)
        if row is None:
            row = self._add_row(path, st, now)
        elif row["state"] in ("done", "failed"):
            same = (row["size"], row["mtime_ns"]) == ident
            if same:
                self._final[path] = ident
                return
            if row["state"] == "done":
                if fin is None or fin != ident:
                    self._log.event("movie_changed_after_done", level="warning", movie=path, series=self._events.series_name(row),
                                   z=row["z"],
                                   note="not processed again; its section stays as it was")
                self._final[path] = ident
                return
            row = self._add_row(path, st, now)  # a new version of a failed movie
            self._final.pop(path, None)
        elif row["state"] in ("ready", "processing"):
            return
        if row is None:
            return
        self.cands[path] = Candidate(path, row["id"], next_check=now)
        parent = os.path.dirname(path)
        self._hot_dirs[parent] = now
        mdoc_dir = os.path.dirname(parent)  # SerialEM: frames/ below the tilt-series mdoc
        if self._watcher.scan_dir(mdoc_dir)[1]:
            self._hot_dirs[mdoc_dir] = now

    def _file_gone(self, row: dict) -> None:
        """A watched movie's file is gone. Before it was complete it was never a movie (a cancelled
        exposure, a renamed temporary): forgotten. Once complete -- queued, being read, waiting for
        a retry -- it was deleted or moved under the daemon: recorded failed, once."""
        if row["complete_at"] is None:
            self._journal.forget_unready(row["id"])
            return
        self._fail(row["id"], "readiness", "the file disappeared (deleted or moved) after it was found complete")
        self.finish(row)

    def _add_row(self, path: str, st, now: float) -> dict | None:
        try:
            row = self._journal.add(path, st.st_size, st.st_mtime_ns, self._run.settings_hash, now=now)
            self._metrics.movie_seen()
            return row
        except sqlite3.IntegrityError:  # this very version is journalled already (it went back)
            self._final[path] = (st.st_size, st.st_mtime_ns)
            return None

    # ------------------------------------------------------------------------------- streaming
    def _following(self, path: str) -> bool:
        return self._streams is not None and self._streams.following(path)

    def stream_candidates(self, limit: int) -> list[tuple[int, str, object, int]]:
        """At most ``limit`` watched movies with frames on disk that were never offered to a streaming
        job, oldest file first: ``(movie id, path, tilt info, frames on disk)``; each is offered once
        (those returned, and those whose tilt info cannot be read, are marked offered)."""
        found = []
        for cand in self.cands.values():
            probe = cand.obs.probe if cand.obs is not None else None
            if not cand.stream_tried and probe is not None and probe.fmt != "other" and (probe.n_frames or 0) >= 1:
                found.append((cand.obs.stat_key[1], cand.path, cand, probe.n_frames))
        out = []
        for mtime_ns, path, cand, n_frames in sorted(found, key=lambda e: (e[0], e[1])):
            if len(out) >= limit:
                break
            cand.stream_tried = True
            try:
                info = self._index.tilt_info(path, mtime=mtime_ns / 1e9)
            except Exception:  # noqa: BLE001 - not followed; the normal path reports what is wrong
                continue
            out.append((cand.row_id, path, info, n_frames))
        return out

    # ------------------------------------------------------------------------------- readiness
    def evaluate(self, cand: Candidate, now: float):
        """Look at one watched movie; returns (cand, stat, decision, tilt info) when it is complete.

        The tilt info (series, angle, dose ... from the mdoc) is taken here, from the same reading of
        the mdocs as the decision: a mdoc re-read before the movie is queued (for another movie) may
        be one being rewritten, without this movie's line (found by the torture run: such a movie
        was resolved by its file name and failed, "no dose")."""
        path = Path(cand.path)
        try:
            st = os.stat(path)
            now = time.time()  # the time of this observation (the loop's "now" may be a little older)
        except FileNotFoundError:
            del self.cands[cand.path]
            row = self._journal.get(cand.row_id)
            if row and row["state"] == "seen":
                self._file_gone(row)
            return
        except OSError:
            cand.next_check = now + TICK_S
            return
        key = stat_key(st)
        if cand.obs is None:
            cand.obs = Observation(key, now)
        else:
            cand.obs.observe(key, now)
        refresh_probe(path, cand.obs, now, root=self._index.root, decode_last=not self._following(cand.path))
        entry = self._index.entry_for(path)
        expected = entry[3].num_sub_frames if entry else None
        w = self._config.now.watch
        d = decide(path, cand.obs, now, settle_s=w.settle_s, tiff_stable_s=w.tiff_stable_s, expected_frames=expected,
                   frame_mdoc=frame_mdoc_count(*self._index.frame_mdoc(path)))
        if d.state == "wait":
            cand.next_check = now + TICK_S
            cand.complete_since = None
            return
        if d.state == "broken":
            del self.cands[cand.path]
            sid = self._series_of_unready(path, st)
            self._fail(cand.row_id, "readiness", d.reason, size=st.st_size, mtime_ns=st.st_mtime_ns, series_id=sid,
                       complete_at=None)
            self._final[cand.path] = (st.st_size, st.st_mtime_ns)
            return
        if cand.complete_since is None or cand.complete_key != (key, d.n_frames):
            # first found complete -- or again, after it changed while it waited for its mdoc line
            # (a writer stalled longer than tiff_stable_s, then wrote on): from now
            cand.complete_since = now
            cand.complete_key = (key, d.n_frames)
        # ready: wait for the movie's line in a growing tilt-series mdoc, if one is expected, and
        # for the rest of a line being written
        if w.mdoc_wait_s > 0 and not self._index.entry_settled(path):
            pending = entry[0] if entry is not None else self._index.sibling_mdoc_pending(path)
            if pending is not None:
                if self._index.note_mdoc(pending, now) is not None and self._index.entry_settled(path):
                    cand.next_check = now  # the line is complete now: decide again with it, next turn
                    return
                if cand.mdoc_wait_since is None:
                    cand.mdoc_wait_since = now
                if now - cand.mdoc_wait_since < w.mdoc_wait_s:
                    cand.next_check = now + TICK_S
                    return
        return cand, st, d, self._index.tilt_info(path, mtime=st.st_mtime)

    def admit(self, ready: list, now: float) -> None:
        """Queue complete movies in acquisition order (newest first when that option applies) while
        the queue has room; the others stay watched (back-pressure) and are looked at again."""
        keyed = []
        for cand, st, d, info in ready:
            keyed.append((info.acquisition_time, cand.path, cand, st, d, info))
        keyed.sort(key=lambda k: (k[0], k[1]))
        nf = self._config.now.scheduler.newest_first_backlog
        if nf and len(keyed) + len(self._queue) > nf:
            keyed.reverse()
        for _, _, cand, st, d, info in keyed:
            if self._queue.full() and not self._following(cand.path):
                cand.next_check = now + TICK_S
                continue
            self._isolation.guarded(cand.path, "intake", self._make_ready, cand, st, d, now, info)

    def _series_of_unready(self, path: Path, st) -> int | None:
        try:
            info = self._index.tilt_info(path, mtime=st.st_mtime)
            s, new = self._journal.series_for(self._run.settings_hash, info.series, info.source_dir, self._run.out_set,
                                              out_name=series_out_name(info.series))
            if new:
                self._events.series_started(s, info)
            return s["id"]
        except Exception:  # noqa: BLE001 - only for labelling the failure
            return None

    def _make_ready(self, cand: Candidate, st, d, now: float, info) -> None:
        s, new = self._journal.series_for(self._run.settings_hash, info.series, info.source_dir, self._run.out_set,
                                          out_name=series_out_name(info.series))
        if new:
            self._events.series_started(s, info)
        if info.acquisition_index is None:
            n = sum(1 for r in self._journal.series_movies(s["id"]) if r["id"] != cand.row_id and r["state"] != "failed")
            info = dataclasses.replace(info, acquisition_index=n, index_source="arrival order")
        res = resolve(info, self._run.opts, d.n_frames or 0)
        del self.cands[cand.path]
        payload = {"tilt": info.as_dict(), "resolved": res.as_dict(), "complete_signal": d.signal}
        try:
            self._journal.record_complete(
                cand.row_id, size=st.st_size, mtime_ns=st.st_mtime_ns, series_id=s["id"], angle_deg=info.tilt_angle_deg,
                acq_index=info.acquisition_index, acq_time=info.acquisition_time, n_frames=d.n_frames, info_json=payload,
                complete_at=cand.complete_since or now,
            )
        except Exception as err:  # noqa: BLE001 - e.g. the same version already journalled
            self._log.event("journal_conflict", level="warning", movie=cand.path, reason=str(err))
            self._final[cand.path] = (st.st_size, st.st_mtime_ns)
            return
        if res.problem:
            self._fail(cand.row_id, "settings", res.problem)
            self._final[cand.path] = (st.st_size, st.st_mtime_ns)
            return
        self._journal.mark_ready(cand.row_id, ready_at=now)
        self._queue.put(QueueItem(info.acquisition_time, cand.row_id, now, s["id"]), over_capacity=self._following(cand.path))
        self._busy_paths.add(cand.path)
