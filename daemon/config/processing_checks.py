"""Checks of the processing options, derived from :data:`~.processing_table.PROCESSING_OPTIONS`.

Two places take processing options from a person, and both stop with one line (exit status 2)
before anything starts:

- :func:`check_processing_table`: the ``[processing]`` table of a configuration file, at start-up,
  on SIGHUP and in ``check-config``: unknown keys (with the closest name), TOML types, the
  configuration ranges (``[processing] voltage_kv = 1e+300 is out of range: allowed 60 to 400 kV``),
  choices, files that must exist, keys that exclude each other;
- :func:`check_processing_options`: the options merged from the command line and the
  configuration (``framewatch correct --pixel-size-a inf``): the engine's plausible ranges
  (:mod:`framewatch.core.value_ranges`), naming the flag and the key, and the rules between options.

Values the mdoc gives are checked by the engine (``CorrectionSettings``) when a movie's settings
are made: that movie fails with the message, the daemon goes on.
"""
from __future__ import annotations

from pathlib import Path

from framewatch.core import value_ranges as ranges
from framewatch.core.errors import SettingsError

from .config_ranges import check_value_in_range
from .processing_table import OPTIONS_BY_KEY, PROCESSING_OPTIONS, ProcessingOption
from .toml_values import check_value, require_table, suggest

__all__ = ["check_option_ranges", "check_processing_options", "check_processing_table"]

# pairs of [processing] keys that exclude each other
_EXCLUSIVE_KEYS = (("dose_per_frame_e_per_a2", "dose_per_tilt_e_per_a2"),
                   ("eer_group_frames", "eer_fraction_dose_e_per_a2"))


def check_processing_table(doc: dict, src: Path | None) -> None:
    """Raise :class:`SettingsError` for the first problem of ``doc``'s ``[processing]`` table."""
    table = require_table(doc.get("processing", {}), "processing", src)
    for k, v in table.items():
        row = OPTIONS_BY_KEY.get(k)
        if row is None:
            raise SettingsError(f"unknown key {k!r} in [processing]", path=src, fix=suggest(k, OPTIONS_BY_KEY))
        _check_toml_value(row, v, src)
    a, b = _EXCLUSIVE_KEYS[0]
    if a in table and b in table:
        raise SettingsError(f"[processing] has both {a} and {b}", path=src, fix="give only one of them")
    for row in PROCESSING_OPTIONS:
        v = table.get(row.key)
        if row.kind is Path and v and not Path(v).expanduser().is_file():
            raise SettingsError(f"[processing] {row.key} = {v!r}: no such file", path=src,
                                fix=f"check the path of the {row.key} file")
        if row.choices and v is not None and v not in row.choices:
            raise SettingsError(f"[processing] {row.key} = {v!r}: expected {row.choices_text}", path=src)
    a, b = _EXCLUSIVE_KEYS[1]
    if a in table and b in table:
        raise SettingsError(f"[processing] has both {a} and {b}", path=src, fix="give only one of them")


def _check_toml_value(row: ProcessingOption, v, src) -> None:
    """The TOML type of one ``[processing]`` value, then its configuration range."""
    if row.kind is tuple:  # patches: "auto" or [NX, NY]
        if v != "auto" and (not isinstance(v, list) or len(v) != 2
                            or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
            raise SettingsError(f"[processing] {row.key} = {v!r}: expected two integers [NX, NY] or \"auto\"", path=src)
    else:
        check_value("[processing]", row.key, str if row.kind is Path else row.kind, v, src)
    if row.toml_range is not None and v != "auto":
        check_value_in_range(row.toml_range, "processing", row.key, v, src)


def check_option_ranges(opts) -> None:
    """Raise :class:`SettingsError` for the first processing option outside the engine's plausible
    range, naming its flag and its ``[processing]`` key.

    ``opts``: a :class:`~framewatch.daemon.config.processing_options.ProcessingOptions` (``None`` = not given).
    """
    for row in PROCESSING_OPTIONS:
        if row.core_range is None or row.kind is tuple:  # patches: below
            continue
        value = getattr(opts, row.field)
        if value is None:
            continue
        ranges.require_in_range(value, row.core_range, what=row.what,
                                fix=f"give {row.flag} (or [processing] {row.key}) in {row.core_range.text()}")
    for p in (() if isinstance(opts.patches, str) else opts.patches):
        if not ranges.PATCHES_PER_AXIS.contains(p):
            raise SettingsError(
                f"patches {list(opts.patches)} must be two counts in {ranges.PATCHES_PER_AXIS.text()}",
                fix="give --patches NX NY (or [processing] patches = [NX, NY]), e.g. 5 5; 0 0 = whole frame only",
            )


def check_processing_options(opts) -> None:
    """The merged options: the engine's ranges (:func:`check_option_ranges`), then the choices and
    the rules between options that the engine cannot see (EER grouping given twice; automatic
    gain orientation without a gain)."""
    check_option_ranges(opts)
    if opts.fourier_bin not in (1, 2, 3, 4):
        raise SettingsError(f"bin factor {opts.fourier_bin} is not 1-4", fix="use --bin 2 for super-resolution movies")
    if opts.eer_upsampling not in (1, 2):
        raise SettingsError(f"EER upsampling {opts.eer_upsampling} is not 1 (4K) or 2 (8K)")
    if opts.eer_group_frames is not None and opts.eer_fraction_dose_e_per_a2 is not None:
        raise SettingsError("EER grouping given both as raw frames per fraction and as a dose per fraction",
                            fix="give only --eer-group-frames or only --eer-fraction-dose")
    if opts.gain_orientation_auto and opts.gain is None:
        raise SettingsError("automatic gain orientation needs a gain reference", fix="give --gain FILE (or gain in [processing])")
