"""What to simulate (:class:`SimulationSpec`) and what comes out (:class:`SimulatedMovie`).

The model itself is described in :mod:`framewatch.core.simulate`; this module holds the validated
specification, the result record and the constants both need.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import SettingsError

__all__ = ["SimulationSpec", "SimulatedMovie", "SHIFT_CONVENTION", "TRAJECTORY_KINDS", "LOCAL_TAU_FRAMES"]

SHIFT_CONVENTION = (
    "shifts_px[t] = (sx, sy): a feature at (x, y) in frame 0 appears at (x + sx, y + sy) in frame t; "
    "frame 0 is (0, 0); x = column (fast axis), y = row; unbinned movie pixels"
)
LOCAL_TAU_FRAMES = 2.0
TRAJECTORY_KINDS = ("drift_jump", "subpixel", "none", "smooth", "jerky", "fast_early")
DTYPE_MAX_COUNT = {"uint8": 255.0, "uint16": 65535.0, "float32": math.inf}  # counts above are clipped


@dataclass(frozen=True, kw_only=True)
class SimulationSpec:
    """What to simulate. Sizes in pixels, doses in electrons per square Angstrom.

    ``trajectory``: ``"drift_jump"`` (an early jump of ``jump_px`` over frames 0-2 in a random
    direction, a linear drift of ``drift_px_per_frame`` at 60-120 degrees from it, 0.05 px jitter),
    ``"subpixel"`` (smooth, extent < 0.9 px, non-integer), ``"smooth"`` (turning drift),
    ``"jerky"`` (drift plus random kicks of ``jerk_rms_px`` per axis and frame), ``"fast_early"``
    (beam-induced: ``jump_px`` approached with a 1-frame time constant, then slow drift), ``"none"``,
    or an explicit ``(n_frames, 2)`` sequence of (x, y) shifts in pixels with row 0 = (0, 0).
    Local motion: ``local_amplitude_px`` (smooth waves, max displacement), ``local_bumps`` Gaussian
    bumps of ``local_bump_amplitude_px`` and width ``local_bump_sigma_px`` (None: shorter side / 16),
    time profile constant ``local_tau_frames``. ``blob_mass_exponent``: spectral shape (0 = default;
    larger = less high-frequency power, see the module docstring).
    ``blob_density_per_kpx2``: blobs per 1000 square pixels. ``n_large_features``: large smooth
    blobs. ``dtype``: ``"uint8"`` (counts above 255 are clipped and flagged), ``"uint16"`` or
    ``"float32"``. ``radiation_damage``: fade each frame's specimen detail with the dose it has
    received (Grant & Grigorieff's filter at mid-frame dose, prior included); the ideal image stays
    undamaged, so dose weighting has something to recover. ``featureless_box_px``: ``(x0, y0, width,
    height)`` in frame-0 pixels where the specimen has no features (no blob centred inside).
    """

    ny: int = 1024
    nx: int = 1024
    n_frames: int = 10
    pixel_size_a: float = 1.5
    dose_per_frame_e_per_a2: float = 0.3
    prior_dose_e_per_a2: float = 0.0
    trajectory: str | tuple = "drift_jump"
    jump_px: float = 2.5
    drift_px_per_frame: float = 0.4
    local_amplitude_px: float = 0.0
    local_bumps: int = 0
    local_bump_amplitude_px: float = 2.0
    local_bump_sigma_px: float | None = None
    local_tau_frames: float = LOCAL_TAU_FRAMES
    jerk_rms_px: float = 0.4
    contrast_rms: float = 0.15
    blob_density_per_kpx2: float = 60.0
    blob_mass_exponent: float = 0.0
    n_large_features: int = 3
    gain_rms: float = 0.05
    gain_columns_rms: float = 0.0
    gain_reference_error_rms: float = 0.0
    n_hot_pixels: int = 0
    hot_counts_per_frame: float = 5.0
    dead_column: int | None = None
    dtype: str = "uint8"
    radiation_damage: bool = False
    featureless_box_px: tuple | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ny < 8 or self.nx < 8:
            raise SettingsError(f"movie size {self.ny} x {self.nx} px is too small", fix="use at least 8 x 8 pixels")
        if self.n_frames < 1:
            raise SettingsError(f"{self.n_frames} frames", fix="simulate at least one frame")
        if not self.pixel_size_a > 0:
            raise SettingsError(f"pixel size {self.pixel_size_a} A is not positive", fix="give Angstrom per pixel > 0")
        if not self.dose_per_frame_e_per_a2 > 0:
            raise SettingsError(f"dose per frame {self.dose_per_frame_e_per_a2} e/A^2 is not positive")
        if self.prior_dose_e_per_a2 < 0:
            raise SettingsError(f"prior dose {self.prior_dose_e_per_a2} e/A^2 is negative")
        if not 0.0 <= self.contrast_rms < 0.6:
            raise SettingsError(f"contrast_rms {self.contrast_rms} is outside [0, 0.6)")
        if not self.blob_density_per_kpx2 > 0:
            raise SettingsError(f"blob density {self.blob_density_per_kpx2} per 1000 px^2 is not positive")
        for name in ("jump_px", "drift_px_per_frame", "local_amplitude_px", "local_bump_amplitude_px", "jerk_rms_px",
                     "gain_rms", "gain_columns_rms", "gain_reference_error_rms", "hot_counts_per_frame"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise SettingsError(f"{name} = {value} must be a finite number >= 0")
        if self.n_hot_pixels < 0 or self.n_hot_pixels > self.ny * (self.nx - 1):
            raise SettingsError(f"{self.n_hot_pixels} hot pixels do not fit a {self.ny} x {self.nx} frame")
        if self.local_bumps < 0:
            raise SettingsError(f"local_bumps {self.local_bumps} is negative", fix="give a number of bumps >= 0")
        sigma = self.local_bump_sigma_px
        if sigma is not None and not (sigma > 0 and math.isfinite(sigma)):
            raise SettingsError(f"local_bump_sigma_px {sigma} is not positive", fix="give a width in px, or None")
        if not (self.local_tau_frames > 0 and math.isfinite(self.local_tau_frames)):
            raise SettingsError(f"local_tau_frames {self.local_tau_frames} is not positive")
        if not (math.isfinite(self.blob_mass_exponent) and -2.0 <= self.blob_mass_exponent <= 4.0):
            raise SettingsError(f"blob_mass_exponent {self.blob_mass_exponent} is outside [-2, 4]",
                                fix="0 is the default spectrum; 1-3 move power to low frequencies")
        if self.n_large_features < 0:
            raise SettingsError(f"n_large_features {self.n_large_features} is negative")
        if self.dead_column is not None and not 0 <= self.dead_column < self.nx:
            raise SettingsError(f"dead column {self.dead_column} is outside 0..{self.nx - 1}")
        if self.dtype not in DTYPE_MAX_COUNT:
            raise SettingsError(f"dtype {self.dtype!r} is not uint8, uint16 or float32")
        if isinstance(self.trajectory, str):
            if self.trajectory not in TRAJECTORY_KINDS:
                raise SettingsError(
                    f"trajectory {self.trajectory!r} is unknown", fix=f"use one of {', '.join(TRAJECTORY_KINDS)} or an array"
                )
        else:
            shifts = np.asarray(self.trajectory, dtype=np.float64)
            if shifts.shape != (self.n_frames, 2) or not np.all(np.isfinite(shifts)):
                raise SettingsError(
                    f"explicit trajectory has shape {shifts.shape}",
                    fix=f"give ({self.n_frames}, 2) finite (x, y) shifts",
                )
            if np.any(shifts[0] != 0):
                raise SettingsError(
                    "explicit trajectory does not start at (0, 0)", fix="subtract the first row (frame 0 is the origin)"
                )
            # store hashable and immutable
            object.__setattr__(self, "trajectory", tuple((float(x), float(y)) for x, y in shifts))

    @property
    def has_local_motion(self) -> bool:
        """True when the specimen deforms: smooth waves and/or localised bumps."""
        return self.n_frames > 1 and (self.local_amplitude_px > 0 or (self.local_bumps > 0 and self.local_bump_amplitude_px > 0))

    @property
    def bump_sigma_px(self) -> float:
        """Width (Gaussian sigma) of the local bumps: ``local_bump_sigma_px`` or 1/16 of the shorter side."""
        return float(self.local_bump_sigma_px) if self.local_bump_sigma_px is not None else min(self.nx, self.ny) / 16.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not isinstance(self.trajectory, str):
            d["trajectory"] = [list(row) for row in self.trajectory]
        return d


@dataclass(frozen=True, eq=False)
class SimulatedMovie:
    """A simulated movie and everything needed to reproduce any of its noiseless frames.

    Arrays: ``frames`` (n_frames, ny, nx) counts in ``spec.dtype``; ``gain``, ``true_gain``
    (ny, nx) float32 multiplicative gain references in movie orientation (``gain`` includes the
    reference error); ``shifts_px`` (n_frames, 2) float64 (x, y) global shifts; ``hot_pixels_xy``
    (n, 2) int64 (x, y); ``ideal`` (ny, nx) float32 expected counts per frame at the middle frame's
    configuration. Model internals: ``blobs`` (n_blobs, 4) float64 columns (x_px, y_px, sigma_px,
    peak amplitude) at frame 0; ``local_modes`` (2, n_modes, 4) float64 rows (cycles per field
    width in x, cycles per field height in y, amplitude_px, phase_rad) for u and v;
    ``local_bumps`` (n_bumps, 5) float64 rows (x_px, y_px, sigma_px, ax_px, ay_px) of the localised
    Gaussian bumps; ``local_offset_px`` (2,) subtracted field means (waves and bumps together);
    ``blob_local_px`` (n_blobs, 2) the local
    field (u, v) at each blob's frame-0 centre (the displacement at a(t) = 1); ``contrast_scale`` = ``c`` and
    ``density_offset`` = ``beta`` of the transmission ``T = g(1 + c (B - beta))``.
    """

    spec: SimulationSpec
    frames: np.ndarray
    gain: np.ndarray
    true_gain: np.ndarray
    shifts_px: np.ndarray
    hot_pixels_xy: np.ndarray
    dead_column: int | None
    ideal: np.ndarray
    blobs: np.ndarray
    local_modes: np.ndarray
    local_offset_px: np.ndarray
    blob_local_px: np.ndarray
    contrast_scale: float
    density_offset: float
    trajectory_info: dict = field(default_factory=dict)
    n_clipped_counts: int = 0
    local_bumps: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))

    @property
    def middle_frame(self) -> int:
        return self.spec.n_frames // 2

    @property
    def counts_clipped(self) -> bool:
        """True when some counts did not fit ``spec.dtype`` and were clipped to its maximum."""
        return self.n_clipped_counts > 0

    @property
    def counts_per_frame_px(self) -> float:
        """Mean expected counts per pixel and frame: dose per frame times pixel area."""
        return self.spec.dose_per_frame_e_per_a2 * self.spec.pixel_size_a**2
