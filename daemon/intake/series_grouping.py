"""Which tilt series a movie belongs to: :class:`SeriesIndex`, the tilt-series mdocs under the watch root.

Grouping: a tilt-series mdoc (``[ZValue = n]`` sections; frame-set and montage mdocs are ignored)
that lists the movie's file name in a ``SubFramePath`` (Windows paths are fine) names the series
after itself (``TS_07.mrc.mdoc`` -> ``TS_07``); otherwise a file-name pattern (naming.py) does;
otherwise the movie is its own series (named after the file).

:meth:`SeriesIndex.tilt_info` gives the movie's place in its series (angle, acquisition order and
index, the mdoc's doses: ``tilt_info.py``); which source then gives the dose and the prior dose of
the movie is ``dose_precedence.py``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from framewatch.daemon.intake.dose_precedence import prior_dose_sum
from framewatch.daemon.intake.mdoc import DEFAULT_MAX_BYTES, Mdoc, MdocSection, frame_mdoc_for, read_mdoc
from framewatch.daemon.intake.mdoc_follow import MdocFollower
from framewatch.daemon.intake.naming import DEFAULT_PATTERNS, NamePattern, movie_stem, parse_movie_name
from framewatch.daemon.intake.safe_open import RefusedFile
from framewatch.daemon.intake.tilt_info import TiltInfo, tilt_info_from_mdoc, tilt_info_from_name, with_frame_mdoc
from framewatch.daemon.state.name_escape import shown

# the keys of a tilt section the daemon uses (a section lacking one its siblings have is incomplete)
_USED_KEYS = frozenset({"TiltAngle", "ExposureDose", "PriorRecordDose", "SubFramePath", "NumSubFrames", "DateTime",
                        "FrameDosesAndNumber", "TargetDefocus", "Defocus"})

@dataclass
class _MdocEntry:
    stat_key: tuple
    mdoc: Mdoc
    changed_at: float
    order: dict  # basename -> (rank, section)
    ordered: list = field(default_factory=list)  # tilt sections in acquisition order
    all_dated: bool = False  # every tilt section has a usable DateTime
    key_count: dict = field(default_factory=dict)  # used key -> number of tilt sections that have it


def _order_sections(sections: tuple[MdocSection, ...]) -> list[MdocSection]:
    """Tilt sections in acquisition order: DateTime when every section has one, else ZValue."""
    if sections and all(s.datetime is not None for s in sections):
        return sorted(sections, key=lambda s: (s.datetime, s.index))
    return sorted(sections, key=lambda s: s.index)


def _place(movie: Path, mdoc: Path, sec: MdocSection) -> int | None:
    """How close a movie lies to an mdoc that lists its name: 0 in the mdoc's directory, 1 in a
    subfolder named as in the SubFramePath, 2 in another direct subfolder; None elsewhere."""
    if movie.parent == mdoc.parent:
        return 0
    if movie.parent.parent == mdoc.parent:
        folder = PureWindowsPath((sec.values.get("SubFramePath") or "").strip()).parent.name
        return 1 if folder and folder == movie.parent.name else 2
    return None


class SeriesIndex:
    """Tilt-series mdocs under the watch root, re-read (incrementally: mdoc_follow.py) whenever they
    change. Every mdoc and frame mdoc is read through safe_open.py: never blocking, never outside
    ``root``, never more than ``mdoc_max_bytes``."""

    def __init__(self, patterns: tuple[NamePattern, ...] = DEFAULT_PATTERNS, *, root: str | Path | None = None,
                 mdoc_max_bytes: int = DEFAULT_MAX_BYTES):
        self.patterns = patterns
        self.root = None if root is None else os.path.realpath(root)
        self.mdoc_max_bytes = mdoc_max_bytes
        self._mdocs: dict[str, _MdocEntry] = {}
        self._followers: dict[str, MdocFollower] = {}
        self._refused: dict[str, tuple] = {}  # mdoc path -> stat of the version that could not be read
        self._by_name: dict[str, set[str]] = {}  # movie basename -> mdoc paths that list it
        self._frame_mdocs: dict[str, tuple] = {}  # frame mdoc path -> (stat key, (Mdoc | None, problem))
        # (mdoc path, number of warnings, sample warnings) not yet logged: one mdoc_warning each
        self.warnings: list[tuple[str, int, tuple[str, ...]]] = []

    def _warn(self, p: str, warnings: tuple[str, ...], n: int | None = None) -> None:
        self.warnings.append((p, len(warnings) if n is None else n, tuple(warnings)))

    # -- mdocs -------------------------------------------------------------------------------------
    def note_mdoc(self, path: str | Path, now: float) -> Mdoc | None:
        """Read an mdoc if it is new or changed. Returns the Mdoc when it was (re-)read."""
        p = str(path)
        try:
            st = os.stat(p)
        except OSError:
            self._forget(p)
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        entry = self._mdocs.get(p)
        if (entry is not None and entry.stat_key == key) or self._refused.get(p) == key:
            return None
        follower = self._followers.get(p)
        if follower is None:
            follower = self._followers[p] = MdocFollower(p, root=self.root, max_bytes=self.mdoc_max_bytes)
        try:
            mdoc = follower.read()
        except OSError as err:
            self._refused[p] = key  # once per version of the file
            self._warn(p, (f"cannot read: {err}" if not isinstance(err, RefusedFile) else str(err),))
            if entry is not None:
                self._forget(p)
            return None
        self._refused.pop(p, None)
        if follower.last_stat is not None:  # the version read, which an append after os.stat above may have changed
            st = follower.last_stat
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if mdoc.n_warnings:
            self._warn(p, mdoc.warnings, mdoc.n_warnings)
        if mdoc.kind not in ("tilt_series", "empty", "frame_set", "montage"):
            self._warn(p, (f"not a tilt-series, frame-set or montage mdoc ({mdoc.kind}); ignored",))
        order = {}
        ordered: list[MdocSection] = []
        key_count: dict[str, int] = {}
        if mdoc.kind == "tilt_series":
            ordered = _order_sections(mdoc.tilt_sections)
            for rank, sec in enumerate(ordered):
                name = sec.sub_frame_name
                if name:
                    order[name] = (rank, sec)
                for k in _USED_KEYS.intersection(sec.values):
                    key_count[k] = key_count.get(k, 0) + 1
        if entry is not None:
            self._unlist(p, entry)
        self._mdocs[p] = _MdocEntry(key, mdoc, now, order, ordered, bool(ordered) and all(s.datetime for s in ordered), key_count)
        for name in order:
            self._by_name.setdefault(name, set()).add(p)
        return mdoc

    def _unlist(self, p: str, entry: _MdocEntry) -> None:
        for name in entry.order:
            ps = self._by_name.get(name)
            if ps is not None:
                ps.discard(p)
                if not ps:
                    del self._by_name[name]

    def _forget(self, p: str) -> None:
        entry = self._mdocs.pop(p, None)
        self._followers.pop(p, None)
        self._refused.pop(p, None)
        if entry:
            self._unlist(p, entry)

    def refresh(self, now: float) -> None:
        for p in list(self._mdocs):
            self.note_mdoc(p, now)

    def tilt_series_mdocs(self) -> dict[str, Mdoc]:
        return {p: e.mdoc for p, e in self._mdocs.items() if e.mdoc.kind == "tilt_series"}

    def mdoc_changed_at(self, p: str) -> float | None:
        e = self._mdocs.get(p)
        return None if e is None else e.changed_at

    def mdoc_names(self, p: str) -> list[str]:
        e = self._mdocs.get(p)
        return [] if e is None else list(e.order)

    def entry_for(self, movie: str | Path) -> tuple[str, Mdoc, int, MdocSection] | None:
        """The tilt-series mdoc line of a movie: an mdoc listing its file name in ``SubFramePath``
        *and* lying in the movie's own directory or the one above it (SerialEM's ``frames/``
        subfolder), never one elsewhere in the tree (issue 14, row 6: grid1/ and grid2/ both with a
        ``TS_01.mrc.mdoc`` listing ``TS_01_001_3.0.tif``). The mdoc in the movie's own directory
        wins, then one whose SubFramePath names the movie's folder."""
        movie = Path(movie)
        name = movie.name
        best = None
        for p in self._by_name.get(name, ()):
            rank = _place(movie, Path(p), self._mdocs[p].order[name][1])
            if rank is not None and (best is None or (rank, p) < best[:2]):
                best = (rank, p)
        if best is None:
            return None
        p = best[1]
        e = self._mdocs[p]
        rank, sec = e.order[name]
        return p, e.mdoc, rank, sec

    def entry_settled(self, movie: str | Path) -> bool:
        """The movie has its mdoc line, and it has every key that all the mdoc's other tilt sections
        have (False while the section is still being written: SerialEM appends it line by line,
        and a rewritten mdoc is read half-written; found by the torture run -- a section read
        without its DateTime put the movie's acquisition time on the file-mtime clock and out of
        order)."""
        e = self.entry_for(movie)
        if e is None:
            return False
        p, mdoc, _, sec = e
        entry = self._mdocs[p]
        n_others = len(entry.ordered) - 1
        if n_others <= 0:
            return True
        return all(k in sec.values for k, c in entry.key_count.items() if c - (k in sec.values) == n_others)

    def frame_mdoc(self, movie: str | Path) -> tuple[Path | None, Mdoc | None, str | None]:
        """SerialEM's per-movie frame mdoc of a movie (``MOVIE.tif.mdoc`` / ``MOVIE.mdoc``), read
        safely and once per version: (path or None, the Mdoc or None, the problem reading it). A
        problem is also one mdoc warning, once per version of that file."""
        fm = frame_mdoc_for(movie)
        if fm is None:
            return None, None, None
        p = str(fm)
        try:
            st = os.stat(p)
            key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
        except OSError as err:
            return fm, None, f"cannot read {fm.name}: {err}"
        cached = self._frame_mdocs.get(p)
        if cached is not None and cached[0] == key:
            return (fm, *cached[1])
        try:
            m, problem = read_mdoc(p, root=self.root, max_bytes=self.mdoc_max_bytes), None
            if m.n_warnings:
                self._warn(p, m.warnings, m.n_warnings)
        except OSError as err:
            m, problem = None, str(err) if isinstance(err, RefusedFile) else f"cannot read {shown(fm.name)}: {err}"
            if self._refused.get(p) != key[:3]:  # not said already when it was found as an mdoc
                self._refused[p] = key[:3]
                self._warn(p, (problem,))
        if len(self._frame_mdocs) > 10000:  # bounded: movies done long ago need it no more
            self._frame_mdocs.clear()
        self._frame_mdocs[p] = (key, (m, problem))
        return fm, m, problem

    def sibling_mdoc_pending(self, movie: str | Path) -> str | None:
        """A tilt-series (or still empty) mdoc for this movie's file-name series in the movie's
        directory or its parent, which does not list the movie yet: worth waiting for."""
        info = parse_movie_name(movie, self.patterns)
        if info is None:
            return None
        mp = Path(movie)
        for p, e in self._mdocs.items():
            if e.mdoc.kind not in ("tilt_series", "empty"):
                continue
            pp = Path(p)
            if pp.parent not in (mp.parent, mp.parent.parent):
                continue
            if e.mdoc.series_name == info.series:
                return p
        return None

    # -- resolution ----------------------------------------------------------------------------------
    def tilt_info(self, movie: str | Path, *, mtime: float, mtime_rank: int | None = None) -> TiltInfo:
        """The movie's place in its series (``tilt_info.py``): from the tilt-series mdoc that lists
        it (:meth:`entry_for`), else from its file name; then what its frame mdoc adds.
        ``mtime``: the file's; ``mtime_rank``: its rank by mtime among the series' movies so far."""
        movie = Path(movie)
        entry = self.entry_for(movie)
        name_info = parse_movie_name(movie, self.patterns)
        if entry is not None:
            mpath, mdoc, rank, sec = entry
            e = self._mdocs[mpath]
            info = tilt_info_from_mdoc(movie, mdoc_path=mpath, mdoc=mdoc, rank=rank, sec=sec, all_dated=e.all_dated,
                                       prior_sum_e_per_a2=prior_dose_sum(e.ordered, rank), name_info=name_info,
                                       mtime=mtime)
        else:
            series = name_info.series if name_info is not None else movie_stem(movie)
            info = tilt_info_from_name(movie, name_info=name_info, mtime=mtime, mtime_rank=mtime_rank,
                                       mdoc_dir=self._series_mdoc_dir(movie, series))
        return with_frame_mdoc(info, self.frame_mdoc(movie)[1])

    def _series_mdoc_dir(self, movie: Path, series: str) -> str | None:
        for p, e in self._mdocs.items():
            pp = Path(p)
            if e.mdoc.series_name == series and pp.parent in (movie.parent, movie.parent.parent):
                return str(pp.parent)
        return None
