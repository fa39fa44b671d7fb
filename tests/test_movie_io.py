"""Movie reading and writing: round trips, the TIFF Y flip, IMOD's mode-0 rule, and bad files."""
from __future__ import annotations

import io
import struct

import mrcfile
import numpy as np
import pytest
import tifffile

from framewatch.core.errors import MovieFormatError
from framewatch.core.movie_io import IMOD_STAMP, MovieReader, open_movie, write_image_mrc, write_movie

NY, NX, NF = 64, 96, 4  # non-square so transposition bugs show


def make_frames(dtype, *, n=NF, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.normal(5.0, 2.0, (n, NY, NX))).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, (n, NY, NX)).astype(dtype)


def read_all(path, **kwargs) -> np.ndarray:
    with open_movie(path, **kwargs) as reader:
        return np.stack(list(reader))


def handmade_mrc(path, data: np.ndarray, *, mode: int, order: str = "<", nz=None, nsymbt: int = 0,
                 imod_flags=None, tail: bytes = b"", dmin_dmax=(0.0, 0.0), exttyp: bytes = b"",
                 labels=(), nx_header=None, extended: bytes | None = None) -> None:
    """A minimal MRC file written byte by byte (for headers mrcfile would refuse to write).

    ``data`` is written as given (already packed for 4-bit modes: then pass ``nx_header``).
    ``extended``: the extended header bytes (default ``nsymbt`` zero bytes).
    """
    n, ny, nx = data.shape
    nx = nx if nx_header is None else nx_header
    header = bytearray(1024)
    struct.pack_into(order + "4i", header, 0, nx, ny, n if nz is None else nz, mode)
    struct.pack_into(order + "3i", header, 28, nx, ny, n)
    struct.pack_into(order + "3f", header, 40, nx * 1.5, ny * 1.5, n * 1.5)
    struct.pack_into(order + "3i", header, 64, 1, 2, 3)
    struct.pack_into(order + "2f", header, 76, *dmin_dmax)
    struct.pack_into(order + "i", header, 92, nsymbt)
    header[104:104 + len(exttyp)] = exttyp
    if imod_flags is not None:
        struct.pack_into(order + "2i", header, 152, IMOD_STAMP, imod_flags)
    struct.pack_into(order + "i", header, 220, len(labels))
    for i, label in enumerate(labels):
        header[224 + 80 * i: 224 + 80 * i + len(label)] = label.encode()
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00" if order == "<" else b"\x11\x11\x00\x00"
    with open(path, "wb") as f:
        f.write(bytes(header))
        f.write(b"\x00" * nsymbt if extended is None else extended)
        f.write(data.astype(data.dtype.newbyteorder(order)).tobytes())
        f.write(tail)


# ------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "dtype, mode",
    [("int8", 0), ("uint8", 0), ("int16", 1), ("float32", 2), ("uint16", 6), ("float16", 12)],
)
def test_mrc_round_trip_every_mode(tmp_path, dtype, mode):
    frames = make_frames(dtype)
    path = tmp_path / "movie.mrc"
    write_movie(path, frames, pixel_size_a=1.23)
    with open_movie(path) as reader:
        assert isinstance(reader, MovieReader)
        assert (reader.n_frames, reader.shape, reader.dtype) == (NF, (NY, NX), np.dtype(dtype))
        assert reader.pixel_size_a == pytest.approx(1.23, rel=1e-6)
        frame = reader.read_frame(2)
        assert frame.flags.c_contiguous and frame.flags.writeable and frame.dtype.isnative
        np.testing.assert_array_equal(frame, frames[2])
    np.testing.assert_array_equal(read_all(path), frames)
    with mrcfile.open(path, permissive=True, header_only=True) as mrc:
        assert int(mrc.header.mode) == mode
    assert mrcfile.validate(path, print_file=io.StringIO())
    assert not [p for p in tmp_path.iterdir() if p.name != "movie.mrc"], "temporary file left behind"


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("compression, tag", [("lzw", 5), ("zip", 8), ("zlib", 8), ("none", 1), (None, 1)])
def test_tiff_round_trip(tmp_path, dtype, compression, tag):
    frames = make_frames(dtype)
    path = tmp_path / "movie.tif"
    write_movie(path, frames, tiff_compression=compression)
    with open_movie(path) as reader:
        assert (reader.n_frames, reader.shape, reader.dtype, reader.format) == (NF, (NY, NX), np.dtype(dtype), "tiff")
        assert reader.pixel_size_a is None
    np.testing.assert_array_equal(read_all(path), frames)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == NF
        assert int(tif.pages[1].compression) == tag


def test_tiff_rows_are_stored_flipped_in_y(tmp_path):
    frames = make_frames("uint16")
    path = tmp_path / "movie.tiff"
    write_movie(path, frames)
    with tifffile.TiffFile(path) as tif:
        page0 = tif.pages[0].asarray()
    np.testing.assert_array_equal(page0[0], frames[0][-1])
    np.testing.assert_array_equal(page0, frames[0][::-1])


def test_mrc_and_tiff_of_the_same_movie_read_identical(tmp_path):
    frames = make_frames("uint8")
    write_movie(tmp_path / "a.mrcs", frames)
    write_movie(tmp_path / "a.tif", frames, tiff_compression="zip")
    np.testing.assert_array_equal(read_all(tmp_path / "a.mrcs"), read_all(tmp_path / "a.tif"))


def test_tiff_written_by_another_program_is_flipped_on_read(tmp_path):
    page = np.arange(NY * NX, dtype=np.uint16).reshape(NY, NX)
    tifffile.imwrite(tmp_path / "x.tif", np.stack([page, page + 1]), photometric="minisblack")
    with open_movie(tmp_path / "x.tif") as reader:
        np.testing.assert_array_equal(reader.read_frame(1), (page + 1)[::-1])


def test_pixel_size_round_trips_for_tiff_resolution_tags(tmp_path):
    write_movie(tmp_path / "p.tif", make_frames("uint8", n=1), pixel_size_a=0.834)
    with open_movie(tmp_path / "p.tif") as reader:
        assert reader.pixel_size_a == pytest.approx(0.834, rel=1e-6)


def test_two_d_input_and_two_d_mrc_are_one_frame(tmp_path):
    image = make_frames("float32", n=1)[0]
    write_movie(tmp_path / "one.mrc", image)
    with mrcfile.new(tmp_path / "flat.mrc") as mrc:
        mrc.set_data(image)
    for name in ("one.mrc", "flat.mrc"):
        with open_movie(tmp_path / name) as reader:
            assert reader.n_frames == 1
            np.testing.assert_array_equal(reader.read_frame(0), image)
            np.testing.assert_array_equal(reader.read_frame(-1), image)


def test_mode0_follows_imods_signed_bytes_rule(tmp_path):
    data = np.arange(2 * NY * NX, dtype=np.int64).reshape(2, NY, NX) % 256
    unsigned, signed = data.astype(np.uint8), data.astype(np.uint8).view(np.int8)
    handmade_mrc(tmp_path / "u.mrc", unsigned, mode=0, imod_flags=0)  # stamp, signed bit clear
    handmade_mrc(tmp_path / "s.mrc", signed, mode=0, imod_flags=1)  # stamp, signed bit set
    np.testing.assert_array_equal(read_all(tmp_path / "u.mrc"), unsigned)
    np.testing.assert_array_equal(read_all(tmp_path / "s.mrc"), signed)
    # no stamp: IMOD decides from the header's dmin/dmax (stamp/flag beat the statistics)
    cases = {(-128.0, 127.0): np.int8, (0.0, 255.0): np.uint8, (-3.0, 200.0): np.uint8, (-100.0, 130.0): np.int8,
             (0.0, 5.0): np.uint8}
    for i, ((dmin, dmax), dtype) in enumerate(cases.items()):
        handmade_mrc(tmp_path / f"plain{i}.mrc", signed, mode=0, dmin_dmax=(dmin, dmax))
        out = read_all(tmp_path / f"plain{i}.mrc")
        assert out.dtype == dtype, (dmin, dmax)
        np.testing.assert_array_equal(out.view(np.uint8), unsigned)
    handmade_mrc(tmp_path / "stamped.mrc", unsigned, mode=0, imod_flags=0, dmin_dmax=(-128.0, 127.0))
    assert read_all(tmp_path / "stamped.mrc").dtype == np.uint8


def test_extended_header_and_big_endian_are_honoured(tmp_path):
    frames = make_frames("int16", n=3)
    handmade_mrc(tmp_path / "be.mrc", frames, mode=1, order=">", nsymbt=1024 * 3)
    with open_movie(tmp_path / "be.mrc") as reader:
        assert reader.dtype == np.dtype("int16") and reader.dtype.isnative
        assert reader.pixel_size_a == pytest.approx(1.5)
        np.testing.assert_array_equal(np.stack(list(reader)), frames)
    with mrcfile.new(tmp_path / "ext.mrc") as mrc:
        mrc.set_data(frames)
        mrc.set_extended_header(np.zeros(7, dtype=[("v", "<f4", (9,))]))
    np.testing.assert_array_equal(read_all(tmp_path / "ext.mrc"), frames)


def test_reader_is_one_frame_at_a_time_and_closes(tmp_path):
    frames = make_frames("uint16")
    write_movie(tmp_path / "m.mrc", frames)
    reader = open_movie(tmp_path / "m.mrc")
    assert len(reader) == NF
    for i, frame in enumerate(reader):
        np.testing.assert_array_equal(frame, frames[i])
    with pytest.raises(IndexError):
        reader.read_frame(NF)
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read_frame(0)


def test_write_image_mrc_is_valid_with_pixel_size(tmp_path):
    image = make_frames("float32", n=1)[0].astype(np.float64)
    write_image_mrc(tmp_path / "img.mrc", image, pixel_size_a=2.5)
    write_image_mrc(tmp_path / "stack.mrc", make_frames("float32", n=3), pixel_size_a=0.8)
    for name, size, shape in (("img.mrc", 2.5, (NY, NX)), ("stack.mrc", 0.8, (3, NY, NX))):
        path = tmp_path / name
        assert mrcfile.validate(path, print_file=io.StringIO())
        with mrcfile.open(path) as mrc:
            assert mrc.data.dtype == np.float32 and mrc.data.shape == shape
            assert float(mrc.voxel_size.x) == pytest.approx(size)
            assert float(mrc.voxel_size.y) == pytest.approx(size)
    np.testing.assert_array_equal(mrcfile.read(tmp_path / "img.mrc"), image.astype(np.float32))
    write_image_mrc(tmp_path / "img.mrc", np.zeros((4, 5), np.float32), pixel_size_a=1.0)  # replaces atomically
    assert mrcfile.read(tmp_path / "img.mrc").shape == (4, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.mrc", "stack.mrc"]


def test_write_movie_with_explicit_mode_checks_values(tmp_path):
    frames = make_frames("uint8")
    write_movie(tmp_path / "m2.mrc", frames, mrc_mode=2)
    assert read_all(tmp_path / "m2.mrc").dtype == np.float32
    np.testing.assert_array_equal(read_all(tmp_path / "m2.mrc"), frames)
    with pytest.raises(ValueError, match="fit"):
        write_movie(tmp_path / "bad.mrc", frames.astype(np.float32) + 0.5, mrc_mode=1)


# ------------------------------------------------------------------------------------ bad inputs


def assert_names_file(err: pytest.ExceptionInfo, path) -> str:
    message = str(err.value)
    assert path.name in message
    assert err.value.path == path
    return message


def test_truncated_mrc(tmp_path):
    path = tmp_path / "short.mrc"
    write_movie(path, make_frames("int16"))
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(MovieFormatError) as err:
        open_movie(path)
    message = assert_names_file(err, path)
    assert "truncated" in message and f"file has {len(data) - 100}" in message
    assert f"expected {len(data)} bytes for {NF} frames of {NY} x {NX} mode 1" in message


def test_zero_frame_mrc(tmp_path):
    path = tmp_path / "empty.mrc"
    handmade_mrc(path, np.zeros((0, NY, NX), np.float32), mode=2)
    with pytest.raises(MovieFormatError, match="zero frames") as err:
        open_movie(path)
    assert_names_file(err, path)


def test_unknown_mrc_mode(tmp_path):
    path = tmp_path / "mode.mrc"
    write_movie(path, make_frames("int16"))
    raw = bytearray(path.read_bytes())
    struct.pack_into("<i", raw, 12, 7)
    path.write_bytes(bytes(raw))
    with pytest.raises(MovieFormatError, match="unknown MRC mode 7") as err:
        open_movie(path)
    assert_names_file(err, path)


def test_frame_count_disagreement(tmp_path):
    path = tmp_path / "more.mrc"
    write_movie(path, make_frames("uint16"))
    with open(path, "ab") as f:
        f.write(b"\x00" * (2 * NY * NX * 2))
    with pytest.raises(MovieFormatError) as err:
        open_movie(path)
    message = assert_names_file(err, path)
    assert f"frame count {NF} in the header disagrees with the {NF + 2} frames in the file" in message


def test_trailing_bytes_shorter_than_a_frame_are_tolerated(tmp_path):
    frames = make_frames("uint16")
    handmade_mrc(tmp_path / "tail.mrc", frames, mode=6, tail=b"\x00" * 10)
    np.testing.assert_array_equal(read_all(tmp_path / "tail.mrc"), frames)


@pytest.mark.parametrize("name", ["nan.mrc", "nan.tif"])
def test_nan_frame(tmp_path, name):
    frames = make_frames("float32")
    frames[3, 5, 7] = np.nan
    frames[1, 0, 0] = np.inf
    path = tmp_path / name
    write_movie(path, frames)
    with open_movie(path) as reader:
        reader.read_frame(0)
        with pytest.raises(MovieFormatError, match="frame 1 contains NaN or Inf values") as err:
            reader.read_frame(1)
        assert_names_file(err, path)
        with pytest.raises(MovieFormatError, match="frame 3 contains NaN or Inf"):
            reader.read_frame(3)
    with open_movie(path, check_values=False) as reader:
        assert np.isnan(reader.read_frame(3)[5, 7]) and np.isnan(reader.read_frame(3)).sum() == 1


@pytest.mark.parametrize("compression", ["lzw", "zip"])
def test_corrupt_tiff_page_names_the_page(tmp_path, compression):
    path = tmp_path / "corrupt.tif"
    frames = make_frames("uint16", n=3)
    frames[:] = np.random.default_rng(3).poisson(3, frames.shape)
    write_movie(path, frames, tiff_compression=compression)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        offset = page.dataoffsets[0] + page.databytecounts[0] // 2
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    with open_movie(path) as reader:
        np.testing.assert_array_equal(reader.read_frame(0), frames[0])
        with pytest.raises(MovieFormatError, match="page 1") as err:
            reader.read_frame(1)
    assert_names_file(err, path)


def test_tiff_pages_of_different_shapes(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((NY, NX), np.uint16), photometric="minisblack", metadata=None)
        tif.write(np.zeros((NX, NY), np.uint16), photometric="minisblack", metadata=None)
    with pytest.raises(MovieFormatError, match="page 1") as err:
        open_movie(path)
    assert_names_file(err, path)


def test_tiff_without_pages(tmp_path):
    path = tmp_path / "nopages.tif"
    path.write_bytes(b"II*\x00\x00\x00\x00\x00")
    with pytest.raises(MovieFormatError, match="zero frames") as err:
        open_movie(path)
    assert_names_file(err, path)


def test_unknown_suffix_and_missing_file(tmp_path):
    path = tmp_path / "movie.dm4"
    path.write_bytes(b"x")
    with pytest.raises(MovieFormatError) as err:
        open_movie(path)
    message = assert_names_file(err, path)
    assert ".mrc" in message and ".tif" in message and ".eer" in message
    with pytest.raises(MovieFormatError, match="unknown movie format"):
        write_movie(tmp_path / "out.png", make_frames("uint8"))
    with pytest.raises(MovieFormatError, match="EER"):
        write_movie(tmp_path / "out.eer", make_frames("uint8"))
    with pytest.raises(MovieFormatError, match="not found") as err:
        open_movie(tmp_path / "gone.mrc")
    assert_names_file(err, tmp_path / "gone.mrc")


def test_garbage_tiff(tmp_path):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(MovieFormatError) as err:
        open_movie(path)
    assert_names_file(err, path)


@pytest.mark.parametrize("exttyp, nsymbt", [(b"FEI1", 3 * 768), (b"FEI2", 3 * 888), (b"SERI", 3 * 4), (b"AGAR", 4096),
                                            (b"", 1024)])
def test_extended_headers_of_every_type_are_skipped(tmp_path, exttyp, nsymbt):
    """Data start at 1024 + nsymbt whatever the extended header holds; its type is reported."""
    frames = make_frames("int16", n=3)
    garbage = np.random.default_rng(nsymbt).integers(0, 256, nsymbt, dtype=np.uint8).tobytes()
    path = tmp_path / f"ext_{exttyp.decode() or 'none'}.mrc"
    handmade_mrc(path, frames, mode=1, nsymbt=nsymbt, exttyp=exttyp, extended=garbage)
    with open_movie(path) as reader:
        assert reader.extended_header_type == (exttyp.decode() or None)
        np.testing.assert_array_equal(np.stack(list(reader)), frames)
    # a header that claims more extended bytes than the file holds is a truncated file, named
    handmade_mrc(path, frames, mode=1, nsymbt=nsymbt + 10**6, exttyp=exttyp, extended=garbage)
    with pytest.raises(MovieFormatError, match="truncated") as err:
        open_movie(path)
    assert_names_file(err, path)


def test_mrc_titles_are_read(tmp_path):
    frames = make_frames("uint8", n=1)
    title = "SerialEMCCD: Dose frac. image, scaled by 1.00  r/f 5"
    handmade_mrc(tmp_path / "t.mrc", frames, mode=0, imod_flags=0, labels=[title, "second"])
    with open_movie(tmp_path / "t.mrc") as reader:
        assert reader.labels == (title, "second")
