"""Records that several daemon layers pass between them (defined below them, so none imports another).

:class:`QueueItem` is one movie that intake found complete, waiting in
:class:`framewatch.daemon.processing.scheduler.ReadyQueue` (intake puts it, dispatch puts it back on
recovery, the scheduler orders it: oldest acquisition first).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(order=True)
class QueueItem:
    """A ready movie: its journal id, acquisition and ready times (s since the epoch), its series id."""

    acq_time: float
    movie_id: int
    ready_at: float = field(compare=False)
    series_id: int = field(compare=False)
