"""Several same-shape arrays handed to a cached numba kernel by their addresses.

A kernel that streams a row of every frame (:mod:`framewatch.core.weighted_sums`) needs the frames
as one argument. ``numba.typed.List`` does that, but its own methods are compiled afresh in every
new process, and are never cached: 0.43 s measured here, a third of the start-up of a one-movie
``framewatch correct``, paid again by every worker. Instead the wrapper passes a ``uint64`` array
of the frames' data addresses (:func:`array_addresses`), and the kernel views frame ``i`` with
:func:`complex64_frame`, which turns the address back into a pointer (a numba intrinsic) and wraps
it in a C-ordered ``(ny, nkx)`` array of the given shape. The kernel is cached like any other.

The caller keeps the arrays alive while the kernel runs (it holds the list it took the addresses
from) and validates them here: C-contiguous, complex64, one shape. Nothing else checks the
pointers, so :func:`array_addresses` is the only way they are made.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["array_addresses", "complex64_frame"]


def array_addresses(arrays: list[np.ndarray], *, shape: tuple[int, int]) -> np.ndarray:
    """``uint64`` ``(n,)``: the data addresses of ``arrays``, each C-contiguous complex64 ``shape``
    (raises ``ValueError`` otherwise). Valid while the caller holds ``arrays``."""
    for a in arrays:
        if a.dtype != np.complex64 or a.shape != tuple(shape) or not a.flags.c_contiguous:
            raise ValueError(f"arrays must be C-contiguous complex64 {tuple(shape)}, got {a.dtype} {a.shape}")
    return np.array([a.ctypes.data for a in arrays], dtype=np.uint64)


@intrinsic
def _void_pointer(typingctx, address):  # pragma: no cover - compiled
    """The integer ``address`` as a ``void *`` (for ``numba.carray``)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@numba.njit(cache=True, inline="always", nogil=True)
def complex64_frame(addresses, i, ny, nkx):  # pragma: no cover - compiled
    """Array ``i`` of :func:`array_addresses` as a C-ordered complex64 ``(ny, nkx)`` view."""
    return numba.carray(_void_pointer(addresses[i]), (ny, nkx), np.complex64)
