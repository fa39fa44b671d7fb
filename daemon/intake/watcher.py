"""Finding movies and mdocs under the watch root: inotify hints plus a periodic scan.

The scan (``os.scandir``, recursive) always runs, because files written over NFS/SMB by another
host raise no inotify events; inotify (through watchdog's InotifyObserver) only makes the daemon
look sooner. ``backend`` says which is active: ``"inotify+scan"`` or ``"scan"`` (inotify disabled
in the configuration or unavailable, e.g. out of watches).

What is taken: files whose name matches one of the movie patterns (case-insensitive globs), plus
``*.mdoc`` files for the series index. What is not: hidden names (``.x``), partial names (``*.tmp``,
``*~``, ``*.part``), gain references (``*gain*``, ``CountRef*``, ``SuperRef*`` ...), ``*_sorted*``,
``*_EVN.*``/``*_ODD.*``, anything under the output or state directory, extra ``ignore`` globs, and
symbolic links (to files or directories) that lead outside the watch root.
"""
from __future__ import annotations

import fnmatch
import os
import threading
from pathlib import Path

BUILTIN_IGNORE = (
    ".*",
    "*.tmp",
    "*~",
    "*.part",
    "*.partial",
    "*gain*",
    "CountRef*",
    "CountCDSRef*",
    "SuperRef*",
    "SuperCDSRef*",
    "*DarkRef*",
    "*_sorted*",
    "*_EVN.*",
    "*_ODD.*",
    "*_DW.*",
)


def _match_any(name: str, patterns) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


class Watcher:
    def __init__(
        self,
        root: str | Path,
        *,
        patterns: tuple[str, ...],
        ignore: tuple[str, ...] = (),
        exclude_dirs: tuple[str | Path, ...] = (),
        use_inotify: bool = True,
    ):
        self.root = Path(root).resolve()
        self.patterns = tuple(patterns)
        self.ignore = BUILTIN_IGNORE + tuple(ignore)
        self.exclude = tuple(Path(os.path.realpath(d)) for d in exclude_dirs)
        self.use_inotify = use_inotify
        self.backend = "scan"
        self.inotify_error: str | None = None
        self._observer = None
        self._hints: set[str] = set()
        self._lock = threading.Lock()
        self.wake = threading.Event()

    # -- classification -------------------------------------------------------------------------------
    def is_movie_name(self, name: str) -> bool:
        return _match_any(name, self.patterns) and not _match_any(name, self.ignore)

    @staticmethod
    def is_mdoc_name(name: str) -> bool:
        return name.lower().endswith(".mdoc") and not name.startswith(".")

    def _inside_root(self, real: str) -> bool:
        r = str(self.root)
        return real == r or real.startswith(r + os.sep)

    def _excluded(self, real: str) -> bool:
        return any(real == str(e) or real.startswith(str(e) + os.sep) for e in self.exclude)

    def accept(self, path: str | Path) -> str | None:
        """``"movie"``, ``"mdoc"`` or None for a path (used for inotify hints)."""
        p = str(path)
        name = os.path.basename(p)
        kind = "mdoc" if self.is_mdoc_name(name) else ("movie" if self.is_movie_name(name) else None)
        if kind is None:
            return None
        real = os.path.realpath(p)
        if not self._inside_root(real) or self._excluded(real):
            return None
        parts = Path(p).relative_to(self.root).parts[:-1] if p.startswith(str(self.root)) else ()
        if any(part.startswith(".") for part in parts):
            return None
        return kind

    # -- scanning ------------------------------------------------------------------------------------
    def scan(self) -> tuple[list[Path], list[Path]]:
        """(movies, mdocs) under the root now."""
        movies: list[Path] = []
        mdocs: list[Path] = []
        seen_dirs: set[str] = set()
        stack = [str(self.root)]
        while stack:
            d = stack.pop()
            real_d = os.path.realpath(d)
            if real_d in seen_dirs or self._excluded(real_d):
                continue
            seen_dirs.add(real_d)
            stack.extend(self._list(d, movies, mdocs))
        return movies, mdocs

    def scan_dir(self, d: str | Path) -> tuple[list[Path], list[Path]]:
        """(movies, mdocs) directly in one directory (the recently active ones are listed every turn)."""
        movies: list[Path] = []
        mdocs: list[Path] = []
        real_d = os.path.realpath(d)
        if self._inside_root(real_d) and not self._excluded(real_d):
            self._list(str(d), movies, mdocs)
        return movies, mdocs

    def _list(self, d: str, movies: list[Path], mdocs: list[Path]) -> list[str]:
        subdirs = []
        try:
            it = os.scandir(d)
        except OSError:
            return subdirs
        with it:
            for e in it:
                name = e.name
                try:
                    if e.is_symlink() and not self._inside_root(os.path.realpath(e.path)):
                        continue
                    if e.is_dir(follow_symlinks=True):
                        if not name.startswith("."):
                            subdirs.append(e.path)
                        continue
                    if not e.is_file(follow_symlinks=True):
                        continue
                except OSError:
                    continue
                if self.is_mdoc_name(name):
                    mdocs.append(Path(e.path))
                elif self.is_movie_name(name):
                    movies.append(Path(e.path))
        return subdirs

    # -- inotify -------------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.use_inotify:
            self.backend = "scan"
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers.inotify import InotifyObserver
        except Exception as err:  # noqa: BLE001 - platform without inotify
            self.inotify_error = f"{type(err).__name__}: {err}"
            self.backend = "scan"
            return
        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: D401 - watchdog API
                if event.is_directory and event.event_type not in ("moved", "created"):
                    return
                paths = [event.src_path]
                dest = getattr(event, "dest_path", "")
                if dest:
                    paths.append(dest)
                with watcher._lock:
                    for p in paths:
                        watcher._hints.add(os.fsdecode(p))
                watcher.wake.set()

        try:
            obs = InotifyObserver()
            obs.schedule(_Handler(), str(self.root), recursive=True)
            obs.daemon = True
            obs.start()
        except Exception as err:  # noqa: BLE001 - e.g. inotify watch limit reached
            self.inotify_error = f"{type(err).__name__}: {err}"
            self.backend = "scan"
            return
        self._observer = obs
        self.backend = "inotify+scan"

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def drain_hints(self) -> set[str]:
        with self._lock:
            h, self._hints = self._hints, set()
        return h
