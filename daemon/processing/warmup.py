"""Compile every numba kernel of the engine before the daemon says it is ready.

numba compiles a kernel on its first call, for the argument types of that call. Without a
warm-up the first movie of a session would pay several seconds of compilation (tens when nothing
is cached). :func:`warm_up` therefore corrects a tiny synthetic movie (``framewatch.core.simulate``)
once whole-frame and once with 2 x 2 patches, in every pixel type a detector movie is read as, with
and without a gain reference, streams it frame by frame with an expected defect mask one pixel off
(the Fourier-space update of ``StreamingCorrection.finish``), and times it.

Compiled kernels are cached on disk (``cache=True``) in ``NUMBA_CACHE_DIR`` when it is set, else
next to the installed package (``__pycache__``), so a restart loads them instead of compiling.
numba reads ``NUMBA_CACHE_DIR`` itself when it is first imported; :func:`cache_status` only checks
that the directory it will use is writable and says clearly when it is not (under a hardened
systemd unit the package directory is read-only: the unit sets ``CacheDirectory=framewatch`` and
``NUMBA_CACHE_DIR=%C/framewatch/numba``).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["CacheStatus", "FullSizeWarmup", "WarmupReport", "cache_status", "warm_full_size", "warm_up"]

# pixel types movies are decoded to (TIFF uint8/uint16/4-bit unpacked to uint8, MRC modes 0, 1, 2,
# 6; mode 12 float16 is not supported by the engine yet); each specialises the gain/convert/sum kernels
MOVIE_DTYPES = ("uint8", "int8", "int16", "uint16", "float32")
WARMUP_SHAPE_PX = (96, 96)
WARMUP_FRAMES = 6


@dataclass(frozen=True)
class CacheStatus:
    directory: Path
    source: str  # "NUMBA_CACHE_DIR" or "package __pycache__"
    writable: bool
    message: str


@dataclass(frozen=True)
class WarmupReport:
    seconds: float
    steps_s: dict = field(default_factory=dict)  # e.g. {"whole_frame uint8": 1.2, "patches 2x2": 3.4}
    cache: CacheStatus | None = None
    memory_reuse: str | None = None  # core.memory_reuse: whether freed frame buffers are kept

    def as_dict(self) -> dict:
        return {
            "warmup_s": round(self.seconds, 3),
            "steps_s": {k: round(v, 3) for k, v in self.steps_s.items()},
            "numba_cache_dir": None if self.cache is None else str(self.cache.directory),
            "numba_cache_writable": None if self.cache is None else self.cache.writable,
            "memory_reuse": self.memory_reuse,
        }


def cache_status(env: dict | None = None) -> CacheStatus:
    """Where numba will cache compiled kernels and whether it can write there."""
    env = os.environ if env is None else env
    configured = env.get("NUMBA_CACHE_DIR")
    if configured:
        d = Path(configured)
        source = "NUMBA_CACHE_DIR"
    else:
        import framewatch.core as core

        d = Path(core.__file__).parent / "__pycache__"
        source = "package __pycache__"
    ok, why = _writable_dir(d)
    if ok:
        msg = f"numba caches compiled kernels in {d} ({source})"
    elif source == "NUMBA_CACHE_DIR":
        msg = (f"NUMBA_CACHE_DIR={d} is not writable ({why}): numba cannot cache the compiled kernels, so every start "
               "compiles them again (tens of seconds); make the directory writable for this user (systemd: "
               "CacheDirectory=framewatch and Environment=NUMBA_CACHE_DIR=%C/framewatch/numba)")
    else:
        msg = (f"the package directory {d.parent} is not writable ({why}) and NUMBA_CACHE_DIR is not set: numba cannot "
               "cache the compiled kernels; set NUMBA_CACHE_DIR to a writable directory")
    return CacheStatus(d, source, ok, msg)


def _writable_dir(d: Path) -> tuple[bool, str]:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return False, f"cannot create it: {err.strerror}"
    try:
        fd, name = tempfile.mkstemp(prefix=".framewatch-write-test-", dir=d)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        return False, err.strerror or str(err)
    return True, ""


def warm_up(*, patches: tuple[int, int] = (2, 2), dtypes: tuple[str, ...] = MOVIE_DTYPES,
            fourier_bin: int = 1, threads: int = 0) -> WarmupReport:
    """Run the engine on tiny synthetic movies so that every kernel is compiled (or loaded from
    the cache); returns the total and per-step times. ``patches``: the patch grid of the local
    pass (numba specialises on types, not sizes, so 2 x 2 compiles what any grid needs);
    ``fourier_bin`` > 1 also compiles the binning path. Raises what the engine raises."""
    from framewatch.core.correct import correct_movie
    from framewatch.core.memory_reuse import keep_freed_memory
    from framewatch.core.settings import CorrectionSettings
    from framewatch.core.simulate import SimulationSpec, simulate_movie

    reuse = keep_freed_memory()  # this process corrects movie after movie: reuse frame buffers
    status = cache_status()
    t_all = time.perf_counter()
    steps: dict[str, float] = {}

    def step(name, fn):
        t = time.perf_counter()
        fn()
        steps[name] = time.perf_counter() - t

    ny, nx = WARMUP_SHAPE_PX
    ny, nx = ny * fourier_bin, nx * fourier_bin
    holder = {}
    spec = SimulationSpec(ny=ny, nx=nx, n_frames=WARMUP_FRAMES, pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0,
                          jump_px=1.5, drift_px_per_frame=0.3, n_hot_pixels=2, dtype="uint8", seed=1)
    step("simulate", lambda: holder.setdefault("sim", simulate_movie(spec, threads=threads)))
    sim = holder["sim"]
    base = CorrectionSettings(pixel_size_a=spec.pixel_size_a, dose_per_frame_e_per_a2=spec.dose_per_frame_e_per_a2,
                              fourier_bin=fourier_bin, threads=threads)
    frames = sim.frames
    step("whole_frame", lambda: correct_movie(frames, settings=base))
    step("whole_frame+gain", lambda: correct_movie(frames, settings=base, gain=sim.gain))
    if min(patches) >= 2:
        local = CorrectionSettings(**{**base.__dict__, "patches": (2, 2)})
        # measured patches (on a movie this small the fit may fall back to whole-frame) ...
        step("patches_2x2", lambda: correct_movie(frames, settings=local, gain=sim.gain))
        # ... so the local warp is also run with a given smooth field, which always resamples
        step("patches_2x2_warp", lambda: correct_movie(frames, settings=local, gain=sim.gain, shifts_px=sim.shifts_px,
                                                       local_displacement_px=_smooth_field(nx, ny, spec.n_frames)))
    step("streaming_mask_change", lambda: _warm_streaming(frames, base, sim.gain))
    counts = frames.astype(np.float32)
    for name in dtypes:
        dt = np.dtype(name)
        if dt == np.uint8:
            continue  # done above
        typed = np.clip(counts, 0, 127).astype(dt) if dt.kind in "iu" else counts.astype(dt)
        step(f"dtype_{name}", lambda typed=typed: correct_movie(typed, settings=base, gain=sim.gain))
    step("unpack_4bit", _warm_4bit)
    step("eer_decode", _warm_eer)
    return WarmupReport(time.perf_counter() - t_all, steps, status, reuse.reason)


@dataclass(frozen=True)
class FullSizeWarmup:
    """One synthetic movie of the size the daemon last corrected, run through the engine before
    READY so that the first real movie after a start finds its memory in place (:func:`warm_full_size`).

    ``n_frames`` frames of ``frame_shape`` ``(ny, nx)`` movie pixels; ``settings``: the daemon's
    processing settings (the movie's own values -- pixel size, dose -- stand in); ``gain``: whether
    movies are gain corrected (a gain of ones is used); ``streaming``: through
    :class:`~framewatch.core.streaming_correction.StreamingCorrection` frame by frame (the path of a
    movie written while it is watched), else :func:`~framewatch.core.correct.correct_movie`;
    ``sums_dir``: the sums hand-over directory, where the worker's spare is made at the sums' size
    (:mod:`framewatch.daemon.processing.sums_handover`), or ``None``; ``source``: what the size was
    taken from (``"last movie"``, ``"gain reference"``)."""

    n_frames: int
    frame_shape: tuple[int, int]
    settings: object
    gain: bool = False
    streaming: bool = True
    sums_dir: str | None = None
    source: str = "last movie"

    @property
    def label(self) -> str:
        return f"full_size {self.n_frames}x{self.frame_shape[0]}x{self.frame_shape[1]}"


def warm_full_size(movie: FullSizeWarmup) -> float:
    """Correct one synthetic movie of ``movie``'s size; returns the seconds it took.

    Why: the first movie of its size in a fresh worker process takes every buffer from the
    operating system, page by page (on the development VM a first 4096² x 10 movie paid 2 s of
    system time, 30 000 page faults; the next ones none, since freed buffers are kept:
    :mod:`framewatch.core.memory_reuse`). The frames are one pattern of 1-3 counts repeated (every
    frame the same: a whole-frame peak high enough for the patches to be measured, no dead pixel,
    no hot one); the result is discarded."""
    from framewatch.core.correct import correct_movie

    t = time.perf_counter()
    ny, nx = movie.frame_shape
    pattern = np.random.default_rng(0).integers(1, 4, size=(ny, nx), dtype=np.uint8)
    gain = np.ones((ny, nx), np.float32) if movie.gain else None
    if movie.streaming:
        from framewatch.core.streaming_correction import StreamingCorrection

        streaming = StreamingCorrection(movie.settings, (ny, nx), gain=gain)
        for _ in range(movie.n_frames):
            streaming.add_frame(pattern.copy())  # a frame of its own, as a decoder gives it
        result = streaming.finish()
    else:
        result = correct_movie(np.repeat(pattern[None], movie.n_frames, axis=0), settings=movie.settings, gain=gain)
    if movie.sums_dir is not None:
        from framewatch.daemon.processing.sums_handover import make_spare

        make_spare(movie.sums_dir, 3 * result.dose_weighted_sum.nbytes)
    return time.perf_counter() - t


def _warm_streaming(frames, settings, gain) -> None:
    """Stream the movie frame by frame twice, the second time with the first's final mask one pixel
    off as the expected mask: ``finish()`` then updates every frame's spectrum in Fourier space
    (core/sparse_spectrum.py, the replacer's source lookup)."""
    from framewatch.core.streaming_correction import StreamingCorrection

    def stream(expected):
        streaming = StreamingCorrection(settings, frames[0].shape, gain=gain, expected_mask=expected)
        for frame in frames:
            streaming.add_frame(frame)
        streaming.finish()
        return streaming

    expected = stream(None).final_mask.copy()
    ny, nx = expected.shape
    expected[ny // 2, nx // 2] = not expected[ny // 2, nx // 2]
    stream(expected)


def _smooth_field(nx: int, ny: int, n_frames: int):
    """A displacement field of < 1 px, zero at the middle frame (the registration reference)."""
    m = n_frames // 2

    def displacement(x, y, t):
        a = 0.4 * (float(t) - m) / max(1, n_frames - 1)
        return a * np.sin(np.pi * np.asarray(x) / nx), a * np.cos(np.pi * np.asarray(y) / ny)

    return displacement


def _warm_4bit() -> None:
    from framewatch.core.movie_io import unpack_4bit

    unpack_4bit(np.zeros((4, 4), dtype=np.uint8), 8)


def _warm_eer() -> None:
    """The EER decoder's kernels for 4K/8K into uint8 and uint16 (a stream of zero bytes is
    decoded until it runs out; the error it then reports is expected)."""
    from framewatch.core.movie_io.eer import decode_eer_frame, eer_coding

    coding = eer_coding(65001)
    for up in (1, 2):
        for dt in (np.uint8, np.uint16):
            try:
                decode_eer_frame(np.zeros(16, np.uint8), shape=(16, 16), coding=coding, upsampling=up,
                                 out=np.zeros((16 * up, 16 * up), dtype=dt))
            except ValueError:
                pass
