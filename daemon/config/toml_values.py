"""Typed reading of TOML values: each value as the type its key wants, or one SettingsError naming
the key (``[watch] settle_s = 'ten': expected a number, got a string``)."""
from __future__ import annotations

import difflib
import math
import typing
from dataclasses import fields

from framewatch.core.errors import SettingsError

__all__ = ["check_value", "coerce_table", "require_table", "suggest", "type_name"]


def suggest(name: str, choices, *, in_order: bool = False) -> str:
    """The closest valid name to a typo (``did you mean 'settle_s'?``), else the valid names
    (sorted, or in the order given when ``in_order``)."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(choices if in_order else sorted(choices))}"


def type_name(v) -> str:
    """The TOML name of the type of ``v`` (``"number"``, ``"array"``, ...)."""
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return names.get(type(v), type(v).__name__)


def check_value(where: str, key: str, hint, v, src):
    """The TOML value ``v`` as the type ``hint`` wants, or a SettingsError naming the key.

    ``hint``: ``bool``, ``int``, ``float`` (finite; an integer is taken), ``float | None``,
    ``str``, ``tuple[str, ...]`` (an array of strings) or ``tuple`` (an array); others pass ``v``.
    """
    def bad(expected: str):
        return SettingsError(f"{where} {key} = {v!r}: expected {expected}, got a {type_name(v)}", path=src)

    if hint is bool:
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if hint is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad("an integer")
        return v
    if hint == (float | None):  # optional: leaving the key out means None
        hint = float
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad("a number")
        if not math.isfinite(v):
            raise SettingsError(f"{where} {key} = {v!r}: expected a finite number", path=src)
        return float(v)
    if hint is str:
        if not isinstance(v, str):
            raise bad("a string")
        return v
    if hint == tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad("an array of strings")
        return tuple(v)
    if hint is tuple:
        if not isinstance(v, list):
            raise bad("an array")
        return tuple(v)
    return v


def require_table(table, name: str, src, fix: str | None = None) -> dict:
    """``table`` when it is a TOML table, else a SettingsError naming ``[name]``."""
    if not isinstance(table, dict):
        raise SettingsError(f"[{name}] must be a table, got a {type_name(table)}", path=src, fix=fix)
    return table


def coerce_table(cls, table, name: str, src=None):
    """The frozen dataclass ``cls`` from the TOML table ``[name]``: unknown keys and values of the
    wrong type are refused, naming the key."""
    require_table(table, name, src, fix=f"write it as [{name}] with keys below it")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for k in table:
        if k not in known:
            raise SettingsError(f"unknown key {k!r} in [{name}]", path=src, fix=suggest(k, known))
    values = {k: check_value(f"[{name}]", k, hints[k], v, src) for k, v in table.items()}
    return cls(**values)
