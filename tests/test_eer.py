"""EER: round trips against a test-suite encoder, imagecodecs as an independent decoder, grouping
arithmetic, 8K positions, orientation, metadata and damaged files."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from eer_encoder import Events, encode_movie, random_events, render, split_counts_into_raw_frames, write_eer

from framewatch.core.errors import MovieFormatError, SettingsError
from framewatch.core.movie_io import open_movie
from framewatch.core.movie_io.eer import (
    DEFAULT_EER_GROUP_FRAMES,
    decode_eer_frame,
    eer_coding,
    group_eer_frames,
)
from framewatch.core.simulate import SimulationSpec, simulate_movie

SHAPE = (64, 96)  # non-square: transposition bugs show
N_PIXELS = SHAPE[0] * SHAPE[1]


def edge_case_events(rng) -> Events:
    """Events on the first and last pixels, adjacent pixels, and gaps around 127 and 255."""
    gaps = [0, 0, 0, 126, 127, 128, 253, 254, 255, 256, 300, 509, 510, 511]
    pos = np.cumsum(np.array(gaps) + 1) - 1
    pos = np.concatenate([pos, [N_PIXELS - 2, N_PIXELS - 1]])
    return Events(pos, rng.integers(0, 4, pos.size), rng.integers(0, 4, pos.size))


def read_fractions(path, **kwargs) -> np.ndarray:
    with open_movie(path, **kwargs) as reader:
        return np.stack([reader.read_frame(i) for i in range(reader.n_frames)])


# ------------------------------------------------------------------------------------- the decoder


@pytest.mark.parametrize("compression", [65000, 65001])
@pytest.mark.parametrize("upsampling", [1, 2])
def test_decoded_frames_equal_the_encoded_events(compression, upsampling):
    rng = np.random.default_rng(compression + upsampling)
    cases = [edge_case_events(rng), Events(np.array([], np.int64), np.array([], np.int64), np.array([], np.int64))]
    cases += [random_events(rng, N_PIXELS, n) for n in (1, 17, 400, N_PIXELS // 2)]
    for events in cases:
        strip = encode_movie([events], shape=SHAPE, compression=compression)[0]
        got = decode_eer_frame(strip, shape=SHAPE, coding=eer_coding(compression), upsampling=upsampling)
        assert got.shape == (SHAPE[0] * upsampling, SHAPE[1] * upsampling)
        np.testing.assert_array_equal(got, render(events, SHAPE, upsampling=upsampling))


@pytest.mark.parametrize("bits", [(7, 2, 2), (7, 1, 1), (8, 1, 2), (6, 2, 1)])
def test_compression_65002_reads_its_bit_sizes_from_tags(tmp_path, bits):
    skip, horz, vert = bits
    rng = np.random.default_rng(sum(bits))
    frames = [random_events(rng, N_PIXELS, 300, horz_bits=horz, vert_bits=vert) for _ in range(3)]
    write_eer(tmp_path / "v2.eer", encode_movie(frames, shape=SHAPE, compression=65002, bit_tags=bits),
              shape=SHAPE, compression=65002, bit_tags=bits)
    for upsampling in (1, 2):
        got = read_fractions(tmp_path / "v2.eer", eer_group_frames=1, eer_upsampling=upsampling)
        want = [render(e, SHAPE, upsampling=upsampling, horz_bits=horz, vert_bits=vert) for e in frames]
        np.testing.assert_array_equal(got, want)


def test_imagecodecs_through_tifffile_agrees_for_65001(tmp_path):
    """An independent decoder (imagecodecs, via tifffile's EER support) reads our files identically."""
    rng = np.random.default_rng(3)
    frames = [edge_case_events(rng)] + [random_events(rng, N_PIXELS, 500) for _ in range(3)]
    path = tmp_path / "m.eer"
    write_eer(path, encode_movie(frames, shape=SHAPE), shape=SHAPE)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and tif.eer_metadata == {"numberOfFrames": 4}
        oracle = np.stack([page.asarray() for page in tif.pages]).astype(np.uint8)
    with tifffile.TiffFile(path, superres=1) as tif:
        oracle_8k = np.stack([page.asarray() for page in tif.pages]).astype(np.uint8)
    np.testing.assert_array_equal(read_fractions(path, eer_group_frames=1), oracle)
    np.testing.assert_array_equal(read_fractions(path, eer_group_frames=1, eer_upsampling=2), oracle_8k)


def test_8k_positions_follow_the_top_subpixel_bits():
    # one event in 4K pixel (x=5, y=2); the true sub-pixel quarters (h, v) place it in the 2 x 2 block
    for h in range(4):
        for v in range(4):
            events = Events(np.array([2 * SHAPE[1] + 5]), np.array([h]), np.array([v]))
            strip = encode_movie([events], shape=SHAPE)[0]
            out = decode_eer_frame(strip, shape=SHAPE, coding=eer_coding(65001), upsampling=2)
            assert out.sum() == 1
            assert out[2 * 2 + v // 2, 2 * 5 + h // 2] == 1, (h, v)
    # the stored field is the true quarter XOR 2 (0x0A on the 4-bit symbol): check the raw bits once
    strip = encode_movie([Events(np.array([0]), np.array([0]), np.array([3]))], shape=SHAPE)[0]
    symbol = (int.from_bytes(strip[:4], "little") >> 7) & 0xF
    assert symbol == (0 ^ 2) | ((3 ^ 2) << 2) == 0x0A ^ (0 | 3 << 2)


def test_frames_are_not_flipped(tmp_path):
    # the first event of the stream (pixel 0) is row 0, column 0 of the frame: no Y flip
    events = Events(np.array([0, N_PIXELS - 1]), np.array([0, 0]), np.array([0, 0]))
    write_eer(tmp_path / "f.eer", encode_movie([events], shape=SHAPE), shape=SHAPE)
    frame = read_fractions(tmp_path / "f.eer", eer_group_frames=1)[0]
    assert frame[0, 0] == 1 and frame[-1, -1] == 1 and frame.sum() == 2


# ------------------------------------------------------------------------------------ the grouping


@pytest.mark.parametrize(
    "n_raw, kwargs, n_fractions, sizes, dose",
    [
        (400, dict(group_frames=40), 10, {40}, None),
        (410, dict(group_frames=40), 10, {41}, None),  # remainder spread: 10 x 41, none dropped
        (430, dict(group_frames=40), 11, {39, 40}, None),  # round(10.75) = 11
        (39, dict(group_frames=40), 1, {39}, None),
        (5, dict(group_frames=1), 5, {1}, None),
        (400, dict(total_dose_e_per_a2=3.0), 10, {40}, 0.3),  # default 0.3 e/A^2 per fraction
        (413, dict(total_dose_e_per_a2=3.0), 10, {41, 42}, 0.3),
        (400, dict(total_dose_e_per_a2=3.0, fraction_dose_e_per_a2=0.5), 6, {66, 67}, 0.5),
        (400, dict(total_dose_e_per_a2=2.0, group_frames=50), 8, {50}, 0.25),
        (7, dict(total_dose_e_per_a2=30.0), 7, {1}, 30.0 / 7),  # never more fractions than raw frames
        (1000, dict(), 25, {DEFAULT_EER_GROUP_FRAMES}, None),  # no dose: RELION's 40
    ],
)
def test_grouping_arithmetic(n_raw, kwargs, n_fractions, sizes, dose):
    g = group_eer_frames(n_raw, **kwargs)
    assert g.n_fractions == n_fractions
    assert set(g.raw_frames_per_fraction) == sizes
    assert sum(g.raw_frames_per_fraction) == n_raw and g.boundaries[0] == 0 and g.boundaries[-1] == n_raw
    assert max(g.raw_frames_per_fraction) - min(g.raw_frames_per_fraction) <= 1
    if dose is None:
        assert g.dose_per_fraction_e_per_a2 is None and g.fraction_doses_e_per_a2() is None
    else:
        total = kwargs["total_dose_e_per_a2"]
        assert g.dose_per_raw_frame_e_per_a2 == pytest.approx(total / n_raw)
        assert g.dose_per_fraction_e_per_a2 == pytest.approx(total / n_fractions)
        assert sum(g.fraction_doses_e_per_a2()) == pytest.approx(total)
        if "group_frames" not in kwargs:
            assert g.dose_per_fraction_e_per_a2 == pytest.approx(dose, rel=0.2)
        # accumulated dose at each fraction's end is within one raw frame of the uniform convention
        ends = np.array(g.boundaries[1:]) * g.dose_per_raw_frame_e_per_a2
        uniform = np.arange(1, n_fractions + 1) * g.dose_per_fraction_e_per_a2
        assert np.all(np.abs(ends - uniform) < g.dose_per_raw_frame_e_per_a2 + 1e-12)
    assert "none dropped" in g.rule


def test_remainder_is_spread_evenly_not_piled_at_the_end():
    g = group_eer_frames(47, group_frames=10)  # 5 fractions of 9 or 10
    assert g.raw_frames_per_fraction == (9, 9, 10, 9, 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(group_frames=10, fraction_dose_e_per_a2=0.3, total_dose_e_per_a2=3.0), "only"),
        (dict(fraction_dose_e_per_a2=0.3), "total dose"),
        (dict(group_frames=0), "positive"),
        (dict(group_frames=2.5), "whole"),
        (dict(total_dose_e_per_a2=-1.0), "not positive"),
        (dict(total_dose_e_per_a2=3.0, fraction_dose_e_per_a2=0.0), "not positive"),
    ],
)
def test_grouping_errors(kwargs, match):
    with pytest.raises(SettingsError, match=match):
        group_eer_frames(100, **kwargs)


# -------------------------------------------------------------------------------------- the reader


def test_reader_sums_raw_frames_into_fractions(tmp_path):
    rng = np.random.default_rng(5)
    raw = [random_events(rng, N_PIXELS, int(rng.integers(50, 400))) for _ in range(23)]
    path = tmp_path / "movie.eer"
    write_eer(path, encode_movie(raw, shape=SHAPE, compression=65001), shape=SHAPE,
              metadata={"numberOfFrames": 23, "sensorPixelSize.width": ("7.5e-11", "m"),
                        "sensorPixelSize.height": ("7.5e-11", "m")})
    rendered = np.stack([render(e, SHAPE) for e in raw])
    rendered_8k = np.stack([render(e, SHAPE, upsampling=2) for e in raw])
    with open_movie(path, eer_total_dose_e_per_a2=2.3, eer_fraction_dose_e_per_a2=0.5) as reader:
        assert reader.format == "eer" and reader.n_raw_frames == 23 and reader.header_n_frames == 23
        assert reader.n_frames == 5 and reader.raw_frames_per_fraction == (4, 5, 4, 5, 5)
        assert reader.dose_per_fraction_e_per_a2 == pytest.approx(0.46)
        assert reader.dose_per_raw_frame_e_per_a2 == pytest.approx(0.1)
        assert reader.shape == SHAPE and reader.dtype == np.uint8 and reader.pixel_size_a == pytest.approx(0.75)
        b = reader.grouping.boundaries
        for i in range(reader.n_frames):
            frame = reader.read_frame(i)
            assert frame.dtype == np.uint8 and frame.flags.c_contiguous
            np.testing.assert_array_equal(frame, rendered[b[i]:b[i + 1]].sum(axis=0))
        assert len(list(reader)) == 5
    with open_movie(path, eer_group_frames=6, eer_upsampling=2) as reader:
        assert reader.shape == (128, 192) and reader.pixel_size_a == pytest.approx(0.375)
        assert reader.dose_per_fraction_e_per_a2 is None and reader.raw_frames_per_fraction == (5, 6, 6, 6)
        b = reader.grouping.boundaries
        for i in range(reader.n_frames):
            np.testing.assert_array_equal(reader.read_frame(i), rendered_8k[b[i]:b[i + 1]].sum(axis=0))
    # the EER keywords are ignored for other formats
    with open_movie(path, eer_group_frames=23) as reader:
        np.testing.assert_array_equal(reader.read_frame(0), rendered.sum(axis=0))


def test_many_raw_frames_per_fraction_give_uint16(tmp_path):
    events = Events(np.array([7]), np.array([1]), np.array([2]))
    write_eer(tmp_path / "long.eer", encode_movie([events] * 300, shape=SHAPE), shape=SHAPE)
    with open_movie(tmp_path / "long.eer", eer_group_frames=300) as reader:
        frame = reader.read_frame(0)
    assert frame.dtype == np.uint16 and frame[0, 7] == 300 and frame.sum() == 300


def test_simulated_movie_written_as_eer_reads_back_as_the_same_counts(tmp_path):
    """A simulated counts movie, split into raw EER frames, comes back fraction for fraction."""
    sim = simulate_movie(SimulationSpec(ny=64, nx=64, n_frames=6, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.5,
                                        seed=11))
    per_fraction = 12
    raw_masks = split_counts_into_raw_frames(sim.frames, [per_fraction] * 6, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    from eer_encoder import events_from_mask

    strips = encode_movie([events_from_mask(m, rng) for m in raw_masks], shape=(64, 64))
    write_eer(tmp_path / "sim.eer", strips, shape=(64, 64))
    total_dose = 6 * 0.5
    with open_movie(tmp_path / "sim.eer", eer_total_dose_e_per_a2=total_dose, eer_fraction_dose_e_per_a2=0.5) as r:
        assert r.n_frames == 6 and r.dose_per_fraction_e_per_a2 == pytest.approx(0.5)
        np.testing.assert_array_equal(np.stack(list(r)), sim.frames)


# --------------------------------------------------------------------------------- damaged files


def test_corrupt_streams_name_the_raw_frame(tmp_path):
    rng = np.random.default_rng(8)
    good = encode_movie([random_events(rng, N_PIXELS, 100) for _ in range(4)], shape=SHAPE)
    cut = good[:2] + [good[2][: len(good[2]) // 2]] + good[3:]  # frame 2 ends early
    write_eer(tmp_path / "cut.eer", cut, shape=SHAPE)
    with open_movie(tmp_path / "cut.eer", eer_group_frames=2) as reader:
        reader.read_frame(0)
        with pytest.raises(MovieFormatError, match="raw frame 2 is corrupt") as err:
            reader.read_frame(1)
    assert "cut.eer" in str(err.value)
    over = encode_movie([random_events(rng, N_PIXELS, 10)], shape=SHAPE)[0]
    write_eer(tmp_path / "over.eer", [over], shape=(SHAPE[0] - 1, SHAPE[1]))  # the runs pass the end
    with open_movie(tmp_path / "over.eer") as reader, pytest.raises(MovieFormatError, match="passes the last pixel"):
        reader.read_frame(0)
    with pytest.raises(ValueError, match="corrupt"):
        decode_eer_frame(good[0][:5], shape=SHAPE, coding=eer_coding(65001))


def test_truncated_and_foreign_files(tmp_path):
    rng = np.random.default_rng(9)
    strips = encode_movie([random_events(rng, N_PIXELS, 100) for _ in range(3)], shape=SHAPE)
    write_eer(tmp_path / "m.eer", strips, shape=SHAPE, metadata={"numberOfFrames": 5})
    with pytest.raises(MovieFormatError, match="3 raw frames, the EER header lists 5"):
        open_movie(tmp_path / "m.eer")
    write_eer(tmp_path / "ok.eer", strips, shape=SHAPE)
    data = (tmp_path / "ok.eer").read_bytes()
    first_strip = 16  # the first strip follows the 16-byte BigTIFF header
    (tmp_path / "short.eer").write_bytes(data[: first_strip + len(strips[0]) // 2])
    with pytest.raises(MovieFormatError) as err:
        open_movie(tmp_path / "short.eer")
    assert "short.eer" in str(err.value)
    tifffile.imwrite(tmp_path / "plain.eer", np.zeros((2, 8, 8), np.uint16))
    with pytest.raises(MovieFormatError, match="not an EER compression"):
        open_movie(tmp_path / "plain.eer")
    (tmp_path / "junk.eer").write_bytes(b"junk" * 10)
    with pytest.raises(MovieFormatError, match="junk.eer"):
        open_movie(tmp_path / "junk.eer")
    with pytest.raises(SettingsError, match="upsampling"):
        open_movie(tmp_path / "ok.eer", eer_upsampling=4)
