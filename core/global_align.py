"""Whole-frame alignment of a movie on Fourier-cropped spectra, with leave-one-out references.

Each iteration shifts every frame by its current estimate (an exact Fourier phase shift), sums
them, and correlates each frame with the sum *minus that frame*, so a frame's own shot noise is
never correlated with itself. The cross-power is filtered by ``exp(-B s^2 / 4)`` (B in alignment
pixels squared, s in cycles per alignment pixel); its zero frequency and its central cross
(``kx = 0`` column and ``ky = 0`` row) are zeroed, which removes the mean and the row/column fixed
patterns (readout banding, column gain errors) that would otherwise make a false peak at zero shift.
The first iteration searches the whole map within ``max_shift``, the frames in turn (a frame that
moved is moved in the reference before the next ones are measured: :func:`_first_pass_in_order`,
which keeps a jump half-way through the exposure or a fast drift from splitting the frames into
groups that swap places); later ones evaluate the correlation
exactly at the 3 x 3 offsets around the current estimate by a direct DFT and fall back to the full
search when the peak is not at the centre. Sub-pixel offsets come from a 3-point Gaussian fit
(:mod:`framewatch.core.peak`). After each iteration the trajectory is regularised in time
(:mod:`framewatch.core.trajectory`) by the dose rule. Iteration stops when no frame's estimate moved
by more than ``tolerance_px`` (unbinned pixels), or after ``max_iterations``. The last measurements
are then smoothed once more, as strongly as the frames' own measurement noise allows, each frame's
noise estimated from its correlation peak (:mod:`framewatch.core.peak_precision`). Once, not in
every iteration: a choice near the rule's threshold, fed back through the references, flipped
from one iteration to the next and kept the alignment from converging.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .fourier import irfft2, shift_spectrum
from .frame_pool import frame_pool, sum_in_order
from .peak import correlation_at, find_peak_within, gaussian_offset, refine_peak
from .peak_precision import peak_covariance
from .spectral_weight import SpectralSNR, estimate_spectral_snr, spectral_snr_weight
from .trajectory import WEIGHT_RANGE, regularise_trajectory

WEIGHTINGS = ("spectral_snr", "bfactor")
_LOCAL_OFFSETS = np.array([-1.0, 0.0, 1.0])  # alignment pixels around the current estimate
FIRST_PASS_MIN_SIGNIFICANCE = 6.0  # peak height over its map's rms that may move a frame in the first pass
FIRST_PASS_ROUNDS = 3  # times the first pass may measure the frames in turn


@dataclass(frozen=True)
class GlobalAlignment:
    """``shifts_px`` ``(n_frames, 2)`` (x, y) unbinned, frame 0 = (0, 0), DESIGN convention.

    ``residual_px``: RMS distance between the last measured positions and the smooth trajectory
    (unbinned px). ``outlier_frames``: indices whose measurement was rejected.     ``peak_heights``
    ``(n_frames,)``: last correlation peak heights; ``peak_significance`` ``(n_frames,)``: each peak
    height over the RMS of its whole correlation map (from Parseval; about 4-5 for pure noise).
    ``weighting``: the filter of the last iteration, ``"spectral_snr"`` or ``"bfactor"`` (with the
    reason in parentheses when the spectral weight was asked for but not usable); ``spectral_snr``:
    the last estimate (:class:`framewatch.core.spectral_weight.SpectralSNR`), if any.
    ``measurement_sd_px`` ``(n_frames,)``: each frame's last measurement error per axis, as its
    correlation peak implies (:mod:`framewatch.core.peak_precision`; unbinned px), if estimated;
    ``smoothing``: the trajectory rule (:mod:`framewatch.core.trajectory`), ``"measurement noise"`` or
    ``"dose"``, and ``free_start_frames`` the frames at the start it left free of its penalty.
    """

    shifts_px: np.ndarray
    iterations: int
    converged: bool
    residual_px: float
    outlier_frames: tuple[int, ...]
    peak_heights: np.ndarray
    peak_significance: np.ndarray | None = None
    weighting: str = "bfactor"
    spectral_snr: SpectralSNR | None = None
    measurement_sd_px: np.ndarray | None = None
    smoothing: str = "dose"
    free_start_frames: int = 0


def bfactor_filter(shape: tuple[int, int], *, bfactor_px2: float) -> np.ndarray:
    """float32 ``(ny, nx//2+1)``: ``exp(-B s^2 / 4)`` with DC, the kx=0 column and the ky=0 row zeroed."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny)
    kx = np.fft.rfftfreq(nx)
    s2 = ky[:, None] ** 2 + kx[None, :] ** 2
    filt = np.exp(-bfactor_px2 * s2 / 4.0).astype(np.float32)
    filt[0, :] = 0.0
    filt[:, 0] = 0.0
    return filt


@numba.njit(cache=True, fastmath=True, nogil=True)
def _loo_cross_power_kernel(frame, total, filt, out, even_width):  # pragma: no cover - compiled
    """out = frame * conj(total - frame) * filt; returns the power of out over the full spectrum
    (float64; off-axis columns twice, the kx = 0 column and the Nyquist column of an even width once)."""
    ny, nkx = frame.shape
    last = nkx - 1 if even_width else nkx
    power = 0.0
    for y in range(ny):
        row = 0.0
        for x in range(nkx):
            f = frame[y, x]
            r = total[y, x] - f
            c = f * np.conj(r) * filt[y, x]
            out[y, x] = c
            row += np.float64(c.real) * np.float64(c.real) + np.float64(c.imag) * np.float64(c.imag)
        edge = out[y, 0]
        once = np.float64(edge.real) ** 2 + np.float64(edge.imag) ** 2
        if last < nkx:
            edge = out[y, last]
            once += np.float64(edge.real) ** 2 + np.float64(edge.imag) ** 2
        power += 2.0 * row - once
    return power


def loo_cross_power(frame: np.ndarray, total: np.ndarray, filt: np.ndarray) -> np.ndarray:
    """``frame * conj(total - frame) * filt``: complex64 ``(ny, nkx)``; all inputs the same shape."""
    return loo_cross_power_rms(frame, total, filt, None)[0]


def loo_cross_power_rms(frame: np.ndarray, total: np.ndarray, filt: np.ndarray, shape: tuple[int, int] | None, *,
                        out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """:func:`loo_cross_power` and the RMS over all offsets of its correlation map
    ``irfft2(xp, shape)`` (by Parseval, without transforming; a map of even width when ``shape`` is
    ``None``), from one pass. ``out``: a C-contiguous complex64 array to write into."""
    if frame.shape != total.shape or frame.shape != filt.shape:
        raise ValueError(f"shapes differ: frame {frame.shape}, total {total.shape}, filter {filt.shape}")
    ny, nkx = frame.shape
    shape = (ny, 2 * (nkx - 1)) if shape is None else shape
    if shape[0] != ny or shape[1] // 2 + 1 != nkx:
        raise ValueError(f"spectra {frame.shape} do not belong to a map {shape}")
    if out is None:
        out = np.empty(frame.shape, dtype=np.complex64)
    elif out.shape != frame.shape or out.dtype != np.complex64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous complex64 {frame.shape}")
    power = _loo_cross_power_kernel(np.ascontiguousarray(frame, dtype=np.complex64),
                                    np.ascontiguousarray(total, dtype=np.complex64), filt, out, shape[1] % 2 == 0)
    return out, _rms_from_power(power, shape)


def _rms_from_power(power: float, shape: tuple[int, int]) -> float:
    return float(np.sqrt(max(power, 0.0)) / (shape[0] * shape[1]))


def align_frames(
    spectra: list[np.ndarray],
    *,
    shape: tuple[int, int],
    bin_factor: float,
    dose_per_frame_e_per_a2: float,
    bfactor_px2: float,
    max_iterations: int,
    tolerance_px: float,
    max_shift_px: float,
    threads: int,
    weighting: str = "spectral_snr",
) -> GlobalAlignment:
    """Align Fourier-cropped frame spectra (each complex64 ``(ny, nx//2+1)`` of an image ``shape``).

    ``bin_factor`` converts alignment pixels to movie pixels; ``max_shift_px`` is in movie pixels.
    ``weighting``: ``"spectral_snr"`` (default) filters the cross-power of iterations 2 and later by
    the weight built from the movie's own spectral SNR (:mod:`framewatch.core.spectral_weight`,
    re-estimated from the frames as aligned so far) and refines each peak by Newton steps on the
    exact correlation; the first iteration (coarse search on unaligned frames) and any iteration
    where the estimate has too little signal use ``exp(-bfactor_px2 s^2 / 4)`` and the 3-point fit.
    ``"bfactor"``: the B-factor filter throughout (the behaviour before issue 12).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r} is not one of {WEIGHTINGS}")
    n = len(spectra)
    pos = np.zeros((n, 2))  # alignment pixels, (x, y)
    heights = np.zeros(n)
    map_rms = np.ones(n)
    if n < 2:
        return GlobalAlignment(pos, 0, True, 0.0, (), heights, np.zeros(n))
    bfilt = bfactor_filter(shape, bfactor_px2=bfactor_px2)
    radius = max(2.0, max_shift_px / bin_factor)  # alignment pixels
    converged = False
    smoothed = None
    iteration = 0
    used = "bfactor"
    estimate = None
    variances = None
    with frame_pool(threads, n) as pool:
        for iteration in range(1, max_iterations + 1):
            shifted = pool.map(lambda i: shift_spectrum(spectra[i], shape, -pos[i, 0], -pos[i, 1]), range(n))
            total = sum_in_order(shifted)
            filt, used = bfilt, "bfactor"
            if weighting == "spectral_snr" and iteration > 1:
                estimate = estimate_spectral_snr(shifted, total, shape)
                filt, used = _spectral_filter(estimate, shape, bfilt)
            refine = used == "spectral_snr"

            def measure(i: int, filt=filt, refine=refine) -> tuple:
                xp, rms = loo_cross_power_rms(shifted[i], total, filt, shape)
                dx, dy, height = _peak_offset(xp, shape, radius, refine=refine, threads=pool.threads_each)
                return dx, dy, height, rms, peak_covariance(xp, shape, dx, dy)

            if iteration == 1:  # the coarse search, frame by frame (the frames are shifted by nothing yet)
                found = _first_pass_in_order(spectra, shifted, total, shape, filt, radius, pool)
            else:
                found = pool.map(measure, range(n))
            measured = pos + np.array([(f[0], f[1]) for f in found])
            heights = np.array([f[2] for f in found])
            map_rms = np.array([f[3] for f in found])
            variances = None if iteration == 1 else _measurement_variances([f[4] for f in found])
            smoothed = regularise_trajectory(measured, dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
                                             outlier_floor=1.0 / bin_factor, peak_heights=heights)
            new = smoothed.positions - smoothed.positions[0]
            change = float(np.max(np.abs(new - pos))) * bin_factor
            pos = new
            if change < tolerance_px:
                converged = True
                break
    if variances is not None:  # once, on the last measurements: iterating on it would feed its choice back
        smoothed = regularise_trajectory(measured, dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
                                         outlier_floor=1.0 / bin_factor, peak_heights=heights, variances=variances)
        pos = smoothed.positions - smoothed.positions[0]
    residual = float(np.sqrt(np.mean(smoothed.residuals[~smoothed.outliers] ** 2))) * bin_factor
    return GlobalAlignment(
        shifts_px=pos * bin_factor,
        iterations=iteration,
        converged=converged,
        residual_px=residual,
        outlier_frames=tuple(int(i) for i in np.flatnonzero(smoothed.outliers)),
        peak_heights=heights,
        peak_significance=heights / map_rms,
        weighting=used,
        spectral_snr=estimate,
        measurement_sd_px=None if variances is None else np.sqrt(variances) * bin_factor,
        smoothing=smoothed.rule,
        free_start_frames=smoothed.free_start,
    )


def _first_pass_in_order(spectra: list[np.ndarray], current: list[np.ndarray], total: np.ndarray,
                         shape: tuple[int, int], filt: np.ndarray, radius: float, pool) -> list[tuple]:
    """The first iteration's measurements ``(dx, dy, height, map rms, None)`` per frame, in alignment
    pixels, of ``spectra`` as they are (``current``: the same values, ``total`` their sum; both are
    changed here, as frames move): each frame in turn against the sum of the others, where every frame measured before it
    that moved by a pixel or more already sits at its new position (Gauss–Seidel, not all against the
    unaligned sum at once).

    When the frames fall into two groups of the same size (a jump half-way through the exposure,
    larger than the correlation peak is wide), each frame's leave-one-out sum holds more of the
    *other* group, so measured all at once every frame would take the other group's position and the
    groups would swap, further apart than before; on a fast drift each frame would take the middle of
    the smear. Measured in turn, the first frame joins a group and every later frame finds one
    majority. A frame moves only on a peak of at least ``FIRST_PASS_MIN_SIGNIFICANCE`` times its map's
    rms (noise peaks reach about 5), so a noise peak never moves a frame into the others' reference;
    when a frame's peak was not significant and later frames moved, the frames are measured again
    in turn (at most ``FIRST_PASS_ROUNDS`` times), against a reference that now holds them together.
    Offsets under a pixel move nothing (the next iterations refine them), so a movie whose frames all
    lie within a pixel of their sum measures as before, a frame per thread of ``pool``
    (:mod:`framewatch.core.frame_pool`) at once; after a frame that moved, the frames measured beside
    it are measured again."""
    n = len(spectra)
    moved_px = np.zeros((n, 2))

    def measure(i: int) -> tuple:
        xp, rms = loo_cross_power_rms(current[i], total, filt, shape)
        return (*find_peak_within(irfft2(xp, shape, threads=pool.threads_each), radius), rms)

    for _ in range(FIRST_PASS_ROUNDS):
        found: list = [None] * n
        weak = any_moved = False
        i = 0
        while i < n:  # a frame per thread at once; after one that moved, the next are measured again
            batch = list(range(i, min(n, i + pool.workers)))
            i = batch[-1] + 1
            for j, (dx, dy, height, rms) in zip(batch, pool.map(measure, batch)):
                found[j] = (moved_px[j, 0] + dx, moved_px[j, 1] + dy, height, rms, None)
                if max(abs(dx), abs(dy)) < 1.0:
                    continue
                if not height >= FIRST_PASS_MIN_SIGNIFICANCE * rms:
                    weak = True
                    continue
                moved_px[j] += (dx, dy)
                moved = shift_spectrum(spectra[j], shape, -moved_px[j, 0], -moved_px[j, 1])
                total += moved
                total -= current[j]
                current[j] = moved
                any_moved = True
                i = j + 1
                break
        if not (weak and any_moved):
            break
    return found


def _measurement_variances(covariances: list) -> np.ndarray | None:
    """Each frame's variance per axis (alignment px^2, the mean of x and y) from its peak's
    covariance; a frame whose peak gave none (not concave there) gets ``WEIGHT_RANGE`` times the
    largest of the others, so it counts least. ``None`` when most frames gave none."""
    per_axis = [None if c is None else 0.5 * float(c[0, 0] + c[1, 1]) for c in covariances]
    known = [v for v in per_axis if v is not None and np.isfinite(v) and v > 0]
    if len(known) <= len(per_axis) // 2:
        return None
    worst = WEIGHT_RANGE * max(known)
    return np.array([v if v is not None and np.isfinite(v) and v > 0 else worst for v in per_axis])


def _spectral_filter(estimate: SpectralSNR, shape: tuple[int, int], bfilt: np.ndarray) -> tuple[np.ndarray, str]:
    """The cross-power filter ``(ny, nx//2+1)`` from the spectral SNR ``estimate`` and its name, or the
    B-factor filter ``bfilt`` with the reason when the estimate is not significant."""
    data_filt = spectral_snr_weight(estimate, shape)
    if data_filt is None:
        return bfilt, "bfactor (spectral SNR estimate not significant)"
    return data_filt, "spectral_snr"


def _peak_offset(xp: np.ndarray, shape: tuple[int, int], radius: float, *, refine: bool,
                 threads: int) -> tuple[float, float, float]:
    """``(dx, dy, height)`` of the correlation peak of the cross-power ``xp`` ``(ny, nx//2+1)``, in
    alignment pixels relative to the current estimate (iterations after the first).

    The 3 x 3 offsets around the estimate are evaluated exactly and fitted by a 3-point Gaussian
    when the centre is the largest; otherwise the map within ``radius`` (alignment px) of zero is
    searched. ``refine``: Newton steps on the exact correlation (the spectral-SNR weighting), first
    from the current estimate, and the 3 x 3 check runs only when they find no maximum within a
    pixel of it.
    """
    if refine:  # Newton from the current estimate; the 3 x 3 check only when it fails
        refined = refine_peak(xp, shape, 0.0, 0.0)
        if refined is not None:
            return refined
    cc3 = correlation_at(xp, shape, _LOCAL_OFFSETS, _LOCAL_OFFSETS)
    if np.argmax(cc3) == 4:
        f0 = float(cc3[1, 1])
        dx = gaussian_offset(float(cc3[1, 0]), f0, float(cc3[1, 2]))
        dy = gaussian_offset(float(cc3[0, 1]), f0, float(cc3[2, 1]))
        height = f0
    else:
        dx, dy, height = find_peak_within(irfft2(xp, shape, threads=threads), radius)
    if refine:
        refined = refine_peak(xp, shape, dx, dy)
        if refined is not None:
            dx, dy, height = refined
    return dx, dy, height
