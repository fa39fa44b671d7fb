"""The format registry (core/movie_io/registry.py) and the per-format probes (FileProgress).

For each format a file written frame by frame reports the frames written so far and is complete
only at the end; truncated and garbage files are incomplete with a reason and never raise; the
daemon's suffix lists derive from the registry; an ``.ecc`` file is an EER movie to readiness
(``.st``/``.mrcs`` MRC movies: tests/daemon/test_readiness_rules.py).
"""
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from eer_encoder import encode_movie, random_events, write_eer

from framewatch.core.errors import MovieFormatError
from framewatch.core.gain import GAIN_SUFFIXES
from framewatch.core.movie_io import (
    FORMATS,
    SUPPORTED_SUFFIXES,
    FileProgress,
    format_for,
    movie_suffixes,
    open_movie,
    probe_file,
    watch_patterns,
    write_movie,
)
from framewatch.core.movie_io.registry import gain_suffixes
from framewatch.daemon.config.configuration import DEFAULT_PATTERNS
from framewatch.daemon.intake.mdoc import STACK_SUFFIXES, series_name_from_mdoc_path
from framewatch.daemon.intake.readiness import probe_movie
from framewatch.daemon.state.output_names import MOVIE_EXTENSIONS, movie_stem

N = 5
FRAMES = np.random.default_rng(3).poisson(2.0, (N, 24, 40)).astype(np.uint16)
EER_SHAPE = (32, 48)


def mrc_bytes(tmp_path: Path) -> bytes:
    write_movie(tmp_path / "whole.mrc", FRAMES)
    return (tmp_path / "whole.mrc").read_bytes()


def tiff_bytes(tmp_path: Path) -> bytes:
    p = tmp_path / "whole.tif"
    for frame in FRAMES:
        tifffile.imwrite(p, frame, append=True, photometric="minisblack", compression="lzw", metadata=None)
    return p.read_bytes()


def eer_strips() -> list[bytes]:
    rng = np.random.default_rng(5)
    events = [random_events(rng, EER_SHAPE[0] * EER_SHAPE[1], 60) for _ in range(N)]
    return encode_movie(events, shape=EER_SHAPE)


def eer_bytes(tmp_path: Path) -> bytes:
    write_eer(tmp_path / "whole.eer", eer_strips(), shape=EER_SHAPE)
    return (tmp_path / "whole.eer").read_bytes()


def assert_incomplete(progress: FileProgress) -> None:
    assert isinstance(progress, FileProgress)
    assert progress.complete is False and progress.reason


# ------------------------------------------------------------------------------- frame by frame


def test_mrc_with_final_nz_from_the_first_frame(tmp_path):
    data = mrc_bytes(tmp_path)
    frame_bytes = FRAMES[0].nbytes
    p = tmp_path / "m.mrc"
    p.write_bytes(data[:1024])  # SerialEM: the header with the final nz, then the frames
    assert probe_file(p).frames_readable == 0 and not probe_file(p).complete
    for k in range(1, N + 1):
        with open(p, "ab") as f:
            f.write(data[1024 + (k - 1) * frame_bytes: 1024 + k * frame_bytes])
        progress = probe_file(p)
        assert (progress.frames_readable, progress.frames_expected, progress.complete) == (k, N, k == N)
        if k < N:
            assert "truncated" in progress.reason
    with open_movie(p) as reader:
        assert reader.n_frames == probe_file(p).frames_readable


def test_mrc_with_nz_growing(tmp_path):
    data = bytearray(mrc_bytes(tmp_path))
    frame_bytes = FRAMES[0].nbytes
    p = tmp_path / "m.mrcs"
    for k in range(1, N + 1):
        body = bytes(data[1024: 1024 + k * frame_bytes])
        struct.pack_into("<i", data, 8, k - 1)
        p.write_bytes(bytes(data[:1024]) + body)  # the frame is on disk before the header says so
        before = probe_file(p, frames_expected=N)
        assert (before.frames_readable, before.complete) == (k - 1, False)
        assert ("longer" if k > 1 else "0 frames") in before.reason
        struct.pack_into("<i", data, 8, k)
        p.write_bytes(bytes(data[:1024]) + body)
        progress = probe_file(p, frames_expected=N)
        assert (progress.frames_readable, progress.frames_expected, progress.complete) == (k, N, k == N)
        assert probe_file(p).complete  # without an expected count the file is whole at every step


def test_tiff_pages_appended_one_at_a_time(tmp_path):
    p = tmp_path / "m.tif"
    for k in range(1, N + 1):
        tifffile.imwrite(p, FRAMES[k - 1], append=True, photometric="minisblack", compression="lzw", metadata=None)
        progress = probe_file(p, frames_expected=N)
        assert (progress.frames_readable, progress.frames_expected, progress.complete) == (k, N, k == N)
        assert probe_file(p).complete and probe_file(p).frames_expected is None
    with open_movie(p) as reader:
        assert reader.n_frames == probe_file(p).frames_readable


def test_eer_raw_frames_written_one_at_a_time(tmp_path):
    strips = eer_strips()
    p = tmp_path / "m.eer"
    for k in range(1, N + 1):
        write_eer(p, strips[:k], shape=EER_SHAPE, metadata={"numberOfFrames": N})
        progress = probe_file(p)  # the metadata's numberOfFrames is the count to reach
        assert (progress.frames_readable, progress.frames_expected, progress.complete) == (k, N, k == N)
        write_eer(p, strips[:k], shape=EER_SHAPE, metadata={})
        progress = probe_file(p, frames_expected=N)
        assert (progress.frames_readable, progress.complete) == (k, k == N)
    with open_movie(p, eer_group_frames=1) as reader:
        assert reader.n_raw_frames == probe_file(p).frames_readable == N


@pytest.mark.parametrize("suffix,make", [(".mrc", mrc_bytes), (".tif", tiff_bytes), (".eer", eer_bytes)])
def test_every_prefix_of_a_file_is_incomplete_and_counts_up(tmp_path, suffix, make):
    """A file written byte by byte (or cut short anywhere): never raises, never complete before
    the last byte, frames readable never fall and never exceed the frames written."""
    data = make(tmp_path)
    p = tmp_path / f"cut{suffix}"
    seen = []
    for n in range(0, len(data), max(1, len(data) // 400)):
        p.write_bytes(data[:n])
        progress = probe_file(p, frames_expected=N)
        assert_incomplete(progress)
        seen.append(progress.frames_readable)
    assert seen == sorted(seen) and seen[-1] <= N - 1 and seen[0] == 0
    p.write_bytes(data)
    assert probe_file(p, frames_expected=N).complete


# ------------------------------------------------------------------------------ bad files


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_garbage_and_empty_files_are_incomplete_with_a_reason(tmp_path, suffix):
    p = tmp_path / f"g{suffix}"
    p.write_bytes(b"")
    assert "empty" in probe_file(p).reason and not probe_file(p).complete
    rng = np.random.default_rng(11)
    for size in (3, 17, 1023, 1024, 5000):
        p.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        assert_incomplete(probe_file(p))
    p.write_bytes(b"II*\x00" + b"\xff" * 400)  # a TIFF header pointing beyond the end
    assert_incomplete(probe_file(p))


@pytest.mark.parametrize("suffix,make", [(".mrc", mrc_bytes), (".tif", tiff_bytes), (".eer", eer_bytes)])
def test_damaged_structure_never_raises(tmp_path, suffix, make):
    """Bytes of the header and page directory changed at random: a FileProgress, never an exception."""
    data = make(tmp_path)
    rng = np.random.default_rng(2)
    p = tmp_path / f"d{suffix}"
    structure = list(range(0, 1024)) if suffix == ".mrc" else list(range(len(data) - 600, len(data))) + list(range(16))
    for _ in range(150):
        damaged = bytearray(data)
        for at in rng.choice(structure, size=3):
            damaged[at] = int(rng.integers(0, 256))
        p.write_bytes(bytes(damaged))
        assert isinstance(probe_file(p, frames_expected=N), FileProgress)


def test_truncated_files_name_the_problem(tmp_path):
    p = tmp_path / "t.mrc"
    p.write_bytes(mrc_bytes(tmp_path)[:-10])
    assert "the header says 5 frames, the file holds 4" in probe_file(p).reason
    p = tmp_path / "t.tif"
    p.write_bytes(tiff_bytes(tmp_path)[:-40])
    assert "beyond the end of the file" in probe_file(p).reason
    p = tmp_path / "t.eer"
    p.write_bytes(eer_bytes(tmp_path)[:-20])
    assert "beyond the end of the file" in probe_file(p).reason


def test_probe_reads_an_open_file_and_refuses_unknown_suffixes(tmp_path):
    p = tmp_path / "m.tif"
    p.write_bytes(tiff_bytes(tmp_path))
    with open(p, "rb") as f:
        assert probe_file(p, file=f) == probe_file(p)
        assert not f.closed
    with pytest.raises(MovieFormatError, match="unknown movie format"):
        probe_file(tmp_path / "m.dm4")


# ------------------------------------------------------------------------ what derives from it


def test_every_registered_suffix_reaches_the_daemon():
    suffixes = movie_suffixes()
    assert set(suffixes) == {s for fmt in FORMATS for s in fmt.suffixes} == set(SUPPORTED_SUFFIXES)
    assert {".mrc", ".mrcs", ".st", ".tif", ".tiff", ".eer", ".ecc"} <= set(suffixes)
    for suffix in suffixes:
        assert f"*{suffix}" in DEFAULT_PATTERNS and f"*{suffix}" in watch_patterns()
        assert suffix in MOVIE_EXTENSIONS and suffix in STACK_SUFFIXES
        assert movie_stem(f"TS_01_003_9.0{suffix.upper()}") == "TS_01_003_9.0"
        assert series_name_from_mdoc_path(f"/x/TS_01{suffix}.mdoc") == "TS_01"
        assert format_for(f"a{suffix}").name in ("mrc", "tiff", "eer")
    assert set(gain_suffixes()) <= set(GAIN_SUFFIXES) and not set(gain_suffixes()) & {".eer", ".ecc"}


def test_each_suffix_opens_with_its_format(tmp_path):
    for fmt in FORMATS:
        for suffix in fmt.suffixes:
            p = tmp_path / f"m{suffix}"
            if fmt.name == "eer":
                write_eer(p, eer_strips(), shape=EER_SHAPE)
            else:
                write_movie(p, FRAMES)
            with open_movie(p) as reader:
                assert reader.format == fmt.name
            assert probe_file(p).complete


def test_readiness_treats_ecc_files_as_eer_movies(tmp_path):
    p = tmp_path / "TS_01_000_0.0.ecc"
    p.write_bytes(eer_bytes(tmp_path))
    probe = probe_movie(p)
    assert (probe.fmt, probe.n_frames, probe.last_page_ok) == ("eer", N, True)
    os.truncate(p, p.stat().st_size - 20)
    probe = probe_movie(p)
    assert probe.fmt == "eer" and probe.last_page_ok is False and "beyond the end" in probe.problem
