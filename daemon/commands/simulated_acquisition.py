"""A simulated tilt-series acquisition written the way SerialEM writes one (for the demo and tests).

Movies go to ``DIR/frames/`` frame by frame, in place, under their final names:

- MRC: the header with the *final* ``nz`` is written first (as SerialEM does), then one frame at a
  time, flushed;
- TIFF: one page appended per frame (LZW, rows flipped in Y like every TIFF movie writer).

After each movie, its ``[ZValue = n]`` section is appended to the tilt-series mdoc
``DIR/SERIES.mrc.mdoc`` (``SubFramePath`` a Windows path, ``DateTime`` with a two-digit year on a
simulated clock of ``tilt_period_s`` per tilt), and optionally the per-movie frame mdoc
``MOVIE.tif.mdoc`` SerialEM writes after the frames are saved. Angles follow the dose-symmetric
scheme (0, +s, -s, -2s, +2s, +3s, -3s, ...; Hagen et al. 2017).
"""
from __future__ import annotations

import datetime as _dt
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framewatch.core.atomic_write import atomic_write_text

TARGET_DEFOCUS_UM = -3.5  # the mdoc's TargetDefocus (micrometres, negative = underfocus, as SerialEM writes it)


def dose_symmetric_angles(n: int, step_deg: float = 3.0) -> list[float]:
    """0, +s, -s, -2s, +2s, +3s, -3s, ...: groups of two on alternating sides after the first."""
    out = [0.0]
    k, side = 1, 1
    while len(out) < n:
        out.append(side * k * step_deg)
        if len(out) < n:
            out.append(-side * k * step_deg)
        k += 1
        side = -side
    return out[:n]


def movie_name(series: str, index: int, angle: float, ext: str) -> str:
    return f"{series}_{index:03d}_{angle:.1f}.{ext}"


@dataclass
class WrittenMovie:
    path: Path
    index: int
    angle_deg: float
    n_frames: int
    fmt: str
    started: float
    last_write_started: float  # wall time just before the final bytes were written
    completed: float  # wall time after the file was closed (and its frame mdoc written)
    zvalue: int | None = None
    frames: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Acquisition:
    directory: Path
    series: str = "TS_01"
    n_tilts: int = 7
    step_deg: float = 3.0
    shape: tuple[int, int] = (256, 256)
    n_frames: int = 8
    dose_per_tilt_e_per_a2: float = 3.0
    pixel_size_a: float = 1.5
    formats: tuple[str, ...] = ("tiff", "mrc")  # cycled through the tilts
    frame_interval_s: float = 0.05
    tilt_interval_s: float = 0.3
    tilt_period_s: float = 45.0  # simulated clock of the mdoc DateTime
    write_mdoc: bool = True
    prior_record_dose: bool = False  # write PriorRecordDose in the mdoc sections
    exposure_dose_in_mdoc: bool = True
    frame_mdoc_every: int = 0  # write a frame mdoc for every k-th movie (0 = never)
    keep_frames: bool = False
    dead_column: int | None = None  # a detector column that reads 0 in every movie (the camera's defect)
    seed: int = 0
    clock_start: _dt.datetime = field(default_factory=lambda: _dt.datetime(2025, 3, 14, 9, 0, 0))

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.frames_dir = self.directory / "frames"
        self.mdoc_path = self.directory / f"{self.series}.mrc.mdoc"
        self.angles = dose_symmetric_angles(self.n_tilts, self.step_deg)
        self.written: list[WrittenMovie] = []
        self._z = 0

    @property
    def dose_per_frame(self) -> float:
        return self.dose_per_tilt_e_per_a2 / self.n_frames

    def frames_for(self, index: int) -> np.ndarray:
        from framewatch.core.simulate import SimulationSpec, simulate_movie

        spec = SimulationSpec(
            ny=self.shape[0],
            nx=self.shape[1],
            n_frames=self.n_frames,
            pixel_size_a=self.pixel_size_a,
            dose_per_frame_e_per_a2=self.dose_per_frame,
            prior_dose_e_per_a2=index * self.dose_per_tilt_e_per_a2,
            gain_rms=0.0,
            dead_column=self.dead_column,
            seed=self.seed * 1000 + index,
        )
        return simulate_movie(spec, threads=1).frames

    def start_mdoc(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        if not self.write_mdoc:
            return
        stamp = self.clock_start.strftime("%d-%b-%y  %H:%M:%S")
        text = (
            f"PixelSpacing = {self.pixel_size_a * 4:g}\n"
            f"Voltage = 300\n"
            f"ImageFile = {self.series}.mrc\n"
            f"ImageSize = {self.shape[1] // 4} {self.shape[0] // 4}\n"
            "DataMode = 1\n\n"
            f"[T = SerialEM: framewatch simulated acquisition                {stamp}    ]\n\n"
            "[T =     Tilt axis angle = 85.3, binning = 4  spot = 8  camera = 2]\n\n"
        )
        with open(self.mdoc_path, "w", newline="\n") as f:
            f.write(text)
            f.flush()

    def _append_section(self, m: WrittenMovie, prior: float) -> None:
        with open(self.mdoc_path, "a", newline="\n") as f:
            f.write(self.section_text(m, prior))
            f.flush()

    def section_text(self, m: WrittenMovie, prior: float) -> str:
        """The ``[ZValue = n]`` section of a written movie (numbered in the order asked for)."""
        when = self.clock_start + _dt.timedelta(seconds=self.tilt_period_s * m.index)
        win = f"D:\\DATA\\framewatch_demo\\frames\\{m.path.name}"
        lines = [
            f"[ZValue = {self._z}]",
            f"TiltAngle = {m.angle_deg + 0.0011:.5f}",
            f"ExposureDose = {self.dose_per_tilt_e_per_a2 if self.exposure_dose_in_mdoc else 0:g}",
        ]
        if self.prior_record_dose:
            lines.append(f"PriorRecordDose = {prior:g}")
        lines += [
            f"PixelSpacing = {self.pixel_size_a * 4:g}",
            "Binning = 4",
            f"TargetDefocus = {TARGET_DEFOCUS_UM:g}",
            f"SubFramePath = {win}",
            f"NumSubFrames = {m.n_frames}",
            f"DateTime = {when.strftime('%d-%b-%y  %H:%M:%S')}",
            "",
            "",
        ]
        m.zvalue = self._z
        self._z += 1
        return "\n".join(lines)

    def write_tilt(self, index: int, *, fmt: str | None = None, frames: np.ndarray | None = None,
                   mdoc_frames: int | None = None) -> WrittenMovie:
        """Write tilt ``index`` frame by frame; then its mdoc section (and frame mdoc)."""
        angle = self.angles[index]
        fmt = fmt or self.formats[index % len(self.formats)]
        if frames is None:
            frames = self.frames_for(index)
        ext = "tif" if fmt == "tiff" else "mrc"
        path = self.frames_dir / movie_name(self.series, index, angle, ext)
        started = time.time()
        if fmt == "mrc":
            last = write_mrc_frame_by_frame(path, frames, self.frame_interval_s, pixel_size_a=self.pixel_size_a)
        else:
            last = write_tiff_frame_by_frame(path, frames, self.frame_interval_s)
        m = WrittenMovie(path, index, angle, len(frames), fmt, started, last, time.time(),
                         frames=frames if self.keep_frames else None)
        if self.frame_mdoc_every and index % self.frame_mdoc_every == 0:
            write_frame_mdoc(path, mdoc_frames or len(frames), angle=angle, pixel_size_a=self.pixel_size_a,
                             dose_per_frame=self.dose_per_frame)
            m.completed = time.time()
        if self.write_mdoc:
            self._append_section(m, prior=index * self.dose_per_tilt_e_per_a2)
        self.written.append(m)
        return m

    def run(self, *, stop=None) -> list[WrittenMovie]:
        self.start_mdoc()
        for i in range(self.n_tilts):
            if stop is not None and stop.is_set():
                break
            self.write_tilt(i)
            time.sleep(self.tilt_interval_s)
        return self.written


def mrc_header_for(frames: np.ndarray, *, pixel_size_a: float | None = None) -> bytes:
    """The 1024-byte header framewatch's movie writer gives these frames (final nz included)."""
    from framewatch.core.movie_io import write_movie

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "h.mrc"
        write_movie(p, frames, pixel_size_a=pixel_size_a)
        with open(p, "rb") as f:
            return f.read(1024)


def write_mrc_frame_by_frame(path: Path, frames: np.ndarray, interval_s: float, *, pixel_size_a: float | None = None,
                             n_written: int | None = None) -> float:
    """Header with the final nz first, then each frame; ``n_written`` < n stops early (truncated)."""
    header = mrc_header_for(frames, pixel_size_a=pixel_size_a)
    n = len(frames) if n_written is None else n_written
    last = time.time()
    with open(path, "wb") as f:
        f.write(header)
        f.flush()
        for i in range(n):
            time.sleep(interval_s)
            last = time.time()
            f.write(np.ascontiguousarray(frames[i]).tobytes())
            f.flush()
    return last


def write_tiff_frame_by_frame(path: Path, frames: np.ndarray, interval_s: float, *, n_written: int | None = None) -> float:
    import tifffile

    n = len(frames) if n_written is None else n_written
    last = time.time()
    for i in range(n):
        time.sleep(interval_s)
        last = time.time()
        tifffile.imwrite(path, np.ascontiguousarray(frames[i][::-1, :]), append=True, photometric="minisblack",
                         compression="lzw", metadata=None)
    return last


def write_frame_mdoc(movie: Path, num_sub_frames: int, *, angle: float, pixel_size_a: float, dose_per_frame: float) -> Path:
    """The per-movie ``MOVIE.tif.mdoc`` ([FrameSet = 0]) SerialEM writes after saving the frames."""
    when = _dt.datetime.now().strftime("%d-%b-%y  %H:%M:%S")
    text = (
        f"T = SerialEM: framewatch simulated acquisition   {when}\n"
        "Voltage = 300\n\n"
        "[FrameSet = 0]\n"
        f"TiltAngle = {angle:g}\n"
        f"ExposureDose = {dose_per_frame * num_sub_frames:g}\n"
        f"PixelSpacing = {pixel_size_a:g}\n"
        f"SubFramePath = X:\\frames\\{movie.name}\n"
        f"NumSubFrames = {num_sub_frames}\n"
        f"FrameDosesAndNumber = {dose_per_frame:g} {num_sub_frames}\n"
        f"DateTime = {when}\n"
    )
    p = movie.with_name(movie.name + ".mdoc")
    atomic_write_text(p, text)
    return p
