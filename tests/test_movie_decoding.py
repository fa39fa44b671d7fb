"""Decoding with two readers gives the frames and the sum of a sequential read, and its errors."""
import numpy as np
import pytest

from framewatch.core.errors import MovieFormatError
from framewatch.core.frame_arithmetic import sum_frames
from framewatch.core.movie_decoding import decode_frames
from framewatch.core.movie_io import open_movie, write_movie


class _FakeReader:
    format = "tiff"

    def __init__(self, frames, bad=()):
        self._frames, self._bad = frames, set(bad)
        self.n_frames, self.shape = len(frames), frames[0].shape
        self.closed = False

    def read_frame(self, i):
        if i in self._bad:
            raise MovieFormatError(f"frame {i} is damaged", path="fake.tif")
        return self._frames[i].copy()

    def close(self):
        self.closed = True


@pytest.mark.parametrize("threads", [1, 2])
def test_two_readers_give_the_frames_and_sum_of_one(tmp_path, threads):
    rng = np.random.default_rng(5)
    frames = rng.poisson(2.0, (7, 64, 48)).astype(np.uint8)
    path = tmp_path / "m.tif"
    write_movie(path, frames, tiff_compression="lzw", pixel_size_a=1.0)
    with open_movie(path) as reader:
        want = [reader.read_frame(i) for i in range(reader.n_frames)]
    with open_movie(path) as reader:
        got = decode_frames(reader, open_again=lambda: open_movie(path), threads=threads)
    assert len(got.frames) == len(want)
    for a, b in zip(got.frames, want):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.total, sum_frames(want))


@pytest.mark.parametrize("bad, first", [((4,), 4), ((3, 2), 2), ((5, 6), 5)])
def test_the_first_damaged_frame_in_order_is_reported(bad, first):
    frames = [np.full((8, 8), i, np.uint8) for i in range(7)]
    second = _FakeReader(frames, bad)
    with pytest.raises(MovieFormatError, match=f"frame {first} is damaged"):
        decode_frames(_FakeReader(frames, bad), open_again=lambda: second, threads=2)
    assert second.closed


def test_a_second_reader_that_cannot_open_is_an_error():
    frames = [np.zeros((8, 8), np.uint8) for _ in range(3)]

    def refuse():
        raise OSError("gone")

    with pytest.raises(OSError, match="gone"):
        decode_frames(_FakeReader(frames), open_again=refuse, threads=2)
