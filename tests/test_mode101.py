"""Packed 4-bit MRC (SerialEM): mode 101 and flagged half-width mode 0, against an independent packer."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from framewatch.core.errors import MovieFormatError
from framewatch.core.movie_io import IMOD_STAMP, _size_can_be_4bit_k2_super_res, open_movie, unpack_4bit


def pack_4bit_reference(frames: np.ndarray) -> np.ndarray:
    """Pack (n, ny, nx) values 0-15 two per byte, written as plainly as possible (pure Python loops).

    Even x in the low nibble, odd x in the high nibble; an odd width leaves a high nibble unused,
    filled here with 0xF so that a reader that does not ignore it is caught.
    """
    n, ny, nx = frames.shape
    row_bytes = (nx + 1) // 2
    out = np.zeros((n, ny, row_bytes), dtype=np.uint8)
    for z in range(n):
        for y in range(ny):
            for x in range(0, nx, 2):
                low = int(frames[z, y, x])
                high = int(frames[z, y, x + 1]) if x + 1 < nx else 0xF
                out[z, y, x // 2] = low | (high << 4)
    return out


def write_packed_mrc(path, packed: np.ndarray, *, mode: int, nx_header: int, imod_flags: int | None = None,
                     labels=(), pixel_size_a: float = 1.25, truncate: int = 0) -> None:
    n, ny, _ = packed.shape
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx_header, ny, n, mode)
    struct.pack_into("<3i", header, 28, nx_header, ny, n)
    struct.pack_into("<3f", header, 40, nx_header * pixel_size_a, ny * pixel_size_a, n * pixel_size_a)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    if imod_flags is not None:
        struct.pack_into("<2i", header, 152, IMOD_STAMP, imod_flags)
    header[208:216] = b"MAP DD\x00\x00"
    struct.pack_into("<i", header, 220, len(labels))
    for i, label in enumerate(labels):
        header[224 + 80 * i: 224 + 80 * i + len(label)] = label.encode()
    data = packed.tobytes()
    with open(path, "wb") as f:
        f.write(bytes(header) + (data[:-truncate] if truncate else data))


def random_frames(rng, n, ny, nx) -> np.ndarray:
    frames = rng.poisson(1.5, (n, ny, nx)).clip(0, 15).astype(np.uint8)
    frames[:, 0, :4] = [0, 15, 15, 0]  # both extremes in both nibbles
    return frames


@pytest.mark.parametrize("nx", [1, 2, 7, 95, 96])
def test_unpack_kernel_matches_numpy(nx):
    rng = np.random.default_rng(nx)
    packed = rng.integers(0, 256, (13, (nx + 1) // 2), dtype=np.uint8)
    reference = np.empty((13, 2 * packed.shape[1]), dtype=np.uint8)
    reference[:, 0::2] = packed & 0x0F
    reference[:, 1::2] = packed >> 4
    np.testing.assert_array_equal(unpack_4bit(packed, nx), reference[:, :nx])
    out = np.empty((13, nx), np.uint8)
    assert unpack_4bit(packed, nx, out=out) is out
    with pytest.raises(ValueError, match="bytes"):
        unpack_4bit(packed, nx + 2)


@pytest.mark.parametrize("nx", [96, 95, 1])
def test_mode_101_round_trip_including_odd_width(tmp_path, nx):
    rng = np.random.default_rng(nx)
    frames = random_frames(rng, 3, 64, nx) if nx > 3 else rng.integers(0, 16, (3, 64, nx)).astype(np.uint8)
    path = tmp_path / "m101.mrc"
    write_packed_mrc(path, pack_4bit_reference(frames), mode=101, nx_header=nx)
    with open_movie(path) as reader:
        assert reader.shape == (64, nx) and reader.n_frames == 3 and reader.dtype == np.uint8
        assert reader.packed_4bit == "mode101" and reader.pixel_size_a == pytest.approx(1.25)
        np.testing.assert_array_equal(np.stack(list(reader)), frames)


def test_half_width_mode_0_flagged_by_imod(tmp_path):
    """SerialEM's default: mode 0, nx halved, imodFlags bit 16 (MRC_FLAGS_4BIT_BYTES)."""
    rng = np.random.default_rng(4)
    frames = random_frames(rng, 2, 40, 96)
    path = tmp_path / "half.mrc"
    write_packed_mrc(path, pack_4bit_reference(frames), mode=0, nx_header=48, imod_flags=16,
                     labels=["SerialEMCCD: Dose frac. image, 4 bits packed  r/f 0"])
    with open_movie(path) as reader:
        assert reader.shape == (40, 96) and reader.packed_4bit == "half_x"
        np.testing.assert_array_equal(np.stack(list(reader)), frames)
    # without the flag and at a size that is no K2/K3 super-resolution size, IMOD reads plain bytes
    write_packed_mrc(path, pack_4bit_reference(frames), mode=0, nx_header=48, imod_flags=0,
                     labels=["SerialEMCCD: Dose frac. image, 4 bits packed  r/f 0"])
    with open_movie(path) as reader:
        assert reader.shape == (40, 48) and reader.packed_4bit is None


def test_k2_k3_super_resolution_sizes_for_the_title_rule():
    # half the true width x the height, either way round (IMOD's list: 3838x7420, 3710x7676, ...)
    for nx, ny in [(3838, 7420), (3710, 7676), (3841, 7424), (5760, 8184), (4092, 11520)]:
        assert _size_can_be_4bit_k2_super_res(nx, ny), (nx, ny)
    for nx, ny in [(48, 40), (7420, 3838), (7676, 7420), (3834, 7420)]:
        assert not _size_can_be_4bit_k2_super_res(nx, ny), (nx, ny)


def test_truncated_mode_101_counts_packed_bytes(tmp_path):
    rng = np.random.default_rng(5)
    frames = random_frames(rng, 2, 16, 33)
    path = tmp_path / "cut.mrc"
    write_packed_mrc(path, pack_4bit_reference(frames), mode=101, nx_header=33, truncate=5)
    with pytest.raises(MovieFormatError, match="truncated") as err:
        open_movie(path)
    assert "cut.mrc" in str(err.value) and "33" in str(err.value)
