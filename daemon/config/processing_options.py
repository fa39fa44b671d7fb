"""Processing options shared by ``framewatch correct``, ``watch`` and ``batch``.

Every option is declared once, in :data:`~.processing_table.PROCESSING_OPTIONS` (flag, ``[processing]``
key, field, type, unit, help, ranges); ``framewatch correct --help`` lists the flags and
``config.example.toml`` the keys. This module merges them into :class:`ProcessingOptions`:

A value given on the command line wins over the configuration file, which wins over what the
acquisition metadata (mdoc) says, which wins over the defaults. :class:`ProcessingOptions` keeps
*which* of these gave each value so the daemon can write it to the tilt table.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from framewatch.core.decode_limits import DecodeLimits
from framewatch.core.errors import SettingsError
from framewatch.core.settings import CorrectionSettings, GainOrientation, movie_reading_options

from .limits_options import decode_limits_from
from .processing_checks import check_processing_options
from .processing_table import NEVER, PROCESSING_OPTIONS, UNLESS_DEFAULT, ProcessingOption, add_processing_arguments

__all__ = ["DEFAULT_PRIOR_DOSE_E_PER_A2", "DEFAULT_VOLTAGE_KV", "ProcessingOptions", "add_processing_arguments",
           "defects_path_from_args", "dose_per_frame_for", "gain_path_from_args", "parse_patches",
           "processing_options_from_args", "settings_from_args"]

DEFAULT_PRIOR_DOSE_E_PER_A2 = 0.0
DEFAULT_VOLTAGE_KV = 300.0


@dataclass(frozen=True)
class ProcessingOptions:
    """The processing options after merging command line and configuration (None = not given).

    ``sources`` maps each given field to ``"command line"`` or ``"config"``.
    """

    pixel_size_a: float | None = None
    dose_per_frame_e_per_a2: float | None = None
    dose_per_tilt_e_per_a2: float | None = None
    prior_dose_e_per_a2: float | None = None
    voltage_kv: float | None = None
    gain: Path | None = None
    gain_orientation: GainOrientation = dataclasses.field(default_factory=GainOrientation)
    defects: Path | None = None
    patches: tuple[int, int] | str = "auto"
    local_force: bool = False
    threads: int = 0
    gain_orientation_auto: bool = False  # choose rot/flip from the movies (gain_orientation's invert is kept)
    fourier_bin: int = 1
    eer_fraction_dose_e_per_a2: float | None = None
    eer_group_frames: int | None = None
    eer_upsampling: int = 1
    sources: tuple[tuple[str, str], ...] = ()
    decode_limits: DecodeLimits = dataclasses.field(default_factory=DecodeLimits)  # [limits]; not in the hash

    def source_of(self, name: str) -> str | None:
        return dict(self.sources).get(name)

    # -- doses --------------------------------------------------------------------------------
    def dose_per_frame_for(self, n_frames: int) -> float | None:
        """Explicit dose per frame for a movie of ``n_frames``, or None when none was given."""
        if self.dose_per_frame_e_per_a2 is not None:
            return float(self.dose_per_frame_e_per_a2)
        if self.dose_per_tilt_e_per_a2 is not None:
            if n_frames < 1:
                raise SettingsError(f"cannot divide the dose per tilt over {n_frames} frames")
            return float(self.dose_per_tilt_e_per_a2) / n_frames
        return None

    def dose_per_tilt_for(self, n_frames: int) -> float | None:
        """Explicit dose of a whole movie of ``n_frames``, or None."""
        if self.dose_per_tilt_e_per_a2 is not None:
            return float(self.dose_per_tilt_e_per_a2)
        if self.dose_per_frame_e_per_a2 is not None:
            return float(self.dose_per_frame_e_per_a2) * n_frames
        return None

    def reading_options(self, movie_dose_e_per_a2: float | None = None) -> dict:
        """Keyword options of ``open_movie`` (they matter only for EER movies); ``movie_dose_e_per_a2``
        is the dose of the whole movie (it sets the dose per raw EER frame)."""
        return movie_reading_options(self, movie_dose_e_per_a2)

    @property
    def gain_orientation_mode(self) -> str:
        """``"auto"`` (chosen from the movies) or ``"given"`` (``--gain-orientation``)."""
        return "auto" if self.gain_orientation_auto else "given"

    # -- engine settings ------------------------------------------------------------------------
    def settings(
        self,
        *,
        n_frames: int | None = None,
        pixel_size_a: float | None = None,
        dose_per_frame_e_per_a2: float | None = None,
        prior_dose_e_per_a2: float | None = None,
        voltage_kv: float | None = None,
    ) -> CorrectionSettings:
        """CorrectionSettings for one movie.

        Explicit options win; the keyword arguments are the fall-backs (e.g. from an mdoc); then
        defaults. ``n_frames`` is needed only when the dose was given per tilt.
        """
        px = self.pixel_size_a if self.pixel_size_a is not None else pixel_size_a
        if px is None:
            raise SettingsError("no pixel size", fix="give --pixel-size-a (Angstrom per pixel) or pixel_size_a in [processing]")
        dpf = None
        if self.dose_per_frame_e_per_a2 is not None or self.dose_per_tilt_e_per_a2 is not None:
            if self.dose_per_tilt_e_per_a2 is not None and n_frames is None:
                raise SettingsError("the dose per tilt needs the number of frames of the movie")
            dpf = self.dose_per_frame_for(n_frames or 0)
        if dpf is None:
            dpf = dose_per_frame_e_per_a2
        if dpf is None:
            raise SettingsError("no dose", fix="give --dose-per-frame or --dose-per-tilt (e/A^2)")
        prior = self.prior_dose_e_per_a2
        if prior_dose_e_per_a2 is not None:
            prior = prior_dose_e_per_a2
        if prior is None:
            prior = DEFAULT_PRIOR_DOSE_E_PER_A2
        kv = self.voltage_kv if self.voltage_kv is not None else voltage_kv
        if kv is None:
            kv = DEFAULT_VOLTAGE_KV
        return CorrectionSettings(
            pixel_size_a=float(px),
            dose_per_frame_e_per_a2=float(dpf),
            prior_dose_e_per_a2=float(prior),
            voltage_kv=float(kv),
            gain_orientation=self.gain_orientation,
            patches=self.patches if isinstance(self.patches, str) else tuple(int(p) for p in self.patches),
            local_force=bool(self.local_force),
            threads=int(self.threads),
            fourier_bin=int(self.fourier_bin),
            eer_fraction_dose_e_per_a2=self.eer_fraction_dose_e_per_a2,
            eer_group_frames=self.eer_group_frames,
            eer_upsampling=int(self.eer_upsampling),
            decode_limits=self.decode_limits,
        )

    def identity(self) -> dict:
        """Everything that changes the numbers of a corrected movie, as plain JSON values.

        One entry per row of the option table (``hashed``): threads are left out; options added
        with the detector formats are present only when not the default, so the hash (and the
        output set) of a configuration without them stays what it was. The gain and defect files
        are identified by path, size and mtime, so replacing the gain reference counts as a change
        of settings. The engine defaults (alignment parameters etc.) are part of the numbers too.
        """
        d = {}
        for row in PROCESSING_OPTIONS:
            if row.hashed == NEVER:
                continue
            name = row.hash_key or row.field_name
            value = _identity_value(row, getattr(self, name))
            if row.hashed == UNLESS_DEFAULT and value == _identity_value(row, getattr(_DEFAULT_OPTIONS, name)):
                continue
            d[name] = value
        probe = CorrectionSettings(pixel_size_a=1.0, dose_per_frame_e_per_a2=1.0)
        d["engine"] = probe.numerics_hash()
        return d

    def settings_hash(self) -> str:
        """16 hex digits identifying :meth:`identity`."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]


_DEFAULT_OPTIONS = ProcessingOptions()


def _identity_value(row: ProcessingOption, value):
    """``value`` of ``row``'s field as a plain JSON value of the settings identity."""
    if row.kind is Path:
        return _file_identity(value)
    if isinstance(value, GainOrientation):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _file_identity(path: Path | None):
    if path is None:
        return None
    try:
        st = os.stat(path)
        return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(path), None, None]


def processing_options_from_args(args: argparse.Namespace, config: dict | None = None) -> ProcessingOptions:
    """Merge the parsed flags with the ``[processing]`` table of a configuration (dict from TOML).

    A flag given on the command line wins over the same key in the configuration. Giving
    ``--dose-per-frame`` on the command line also overrides a ``dose_per_tilt_e_per_a2`` in the
    configuration (and the other way round). What neither gives keeps its default.
    """
    values, sources = _given_values(args, _processing_table(config))
    opts = ProcessingOptions(
        **_field_values(values),
        sources=tuple(sorted((row.source_name, where) for row, where in sources.items())),
        decode_limits=decode_limits_from(args, config),
    )
    check_processing_options(opts)
    return opts


def _processing_table(config: dict | None) -> dict:
    """The ``[processing]`` table of ``config`` (a TOML document); unknown keys are refused."""
    table = dict((config or {}).get("processing", {}))
    keys = [row.key for row in PROCESSING_OPTIONS]
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise SettingsError(f"unknown key(s) in [processing]: {', '.join(unknown)}", fix=f"use {', '.join(sorted(keys))}")
    return table


def _given_values(args: argparse.Namespace, table: dict) -> tuple[dict, dict]:
    """(row -> value, row -> ``"config"`` or ``"command line"``) of the options given: the
    configuration's, then the command line's over them. A dose on the command line replaces both
    doses of the configuration; a dose per frame and a dose per tilt together are refused."""
    values: dict[ProcessingOption, object] = {}
    sources: dict[ProcessingOption, str] = {}
    cli_dose = any(getattr(args, row.dest, None) is not None for row in PROCESSING_OPTIONS if row.group == "dose")
    for row in PROCESSING_OPTIONS:
        if row.key in table and not (cli_dose and row.group == "dose"):
            values[row], sources[row] = table[row.key], "config"
        v = getattr(args, row.dest, None)
        if v is not None:
            values[row], sources[row] = v, "command line"
    if sum(values.get(row) is not None for row in PROCESSING_OPTIONS if row.group == "dose") > 1:
        raise SettingsError("both a dose per frame and a dose per tilt are given", fix="give only one of them")
    return values, sources


def _field_values(values: dict) -> dict:
    """Keyword arguments of :class:`ProcessingOptions` from the given values (``row -> value``):
    each read as its row's kind; the parts of the gain orientation joined; what is not given
    left out (its default)."""
    fields: dict[str, object] = {}
    orientation: dict[str, object] = {}
    for row, value in values.items():
        v = _read(row, value)
        if v is None:
            continue
        if "." in row.field:
            orientation[row.field.split(".", 1)[1]] = v
        else:
            fields[row.field] = _gain_orientation_auto(v) if row.field == "gain_orientation_auto" else v
    fields["gain_orientation"] = GainOrientation(**orientation)
    return fields


def _read(row: ProcessingOption, value):
    """A given value as ``row``'s kind; ``None`` (and ``""`` for a name) is "not given"."""
    if value is None:
        return None
    if row.kind is tuple:
        return parse_patches(value)
    if row.kind in (Path, str):
        if value == "":
            return None
        return Path(str(value)).expanduser() if row.kind is Path else str(value)
    if row.kind is bool:
        return bool(value)
    try:
        return row.kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{row.dest.replace('_', '-')} {value!r} is not a number") from None


def _gain_orientation_auto(mode: str) -> bool:
    """``--gain-orientation`` / ``gain_orientation``: True for ``"auto"``, False for ``"given"``."""
    if mode not in ("given", "auto"):
        raise SettingsError(f"gain orientation {mode!r} is not 'given' or 'auto'", fix="use --gain-orientation given|auto")
    return mode == "auto"


def parse_patches(value) -> tuple[int, int] | str:
    """``--patches`` / ``patches``: ``None`` or ``"auto"`` (also ``["auto"]``) -> ``"auto"``; two counts
    -> ``(nx, ny)``."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        value = [value]
    items = list(value)
    if len(items) == 1 and str(items[0]).lower() == "auto":
        return "auto"
    try:
        if len(items) != 2:
            raise ValueError
        return int(items[0]), int(items[1])
    except (TypeError, ValueError):
        raise SettingsError(f"patches {' '.join(str(v) for v in items)!r} is not 'auto' or two counts NX NY",
                            fix="use --patches auto, --patches 0 0 (whole-frame only) or --patches NX NY") from None


def dose_per_frame_for(args: argparse.Namespace, n_frames: int, config: dict | None = None) -> float:
    """The dose per frame (e/A^2) the flags give for a movie of ``n_frames``."""
    v = processing_options_from_args(args, config).dose_per_frame_for(n_frames)
    if v is None:
        raise SettingsError("no dose", fix="give --dose-per-frame or --dose-per-tilt (e/A^2)")
    return v


def settings_from_args(args: argparse.Namespace, n_frames: int | None = None, config: dict | None = None) -> CorrectionSettings:
    """CorrectionSettings from the flags (and configuration); ``n_frames`` is needed for --dose-per-tilt."""
    return processing_options_from_args(args, config).settings(n_frames=n_frames)


def gain_path_from_args(args: argparse.Namespace, config: dict | None = None) -> Path | None:
    return processing_options_from_args(args, config).gain


def defects_path_from_args(args: argparse.Namespace, config: dict | None = None) -> Path | None:
    return processing_options_from_args(args, config).defects
