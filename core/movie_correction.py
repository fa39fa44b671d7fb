"""The correction pipeline on decoded frames (:class:`MovieCorrection`), behind
:func:`framewatch.core.correct.correct_movie` and ``correct_movie_file``.

Steps: gain and value checks, defects (bad gain, the defect file, dead and hot pixels on the
movie's sum), the first pass (gain, defect replacement and a forward transform per frame, a
Fourier-cropped copy for alignment; with local motion asked for, only the transform's columns the
copy needs, :mod:`framewatch.core.partial_transform`), whole-frame alignment, local motion when
asked for (patches on the registered alignment copy, the evidence rule, the pooled fit; when
applied, a second pass warps each decoded frame and transforms it again; when not, the first
pass's transforms are finished), dose-weighted full and half sums in one pass over the frames
(:mod:`framewatch.core.weighted_sums`), inverse transforms, statistics.

Memory: the decoded frames are kept in their native dtype (uint8 counts are a quarter of float32)
until hot pixels are known; each is then gain-corrected, transformed and released (kept when local
motion may need the second pass), so the peak is about the native movie plus the float32-sized set
of half spectra (the sums are written over the first three of them).
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .content_checks import check_gain_defects, check_movie_signal, check_value_magnitude, require_finite_images
from .correction_report import correction_notes, drift_statistics
from .defects import PixelReplacer, bad_gain_mask, detect_dead_pixels, detect_hot_pixels
from .dose import accumulated_dose_e_per_a2, half_inverse_critical_exposure
from .errors import GainError, MovieFormatError, SettingsError
from .fourier import crop_shape, fourier_crop, irfft2, irfft2_consuming, resolve_threads, rfft2, shift_spectrum
from .frame_arithmetic import apply_gain, gain_where_good, sum_frames
from .frame_pool import frame_pool, use_kernel_threads
from .frame_size import require_alignable_shape
from .frc import frc_curve
from .global_align import GlobalAlignment, align_frames
from .local_align import (
    LOCAL_FIELD_GRID_PX,
    PatchOptions,
    group_size_for,
    measure_patches,
    patch_area_a2,
    patch_grid,
    patch_layout,
    taper_window,
)
from .local_evidence import EvidenceOptions
from .local_motion import KnownDisplacement, LocalMotion, choose_patch_grid, local_motion_from_patches, local_motion_off
from .partial_transform import PartialSpectrum
from .resample import field_grid_shape, prefilter_factors, warp_image
from .result import MovieResult
from .settings import CorrectionSettings
from .sparse_spectrum import PointSpectra
from .streamed_patches import StreamedPatches
from .weighted_sums import weighted_sums

__all__ = ["DefectsFound", "MovieCorrection"]

_NESTED_TIMINGS = ("warp_s", "fft_again_s", "streamed_patches_s")  # parts of second_pass_s and streamed_s
# Streamed patch measurements (core/streamed_patches.py) differ from those on the copy registered by
# the final shifts by far less than their noise: the evidence's z by up to 0.03, the patch shifts by up
# to 0.016 px (24 simulated 1024² movies, contrast 5-20 %, 0.3-1 e/A^2, README "Streaming"; a 384²
# movie whose early frames kept 6 hot pixels in the stream: 0.01 px). Within these margins of the evidence
# rule's thresholds the movie is measured again on the final copy, so the decision is the one
# correct_movie makes.
STREAMED_Z_MARGIN = 0.25
STREAMED_GAIN_MARGIN = 0.005


def _add_point_spectra(points: PointSpectra, first_pass: list, *, threads: int) -> None:
    """Add each frame's point spectrum to its first-pass spectrum (``first_pass[i][0]``), with
    ``threads`` kernel threads."""
    use_kernel_threads(threads)
    for i, entry in enumerate(first_pass):
        if entry is not None:
            points.add_to(i, entry[0])


def _waited(future) -> float:
    """Seconds spent waiting for ``future``'s result (raises what it raised)."""
    t = time.perf_counter()
    future.result()
    return time.perf_counter() - t


@dataclass(frozen=True)
class DefectsFound:
    """What :meth:`MovieCorrection.prepare` found: the checked ``gain`` (float32 ``(ny, nx)`` or
    ``None``), the ``replacer`` of the bad pixels, and the ``timings`` so far."""

    gain: np.ndarray | None
    replacer: PixelReplacer
    timings: dict


class MovieCorrection:
    """One run of the pipeline on decoded frames; holds the settings and derived geometry.

    ``MovieCorrection(settings, shape, movie_path).run(raw, gain, defect_mask, read_s=...)``:
    ``raw`` is a list of ``(ny, nx)`` frames in any real dtype; entries are released (set to
    ``None``) as they are used."""

    def __init__(self, settings: CorrectionSettings, shape: tuple[int, int], movie_path):
        self.cfg = settings
        self.movie_shape = (int(shape[0]), int(shape[1]))
        require_alignable_shape(self.movie_shape, path=movie_path)
        self.input_notes: list[str] = []  # what the input checks replaced or noticed
        fb = settings.fourier_bin
        if fb > 1 and (shape[0] % (2 * fb) or shape[1] % (2 * fb)):
            raise SettingsError(
                f"a {shape[1]} x {shape[0]} movie cannot be binned by {fb} to an even size", path=movie_path,
                fix="use --bin 1, or crop the movie",
            )
        self.shape = (self.movie_shape[0] // fb, self.movie_shape[1] // fb)  # output (and alignment) geometry
        self.pixel_size_a = settings.pixel_size_a * fb
        self.path = movie_path if movie_path is not None else "movie"
        self.threads = resolve_threads(settings.threads)
        use_kernel_threads(self.threads)
        if settings.align_pixel_size_a is not None:
            bin_factor = max(1.0, settings.align_pixel_size_a / self.pixel_size_a)
        else:
            bin_factor = max(1.0, max(self.shape) / settings.align_max_size_px)
        self.align_shape = crop_shape(self.shape, bin_factor=bin_factor)
        # the exact factor after rounding to even sizes (x and y may differ by a hair; use the mean)
        self.bin_factor = 0.5 * (self.shape[0] / self.align_shape[0] + self.shape[1] / self.align_shape[1])

    @property
    def local(self) -> bool:
        """Patches are measured: ``patches="auto"`` or both counts at least 2."""
        return self.cfg.local_requested

    def run(self, raw: list, gain, defect_mask, *, read_s: float, known_shifts_px=None, known_local=None,
            total: np.ndarray | None = None) -> MovieResult:
        """The whole pipeline: :meth:`prepare`, then :meth:`finish`."""
        ready = self.prepare(raw, gain, defect_mask, read_s=read_s, total=total)
        return self.finish(raw, ready.gain, ready.replacer, ready.timings, known_shifts_px=known_shifts_px,
                           known_local=known_local)

    def prepare(self, raw: list, gain, defect_mask, *, read_s: float, total: np.ndarray | None = None,
                threads: int | None = None) -> DefectsFound:
        """The checks and the defect mask (on the movie's sum), before any frame is transformed.

        ``total``: the float32 sum of ``raw`` when the reader made it (else summed here; it is
        scaled in place). ``threads``: for its kernels (default the correction's; 1 while another
        movie is corrected, so the two do not oversubscribe the cores)."""
        use_kernel_threads(threads or self.threads)
        timings = {"read_s": read_s}
        gain = self.checked_gain(gain)
        check_value_magnitude(raw, gain, path=self.path)
        t = time.perf_counter()
        total = sum_frames(raw) if total is None else total
        replacer = PixelReplacer(self.bad_mask(total, gain, defect_mask))
        timings["defects_s"] = time.perf_counter() - t
        return DefectsFound(gain, replacer, timings)

    def finish(self, raw: list, gain, replacer: PixelReplacer, timings: dict, *, first_pass: list | None = None,
               known_shifts_px=None, known_local=None, streamed_patches: StreamedPatches | None = None,
               first_pass_points: PointSpectra | None = None) -> MovieResult:
        """Everything after the defect mask: first pass, alignment, local motion, sums, statistics.

        ``first_pass``: per frame ``(spectrum, cropped)`` already computed with this ``replacer``
        and ``gain`` (streaming), or ``None`` for a frame to transform here; ``None``: all of them.
        ``streamed_patches``: the patch spectra built while the frames arrived (streaming).
        ``first_pass_points``: what the ``first_pass`` spectra still lack (a few pixels' change; their
        crops already have it): added to them in a thread of its own, on one kernel thread, while the
        local motion is measured on the crops (beside the whole-frame alignment, which keeps both
        cores busy, it slowed the alignment by as much as it saved), before the sums."""
        use_kernel_threads(self.threads)
        n = len(raw)
        doses = accumulated_dose_e_per_a2(
            n, dose_per_frame_e_per_a2=self.cfg.dose_per_frame_e_per_a2, prior_dose_e_per_a2=self.cfg.prior_dose_e_per_a2
        )

        def corrected(i: int, out: np.ndarray | None = None) -> np.ndarray:
            image = apply_gain(raw[i], gain, out=out)
            replacer.apply(image, i)
            return image

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="framewatch-point-spectra") as beside:
            updating = []

            def update_spectra() -> None:  # beside the local motion, which works on the alignment copies
                updating.append(beside.submit(_add_point_spectra, first_pass_points, first_pass, threads=1))

            alignment, spectra, local = self._motion(
                raw, corrected, timings, known_shifts_px, known_local, first_pass=first_pass,
                streamed_patches=streamed_patches, after_alignment=None if first_pass_points is None else update_spectra)
            if updating:
                timings["point_update_wait_s"] = _waited(updating[0])
            elif first_pass_points is not None:  # no local motion to work beside: on every core, now
                t = time.perf_counter()
                _add_point_spectra(first_pass_points, first_pass, threads=self.threads)
                timings["fourier_update_s"] = timings.get("fourier_update_s", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        warped = local is not None and local.model is not None  # else the spectra are the first pass's
        sums = self._sums(spectra, n, alignment.shifts_px, doses, prefilter=warped)
        timings["sum_s"] = time.perf_counter() - t
        t = time.perf_counter()
        freq, frc = frc_curve(sums["even_spec"], sums["odd_spec"], self.shape)
        keys = [key for key in ("full", "even", "odd", "plain") if sums.get(key + "_spec") is not None]
        images = {key: irfft2_consuming(sums.pop(key + "_spec"), self.shape, threads=self.threads) for key in keys}
        timings["inverse_fft_s"] = time.perf_counter() - t
        require_finite_images(images, path=self.path)
        timings["total_s"] = sum(v for k, v in timings.items() if k not in _NESTED_TIMINGS)
        px = self.pixel_size_a
        return MovieResult(
            dose_weighted_sum=images["full"],
            even_sum=images["even"],
            odd_sum=images["odd"],
            unweighted_sum=images.get("plain"),
            shifts_px=alignment.shifts_px,
            accumulated_dose_e_per_a2=doses,
            statistics=drift_statistics(alignment, local, doses, freq, frc, pixel_size_a=px,
                                        prior_dose_e_per_a2=self.cfg.prior_dose_e_per_a2),
            replaced_pixels=replacer.coordinates_xy,
            settings=self.cfg,
            timings_s=timings,
            frc_curve=np.column_stack([freq / px, frc]),
            local_motion=local,
            notes=correction_notes(self.input_notes, alignment, local, tolerance_px=self.cfg.tolerance_px),
            frame_shape=(int(self.movie_shape[0]), int(self.movie_shape[1])),
        )

    def checked_gain(self, gain) -> np.ndarray | None:
        """The gain as float32 ``(ny, nx)``; it must match the movie's frame size."""
        if gain is None:
            return None
        gain = np.asarray(gain, dtype=np.float32)
        if gain.shape != self.movie_shape:
            ms = self.movie_shape
            raise GainError(
                f"gain reference is {gain.shape[1]} x {gain.shape[0]} but the movie is {ms[1]} x {ms[0]}",
                path=self.path,
                fix="use the gain reference of this camera mode, or check --gain-rot",
            )
        return gain

    def _motion(self, raw: list, corrected, timings: dict, known_shifts_px, known_local, *, first_pass=None,
                streamed_patches: StreamedPatches | None = None, after_alignment=None):
        """Whole-frame alignment, then local motion if asked for: ``(alignment, spectra, local)``.

        ``spectra``: the output-size spectra to sum (of the warped frames when local motion is
        applied: a second pass over the decoded frames). ``after_alignment()``: called once the
        whole-frame alignment is done, before the local motion is measured."""
        n = len(raw)
        if self.local and known_local is not None:
            alignment = self._global([None] * n, self.shape, 1.0, known_shifts_px)
            local = LocalMotion(KnownDisplacement(known_local), None, None, None, 0.0, None, decision="given",
                                reason="given by the caller")
            return alignment, self._warped_spectra(raw, corrected, alignment, local, timings), local
        alignment, spectra, cropped = self._align_whole_frame(raw, corrected, known_shifts_px, timings,
                                                              keep_raw=self.local, first_pass=first_pass)
        local = None
        if self.local:
            if after_alignment is not None:
                after_alignment()
            local = self._local_motion(cropped, alignment, timings, streamed_patches)
            if local.model is not None:  # a second pass: warp every frame, transform it again
                del spectra
                return alignment, self._warped_spectra(raw, corrected, alignment, local, timings), local
        t = time.perf_counter()  # the first pass's spectra are used: finish those transformed in part
        spectra = [s.complete() if isinstance(s, PartialSpectrum) else s for s in spectra]
        timings["fft_s"] += time.perf_counter() - t
        return alignment, spectra, local

    def _global(self, spectra: list, shape: tuple[int, int], bin_factor: float, known_shifts_px) -> GlobalAlignment:
        cfg = self.cfg
        if known_shifts_px is not None:
            known = np.asarray(known_shifts_px, dtype=np.float64)
            return GlobalAlignment(
                shifts_px=known - known[0], iterations=0, converged=True, residual_px=0.0, outlier_frames=(),
                peak_heights=np.zeros(len(spectra)), smoothing="none (shifts given)",
            )
        return align_frames(
            spectra,
            shape=shape,
            bin_factor=bin_factor,
            dose_per_frame_e_per_a2=cfg.dose_per_frame_e_per_a2,
            bfactor_px2=cfg.bfactor_px2,
            max_iterations=cfg.max_iterations,
            tolerance_px=cfg.tolerance_px,
            max_shift_px=cfg.max_shift_a / self.pixel_size_a,
            threads=self.threads,
        )

    def _align_whole_frame(self, raw: list, corrected, known_shifts_px, timings: dict, *, keep_raw: bool = False,
                           first_pass: list | None = None):
        """One pass: transform every frame once, keep its spectrum, align on Fourier-cropped copies.

        Returns the alignment, the output-size spectra and the Fourier-cropped alignment spectra.
        ``keep_raw``: keep the decoded frames (a local warp may need a second pass). ``first_pass``:
        see :meth:`finish`."""
        t = time.perf_counter()

        scratch = np.empty(self.movie_shape, np.float32)  # each frame's corrected image, consumed by its transform

        def one(i: int) -> tuple:
            done = first_pass[i] if first_pass is not None else None
            if done is None:
                image = corrected(i, scratch)
                done = self._partial_first_pass(image) if keep_raw else self.first_pass_frame(image)
            if not keep_raw:
                raw[i] = None  # release the decoded frame
            return done

        done = [one(i) for i in range(len(raw))]
        spectra, cropped = [d[0] for d in done], [d[1] for d in done]
        del done
        timings["fft_s"] = time.perf_counter() - t
        t = time.perf_counter()
        alignment = self._global(cropped, self.align_shape, self.bin_factor, known_shifts_px)
        timings["align_s"] = time.perf_counter() - t
        return alignment, spectra, cropped

    def first_pass_frame(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A corrected float32 frame -> its output-size spectrum and the Fourier-cropped alignment copy."""
        spec = self._to_output(rfft2(image, threads=self.threads))
        return spec, fourier_crop(spec, self.shape, self.align_shape)

    def patch_options(self, patches: tuple[int, int]) -> PatchOptions:
        """How the patches of grid ``patches`` (nx, ny) are measured with these settings."""
        cfg = self.cfg
        return PatchOptions(patches=tuple(int(v) for v in patches), overlap=cfg.patch_overlap,
                            bfactor_px2=cfg.patch_bfactor_px2, max_iterations=cfg.max_iterations,
                            tolerance_px=cfg.tolerance_px, threads=self.threads)

    def streamed_patches(self) -> StreamedPatches | None:
        """A :class:`~framewatch.core.streamed_patches.StreamedPatches` for the grid and frame
        groups this movie will probably be measured with (``None`` without patches): the
        automatic grid as if the whole-frame peaks carry signal, groups as if the movie were long."""
        cfg = self.cfg
        if not self.local:
            return None
        patches = cfg.patches
        if patches == "auto":
            patches = choose_patch_grid(self.align_shape, bin_factor=self.bin_factor, whole_frame_significance=math.inf,
                                        overlap=cfg.patch_overlap).patches
            if patches == (0, 0):
                return None
        grid = patch_grid(self.align_shape, patches=patches, overlap=cfg.patch_overlap)
        area = patch_area_a2(grid, bin_factor=self.bin_factor, pixel_size_a=self.pixel_size_a)
        group = group_size_for(dose_per_frame_e_per_a2=cfg.dose_per_frame_e_per_a2, patch_area_a2=area,
                               n_frames=None)  # the length is not known yet
        return StreamedPatches(align_shape=self.align_shape, grid=grid, group_size=group,
                               window=taper_window(grid.size_px), bfactor_px2=cfg.bfactor_px2,
                               max_shift_px=cfg.max_shift_a / self.pixel_size_a / self.bin_factor, threads=self.threads)

    def _partial_first_pass(self, image: np.ndarray) -> tuple:
        """Like :meth:`first_pass_frame` when local motion may make the spectrum unnecessary: a
        :class:`~framewatch.core.partial_transform.PartialSpectrum` finished in the columns the
        alignment copy needs (movie-size output only; otherwise the full transform)."""
        head_kx = self.align_shape[1] // 2 + 1
        if self.cfg.fourier_bin != 1 or 2 * head_kx > self.shape[1] // 2 + 1:
            return self.first_pass_frame(image)
        partial = PartialSpectrum(image, head_kx=head_kx, threads=self.threads)
        return partial, fourier_crop(partial.head, self.shape, self.align_shape)

    def _local_motion(self, cropped: list, alignment: GlobalAlignment, timings: dict,
                      streamed: StreamedPatches | None = None) -> LocalMotion:
        """Patches on the registered alignment copy (the cropped spectra shifted by the whole-frame
        trajectory), the evidence rule and the pooled fit (:mod:`framewatch.core.local_motion`).
        ``streamed``: the patch spectra built while the frames arrived, used when they fit."""
        cfg = self.cfg
        t = time.perf_counter()
        patches = cfg.patches
        if patches == "auto":
            significance = alignment.peak_significance
            whole_sig = float(np.median(significance)) if significance is not None and len(significance) else 0.0
            choice = choose_patch_grid(self.align_shape, bin_factor=self.bin_factor, whole_frame_significance=whole_sig,
                                       overlap=cfg.patch_overlap)
            if choice.patches == (0, 0):
                timings["local_align_s"] = time.perf_counter() - t
                return local_motion_off(f"--patches auto: {choice.reason}")
            patches = choice.patches
        options = self.patch_options(patches)
        layout = patch_layout(self.align_shape, n_frames=len(cropped), bin_factor=self.bin_factor,
                              pixel_size_a=self.pixel_size_a, dose_per_frame_e_per_a2=cfg.dose_per_frame_e_per_a2,
                              options=options)
        local = None
        if streamed is not None:
            meas = streamed.measurements(alignment.shifts_px, layout=layout, bin_factor=self.bin_factor,
                                         options=options, spectral_snr=alignment.spectral_snr)
            if meas is not None:
                local = local_motion_from_patches(meas, n_frames=len(cropped), grid=patches, image_shape=self.shape,
                                                  force=cfg.local_force)
                if local.evidence is not None and local.evidence.near_threshold(
                        EvidenceOptions(), z_margin=STREAMED_Z_MARGIN, gain_margin=STREAMED_GAIN_MARGIN):
                    streamed.dropped = f"the evidence is near its threshold ({local.evidence.reason})"
                    local = None  # decide on the copy registered by the final shifts, as correct_movie does
        if local is None:
            shape = self.align_shape
            with frame_pool(self.threads, len(cropped)) as pool:  # small transforms: one frame per thread
                registered = np.stack(pool.map(lambda i: irfft2(
                    shift_spectrum(cropped[i], shape, *(-alignment.shifts_px[i] / self.bin_factor)), shape,
                    threads=pool.threads_each), range(len(cropped))))
            meas = measure_patches(registered, bin_factor=float(self.bin_factor), pixel_size_a=self.pixel_size_a,
                                   dose_per_frame_e_per_a2=cfg.dose_per_frame_e_per_a2, options=options,
                                   spectral_snr=alignment.spectral_snr)
            del registered
            local = local_motion_from_patches(meas, n_frames=len(cropped), grid=patches, image_shape=self.shape,
                                              force=cfg.local_force)
        timings["local_align_s"] = time.perf_counter() - t
        return local

    def _warped_spectra(self, raw: list, corrected, alignment: GlobalAlignment, local, timings: dict) -> list:
        """Every frame's spectrum after warping it by the local model (the second pass)."""
        n = len(raw)
        middle = alignment.shifts_px[n // 2]
        step = LOCAL_FIELD_GRID_PX
        fb = self.cfg.fourier_bin
        grid_ny, grid_nx = field_grid_shape(self.movie_shape, step)
        gy, gx = np.mgrid[0:grid_ny, 0:grid_nx] * float(step)
        # the warp runs on movie pixels; the model and shifts are in output pixels
        gy, gx = (gy + 0.5) / fb - 0.5, (gx + 0.5) / fb - 0.5
        seconds = np.zeros((n, 2))  # per frame: warp, transform

        scratch = [np.empty(self.movie_shape, np.float32) for _ in range(2)]  # the frame, the warped frame

        def one(i: int) -> np.ndarray:
            image = corrected(i, scratch[0])
            raw[i] = None
            w = time.perf_counter()
            if local.model is not None:
                gdx, gdy = alignment.shifts_px[i] - middle
                # the model is in registered coordinates; this frame's pixel u + G_t shows point u
                fdx, fdy = local.model.displacement(gx - gdx, gy - gdy, float(i))
                # the B-spline taps run on the frame itself; its prefilter is applied in Fourier space
                # by the sums (prefilter_factors), which saves a pass over every frame
                image = warp_image(image, np.asarray(fdx * fb, np.float32), np.asarray(fdy * fb, np.float32),
                                   grid_step_px=step, out=scratch[1], coefficients=image)
            f = time.perf_counter()
            spectrum = self._to_output(rfft2(image, threads=self.threads))
            seconds[i] = f - w, time.perf_counter() - f
            return spectrum

        t = time.perf_counter()
        spectra = [one(i) for i in range(n)]
        timings["second_pass_s"] = time.perf_counter() - t
        timings["warp_s"], timings["fft_again_s"] = (float(v) for v in seconds.sum(axis=0))
        return spectra

    def _to_output(self, spectrum: np.ndarray) -> np.ndarray:
        """Fourier-crop a movie-size spectrum to the output size (``fourier_bin``); else unchanged."""
        if self.cfg.fourier_bin == 1:
            return spectrum
        return fourier_crop(spectrum, self.movie_shape, self.shape)

    def bad_mask(self, total: np.ndarray, gain, defect_mask, *, final: bool = True) -> np.ndarray:
        """Pixels to replace ``(ny, nx)`` bool: bad gain, known defects, dead and hot pixels on ``total``
        (the float32 sum of the raw frames; scaled in place by the gain). ``final=False``: a provisional
        mask on a partial sum (streaming): no signal check and no note."""
        if final:
            check_movie_signal(total, path=self.path)
        bad = np.zeros(self.movie_shape, dtype=bool)
        if gain is not None:
            bad |= bad_gain_mask(gain)
            note = check_gain_defects(bad, path=self.path)
            self.input_notes += [note] if note and final else []
            gain_where_good(total, gain, bad)
        if defect_mask is not None:
            if defect_mask.shape != self.movie_shape:
                raise MovieFormatError(
                    f"defect mask {defect_mask.shape} does not match the movie {self.movie_shape}", path=self.path
                )
            bad |= defect_mask
        bad |= detect_dead_pixels(total, exclude=bad)  # first, so a dead column's neighbours are not called hot
        bad |= detect_hot_pixels(total, threshold_sigma=self.cfg.hot_pixel_sigma, exclude=bad)
        return bad

    def _sums(self, spectra, n: int, shifts_px: np.ndarray, doses: np.ndarray, *, prefilter: bool) -> dict:
        """Shift every frame to the middle frame's position and form the weighted full, even and odd
        sums (:mod:`framewatch.core.weighted_sums`). ``spectra``: a list of ``n`` spectra (emptied).
        ``prefilter``: the spectra are of frames warped with unfiltered B-spline taps
        (:meth:`_warped_spectra`); the sums apply the prefilter."""
        cfg, shape = self.cfg, self.shape
        inv2ne = half_inverse_critical_exposure(shape, pixel_size_a=self.pixel_size_a, voltage_kv=cfg.voltage_kv)
        factors = prefilter_factors(inv2ne.shape, image_shape=self.movie_shape) if prefilter else None
        sums = weighted_sums(spectra, shape=shape, shifts_px=shifts_px - shifts_px[n // 2], inv2ne=inv2ne,
                             doses_e_per_a2=doses, unweighted=cfg.unweighted_sum, consume=True,
                             frequency_factors=factors)
        return {"full_spec": sums.full, "even_spec": sums.even, "odd_spec": sums.odd, "plain_spec": sums.plain}
