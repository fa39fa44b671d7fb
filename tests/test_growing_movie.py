"""core.movie_io.GrowingMovie: a movie file read while it is written gives open_movie's frames.

Each movie is written step by step on disk (tests/growing_writer.py: MRC with the final nz first or
with nz growing, TIFF pages appended LZW or uncompressed, EER raw frames appended; every frame in
two halves) and polled after every step, so every partial state a writer leaves is seen once.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from eer_encoder import encode_movie, events_from_mask, split_counts_into_raw_frames, write_eer
from growing_writer import movie_bytes, mrc_steps, page_steps
from sim_helpers import simulated

from framewatch.core.decode_limits import DecodeLimits
from framewatch.core.errors import DecodeLimitError, MovieChangedError, MovieFormatError, SettingsError
from framewatch.core.movie_io import GrowingMovie, open_movie

N_FRAMES = 6
RAW_PER_FRACTION = 16


def sim_frames(seed=5, ny=256, nx=256):
    return simulated(ny=ny, nx=nx, n_frames=N_FRAMES, dose_per_frame_e_per_a2=1.0, seed=seed).frames


def eer_bytes(tmp_path, frames, *, with_count: bool, seed=0) -> bytes:
    """An EER movie whose fractions of RAW_PER_FRACTION raw frames are ``frames`` (counts)."""
    rng = np.random.default_rng(seed)
    raws = split_counts_into_raw_frames(np.asarray(frames), [RAW_PER_FRACTION] * len(frames), rng)
    strips = encode_movie([events_from_mask(r, rng) for r in raws], shape=frames[0].shape, compression=65001)
    path = tmp_path / "whole.eer"
    write_eer(path, strips, shape=frames[0].shape, metadata=None if with_count else {"sensorPixelSize.width": 1.5e-10})
    data = path.read_bytes()
    path.unlink()
    return data


def case_bytes(kind: str, tmp_path, frames) -> tuple[str, bytes, list, int]:
    """(suffix, finished bytes, writer steps, frame count the writer reports) of one case."""
    if kind.startswith("mrc"):
        data = movie_bytes(tmp_path, frames, ".mrc")
        return ".mrc", data, mrc_steps(data, len(frames), nz_growing=kind == "mrc_nz_growing"), len(frames)
    if kind.startswith("tiff"):
        data = movie_bytes(tmp_path, frames, ".tif", tiff_compression="lzw" if kind == "tiff_lzw" else None)
        return ".tif", data, page_steps(data), len(frames)
    data = eer_bytes(tmp_path, frames, with_count=kind == "eer_count")
    return ".eer", data, page_steps(data), len(frames) * RAW_PER_FRACTION


EER_OPTIONS = dict(eer_group_frames=RAW_PER_FRACTION)
KINDS = ["mrc_nz_final", "mrc_nz_growing", "tiff_lzw", "tiff_none", "eer_count", "eer_no_count"]


def write_steps(path, steps, stop=None):
    """Apply ``steps[:stop]`` to ``path`` in one go."""
    with open(path, "r+b" if path.exists() else "wb") as f:
        for offset, data in steps[:stop]:
            f.seek(offset)
            f.write(data)


def follow_step_by_step(path, steps, n_frames, **options):
    """Poll after every step; returns (frames from polls, frames from rest, growing movie)."""
    path.write_bytes(b"")
    polled = []
    with GrowingMovie(path, **options) as movie:
        with open(path, "r+b") as f:
            for offset, data in steps:
                f.seek(offset)
                f.write(data)
                f.flush()
                polled += movie.poll()
        rest = movie.rest(n_frames)
    return polled, rest, movie


@pytest.mark.parametrize("kind", KINDS)
def test_frames_read_while_written_equal_open_movie_of_the_finished_file(tmp_path, kind):
    frames = sim_frames()
    suffix, _, steps, n = case_bytes(kind, tmp_path, frames)
    path = tmp_path / f"movie{suffix}"
    options = EER_OPTIONS if suffix == ".eer" else {}
    polled, rest, movie = follow_step_by_step(path, steps, n, **options)
    with open_movie(path, **options) as reader:
        expected = [reader.read_frame(i) for i in range(reader.n_frames)]
    got = polled + rest
    assert len(got) == len(expected) == N_FRAMES
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    if kind == "eer_no_count":  # fractions only in rest(); the raw frames were parsed as they came
        assert polled == [] and len(rest) == N_FRAMES
    else:
        assert len(polled) == N_FRAMES  # every frame came out of a poll before the end
    assert movie.shape == expected[0].shape


@pytest.mark.parametrize("kind", KINDS)
def test_a_poll_of_at_most_one_frame_returns_the_frames_one_by_one_in_order(tmp_path, kind):
    """What the stream's reader thread asks for (core/streamed_file.py): ``poll(max_frames=1)``
    returns the next frame only; the others come at the next polls, then ``rest`` has nothing left
    (EER without a count: no fraction before ``rest``)."""
    frames = sim_frames()
    suffix, data, _, n = case_bytes(kind, tmp_path, frames)
    path = tmp_path / f"movie{suffix}"
    path.write_bytes(data)
    options = EER_OPTIONS if suffix == ".eer" else {}
    with open_movie(path, **options) as reader:
        expected = [reader.read_frame(i) for i in range(reader.n_frames)]
    polled = []
    with GrowingMovie(path, **options) as movie:
        while got := movie.poll(max_frames=1):
            assert len(got) == 1
            polled += got
            assert movie.frames_returned == len(polled)
        assert movie.poll(max_frames=0) == []
        rest = movie.rest(n)
    if kind == "eer_no_count":
        assert polled == [] and len(rest) == N_FRAMES
    else:
        assert len(polled) == N_FRAMES and rest == []
    for a, b in zip(polled + rest, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("with_count", [True, False])
@pytest.mark.parametrize("grouping", [
    dict(eer_group_frames=20),
    dict(eer_total_dose_e_per_a2=6.0, eer_fraction_dose_e_per_a2=0.7),
    dict(eer_group_frames=RAW_PER_FRACTION, eer_upsampling=2),
])
def test_eer_fractions_equal_open_movie_for_either_grouping(tmp_path, with_count, grouping):
    # 96 raw frames in fractions of 20 (-> 5 fractions of 19/20) or by a dose target (-> 9 fractions of 10/11)
    data = eer_bytes(tmp_path, sim_frames(), with_count=with_count, seed=1)
    path = tmp_path / "movie.eer"
    polled, rest, movie = follow_step_by_step(path, page_steps(data), N_FRAMES * RAW_PER_FRACTION, **grouping)
    with open_movie(path, **grouping) as reader:
        expected = [reader.read_frame(i) for i in range(reader.n_frames)]
        assert movie.dose_per_fraction_e_per_a2 == reader.dose_per_fraction_e_per_a2
    got = polled + rest
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert (len(polled) == len(expected)) if with_count else not polled
    assert movie.raw_frames_read == N_FRAMES * RAW_PER_FRACTION


def test_nothing_is_returned_before_its_bytes_are_on_disk(tmp_path):
    frames = sim_frames()
    _, data, steps, n = case_bytes("mrc_nz_final", tmp_path, frames)
    path = tmp_path / "m.mrc"
    write_steps(path, steps, stop=4)  # header, frame 0, half of frame 1
    with GrowingMovie(path) as movie:
        assert len(movie.poll()) == 1
        assert movie.poll() == []
        write_steps(path, steps, stop=5)
        assert len(movie.poll()) == 1
        assert movie.frames_returned == 2


# ------------------------------------------------------------------------------------ changed files


def started(tmp_path, kind, stop):
    """A movie of ``kind`` written up to step ``stop`` and a GrowingMovie that polled it."""
    suffix, data, steps, n = case_bytes(kind, tmp_path, sim_frames())
    path = tmp_path / f"m{suffix}"
    write_steps(path, steps, stop=stop)
    movie = GrowingMovie(path, **(EER_OPTIONS if suffix == ".eer" else {}))
    return path, data, steps, n, movie


@pytest.mark.parametrize("kind", ["mrc_nz_final", "tiff_lzw", "eer_count"])
def test_a_truncated_file_is_a_changed_movie(tmp_path, kind):
    path, data, steps, n, movie = started(tmp_path, kind, stop=len(case_bytes(kind, tmp_path, sim_frames())[2]) // 2)
    assert movie.poll()
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(MovieChangedError, match=f"{path.name}: truncated while it was read"):
        movie.poll()


@pytest.mark.parametrize("kind", ["mrc_nz_growing", "tiff_none"])
def test_a_file_replaced_by_a_rename_is_a_changed_movie(tmp_path, kind):
    path, data, steps, n, movie = started(tmp_path, kind, stop=8)
    assert movie.poll()
    other = tmp_path / f"other{path.suffix}"
    other.write_bytes(data)
    os.replace(other, path)
    with pytest.raises(MovieChangedError, match=f"{path.name}: replaced by another file"):
        movie.poll()
    movie.close()
    with pytest.raises(ValueError, match="closed"):
        movie.poll()


def test_an_mrc_truncated_and_written_again_between_polls_is_found_at_the_end(tmp_path):
    path, data, steps, n, movie = started(tmp_path, "mrc_nz_final", stop=6)
    assert len(movie.poll()) == 2
    os.truncate(path, 1024)  # and the writer starts again: the same size and header before the next poll
    write_steps(path, steps[:1])
    with open(path, "r+b") as f:
        f.seek(len(data) - 1)
        f.write(data[-1:])
    with pytest.raises(MovieChangedError, match="frame 0 was rewritten after it was read"):
        movie.rest(n)


def test_a_deleted_file_is_a_changed_movie(tmp_path):
    path, _, _, _, movie = started(tmp_path, "mrc_nz_final", stop=5)
    movie.poll()
    path.unlink()
    with pytest.raises(MovieChangedError, match="deleted or moved away"):
        movie.poll()


def test_a_rewritten_mrc_header_or_tiff_directory_is_a_changed_movie(tmp_path):
    path, data, steps, n, movie = started(tmp_path, "mrc_nz_final", stop=6)
    assert movie.poll()
    with open(path, "r+b") as f:  # same file, same size, another mode
        f.seek(12)
        f.write(struct.pack("<i", 2 if struct.unpack_from("<i", data, 12)[0] != 2 else 1))
    with pytest.raises(MovieChangedError, match="MRC header changed"):
        movie.poll()

    path, data, steps, n, movie = started(tmp_path, "tiff_lzw", stop=9)
    assert len(movie.poll()) >= 2
    other = movie_bytes(tmp_path, sim_frames(seed=9)[:, :, :128], ".tif")  # in place: same inode
    with open(path, "r+b") as f:
        f.write(other)
    with pytest.raises(MovieChangedError, match="page directory (changed|lost) page 0|page directory changed"):
        movie.poll()


@pytest.mark.parametrize("kind", KINDS)
def test_a_final_count_other_than_the_files_is_a_changed_movie(tmp_path, kind):
    path, data, steps, n, movie = started(tmp_path, kind, stop=None)
    movie.poll()
    with pytest.raises(MovieChangedError, match=f"{path.name}: its writer said it is complete with {n + 1} "):
        movie.rest(n + 1)


def test_an_eer_count_other_than_its_metadatas_is_a_changed_movie(tmp_path):
    frames = sim_frames()
    data = eer_bytes(tmp_path, frames, with_count=True)
    steps = page_steps(data)
    n_raw = N_FRAMES * RAW_PER_FRACTION
    path = tmp_path / "m.eer"
    write_steps(path, steps)
    with open(path, "r+b") as f:  # the metadata announces one raw frame more than the file holds
        raw = bytearray(f.read())
        at = raw.index(b'"numberOfFrames">') + len(b'"numberOfFrames">')
        assert raw[at: at + 3] == b"96<"
        raw[at: at + 2] = b"97"
        f.seek(0)
        f.write(raw)
    with GrowingMovie(path, **EER_OPTIONS) as movie:
        movie.poll()
        with pytest.raises(MovieChangedError, match=f"announced {n_raw + 1} raw frames"):
            movie.rest(n_raw)


def test_decode_limits_and_bad_input_are_format_errors(tmp_path):
    path, data, steps, n, movie = started(tmp_path, "tiff_lzw", stop=None)
    movie.close()
    with GrowingMovie(path, limits=DecodeLimits(max_movie_bytes_decoded=3 * 256 * 256)) as small:
        with pytest.raises(DecodeLimitError, match="limit"):
            small.poll()
    with pytest.raises(MovieFormatError, match="not found"):
        GrowingMovie(tmp_path / "absent.mrc")
    with pytest.raises(MovieFormatError, match="unknown movie format"):
        GrowingMovie(tmp_path / "movie.xyz")
    with GrowingMovie(path) as movie:
        with pytest.raises(MovieFormatError, match="has 0 frames"):
            movie.rest(0)
    with pytest.raises(TypeError, match="open_movie's keyword options"):
        GrowingMovie(path, eer_grouping=3)
    (tmp_path / "m.eer").write_bytes(b"")
    with pytest.raises(SettingsError, match="upsampling 3"):
        GrowingMovie(tmp_path / "m.eer", eer_upsampling=3)
