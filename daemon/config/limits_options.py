"""The decode limits as options: the ``[limits]`` table and the flags of ``correct`` and ``watch``.

==================================  ===========================  ====================================
command line                        ``[limits]`` key             meaning (default)
==================================  ===========================  ====================================
``--max-frame-pixels N``            ``max_frame_pixels``         pixels of one decoded frame (2**27)
``--max-movie-bytes-decoded N``     ``max_movie_bytes_decoded``  bytes of a decoded movie (16 GiB)
``--max-compression-ratio R``       ``max_compression_ratio``    TIFF codecs without a bound (2000)
==================================  ===========================  ====================================

What each one bounds, and why the defaults cover every current detector, is in
:mod:`framewatch.core.decode_limits`. A command-line value wins over the table. The limits never
change the numbers of a correction, so they are not part of the settings hash.
"""
from __future__ import annotations

import argparse
import dataclasses

from framewatch.core.decode_limits import DecodeLimits
from framewatch.core.errors import SettingsError

LIMIT_KEYS = {  # [limits] key -> (argparse dest, type)
    "max_frame_pixels": ("max_frame_pixels", int),
    "max_movie_bytes_decoded": ("max_movie_bytes_decoded", int),
    "max_compression_ratio": ("max_compression_ratio", float),
}


def add_limits_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--max-*`` flags (defaults ``None``: the ``[limits]`` table or the built-in default)."""
    d = DecodeLimits()
    g = parser.add_argument_group("decode limits, checked before a movie is decoded (also the [limits] table)")
    g.add_argument("--max-frame-pixels", type=int, metavar="N",
                   help=f"refuse frames of more pixels (default {d.max_frame_pixels}, K3 super-resolution is 94 M)")
    g.add_argument("--max-movie-bytes-decoded", type=int, metavar="N",
                   help=f"refuse movies larger than this when decoded (default {d.max_movie_bytes_decoded} = 16 GiB)")
    g.add_argument("--max-compression-ratio", type=float, metavar="R",
                   help=f"refuse TIFF movies compressed more than R:1 with codecs that have no bound of their own "
                        f"(zstd, LZMA, JPEG; default {d.max_compression_ratio:g})")


def decode_limits_from(args: argparse.Namespace | None, config: dict | None) -> DecodeLimits:
    """The limits of the ``[limits]`` table of ``config`` (a TOML document) with the flags of ``args`` over it."""
    table = (config or {}).get("limits", {})
    if not isinstance(table, dict):
        raise SettingsError("[limits] must be a table", fix="write it as [limits] with keys below it")
    values = {}
    for key, (dest, kind) in LIMIT_KEYS.items():
        v = getattr(args, dest, None) if args is not None else None
        if v is None:
            v = table.get(key)
        if v is not None:
            if kind is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            values[key] = v
    unknown = sorted(set(table) - set(LIMIT_KEYS))
    if unknown:
        raise SettingsError(f"unknown key(s) in [limits]: {', '.join(unknown)}", fix=f"use {', '.join(LIMIT_KEYS)}")
    return dataclasses.replace(DecodeLimits(), **values)
