"""The processing options, declared once: :data:`PROCESSING_OPTIONS`, one row per option.

Each row names the option on the command line (its flag; the argparse dest is the flag without its
dashes), in the ``[processing]`` table of the TOML configuration (its key) and in
:class:`~framewatch.daemon.config.processing_options.ProcessingOptions` (its field; ``"a.b"`` is
the part ``b`` of the field ``a``), with its type, unit, help text, choices, plausible ranges and
whether it enters the settings hash. From the rows come:

- the flags of ``correct``, ``watch`` and ``batch``: :func:`add_processing_arguments`;
- the ``[processing]`` key -> row mapping: :data:`OPTIONS_BY_KEY` (and ``PROCESSING_KEYS``);
- the type, range and choice checks of the ``[processing]`` table (``processing_checks.py``);
- the range checks of the merged options with the engine's ranges (``processing_checks.py``);
- the settings hash (``ProcessingOptions.identity``).

``config.example.toml`` documents every key with its unit and default (a test keeps the two in step).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from framewatch.core import value_ranges as ranges
from framewatch.core.value_ranges import PlausibleRange

from .config_ranges import Range
from .limits_options import add_limits_arguments

__all__ = ["OPTIONS_BY_KEY", "PROCESSING_KEYS", "PROCESSING_OPTIONS", "ProcessingOption", "add_processing_arguments"]

# how a row enters the settings hash: always, only when not the default (options added after the
# first release: a configuration without them keeps its hash), or never (threads)
ALWAYS, UNLESS_DEFAULT, NEVER = "always", "unless default", "never"


@dataclass(frozen=True)
class ProcessingOption:
    """One processing option (see the module docstring).

    ``kind`` is the TOML type and the type a given value is read as: ``float``, ``int``, ``str``,
    ``bool`` (a switch), ``Path`` (a file name) or ``tuple`` (``patches``: ``"auto"`` or two counts).
    ``core_range`` is the engine's plausible range (checked on the merged options, message naming
    ``what``), ``toml_range`` the range of the configuration key (checked when the file is read);
    ``choices`` the allowed values, explained by ``choices_text`` in a configuration error.
    """

    key: str
    flag: str
    field: str
    kind: type
    help: str
    metavar: str | None = None
    unit: str = ""
    choices: tuple = ()
    choices_text: str = ""
    group: str = "processing"  # "processing", "dose" (one of the two doses) or "eer"
    what: str = ""
    core_range: PlausibleRange | None = None
    toml_range: Range | None = None
    hashed: str = ALWAYS
    hash_key: str = ""  # the name in the settings identity, when not the field's
    source: str = ""  # the name in ProcessingOptions.sources, when not the field's

    @property
    def dest(self) -> str:
        """The argparse dest of :attr:`flag` (``--pixel-size-a`` -> ``pixel_size_a``)."""
        return self.flag[2:].replace("-", "_")

    @property
    def field_name(self) -> str:
        """The ProcessingOptions field this row sets (whole or in part)."""
        return self.field.split(".")[0]

    @property
    def source_name(self) -> str:
        return self.source or self.field_name


_E, _E_UNIT = "E", "e/A^2"
_DOSE_TEXT = "e/Å²"

PROCESSING_OPTIONS: tuple[ProcessingOption, ...] = (
    ProcessingOption(
        "pixel_size_a", "--pixel-size-a", "pixel_size_a", float, metavar="A", unit="A",
        help="movie pixel size in Angstrom per pixel (required unless in the configuration or the frame mdoc)",
        what="pixel size", core_range=ranges.PIXEL_SIZE_A, toml_range=Range(0.1, 50, "Å")),
    ProcessingOption(
        "dose_per_frame_e_per_a2", "--dose-per-frame", "dose_per_frame_e_per_a2", float, metavar=_E, unit=_E_UNIT,
        help="dose per frame in e/A^2", group="dose",
        what="dose per frame", core_range=ranges.DOSE_PER_FRAME_E_PER_A2, toml_range=Range(0, 100, _DOSE_TEXT, lo_open=True)),
    ProcessingOption(
        "dose_per_tilt_e_per_a2", "--dose-per-tilt", "dose_per_tilt_e_per_a2", float, metavar=_E, unit=_E_UNIT,
        help="dose of the whole movie in e/A^2 (divided by the number of frames)", group="dose",
        what="dose per tilt", core_range=ranges.DOSE_PER_TILT_E_PER_A2, toml_range=Range(0, 1000, _DOSE_TEXT, lo_open=True)),
    ProcessingOption(
        "prior_dose_e_per_a2", "--prior-dose", "prior_dose_e_per_a2", float, metavar=_E, unit=_E_UNIT,
        help="dose received before this movie, e/A^2 (default 0; for `watch`, before the first tilt)",
        what="prior dose", core_range=ranges.PRIOR_DOSE_E_PER_A2, toml_range=Range(0, 10_000, _DOSE_TEXT)),
    ProcessingOption(
        "voltage_kv", "--voltage-kv", "voltage_kv", float, metavar="KV", unit="kV",
        help="acceleration voltage in kV (default 300)",
        what="voltage", core_range=ranges.VOLTAGE_KV, toml_range=Range(60, 400, "kV")),
    ProcessingOption(
        "gain", "--gain", "gain", Path, metavar="FILE",
        help="gain reference (multiplicative: corrected = raw x gain)"),
    ProcessingOption(
        "gain_rot", "--gain-rot", "gain_orientation.rotate_ccw_90", int, metavar="K", unit="quarter turns",
        help="rotate the gain K x 90 degrees counter-clockwise (0-3)",
        choices=(0, 1, 2, 3), choices_text="0, 1, 2 or 3 quarter turns"),
    ProcessingOption(
        "gain_flip", "--gain-flip", "gain_orientation.flip", str,
        help="flip the gain after rotating: none, x (left-right) or y (upside down)",
        choices=("none", "x", "y"), choices_text='"none", "x" or "y"'),
    ProcessingOption(
        "gain_invert", "--gain-invert", "gain_orientation.invert", bool,
        help="invert the gain (1/gain; for count-type gain references)"),
    ProcessingOption(
        "defects", "--defects", "defects", Path, metavar="FILE",
        help="defect list, MotionCor style: one 'x y w h' rectangle per line"),
    ProcessingOption(
        "patches", "--patches", "patches", tuple, metavar="auto|NX NY", unit="patches per axis",
        help="local motion: 'auto' (default: the grid from the frame size and the signal), NX NY (that grid) or "
             "0 0 (whole-frame only); applied only where held-out frames support it",
        core_range=ranges.PATCHES_PER_AXIS, toml_range=Range(0, 64, "patches along each axis (0 = whole frame only)")),
    ProcessingOption(
        "local_force", "--local-force", "local_force", bool, hashed=UNLESS_DEFAULT,
        help="apply the fitted local motion even when the evidence rule declines it (recorded as 'forced')"),
    ProcessingOption(
        "threads", "--threads", "threads", int, metavar="N", hashed=NEVER,
        help="threads (default 0 = all cores)",
        what="threads", core_range=ranges.THREADS, toml_range=Range(0, 1024, "threads (0 = all cores)")),
    ProcessingOption(
        "gain_orientation", "--gain-orientation", "gain_orientation_auto", str, source="gain_orientation",
        hashed=UNLESS_DEFAULT, hash_key="gain_orientation_mode",
        help="'given' (default): --gain-rot/--gain-flip as given; 'auto': choose the gain's rotation/flip among "
             "the 8 that makes the gain-corrected raw sum flattest (`correct`: this movie; `watch`: the first "
             "<= 3 movies of the session), needs a clear margin, else stops and asks for --gain-rot/--gain-flip",
        choices=("given", "auto"), choices_text='"given" or "auto"'),
    ProcessingOption(
        "fourier_bin", "--bin", "fourier_bin", int, metavar="B", hashed=UNLESS_DEFAULT,
        help="Fourier-crop every frame by B before alignment (2 for super-resolution movies; default 1); "
             "outputs and shifts are then in pixels of B x --pixel-size-a",
        choices=(1, 2, 3, 4), choices_text="1, 2, 3 or 4"),
    ProcessingOption(
        "eer_fraction_dose_e_per_a2", "--eer-fraction-dose", "eer_fraction_dose_e_per_a2", float, metavar=_E,
        unit=_E_UNIT, group="eer", hashed=UNLESS_DEFAULT,
        help="target dose per fraction in e/A^2 (default 0.3; needs the dose per tilt)",
        what="EER dose per fraction", core_range=ranges.EER_FRACTION_DOSE_E_PER_A2,
        toml_range=Range(0, 100, _DOSE_TEXT, lo_open=True)),
    ProcessingOption(
        "eer_group_frames", "--eer-group-frames", "eer_group_frames", int, metavar="N", unit="raw frames", group="eer",
        hashed=UNLESS_DEFAULT, help="raw EER frames per fraction instead of a dose target",
        what="EER raw frames per fraction", core_range=ranges.EER_GROUP_FRAMES, toml_range=Range(1, 10_000, "raw frames")),
    ProcessingOption(
        "eer_upsampling", "--eer-upsampling", "eer_upsampling", int, group="eer", hashed=UNLESS_DEFAULT,
        help="1 = render at 4K (default), 2 = 8K",
        choices=(1, 2), choices_text="1 (4K) or 2 (8K)"),
)

OPTIONS_BY_KEY: dict[str, ProcessingOption] = {row.key: row for row in PROCESSING_OPTIONS}
# [processing] key -> the TOML type it takes (configuration.py; also its documentation test)
PROCESSING_KEYS: dict[str, tuple[type, ...]] = {row.key: (row.kind,) for row in PROCESSING_OPTIONS}

_GROUP_TITLES = {
    "processing": "processing options (also the [processing] table of --config)",
    "eer": "EER movies (Falcon 4/4i; also the [processing] table)",
}


def add_processing_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the processing flags to ``parser``. Every default is ``None`` ("not given"), so a
    configuration file or the mdoc can fill what the command line leaves out. The two doses are
    mutually exclusive."""
    groups = {name: parser.add_argument_group(title) for name, title in _GROUP_TITLES.items()}
    for row in PROCESSING_OPTIONS:
        if row.group == "dose" and "dose" not in groups:
            groups["dose"] = groups["processing"].add_mutually_exclusive_group()
        groups[row.group].add_argument(row.flag, **_argparse_options(row))
    add_limits_arguments(parser)


def _argparse_options(row: ProcessingOption) -> dict:
    """The keyword arguments of ``add_argument`` for ``row``."""
    options: dict = {"help": row.help}
    if row.kind is bool:
        options.update(action="store_true", default=None)
    elif row.kind is tuple:
        options["nargs"] = "+"
    elif row.kind in (int, float):
        options["type"] = row.kind
    if row.choices:
        options["choices"] = row.choices
    if row.metavar is not None:
        options["metavar"] = row.metavar
    return options
