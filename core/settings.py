"""Processing settings of one movie correction (a frozen dataclass at the engine boundary)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal, Protocol

from . import value_ranges as ranges
from .decode_limits import DecodeLimits
from .errors import SettingsError

GainFlip = Literal["none", "x", "y"]
_PATCHES_FIX = "use --patches auto, 0 0 (whole-frame only) or NX NY"


@dataclass(frozen=True)
class GainOrientation:
    """How a stored gain reference is turned to match the movie, as MotionCor2 defines it.

    ``rotate_ccw_90`` quarter turns counter-clockwise (``-RotGain``), then a flip (``-FlipGain``:
    ``"y"`` = upside down, ``"x"`` = left-right), then optionally ``invert`` (``-InvGain``: gain ->
    1/gain, zeros stay zero). Orientation applies to the gain image as displayed with y up (row 0 at
    the bottom), the way IMOD shows an MRC file.
    """

    rotate_ccw_90: int = 0
    flip: GainFlip = "none"
    invert: bool = False

    def __post_init__(self) -> None:
        if self.rotate_ccw_90 not in (0, 1, 2, 3):
            raise SettingsError(
                f"gain rotation {self.rotate_ccw_90} is not 0-3 quarter turns",
                fix="use --gain-rot 0, 1, 2 or 3 (x 90 degrees counter-clockwise)",
            )
        if self.flip not in ("none", "x", "y"):
            raise SettingsError(f"gain flip {self.flip!r} is not none, x or y", fix="use --gain-flip none|x|y")


@dataclass(frozen=True)
class CorrectionSettings:
    """Everything that changes the numbers of a corrected movie.

    Doses in electrons per square Angstrom; ``prior_dose_e_per_a2`` is the dose the specimen area
    received before this movie (earlier tilts). ``align_pixel_size_a`` is the pixel size of the
    Fourier-cropped copy used for alignment (``None``: crop to at most ``align_max_size_px`` on the
    long side). ``bfactor_px2`` is applied to the cross-power as ``exp(-bfactor_px2 * s**2 / 4)``
    with ``s`` in cycles per *alignment* pixel, so it is a B-factor in alignment pixels squared;
    ``patch_bfactor_px2`` is the same for patch alignment. ``fourier_bin`` (``--bin``) Fourier-crops
    each frame by that factor first (super-resolution movies to the physical pixel): every result is
    then in output pixels of ``pixel_size_a * fourier_bin`` (``pixel_size_a`` stays the movie's).
    ``patches``: ``"auto"`` (default: the grid from the frame size and the signal), ``(nx, ny)``
    (that grid), ``(0, 0)`` (whole-frame only); local motion is applied only when held-out frames
    support it, unless ``local_force``.

    Every number must be finite and plausible (:mod:`framewatch.core.value_ranges` lists the
    ranges); a value outside raises :class:`SettingsError` naming it. ``decode_limits`` bounds what
    a movie file may make the readers allocate (:mod:`framewatch.core.decode_limits`); like
    ``threads`` it never changes the numbers and is left out of :meth:`numerics_hash`.
    """

    @property
    def local_requested(self) -> bool:
        """Patches are measured: ``"auto"`` or at least 2 x 2."""
        return self.patches == "auto" or min(self.patches) >= 2

    pixel_size_a: float
    dose_per_frame_e_per_a2: float
    prior_dose_e_per_a2: float = 0.0
    voltage_kv: float = 300.0
    gain_orientation: GainOrientation = field(default_factory=GainOrientation)
    # whole-frame alignment
    align_pixel_size_a: float | None = None
    align_max_size_px: int = 1024
    bfactor_px2: float = 60.0
    max_iterations: int = 10
    tolerance_px: float = 0.01
    max_shift_a: float = 300.0
    # hot-pixel detection on the gain-corrected movie sum
    hot_pixel_sigma: float = 8.0
    # local motion: "auto" (grid from the frame size and the signal), (nx, ny) patches, (0, 0) = whole-frame
    # only; the evidence rule decides per movie unless local_force
    patches: tuple[int, int] | str = "auto"
    local_force: bool = False
    patch_overlap: float = 0.5
    patch_bfactor_px2: float = 40.0
    # super-resolution: Fourier-crop every frame by this factor before anything else
    fourier_bin: int = 1
    # EER: raw frames grouped into fractions by a target dose or a fixed count; 1 = 4K, 2 = 8K
    eer_fraction_dose_e_per_a2: float | None = None
    eer_group_frames: int | None = None
    eer_upsampling: int = 1
    # outputs
    unweighted_sum: bool = False
    threads: int = 0  # 0 = all cores
    # ceilings checked before a movie is decoded (not part of the numbers)
    decode_limits: DecodeLimits = field(default_factory=DecodeLimits)

    def __post_init__(self) -> None:
        ranges.require_in_range(self.pixel_size_a, ranges.PIXEL_SIZE_A, what="pixel size",
                                fix="give --pixel-size-a in Angstrom per pixel (check the mdoc's PixelSpacing)")
        ranges.require_in_range(
            self.dose_per_frame_e_per_a2, ranges.DOSE_PER_FRAME_E_PER_A2, what="dose per frame",
            fix="give --dose-per-frame or --dose-per-tilt in electrons per square Angstrom "
            "(check the mdoc's ExposureDose / FrameDosesAndNumber)",
        )
        ranges.require_in_range(self.prior_dose_e_per_a2, ranges.PRIOR_DOSE_E_PER_A2, what="prior dose",
                                fix="give --prior-dose >= 0 (check the mdoc's PriorRecordDose)")
        ranges.require_in_range(self.voltage_kv, ranges.VOLTAGE_KV, what="voltage", fix="give --voltage-kv, e.g. 300")
        for name, low in (("bfactor_px2", -1.0), ("tolerance_px", 0.0), ("max_shift_a", 0.0), ("hot_pixel_sigma", 0.0),
                          ("patch_overlap", -1.0), ("patch_bfactor_px2", -1.0)):
            ranges.require_finite(getattr(self, name), what=name, low=low)
        if self.align_pixel_size_a is not None:
            ranges.require_in_range(self.align_pixel_size_a, ranges.PIXEL_SIZE_A, what="alignment pixel size")
        if not isinstance(self.decode_limits, DecodeLimits):
            raise SettingsError(f"decode_limits {self.decode_limits!r} is not a DecodeLimits")
        if self.align_pixel_size_a is not None and self.align_pixel_size_a < self.pixel_size_a:
            raise SettingsError(
                f"alignment pixel size {self.align_pixel_size_a} A is finer than the movie's {self.pixel_size_a} A",
                fix="choose an alignment pixel size >= the movie pixel size",
            )
        if self.max_iterations < 1:
            raise SettingsError("max_iterations must be at least 1")
        if not (0.0 <= self.patch_overlap < 1.0):
            raise SettingsError(f"patch overlap {self.patch_overlap} is not in [0, 1)")
        if isinstance(self.patches, str):
            if self.patches != "auto":
                raise SettingsError(f"patches {self.patches!r} is not 'auto' or two counts", fix=_PATCHES_FIX)
        else:
            if (len(self.patches) != 2 or not all(ranges.PATCHES_PER_AXIS.contains(p) for p in self.patches)
                    or any(int(p) != p for p in self.patches)):
                raise SettingsError(f"patches {self.patches} must be two counts NX NY in {ranges.PATCHES_PER_AXIS.text()}",
                                    fix=_PATCHES_FIX)
            object.__setattr__(self, "patches", (int(self.patches[0]), int(self.patches[1])))
            if 1 in self.patches and max(self.patches) > 1:
                raise SettingsError(f"patches {self.patches}: one patch along an axis measures no deformation there",
                                    fix="use at least 2 patches per axis, --patches 0 0 (off) or --patches auto")
        if self.eer_fraction_dose_e_per_a2 is not None:
            ranges.require_in_range(self.eer_fraction_dose_e_per_a2, ranges.EER_FRACTION_DOSE_E_PER_A2,
                                    what="EER dose per fraction", fix="give --eer-fraction-dose, e.g. 0.3")
        if self.eer_group_frames is not None:
            ranges.require_in_range(self.eer_group_frames, ranges.EER_GROUP_FRAMES, what="EER raw frames per fraction",
                                    fix="give --eer-group-frames N >= 1")
        if self.fourier_bin not in (1, 2, 3, 4):
            raise SettingsError(f"bin factor {self.fourier_bin} is not 1-4", fix="use --bin 2 for super-resolution movies")
        if self.eer_upsampling not in (1, 2):
            raise SettingsError(f"EER upsampling {self.eer_upsampling} is not 1 (4K) or 2 (8K)")
        ranges.require_in_range(self.threads, ranges.THREADS, what="threads", fix="give --threads N >= 0 (0 = all cores)")

    def with_dose(self, *, dose_per_frame_e_per_a2: float, prior_dose_e_per_a2: float) -> "CorrectionSettings":
        return dataclasses.replace(
            self, dose_per_frame_e_per_a2=dose_per_frame_e_per_a2, prior_dose_e_per_a2=prior_dose_e_per_a2
        )

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patches"] = self.patches if isinstance(self.patches, str) else list(self.patches)
        return d

    def numerics_hash(self) -> str:
        """A short hash of the settings that change the output, except per-movie dose values and threads."""
        d = self.as_dict()
        for k in ("dose_per_frame_e_per_a2", "prior_dose_e_per_a2", "threads", "decode_limits"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class MovieReadingChoices(Protocol):
    """What decides how a movie file is read: :class:`CorrectionSettings`, or the daemon's options
    before a movie's settings are made (EER grouping and rendering, decode limits)."""

    eer_fraction_dose_e_per_a2: float | None
    eer_group_frames: int | None
    eer_upsampling: int
    decode_limits: DecodeLimits


def movie_reading_options(choices: MovieReadingChoices, movie_dose_e_per_a2: float | None = None) -> dict:
    """Keyword options of :func:`~framewatch.core.movie_io.open_movie` (they matter only for EER).

    ``movie_dose_e_per_a2`` is the dose of the whole movie in e/A^2 (it sets the dose per raw EER
    frame); a group size given in raw frames wins over the dose per fraction.
    """
    return {
        "eer_fraction_dose_e_per_a2": None if choices.eer_group_frames else choices.eer_fraction_dose_e_per_a2,
        "eer_group_frames": choices.eer_group_frames,
        "eer_upsampling": choices.eer_upsampling,
        "eer_total_dose_e_per_a2": movie_dose_e_per_a2,
        "limits": choices.decode_limits,
    }
