"""What one corrected movie gives back: sums, trajectory, statistics (frozen dataclasses)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .settings import CorrectionSettings


@dataclass(frozen=True)
class DriftStatistics:
    """Per-tilt drift and quality figures (DESIGN.md, "Drift statistics").

    ``total/early/late``: sums of the lengths of frame-to-frame whole-frame shifts (as RELION's
    ``rlnAccumMotionTotal/Early/Late``). ``early/late_motion_*`` count from the start of this tilt's
    own exposure: a step into frame ``f`` is early when this movie's dose up to the end of frame
    ``f`` is at most ``early_dose_cutoff_e_per_a2`` = min(4 e/A^2, a third of the movie's dose) (what
    an operator watches: the jump at the start of every exposure). ``relion_early/late_motion_*``
    follow RELION's rule, the prior dose included (written only to the ``rlnAccumMotion*`` columns
    of the RELION tables). See core/drift_stats.py.
    FRC crossings are resolutions in Angstrom where the even/odd Fourier ring correlation first
    drops below 0.5, 0.25 and 0.143 (the Nyquist resolution when it never does).
    """

    total_motion_px: float
    early_motion_px: float
    late_motion_px: float
    total_motion_a: float
    early_motion_a: float
    late_motion_a: float
    max_frame_shift_px: float
    alignment_residual_px: float
    frc_0_5_a: float
    frc_0_25_a: float
    frc_0_143_a: float
    early_dose_cutoff_e_per_a2: float = 4.0
    # local motion (None when whole-frame only)
    patch_residual_mean_px: float | None = None
    patch_residual_max_px: float | None = None
    patches_rejected_fraction: float | None = None
    # the local-motion decision (core.local_motion): "applied", "forced (...)", "declined (reason)", "off (reason)";
    # the patch grid, the cross-validation statistic and gain, the fitted field's RMS and standard error
    local_motion: str | None = None
    local_patches: str | None = None
    local_evidence_z: float | None = None
    local_evidence_gain_fraction: float | None = None
    local_field_rms_px: float | None = None
    local_field_uncertainty_px: float | None = None
    # whole-frame trajectory smoothing (core.trajectory): "measurement noise", "measurement noise, first
    # k frames free" or "dose"; each frame's measurement error per axis as its peak implies, median
    trajectory_smoothing: str | None = None
    shift_precision_px: float | None = None
    # RELION's rule (prior dose included); None only in results made before it was added
    relion_early_motion_px: float | None = None
    relion_late_motion_px: float | None = None
    relion_early_motion_a: float | None = None
    relion_late_motion_a: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MovieResult:
    """The corrected image of one movie with its half sums, trajectory and statistics.

    Images are float32 ``(ny, nx)``. ``shifts_px`` is ``(n_frames, 2)`` as (x, y) in unbinned movie
    pixels: a feature at (x, y) in frame 0 appears at (x + sx[t], y + sy[t]) in frame t, frame 0 is
    (0, 0). The sums are registered to the specimen position of frame ``n_frames // 2``. With
    ``settings.fourier_bin > 1`` images and shifts are in output (binned) pixels of
    :attr:`pixel_size_a`. ``replaced_pixels`` is ``(n, 2)`` int (x, y) of every pixel replaced before
    alignment, in movie pixels; ``frame_shape`` the movie's ``(ny, nx)`` (of one frame, in movie pixels).
    ``accumulated_dose_e_per_a2`` is ``(n_frames,)``: dose at the end of each frame, prior included.
    """

    dose_weighted_sum: np.ndarray
    even_sum: np.ndarray
    odd_sum: np.ndarray
    unweighted_sum: np.ndarray | None
    shifts_px: np.ndarray
    accumulated_dose_e_per_a2: np.ndarray
    statistics: DriftStatistics
    replaced_pixels: np.ndarray
    settings: CorrectionSettings
    timings_s: dict = field(default_factory=dict)
    frc_curve: np.ndarray | None = None  # (n_shells, 2): resolution in 1/A, even/odd FRC
    local_motion: object | None = None  # LocalMotion when patches were used
    notes: tuple[str, ...] = ()
    frame_shape: tuple[int, int] | None = None

    @property
    def n_frames(self) -> int:
        return int(self.shifts_px.shape[0])

    @property
    def pixel_size_a(self) -> float:
        """Pixel size of the images and of every ``_px`` value: the movie's times ``fourier_bin``."""
        return self.settings.pixel_size_a * self.settings.fourier_bin


def result_summary(result: MovieResult) -> dict:
    """JSON-ready summary of a result (everything but the images): what ``PREFIX.json`` holds.

    ``shifts_px`` is a list of ``[x, y]`` per frame in the DESIGN convention (frame 0 = [0, 0]).
    """
    lm = result.local_motion
    return {
        "n_frames": result.n_frames,
        "image_shape_yx": list(result.dose_weighted_sum.shape),
        "pixel_size_a": result.pixel_size_a,
        "shift_convention": "a feature at (x, y) in frame 0 is at (x + sx, y + sy) in frame t; frame 0 = (0, 0); "
        "sums registered to frame n_frames // 2",
        "reference_frame": result.n_frames // 2,
        "shifts_px": [[float(x), float(y)] for x, y in result.shifts_px],
        "accumulated_dose_e_per_a2": [float(d) for d in result.accumulated_dose_e_per_a2],
        "statistics": result.statistics.as_dict(),
        "replaced_pixels_xy": [[int(x), int(y)] for x, y in result.replaced_pixels],
        "settings": result.settings.as_dict(),
        "timings_s": {k: round(float(v), 4) for k, v in result.timings_s.items()},
        "local_motion": None if lm is None else lm.summary(),
        "notes": list(result.notes),
    }
