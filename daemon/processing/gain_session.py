"""``gain_orientation = "auto"`` in the daemon: one gain rotation/flip for the whole session.

The raw frames of the first movies that are queued (at most :data:`MAX_MOVIES`, in acquisition
order) are summed in the daemon process, one movie per turn of the main loop, frame by frame into
one float64 image of the frame size (so memory stays at one frame plus that sum, whatever the
movie length; a 4K frame: 128 MB). After each movie the choice of
:func:`framewatch.core.gain_auto.choose_gain_orientation` is asked for (the criterion and the
thresholds are documented there and in the README), with the SerialEM ``r/f N`` hint of the first
movie when its header has one:

- **accepted**: the drift log gets ``gain_orientation_chosen`` (orientation, margin, best_z,
  n_movies); the orientation is kept in the journal (``meta``, per settings hash), so a restart
  uses it without summing again, and it is applied to every movie of the session;
- **undecided** with fewer than :data:`MAX_MOVIES` summed: nothing is handed to a worker, the
  queued movies wait (they are not failed) for the next movie;
- **refused** after :data:`MAX_MOVIES` (too little signal or no clear winner):
  ``gain_orientation_refused`` with the reason, which asks for ``--gain-rot``/``--gain-flip``;
  the summed movies and every movie queued after them are recorded failed with that reason (the
  daemon keeps running; a restart with explicit settings, which is a new settings hash, corrects
  them). The refusal is not kept in the journal: a restart with the same settings tries again on
  the next movies.

A movie that cannot be read for the sum is skipped here (the worker reports its error later).
"""
from __future__ import annotations

import dataclasses
import json
import math

from framewatch.core.errors import FramewatchError
from framewatch.core.settings import CorrectionSettings, GainOrientation

MAX_MOVIES = 3
STAGE = "gain_orientation"


def _finite(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 3)


class SessionGainOrientation:
    """The session's gain orientation (module docstring); the dispatcher asks :meth:`ready` before it
    hands movies to the workers and :meth:`apply` to each movie's settings."""

    def __init__(self, *, journal, log, queue, opts, settings_hash: str, fail):
        """``journal`` (state/journal.py), ``log`` (the drift log), ``queue`` (scheduler.ReadyQueue),
        ``opts`` (ProcessingOptions), ``fail(movie_id, stage, reason)`` records a queued movie failed."""
        self._journal = journal
        self._log = log
        self._queue = queue
        self._opts = opts
        self._fail = fail
        self.hash = settings_hash
        self.auto = bool(getattr(opts, "gain_orientation_auto", False))
        self.orientation: GainOrientation | None = None
        self.refused: str | None = None
        self.tried: set[int] = set()  # movie ids summed (or unreadable)
        self.members: list[int] = []  # movie ids in the sum
        self.acc = None
        self.hint: GainOrientation | None = None
        self.hint_checked = False
        if self.auto:
            saved = journal.meta(self.key)
            if saved:
                o = json.loads(saved)["orientation"]
                self.orientation = GainOrientation(rotate_ccw_90=int(o["rotate_ccw_90"]), flip=o["flip"],
                                                   invert=bool(o["invert"]))

    @property
    def key(self) -> str:
        return f"gain_orientation/{self.hash}"

    def apply(self, settings: CorrectionSettings) -> CorrectionSettings:
        if self.auto and self.orientation is not None:
            return dataclasses.replace(settings, gain_orientation=self.orientation)
        return settings

    def ready(self) -> bool:
        """True when movies may go to the workers; else sums the next movie (or fails the queue)."""
        if not self.auto or self.orientation is not None:
            return True
        if self.refused is not None:
            self._fail_queued()
            return False
        for item in self._queue.items():
            if item.movie_id not in self.tried:
                self._sum(item.movie_id)
                break
        return self.orientation is not None

    # ---------------------------------------------------------------------------------------
    def _sum(self, mid: int) -> None:
        from framewatch.core.gain_auto import OrientationAccumulator, orientation_hint_from_movie
        from framewatch.core.movie_io import open_movie

        self.tried.add(mid)
        row = self._journal.get(mid)
        path = row["path"]
        if self.acc is None:
            self.acc = OrientationAccumulator(max_movies=MAX_MOVIES)
        try:
            # all raw frames are summed, whatever the EER grouping: the default grouping needs no dose
            with open_movie(path, eer_upsampling=self._opts.eer_upsampling) as reader:
                self.acc.add(reader)
        except (FramewatchError, OSError, ValueError) as err:
            self._log.event("gain_orientation_skipped", level="warning", movie=path,
                             reason=f"cannot sum it for the gain orientation: {err}")
            return
        self.members.append(mid)
        if not self.hint_checked:
            self.hint_checked = True
            self.hint = orientation_hint_from_movie(path)
        self._decide()

    def _decide(self) -> None:
        from framewatch.core.gain import read_gain

        opts = self._opts
        try:
            choice = self.acc.choose(read_gain(opts.gain), hint=self.hint, invert=opts.gain_orientation.invert,
                                     allow_resample=True)
        except FramewatchError as err:
            self._refuse(f"{err}", None, None)
            return
        n = self.acc.n_movies
        if choice.accepted:
            o = choice.orientation
            self.orientation = o
            record = {"orientation": dataclasses.asdict(o), "margin": _finite(choice.margin), "best_z": _finite(choice.best_z),
                      "n_movies": n}
            self._journal.set_meta(self.key, json.dumps(record))
            self._log.event("gain_orientation_chosen", orientation=dataclasses.asdict(o), margin=_finite(choice.margin),
                             best_z=_finite(choice.best_z), n_movies=n, reason=choice.reason,
                             hint=None if self.hint is None else dataclasses.asdict(self.hint),
                             movies=[self._journal.get(m)["path"] for m in self.members])
        elif self.acc.full:
            self._refuse(choice.reason, choice.best_z, choice.margin)

    def _refuse(self, reason: str, best_z, margin) -> None:
        why = f"automatic gain orientation refused: {reason}"
        if "--gain-rot" not in why:
            why += "; give --gain-rot/--gain-flip (gain_rot/gain_flip in [processing]) instead of gain_orientation auto"
        self.refused = why
        self._log.event("gain_orientation_refused", level="error", reason=why, n_movies=self.acc.n_movies if self.acc else 0,
                         best_z=_finite(best_z), margin=_finite(margin),
                         movies=[self._journal.get(m)["path"] for m in self.members])
        self._fail_queued()

    def _fail_queued(self) -> None:
        for item in self._queue.items():
            self._queue.remove(item.movie_id)
            self._fail(item.movie_id, STAGE, self.refused)
