"""Independent per-item work spread over threads, one item per thread at a time, results in order.

Used where a correction does the same small, independent work many times: the patches of local
motion (each a batch of small transforms and peak searches) and the registered alignment copies.
Run one item per thread, each single-threaded (scipy's FFT with one worker, numba kernels limited
to one thread in that thread), both cores stay busy with less synchronisation than splitting every
small transform over both cores, and the serial steps between the kernels (Python, NumPy
reductions) overlap. Every item is computed exactly as it would be alone, so results do not depend
on the number of threads. Not for the frame-sized passes: two 64 MiB transforms, or numba's
parallel kernels called from two threads at once, were slower than one frame on both cores.

Numba kernels called here must release the GIL (``nogil=True``) to run side by side.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numba
import numpy as np

__all__ = ["FramePool", "frame_pool", "sum_in_order", "use_kernel_threads"]

T = TypeVar("T")


def use_kernel_threads(threads: int) -> None:
    """Numba kernels called from this thread use ``threads`` threads (at most numba's pool)."""
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _one_numba_thread() -> None:
    use_kernel_threads(1)


class FramePool:
    """``map(fn, items)`` -> ``[fn(item) ...]`` in order, on ``workers`` threads (1: in the caller).

    ``threads_each``: the threads one item's work may use (the FFT ``workers`` argument)."""

    def __init__(self, executor: ThreadPoolExecutor | None, workers: int, threads_each: int):
        self._executor = executor
        self.workers = workers
        self.threads_each = threads_each

    def map(self, fn: Callable[[int], T], items: Iterable) -> list[T]:
        if self._executor is None:
            return [fn(item) for item in items]
        return list(self._executor.map(fn, items))


@contextmanager
def frame_pool(threads: int, n_items: int):
    """A :class:`FramePool` of ``min(threads, n_items)`` threads (none when that is 1)."""
    workers = max(1, min(int(threads), int(n_items)))
    if workers == 1:
        yield FramePool(None, 1, max(1, int(threads)))
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="framewatch-frames",
                            initializer=_one_numba_thread) as executor:
        yield FramePool(executor, workers, 1)


def sum_in_order(arrays: list[np.ndarray]) -> np.ndarray:
    """``arrays[0] + arrays[1] + ...`` added in that order (the same values as ``np.sum(arrays, axis=0)``
    without stacking them first); a new array."""
    total = arrays[0].copy()
    for a in arrays[1:]:
        total += a
    return total
