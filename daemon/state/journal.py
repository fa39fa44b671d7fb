"""The journal ``STATE/framewatch.sqlite``: one row per movie, what happened to it, and the series.

A movie row is keyed by path + size + mtime + the hash of the processing settings, and moves through
``seen -> ready -> processing -> done`` (or ``failed``). ``attempts`` counts reads/corrections that
raised, ``interruptions`` how often the daemon died while the movie was being processed. A row
that is ``done`` carries its section index ``z`` in the series' stacks and everything the tilt table
needs, so the tables can be rewritten from the journal alone, and a stack can be repaired to the
journal's section count after a crash.

Output sets: the first settings hash the journal sees writes to ``OUT/`` itself; any other hash
(different pixel size, gain, patches, engine parameters ...) writes to ``OUT/settings-<hash8>/``,
so sections made with different settings never share a stack.

SQLite in WAL mode with ``synchronous=FULL``; one process at a time holds ``STATE/framewatch.lock`` (instance_lock.py).
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from framewatch.core.errors import SettingsError
from framewatch.daemon.state.instance_lock import InstanceLock, InstanceLockedError
from framewatch.daemon.state.name_escape import db_value, from_db

SCHEMA_VERSION = 1
STATES = ("seen", "ready", "processing", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS output_sets (
    settings_hash TEXT PRIMARY KEY, out_rel TEXT NOT NULL, settings_json TEXT, created_at REAL
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    settings_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    source_dir TEXT NOT NULL,
    out_rel TEXT NOT NULL,
    started_at REAL,
    last_tilt_at REAL,
    complete INTEGER NOT NULL DEFAULT 0,
    completed_at REAL,
    completed_sections INTEGER,
    UNIQUE (settings_hash, name, source_dir)
);
CREATE TABLE IF NOT EXISTS movies (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    settings_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    series_id INTEGER,
    z INTEGER,
    angle_deg REAL,
    acq_index INTEGER,
    acq_time REAL,
    n_frames INTEGER,
    info_json TEXT,
    stats_json TEXT,
    flags_json TEXT,
    timings_json TEXT,
    seen_at REAL,
    complete_at REAL,
    ready_at REAL,
    started_at REAL,
    done_at REAL,
    logged INTEGER NOT NULL DEFAULT 0,
    fail_stage TEXT,
    images_synced INTEGER,
    UNIQUE (path, size, mtime_ns, settings_hash)
);
CREATE INDEX IF NOT EXISTS movies_path ON movies (path, settings_hash);
CREATE INDEX IF NOT EXISTS movies_series ON movies (series_id, z);
CREATE INDEX IF NOT EXISTS movies_state ON movies (state);
"""

_JSON_COLUMNS = ("info_json", "stats_json", "flags_json", "timings_json")
_NAME_COLUMNS = ("name", "source_dir", "out_rel")


def _series_row(r) -> dict:
    d = dict(r)
    for c in _NAME_COLUMNS:
        if c in d:
            d[c] = from_db(d[c])
    return d


def _row(r: sqlite3.Row | None) -> dict | None:
    if r is None:
        return None
    d = dict(r)
    if "path" in d:
        d["path"] = from_db(d["path"])  # a name that is not UTF-8 is a BLOB of its bytes (name_escape.py)
    for c in _JSON_COLUMNS:
        if c in d:
            d[c[: -len("_json")]] = json.loads(d[c]) if d[c] else None
    return d


class JournalLocked(SettingsError):
    """Another process holds the lock of the state directory."""


class Journal:
    """The journal of one STATE directory (single writer: the daemon's main thread)."""

    def __init__(self, state_dir: str | Path, out_dir: str | Path, *, lock: InstanceLock | None = None):
        """``lock``: the daemon's lock on ``state_dir``, already held (instance_lock.py); without
        it the journal takes that lock itself (and raises :class:`JournalLocked` when it is held)."""
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._own_lock = None
        if lock is None or not lock.held:
            self._own_lock = InstanceLock(self.state_dir)
            try:
                self._own_lock.acquire()
            except InstanceLockedError as err:
                raise JournalLocked(err.what, path=None, fix=err.fix) from None
        self.path = self.state_dir / "framewatch.sqlite"
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self._migrate()
        out = str(Path(out_dir).resolve())
        known = self.meta("out_dir")
        if known is None:
            self.set_meta("out_dir", out)
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif known != out:
            self.close()
            raise SettingsError(
                f"this state directory belongs to the output directory {known}",
                path=self.state_dir,
                fix="give that --out, or a different --state for a new output directory",
            )

    def _migrate(self) -> None:
        """Journals of earlier versions: ``fail_stage`` (the stage a movie failed at, for a
        ``movie_failed`` line written again after a crash) is added, and their failed movies,
        whose lines were written when they failed, are marked logged; ``images_synced`` (0: the
        per-tilt images of a done movie are not yet known to be on disk) is added."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(movies)")}
        if "fail_stage" not in columns:
            self.db.execute("ALTER TABLE movies ADD COLUMN fail_stage TEXT")
            self.db.execute("UPDATE movies SET logged = 1 WHERE state = 'failed'")
        if "images_synced" not in columns:  # NULL: written durably before the movie was done (earlier versions)
            self.db.execute("ALTER TABLE movies ADD COLUMN images_synced INTEGER")

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            if self._own_lock is not None:
                self._own_lock.release()

    # -- meta and output sets ------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        r = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if r is None else r[0]

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def output_set(self, settings_hash: str, settings: dict | None = None) -> tuple[str, bool]:
        """The output directory (relative to OUT) of a settings hash, and whether it is new."""
        r = self.db.execute("SELECT out_rel FROM output_sets WHERE settings_hash = ?", (settings_hash,)).fetchone()
        if r is not None:
            return r[0], False
        n = self.db.execute("SELECT COUNT(*) FROM output_sets").fetchone()[0]
        out_rel = "" if n == 0 else f"settings-{settings_hash[:8]}"
        self.db.execute(
            "INSERT INTO output_sets (settings_hash, out_rel, settings_json, created_at) VALUES (?, ?, ?, ?)",
            (settings_hash, out_rel, json.dumps(settings, sort_keys=True, default=str), time.time()),
        )
        return out_rel, True

    # -- series ---------------------------------------------------------------------------------
    def series_for(self, settings_hash: str, name: str, source_dir: str, out_set: str, *,
                   out_name: str | None = None) -> tuple[dict, bool]:
        """The series row (and whether it is new); ``out_name`` is its output stem when that is not
        ``name`` itself (a name too long for the file system, output_names.py)."""
        r = self.db.execute(
            "SELECT * FROM series WHERE settings_hash = ? AND name = ? AND source_dir = ?",
            (settings_hash, db_value(name), db_value(source_dir)),
        ).fetchone()
        if r is not None:
            return _series_row(r), False
        taken = {from_db(x[0]) for x in self.db.execute("SELECT out_rel FROM series WHERE settings_hash = ?", (settings_hash,))}
        stem = out_name or name
        base = f"{out_set}/{stem}" if out_set else stem
        out_rel, k = base, 2
        while out_rel in taken:  # same series name from another directory
            out_rel = f"{base}_{k}"
            k += 1
        cur = self.db.execute(
            "INSERT INTO series (settings_hash, name, source_dir, out_rel, started_at) VALUES (?, ?, ?, ?, ?)",
            (settings_hash, db_value(name), db_value(source_dir), db_value(out_rel), time.time()),
        )
        return _series_row(self.db.execute("SELECT * FROM series WHERE id = ?", (cur.lastrowid,)).fetchone()), True

    def series(self, series_id: int) -> dict:
        return _series_row(self.db.execute("SELECT * FROM series WHERE id = ?", (series_id,)).fetchone())

    def all_series(self, settings_hash: str | None = None) -> list[dict]:
        if settings_hash is None:
            rows = self.db.execute("SELECT * FROM series ORDER BY id")
        else:
            rows = self.db.execute("SELECT * FROM series WHERE settings_hash = ? ORDER BY id", (settings_hash,))
        return [_series_row(r) for r in rows]

    def update_series(self, series_id: int, **fields) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE series SET {cols} WHERE id = ?", (*fields.values(), series_id))

    def mark_series_complete(self, series_id: int, *, completed_at: float, n_sections: int) -> None:
        """The series is complete: its sorted outputs were written from ``n_sections`` sections."""
        self.update_series(series_id, complete=1, completed_at=completed_at, completed_sections=n_sections)

    def reopen_series(self, series_id: int) -> None:
        """Open again: a tilt came after it was completed, or its sorted outputs are missing."""
        self.update_series(series_id, complete=0)

    # -- movies ---------------------------------------------------------------------------------
    def latest(self, path: str, settings_hash: str) -> dict | None:
        r = self.db.execute(
            "SELECT * FROM movies WHERE path = ? AND settings_hash = ? ORDER BY id DESC LIMIT 1", (db_value(path), settings_hash)
        ).fetchone()
        return _row(r)

    def get(self, movie_id: int) -> dict:
        return _row(self.db.execute("SELECT * FROM movies WHERE id = ?", (movie_id,)).fetchone())

    def last_done(self) -> dict | None:
        """The movie corrected last (any settings), or None."""
        q = "SELECT * FROM movies WHERE state = 'done' ORDER BY done_at DESC, id DESC LIMIT 1"
        return _row(self.db.execute(q).fetchone())

    def add(self, path: str, size: int, mtime_ns: int, settings_hash: str, *, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        cur = self.db.execute(
            "INSERT INTO movies (path, size, mtime_ns, settings_hash, state, seen_at) VALUES (?, ?, ?, ?, 'seen', ?)",
            (db_value(path), size, mtime_ns, settings_hash, now),
        )
        return self.get(cur.lastrowid)

    def update(self, movie_id: int, **fields) -> None:
        if not fields:
            return
        vals = []
        for k, v in fields.items():
            if k in _JSON_COLUMNS:
                v = None if v is None else json.dumps(v, sort_keys=True, default=_json_default)
            vals.append(v)
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE movies SET {cols} WHERE id = ?", (*vals, movie_id))

    def update_identity(self, movie_id: int, size: int, mtime_ns: int) -> bool:
        """Record the file's current size and mtime on a row still being watched (``seen``)."""
        try:
            self.db.execute("UPDATE movies SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, movie_id))
            return True
        except sqlite3.IntegrityError:
            return False

    def in_state(self, *states: str, settings_hash: str | None = None) -> list[dict]:
        q = f"SELECT * FROM movies WHERE state IN ({', '.join('?' * len(states))})"
        args: list = list(states)
        if settings_hash is not None:
            q += " AND settings_hash = ?"
            args.append(settings_hash)
        return [_row(r) for r in self.db.execute(q + " ORDER BY id", args)]

    def sections(self, series_id: int) -> list[dict]:
        """Done movies of a series in section order."""
        rows = self.db.execute("SELECT * FROM movies WHERE series_id = ? AND state = 'done' AND z IS NOT NULL ORDER BY z",
                               (series_id,))
        return [_row(r) for r in rows]

    def n_sections(self, series_id: int) -> int:
        return self.db.execute("SELECT COUNT(*) FROM movies WHERE series_id = ? AND state = 'done' AND z IS NOT NULL",
                               (series_id,)).fetchone()[0]

    def series_movies(self, series_id: int) -> list[dict]:
        return [_row(r) for r in self.db.execute("SELECT * FROM movies WHERE series_id = ? ORDER BY id", (series_id,))]

    # -- named transitions (seen -> ready -> processing -> done | failed; back to seen) -----------
    def mark_ready(self, movie_id: int, *, ready_at: float | None = None, error: str | None = None,
                   after_append: bool = False) -> None:
        """Queued. ``ready_at``: first queued by intake; ``after_append``: put back at the front of
        the queue because the output disk had no room (``error`` says so; no longer in a worker)."""
        if after_append:
            self.update(movie_id, state="ready", started_at=None, error=error)
        else:
            self.update(movie_id, state="ready", ready_at=ready_at)

    def mark_processing(self, movie_id: int, *, started_at: float) -> None:
        """Handed to a worker at ``started_at`` (s since the epoch)."""
        self.update(movie_id, state="processing", started_at=started_at)

    def mark_failed(self, movie_id: int, *, error: str, **fields) -> None:
        """Failed for good with ``error``; ``fields``: counters or file identity to record with it
        (``attempts``, ``interruptions``, ``size``, ``mtime_ns``, ``series_id``, ``complete_at``)."""
        self.update(movie_id, state="failed", error=error, **fields)

    def mark_retry(self, movie_id: int, *, attempts: int, error: str) -> None:
        """Back to ``seen`` after an error that may go away (read again later)."""
        self.update(movie_id, state="seen", attempts=attempts, error=error)

    def mark_interrupted(self, movie_id: int, *, interruptions: int) -> None:
        """Back to ``seen``: its worker (or the daemon) died while it was being processed."""
        self.update(movie_id, state="seen", interruptions=interruptions)

    def requeue(self, movie_id: int, *, left_worker: bool = False) -> None:
        """Back to ``seen`` (watched again); ``left_worker``: it was taken from a worker (abandoned,
        or held back while stopping) and its start time is cleared."""
        if left_worker:
            self.update(movie_id, state="seen", started_at=None)
        else:
            self.update(movie_id, state="seen")

    def mark_section_lost(self, movie_id: int) -> None:
        """A done movie whose section a crash cut from the stacks: back to ``seen``, corrected again."""
        self.update(movie_id, state="seen", z=None, logged=0, images_synced=None)

    def forget_unready(self, movie_id: int) -> None:
        """Delete a ``seen`` row whose file went before it was complete (it was never a movie)."""
        self.db.execute("DELETE FROM movies WHERE id = ? AND state = 'seen'", (movie_id,))

    def record_complete(self, movie_id: int, **fields) -> None:
        """What intake found when the movie was complete: identity, series, angle, order, frames,
        ``info_json`` and ``complete_at`` (the state is unchanged)."""
        self.update(movie_id, **fields)

    def set_frames(self, movie_id: int, n_frames: int) -> None:
        """The frame count the worker found (EER: fractions, not raw frames)."""
        self.update(movie_id, n_frames=n_frames)

    def note_fail_stage(self, movie_id: int, stage: str) -> None:
        """The stage a movie failed at, noted before its ``movie_failed`` line is written."""
        self.update(movie_id, fail_stage=stage)

    def mark_images_synced(self, movie_id: int) -> None:
        """The per-tilt images of a done movie are on disk (fsync'd)."""
        self.update(movie_id, images_synced=1)

    def mark_logged(self, movie_id: int) -> None:
        """Its final drift-log line (``tilt_corrected`` or ``movie_failed``) is written."""
        self.update(movie_id, logged=1)

    def mark_done(self, movie_id: int, *, z: int, stats: dict, flags: list, timings: dict, info: dict, now: float,
                  images_synced: bool | None = None) -> None:
        """One transaction: the movie is done with section ``z``. ``images_synced``: False when its
        per-tilt images are written but not yet fsync'd (:meth:`mark_images_synced` follows; start-up
        rewrites them from the stacks otherwise), None when there are none."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.update(movie_id, state="done", z=z, stats_json=stats, flags_json=flags, timings_json=timings, info_json=info,
                        done_at=now, error=None, images_synced=None if images_synced is None else int(images_synced))
            sid = self.get(movie_id)["series_id"]
            self.db.execute("UPDATE series SET last_tilt_at = ? WHERE id = ?", (now, sid))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def counts(self, settings_hash: str | None = None) -> dict:
        q = "SELECT state, COUNT(*) FROM movies"
        args: tuple = ()
        if settings_hash is not None:
            q += " WHERE settings_hash = ?"
            args = (settings_hash,)
        return {s: n for s, n in self.db.execute(q + " GROUP BY state", args)}


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
