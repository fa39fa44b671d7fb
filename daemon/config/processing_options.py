"""Processing options shared by ``framewatch correct`` and ``framewatch watch``.

One definition of the command-line flags and of the ``[processing]`` table of the TOML
configuration, so both commands take the same options with the same names and units:

==========================  ==============================  =========================================
command line                ``[processing]`` key            meaning
==========================  ==============================  =========================================
``--pixel-size-a A``        ``pixel_size_a``                movie pixel size, Angstrom per pixel
``--dose-per-frame D``      ``dose_per_frame_e_per_a2``     electrons per square Angstrom per frame
``--dose-per-tilt D``       ``dose_per_tilt_e_per_a2``      e/A^2 for the whole movie (/ n_frames)
``--prior-dose D``          ``prior_dose_e_per_a2``         e/A^2 received before (default 0)
``--voltage-kv V``          ``voltage_kv``                  acceleration voltage (default 300)
``--gain FILE``             ``gain``                        multiplicative gain reference
``--gain-rot K``            ``gain_rot``                    rotate the gain K x 90 deg counter-clockwise
``--gain-flip none|x|y``    ``gain_flip``                   then flip it (MotionCor2's -FlipGain)
``--gain-invert``           ``gain_invert``                 then invert it (count-type gains)
``--gain-orientation M``    ``gain_orientation``            ``given`` (default) or ``auto`` (chosen from the movies)
``--defects FILE``          ``defects``                     MotionCor-style defect list (x y w h)
``--patches NX NY``         ``patches = [NX, NY]``          local motion patches (0 0 = whole frame)
``--threads N``             ``threads``                     0 = all cores
``--bin B``                 ``fourier_bin``                 Fourier-crop every frame by B (1-4; 2 = super-res.)
``--eer-fraction-dose E``   ``eer_fraction_dose_e_per_a2``  EER: target dose per fraction (default 0.3)
``--eer-group-frames N``    ``eer_group_frames``            EER: raw frames per fraction instead
``--eer-upsampling U``      ``eer_upsampling``              EER: 1 = render at 4K (default), 2 = 8K
==========================  ==============================  =========================================

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

from framewatch.core.errors import SettingsError
from framewatch.core.settings import CorrectionSettings, GainOrientation

DEFAULT_PRIOR_DOSE_E_PER_A2 = 0.0
DEFAULT_VOLTAGE_KV = 300.0

# [processing] keys -> argparse dest
_CONFIG_KEYS = {
    "pixel_size_a": "pixel_size_a",
    "dose_per_frame_e_per_a2": "dose_per_frame",
    "dose_per_tilt_e_per_a2": "dose_per_tilt",
    "prior_dose_e_per_a2": "prior_dose",
    "voltage_kv": "voltage_kv",
    "gain": "gain",
    "gain_rot": "gain_rot",
    "gain_flip": "gain_flip",
    "gain_invert": "gain_invert",
    "defects": "defects",
    "patches": "patches",
    "threads": "threads",
    "gain_orientation": "gain_orientation",
    "fourier_bin": "bin",
    "eer_fraction_dose_e_per_a2": "eer_fraction_dose",
    "eer_group_frames": "eer_group_frames",
    "eer_upsampling": "eer_upsampling",
}


def add_processing_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the processing flags to ``parser``. Every default is ``None`` ("not given"), so a
    configuration file or the mdoc can fill what the command line leaves out."""
    g = parser.add_argument_group("processing options (also the [processing] table of --config)")
    g.add_argument("--pixel-size-a", type=float, metavar="A", help="movie pixel size in Angstrom per pixel (required unless in the configuration or the frame mdoc)")
    dose = g.add_mutually_exclusive_group()
    dose.add_argument("--dose-per-frame", type=float, metavar="E", help="dose per frame in e/A^2")
    dose.add_argument("--dose-per-tilt", type=float, metavar="E", help="dose of the whole movie in e/A^2 (divided by the number of frames)")
    g.add_argument("--prior-dose", type=float, metavar="E", help="dose received before this movie, e/A^2 (default 0; for `watch`, before the first tilt)")
    g.add_argument("--voltage-kv", type=float, metavar="KV", help="acceleration voltage in kV (default 300)")
    g.add_argument("--gain", metavar="FILE", help="gain reference (multiplicative: corrected = raw x gain)")
    g.add_argument("--gain-rot", type=int, choices=(0, 1, 2, 3), metavar="K", help="rotate the gain K x 90 degrees counter-clockwise (0-3)")
    g.add_argument("--gain-flip", choices=("none", "x", "y"), help="flip the gain after rotating: none, x (left-right) or y (upside down)")
    g.add_argument("--gain-invert", action="store_true", default=None, help="invert the gain (1/gain; for count-type gain references)")
    g.add_argument("--defects", metavar="FILE", help="defect list, MotionCor style: one 'x y w h' rectangle per line")
    g.add_argument("--patches", type=int, nargs=2, metavar=("NX", "NY"), help="patches for local motion (default 0 0 = whole-frame only)")
    g.add_argument("--threads", type=int, metavar="N", help="threads (default 0 = all cores)")
    g.add_argument("--gain-orientation", choices=("given", "auto"),
                   help="'given' (default): --gain-rot/--gain-flip as given; 'auto': choose the gain's rotation/flip among "
                        "the 8 that makes the gain-corrected raw sum flattest (`correct`: this movie; `watch`: the first "
                        "<= 3 movies of the session), needs a clear margin, else stops and asks for --gain-rot/--gain-flip")
    g.add_argument("--bin", type=int, choices=(1, 2, 3, 4), metavar="B",
                   help="Fourier-crop every frame by B before alignment (2 for super-resolution movies; default 1); "
                        "outputs and shifts are then in pixels of B x --pixel-size-a")
    eer = parser.add_argument_group("EER movies (Falcon 4/4i; also the [processing] table)")
    eer.add_argument("--eer-fraction-dose", type=float, metavar="E",
                     help="target dose per fraction in e/A^2 (default 0.3; needs the dose per tilt)")
    eer.add_argument("--eer-group-frames", type=int, metavar="N", help="raw EER frames per fraction instead of a dose target")
    eer.add_argument("--eer-upsampling", type=int, choices=(1, 2), help="1 = render at 4K (default), 2 = 8K")


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
    patches: tuple[int, int] = (0, 0)
    threads: int = 0
    gain_orientation_auto: bool = False  # choose rot/flip from the movies (gain_orientation's invert is kept)
    fourier_bin: int = 1
    eer_fraction_dose_e_per_a2: float | None = None
    eer_group_frames: int | None = None
    eer_upsampling: int = 1
    sources: tuple[tuple[str, str], ...] = ()

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
        return {
            "eer_fraction_dose_e_per_a2": None if self.eer_group_frames else self.eer_fraction_dose_e_per_a2,
            "eer_group_frames": self.eer_group_frames,
            "eer_upsampling": self.eer_upsampling,
            "eer_total_dose_e_per_a2": movie_dose_e_per_a2,
        }

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
            patches=tuple(int(p) for p in self.patches),
            threads=int(self.threads),
            fourier_bin=int(self.fourier_bin),
            eer_fraction_dose_e_per_a2=self.eer_fraction_dose_e_per_a2,
            eer_group_frames=self.eer_group_frames,
            eer_upsampling=int(self.eer_upsampling),
        )

    def identity(self) -> dict:
        """Everything that changes the numbers of a corrected movie, as plain JSON values.

        Threads are left out; the gain and defect files are identified by path, size and mtime,
        so replacing the gain reference counts as a change of settings.
        """
        d = {
            "pixel_size_a": self.pixel_size_a,
            "dose_per_frame_e_per_a2": self.dose_per_frame_e_per_a2,
            "dose_per_tilt_e_per_a2": self.dose_per_tilt_e_per_a2,
            "prior_dose_e_per_a2": self.prior_dose_e_per_a2,
            "voltage_kv": self.voltage_kv,
            "gain": _file_identity(self.gain),
            "gain_orientation": dataclasses.asdict(self.gain_orientation),
            "defects": _file_identity(self.defects),
            "patches": list(self.patches),
        }
        # added with the detector formats: present only when not the default, so the hash (and the
        # output set) of a configuration without them stays what it was
        for key, value, default in (
            ("gain_orientation_mode", "auto" if self.gain_orientation_auto else "given", "given"),
            ("fourier_bin", self.fourier_bin, 1),
            ("eer_fraction_dose_e_per_a2", self.eer_fraction_dose_e_per_a2, None),
            ("eer_group_frames", self.eer_group_frames, None),
            ("eer_upsampling", self.eer_upsampling, 1),
        ):
            if value != default:
                d[key] = value
        # engine defaults (alignment parameters etc.) are part of the numbers too
        probe = CorrectionSettings(pixel_size_a=1.0, dose_per_frame_e_per_a2=1.0)
        d["engine"] = probe.numerics_hash()
        return d

    def settings_hash(self) -> str:
        """16 hex digits identifying :meth:`identity`."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]


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
    configuration (and the other way round).
    """
    table = dict((config or {}).get("processing", {}))
    unknown = sorted(set(table) - set(_CONFIG_KEYS))
    if unknown:
        raise SettingsError(
            f"unknown key(s) in [processing]: {', '.join(unknown)}",
            fix=f"use {', '.join(sorted(_CONFIG_KEYS))}",
        )
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for key, dest in _CONFIG_KEYS.items():
        if key in table:
            values[dest] = table[key]
            sources[dest] = "config"
    cli_dose = getattr(args, "dose_per_frame", None) is not None or getattr(args, "dose_per_tilt", None) is not None
    if cli_dose:
        for dest in ("dose_per_frame", "dose_per_tilt"):
            values.pop(dest, None)
            sources.pop(dest, None)
    for dest in _CONFIG_KEYS.values():
        v = getattr(args, dest, None)
        if v is not None:
            values[dest] = v
            sources[dest] = "command line"
    if values.get("dose_per_frame") is not None and values.get("dose_per_tilt") is not None:
        raise SettingsError("both a dose per frame and a dose per tilt are given", fix="give only one of them")

    def num(name, kind=float):
        v = values.get(name)
        if v is None:
            return None
        try:
            return kind(v)
        except (TypeError, ValueError):
            raise SettingsError(f"{name.replace('_', '-')} {v!r} is not a number") from None

    patches = values.get("patches") or (0, 0)
    if len(patches) != 2:
        raise SettingsError(f"patches {patches!r} must be two numbers NX NY")
    orientation = GainOrientation(
        rotate_ccw_90=int(values.get("gain_rot") or 0),
        flip=str(values.get("gain_flip") or "none"),
        invert=bool(values.get("gain_invert") or False),
    )
    names = {
        "pixel_size_a": "pixel_size_a",
        "dose_per_frame": "dose_per_frame_e_per_a2",
        "dose_per_tilt": "dose_per_tilt_e_per_a2",
        "prior_dose": "prior_dose_e_per_a2",
        "voltage_kv": "voltage_kv",
        "gain": "gain",
        "gain_rot": "gain_orientation",
        "gain_flip": "gain_orientation",
        "gain_invert": "gain_orientation",
        "defects": "defects",
        "patches": "patches",
        "threads": "threads",
        "gain_orientation": "gain_orientation",
        "bin": "fourier_bin",
        "eer_fraction_dose": "eer_fraction_dose_e_per_a2",
        "eer_group_frames": "eer_group_frames",
        "eer_upsampling": "eer_upsampling",
    }
    src = {}
    for dest, where in sources.items():
        src[names[dest]] = where
    mode = str(values.get("gain_orientation") or "given")
    if mode not in ("given", "auto"):
        raise SettingsError(f"gain orientation {mode!r} is not 'given' or 'auto'", fix="use --gain-orientation given|auto")
    fb = num("bin", int)
    group = num("eer_group_frames", int)
    ups = num("eer_upsampling", int)
    opts = ProcessingOptions(
        pixel_size_a=num("pixel_size_a"),
        dose_per_frame_e_per_a2=num("dose_per_frame"),
        dose_per_tilt_e_per_a2=num("dose_per_tilt"),
        prior_dose_e_per_a2=num("prior_dose"),
        voltage_kv=num("voltage_kv"),
        gain=None if values.get("gain") in (None, "") else Path(str(values["gain"])).expanduser(),
        gain_orientation=orientation,
        defects=None if values.get("defects") in (None, "") else Path(str(values["defects"])).expanduser(),
        patches=(int(patches[0]), int(patches[1])),
        threads=int(values.get("threads") or 0),
        gain_orientation_auto=mode == "auto",
        fourier_bin=1 if fb is None else fb,
        eer_fraction_dose_e_per_a2=num("eer_fraction_dose"),
        eer_group_frames=group,
        eer_upsampling=1 if ups is None else ups,
        sources=tuple(sorted(src.items())),
    )
    if opts.fourier_bin not in (1, 2, 3, 4):
        raise SettingsError(f"bin factor {opts.fourier_bin} is not 1-4", fix="use --bin 2 for super-resolution movies")
    if opts.eer_upsampling not in (1, 2):
        raise SettingsError(f"EER upsampling {opts.eer_upsampling} is not 1 (4K) or 2 (8K)")
    if opts.eer_group_frames is not None and opts.eer_group_frames < 1:
        raise SettingsError(f"EER group size {opts.eer_group_frames} is not a positive number of raw frames")
    if opts.eer_fraction_dose_e_per_a2 is not None and not opts.eer_fraction_dose_e_per_a2 > 0:
        raise SettingsError(f"EER dose per fraction {opts.eer_fraction_dose_e_per_a2} e/A^2 is not positive")
    if opts.eer_group_frames is not None and opts.eer_fraction_dose_e_per_a2 is not None:
        raise SettingsError("EER grouping given both as raw frames per fraction and as a dose per fraction",
                            fix="give only --eer-group-frames or only --eer-fraction-dose")
    if opts.gain_orientation_auto and opts.gain is None:
        raise SettingsError("automatic gain orientation needs a gain reference", fix="give --gain FILE (or gain in [processing])")
    for name, v in (("pixel_size_a", opts.pixel_size_a), ("voltage_kv", opts.voltage_kv)):
        if v is not None and not v > 0:
            raise SettingsError(f"{name} {v} is not positive")
    for name, v in (("dose_per_frame_e_per_a2", opts.dose_per_frame_e_per_a2), ("dose_per_tilt_e_per_a2", opts.dose_per_tilt_e_per_a2)):
        if v is not None and not v > 0:
            raise SettingsError(f"{name} {v} is not positive", fix="give a dose in e/A^2 > 0")
    if opts.prior_dose_e_per_a2 is not None and opts.prior_dose_e_per_a2 < 0:
        raise SettingsError(f"prior dose {opts.prior_dose_e_per_a2} e/A^2 is negative")
    if min(opts.patches) < 0:
        raise SettingsError(f"patches {opts.patches} must be >= 0")
    if opts.threads < 0:
        raise SettingsError(f"threads {opts.threads} is negative", fix="give --threads N >= 0 (0 = all cores)")
    return opts


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
