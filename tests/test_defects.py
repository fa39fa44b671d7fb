"""Defect lists, hot and dead pixel detection, and random-neighbour replacement."""
from __future__ import annotations

import time

import numpy as np
import pytest

from framewatch.core import defects
from framewatch.core.defects import (
    PixelReplacer,
    bad_gain_mask,
    detect_dead_pixels,
    detect_hot_pixels,
    read_defect_file,
)
from framewatch.core.errors import DefectFileError, FramewatchError
from framewatch.core.frame_arithmetic import apply_gain, gain_corrected_at
from framewatch.core.pixel_replacement import _replace_kernel

NY, NX = 64, 96


# -------------------------------------------------------------------------------------- defect file


def test_defect_file_rectangles(tmp_path):
    path = tmp_path / "defects.txt"
    path.write_text("# K3 defects\n\n10 20 1 5\n  0 0 2 1   # corner\n95\t60\t1\t4\n30,40,3,2\n")
    mask = read_defect_file(path, (NY, NX))
    assert mask.shape == (NY, NX) and mask.dtype == bool
    expected = np.zeros((NY, NX), bool)
    expected[20:25, 10] = True  # x = column 10, y = rows 20..24
    expected[0, 0:2] = True
    expected[60:64, 95] = True
    expected[40:42, 30:33] = True
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    "line, pattern",
    [
        ("90 10 7 1", "line 3: rectangle x=90 y=10 w=7 h=1 reaches outside the 96 x 64 frame"),
        ("-1 0 1 1", "line 3: rectangle"),
        ("0 60 1 5", "line 3: rectangle"),
        ("1 2 three 4", "line 3: 'three' is not a number"),
        ("1 2 3.5 4", "line 3: '3.5' is not a whole number"),
        ("1 2 3", "line 3: expected 4 numbers"),
        ("1 2 0 4", "line 3: width 0"),
    ],
)
def test_defect_file_errors_name_the_line(tmp_path, line, pattern):
    path = tmp_path / "bad_defects.txt"
    path.write_text(f"# header\n1 1 1 1\n{line}\n")
    with pytest.raises(DefectFileError) as err:
        read_defect_file(path, (NY, NX))
    assert pattern in str(err.value) and "bad_defects.txt" in str(err.value)


def test_defect_file_missing(tmp_path):
    with pytest.raises(DefectFileError, match="not found"):
        read_defect_file(tmp_path / "none.txt", (NY, NX))


def test_bad_gain_mask():
    gain = np.array([[1.0, 0.0], [np.nan, -np.inf]], np.float32)
    np.testing.assert_array_equal(bad_gain_mask(gain), [[False, True], [True, True]])


# ------------------------------------------------------------------------------------- hot pixels


def poisson_sum(rng, *, shape=(256, 384), rate=0.7, n_frames=10):
    return rng.poisson(rate * n_frames, shape).astype(np.float32)


def inject_hot(rng, total, n_hot=20, extra_per_frame=5.0, n_frames=10):
    flat = rng.choice(total.size, n_hot, replace=False)
    truth = np.zeros(total.shape, bool)
    truth.reshape(-1)[flat] = True
    total[truth] += rng.poisson(extra_per_frame * n_frames, n_hot)
    return truth


def test_hot_pixels_in_poisson_counts():
    rng = np.random.default_rng(11)
    total = poisson_sum(rng)
    truth = inject_hot(rng, total)
    hot = detect_hot_pixels(total)
    assert hot.dtype == bool and hot.shape == total.shape
    assert hot[truth].all(), "every injected hot pixel is found"
    assert (hot & ~truth).sum() <= 3


def test_hot_pixel_pairs_and_edges_are_found():
    rng = np.random.default_rng(12)
    total = poisson_sum(rng, shape=(64, 96))
    truth = np.zeros(total.shape, bool)
    truth[30, 40:42] = True  # two neighbours
    truth[0, 0] = truth[63, 50] = truth[10, 95] = True  # corner and edges
    total[truth] += 50
    hot = detect_hot_pixels(total)
    assert hot[truth].all()
    assert (hot & ~truth).sum() <= 1


def test_hot_pixels_in_gain_corrected_float_sum_of_other_units():
    rng = np.random.default_rng(13)
    gain = rng.uniform(0.9, 1.1, (256, 384)).astype(np.float32)
    counts = poisson_sum(rng)
    truth = inject_hot(rng, counts)
    total = counts * gain * 37.5  # arbitrary units: the spread is estimated from the data
    hot = detect_hot_pixels(total.astype(np.float64))
    assert hot[truth].all()
    assert (hot & ~truth).sum() <= 3


def test_hot_detection_ignores_excluded_pixels_and_their_influence():
    rng = np.random.default_rng(14)
    total = rng.poisson(400.0, (64, 96)).astype(np.float32)  # high dose: a dead column would drag neighbours
    total[:, 20] = 0
    total[5, 5] = 5000
    exclude = np.zeros(total.shape, bool)
    exclude[:, 20] = True
    exclude[5, 5] = True
    assert not detect_hot_pixels(total, exclude=exclude).any()
    assert detect_hot_pixels(total)[5, 5]


def test_hot_detection_on_a_constant_image():
    total = np.full((32, 48), 10.0)
    total[7, 9] = 60.0
    hot = detect_hot_pixels(total)
    assert hot[7, 9] and hot.sum() == 1


def _hot_z_reference(image, exclude):
    """The hot-pixel score written out pixel by pixel (module docstring of core/defects.py)."""
    ny, nx = image.shape
    z = np.empty(image.shape, np.float32)
    for y in range(ny):
        for x in range(nx):
            if exclude[y, x]:
                z[y, x] = -np.inf
                continue
            near = [float(image[yy, xx]) for yy in range(y - 1, y + 2) for xx in range(x - 1, x + 2)
                    if (yy, xx) != (y, x) and 0 <= yy < ny and 0 <= xx < nx and not exclude[yy, xx]]
            if not near:
                z[y, x] = 0.0
                continue
            local = (sum(near) - max(near)) / (len(near) - 1) if len(near) >= 3 else sum(near) / len(near)
            z[y, x] = (image[y, x] - local) / np.sqrt(max(local, 1.0))
    return z


def test_hot_zscore_kernel_matches_the_slow_reference():
    """Rows with and without excluded pixels (the kernel's two paths), borders, an excluded block."""
    rng = np.random.default_rng(25)
    image = rng.poisson(5.0, (40, 57)).astype(np.float32)
    image[7, 9] = 300.0
    exclude = np.zeros(image.shape, np.uint8)
    exclude[20, 30] = 1
    exclude[0, 5] = 1
    exclude[30:33, 50:57] = 1
    z = np.empty(image.shape, np.float32)
    defects._hot_zscore_kernel(image, exclude, z)
    np.testing.assert_allclose(z, _hot_z_reference(image, exclude), rtol=1e-6, atol=1e-6)
    assert np.argmax(z) == 7 * 57 + 9


# ------------------------------------------------------------------------------------ dead pixels


def test_dead_column_is_found_and_nothing_else():
    rng = np.random.default_rng(21)
    total = poisson_sum(rng, shape=(128, 192))
    total[:, 77] = 0
    total[100, 10:40] = 0  # part of a dead row
    dead = detect_dead_pixels(total)
    expected = np.zeros(total.shape, bool)
    expected[:, 77] = True
    expected[100, 10:40] = True
    np.testing.assert_array_equal(dead, expected)


def test_zeros_that_poisson_explains_are_not_dead():
    rng = np.random.default_rng(22)
    sparse = rng.poisson(0.7, (128, 192)).astype(np.float32)  # half the pixels are zero
    assert not detect_dead_pixels(sparse).any()
    medium = rng.poisson(7.0, (128, 192)).astype(np.float32)
    medium[50, 60] = 0  # one zero at 7 counts: e**-7 is not rare enough
    assert not detect_dead_pixels(medium).any()
    bright = rng.poisson(60.0, (128, 192)).astype(np.float32)
    bright[50, 60] = 0  # at 60 counts it is
    assert np.argwhere(detect_dead_pixels(bright)).tolist() == [[50, 60]]


def test_dead_detection_respects_exclusion():
    rng = np.random.default_rng(23)
    total = poisson_sum(rng, shape=(64, 96))
    total[:, 3] = 0
    exclude = np.zeros(total.shape, bool)
    exclude[:, 3] = True
    assert not detect_dead_pixels(total, exclude=exclude).any()


def _dead_runs_reference(image, exclude, min_expected, min_level):
    """Slow NumPy/Python reference of the dead-run rule (module docstring of core/defects.py)."""
    ny, nx = image.shape
    dead = np.zeros(image.shape, bool)
    usable = (exclude == 0)

    def across(y, x, dy, dx):
        vals = [image[y + k * dy, x + k * dx] for k in (-2, -1, 1, 2)
                if 0 <= y + k * dy < ny and 0 <= x + k * dx < nx and usable[y + k * dy, x + k * dx]]
        return float(np.median(vals)) if vals else 0.0

    zero = usable & (image == 0)
    for axis in (0, 1):  # runs down columns, then along rows
        for line in range(nx if axis == 0 else ny):
            k = 0
            length = ny if axis == 0 else nx
            while k < length:
                y, x = (k, line) if axis == 0 else (line, k)
                if not zero[y, x]:
                    k += 1
                    continue
                run = []
                while k < length and zero[(k, line) if axis == 0 else (line, k)]:
                    run.append((k, line) if axis == 0 else (line, k))
                    k += 1
                expected = sum(across(yy, xx, 0, 1) if axis == 0 else across(yy, xx, 1, 0) for yy, xx in run)
                if expected >= min_expected and expected >= min_level * len(run):
                    for yy, xx in run:
                        dead[yy, xx] = True
    return dead


def test_dead_runs_kernel_matches_the_slow_reference_across_column_blocks():
    """The parallel kernel (columns in blocks of 256, rows one per task) against the rule written
    out in Python, on an image wider than two blocks with runs at the block edges, excluded pixels
    and runs that Poisson explains."""
    rng = np.random.default_rng(24)
    total = rng.poisson(6.0, (70, 600)).astype(np.float32)
    total[:, 255] = 0  # the last column of the first block
    total[10:50, 256] = 0  # the first column of the second block
    total[33, 250:262] = 0  # a row run across the block edge
    total[5:9, 590:600] = 0  # a patch at the right edge
    total[60:70, 0] = 0  # a run at the bottom-left corner
    total[rng.random(total.shape) < 0.01] = 0  # scattered zeros
    exclude = (rng.random(total.shape) < 0.02).astype(np.uint8)
    exclude[20:25, 256] = 1  # splits the column run
    dead = np.zeros(total.shape, np.uint8)
    defects._dead_runs_kernel(total, exclude, 20.0, 3.0, dead)
    expected = _dead_runs_reference(total, exclude, 20.0, 3.0)
    assert expected[:, 255].sum() >= 60 and expected[33, 250:262].all()  # the planted runs are found
    np.testing.assert_array_equal(dead.view(bool), expected)


# ------------------------------------------------------------------------------------ replacement


_M64 = (1 << 64) - 1


def reference_mix(z):
    """splitmix64's step on Python ints (written here again from its definition, not imported)."""
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def reference_draws(replacer, frame_index):
    """The draw of every bad pixel in frame ``frame_index``: hash(seed, frame, flat index) mod its count
    (slow: Python ints, one pixel at a time)."""
    key = reference_mix((reference_mix(replacer.seed & _M64) + frame_index) & _M64)
    counts = np.diff(replacer._candidate_ptr)
    return np.array([reference_mix((key + int(p)) & _M64) % int(c) for p, c in zip(replacer._bad_flat, counts)],
                    dtype=np.int64)


def reference_replace(frame, replacer, draws):
    """The slow NumPy version of the kernel, given the draws."""
    flat = frame.reshape(-1)
    chosen = replacer._candidate_flat[replacer._candidate_ptr[:-1] + draws]
    flat[replacer._bad_flat] = flat[chosen]


def assert_sources_near(bad, xy, frame, radius):
    """Every bad pixel took a good pixel's value (frame values name pixels) from its window, or, when its
    window has no good pixel, from the window around its nearest good pixel."""
    from scipy import ndimage

    source = frame[xy[:, 1], xy[:, 0]].astype(np.int64)
    sy, sx = np.divmod(source, bad.shape[1])
    assert not bad[sy, sx].any()
    chessboard = ndimage.distance_transform_cdt(bad, metric="chessboard")[xy[:, 1], xy[:, 0]]
    euclid = ndimage.distance_transform_edt(bad)[xy[:, 1], xy[:, 0]]
    reach = np.where(chessboard <= radius, radius, np.ceil(euclid) + radius)
    assert np.all(np.maximum(np.abs(sy - xy[:, 1]), np.abs(sx - xy[:, 0])) <= reach)


def some_bad_mask(rng):
    bad = rng.random((NY, NX)) < 0.03
    bad[:, 50] = True  # dead column
    bad[10:14, 0:3] = True  # block at the edge
    return bad


def test_kernel_matches_numpy_reference():
    rng = np.random.default_rng(31)
    bad = some_bad_mask(rng)
    replacer = PixelReplacer(bad, radius=2, seed=5)
    frame = rng.normal(size=(NY, NX)).astype(np.float32)
    for index in (0, 1, 2, 1000):
        draws = reference_draws(replacer, index)
        assert ((draws >= 0) & (draws < np.diff(replacer._candidate_ptr))).all()
        expected = frame.copy()
        reference_replace(expected, replacer, draws)
        got = frame.copy()
        _replace_kernel(got.reshape(-1), replacer._bad_flat, replacer._candidate_ptr, replacer._candidate_flat,
                        replacer._frame_key(index))
        np.testing.assert_array_equal(got, expected)
        via_method = frame.copy()
        replacer.apply(via_method, index)
        np.testing.assert_array_equal(via_method, expected)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_replacements_are_good_pixels_from_the_window(radius):
    rng = np.random.default_rng(32)
    bad = some_bad_mask(rng)
    replacer = PixelReplacer(bad, radius=radius)
    xy = replacer.coordinates_xy
    assert xy.shape == (bad.sum(), 2)
    assert bad[xy[:, 1], xy[:, 0]].all()
    for index in range(4):
        frame = np.arange(NY * NX, dtype=np.float32).reshape(NY, NX)  # each value names its pixel
        replacer.apply(frame, index)
        assert_sources_near(bad, xy, frame, radius)
        np.testing.assert_array_equal(frame[~bad], np.arange(NY * NX)[~bad.reshape(-1)])


def test_draws_are_deterministic_and_differ_between_frames():
    bad = np.zeros((NY, NX), bool)
    bad[:, 40] = True
    a, b = PixelReplacer(bad, seed=3), PixelReplacer(bad, seed=3)
    frame = np.arange(NY * NX, dtype=np.float32).reshape(NY, NX)
    f1, f2, f3 = frame.copy(), frame.copy(), frame.copy()
    a.apply(f1, 7)
    b.apply(f2, 7)
    a.apply(f3, 8)
    np.testing.assert_array_equal(f1, f2)
    assert (f1[:, 40] != f3[:, 40]).mean() > 0.5
    f4 = frame.copy()
    PixelReplacer(bad, seed=4).apply(f4, 7)
    assert (f1[:, 40] != f4[:, 40]).any()


def test_the_hash_is_splitmix64():
    from framewatch.core.pixel_replacement import _splitmix64

    # the first two outputs of splitmix64 seeded with 1234567 (its published test sequence)
    assert reference_mix(1234567) == 6457827717110365317
    assert reference_mix((1234567 + 0x9E3779B97F4A7C15) & _M64) == 3203168211198807973
    assert int(_splitmix64(np.uint64(1234567))) == 6457827717110365317


def window_offset_counts(replacer, bad, n_frames):
    """Per frame and bad pixel, the offset (dy, dx) of the pixel it took: counts over all frames and
    pixels, ``(2r+1, 2r+1)`` int."""
    r = replacer.radius
    xy = replacer.coordinates_xy
    counts = np.zeros((2 * r + 1, 2 * r + 1), dtype=np.int64)
    for index in range(n_frames):
        frame = np.arange(bad.size, dtype=np.float32).reshape(bad.shape)
        replacer.apply(frame, index)
        sy, sx = np.divmod(frame[xy[:, 1], xy[:, 0]].astype(np.int64), bad.shape[1])
        np.add.at(counts, (sy - xy[:, 1] + r, sx - xy[:, 0] + r), 1)
    return counts


def test_draws_are_uniform_over_the_candidates():
    from scipy import stats

    bad = np.zeros((NY, NX), bool)
    bad[3:NY - 3:6, 3:NX - 3:6] = True  # isolated: 24 candidates each
    replacer = PixelReplacer(bad, radius=2, seed=11)
    counts = window_offset_counts(replacer, bad, n_frames=120)
    assert counts[2, 2] == 0  # never itself
    observed = np.delete(counts.ravel(), 12)
    expected = observed.sum() / 24  # 10 x 15 pixels x 120 frames / 24 = 750
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.isf(1e-6, df=23), (chi2, observed)  # false alarm one in a million


def test_draws_of_neighbouring_pixels_are_independent():
    """A dead row: consecutive flat indices. The pair (offset of pixel x, offset of pixel x+1) is
    uniform over the 20 x 20 combinations (chi-square), so adjacent hash inputs are not correlated."""
    from scipy import stats

    bad = np.zeros((NY, NX), bool)
    bad[30, :] = True
    replacer = PixelReplacer(bad, radius=2, seed=12)
    xy = replacer.coordinates_xy
    inner = (xy[:, 0] >= 2) & (xy[:, 0] < NX - 3)  # both of the pair away from the edge: 20 candidates each
    pairs = np.zeros((20, 20), dtype=np.int64)
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy != 0]
    code = {o: i for i, o in enumerate(offsets)}
    for index in range(300):
        frame = np.arange(bad.size, dtype=np.float32).reshape(bad.shape)
        replacer.apply(frame, index)
        sy, sx = np.divmod(frame[30, :].astype(np.int64), NX)
        c = np.array([code[(y - 30, x - i)] for i, (y, x) in enumerate(zip(sy, sx))])
        first = np.flatnonzero(inner)
        np.add.at(pairs, (c[first], c[first + 1]), 1)
    expected = pairs.sum() / 400
    chi2 = ((pairs - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.isf(1e-6, df=399), chi2


def test_source_pixels_say_what_apply_does():
    rng = np.random.default_rng(33)
    bad = some_bad_mask(rng)
    bad[20:40, 60:90] = True  # lonely pixels too
    replacer = PixelReplacer(bad, radius=2, seed=2)
    everything = np.arange(NY * NX)
    for index in (0, 5):
        frame = np.arange(NY * NX, dtype=np.float32).reshape(NY, NX)
        replacer.apply(frame, index)
        np.testing.assert_array_equal(replacer.source_pixels(everything, index), frame.reshape(-1).astype(np.int64))
    picked = rng.choice(NY * NX, 50)
    np.testing.assert_array_equal(replacer.source_pixels(picked, 5), replacer.source_pixels(everything, 5)[picked])
    with pytest.raises(ValueError, match="flat_px"):
        replacer.source_pixels(np.array([NY * NX]), 0)
    with pytest.raises(ValueError, match="frame_index"):
        replacer.source_pixels(picked, -1)


def reference_drawn_differently(bad_a, bad_b, radius=2):
    """Slow: pixels bad in one mask only, or bad in both with another candidate list (one by one)."""
    a, b = PixelReplacer(bad_a, radius=radius), PixelReplacer(bad_b, radius=radius)

    def candidates(rep, p):
        i = int(np.searchsorted(rep._bad_flat, p))
        return rep._candidate_flat[rep._candidate_ptr[i]:rep._candidate_ptr[i + 1]].tolist()

    out = []
    for p in np.flatnonzero((bad_a | bad_b).ravel()):
        if bad_a.flat[p] != bad_b.flat[p] or candidates(a, p) != candidates(b, p):
            out.append(p)
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("change", ["add_one", "remove_one", "add_next_to_a_column", "fill_a_lonely_area"])
def test_a_mask_change_changes_only_the_pixels_drawn_differently(change):
    """A few pixels more or less in the mask: the corrected frame differs only at the pixels listed by
    pixels_drawn_differently (the changed pixels and bad pixels whose candidates changed), and the
    new value there is the one gain_corrected_at reads at the new source: the streaming update's recipe."""
    rng = np.random.default_rng(34)
    old = some_bad_mask(rng)
    old[44:52, 70:78] = True  # a block: its centre pixels are lonely
    new = old.copy()
    ys, xs = np.nonzero(old)
    if change == "add_one":
        new[5, 7] = True
    elif change == "remove_one":
        new[ys[3], xs[3]] = False
    elif change == "add_next_to_a_column":
        new[20, 51] = True  # next to the dead column at x = 50: its neighbours' windows change
    else:
        new[43, 70:78] = True  # grows the block: lonely pixels inside get another nearest good pixel
    a, b = PixelReplacer(old), PixelReplacer(new)
    listed = a.pixels_drawn_differently(b)
    np.testing.assert_array_equal(listed, reference_drawn_differently(old, new))
    np.testing.assert_array_equal(b.pixels_drawn_differently(a), listed)
    assert listed.size < 40
    raw = rng.poisson(3.0, (NY, NX)).astype(np.uint8)
    gain = rng.uniform(0.8, 1.2, (NY, NX)).astype(np.float32)
    n_differ = 0
    for index in range(4):
        with_old, with_new = apply_gain(raw, gain), apply_gain(raw, gain)
        a.apply(with_old, index)
        b.apply(with_new, index)
        differ = np.flatnonzero(with_old.ravel() != with_new.ravel())
        assert np.isin(differ, listed).all()
        n_differ += differ.size
        patched = with_old.copy().reshape(-1)
        patched[listed] = gain_corrected_at(raw, gain, b.source_pixels(listed, index))
        np.testing.assert_array_equal(patched, with_new.reshape(-1))
        np.testing.assert_array_equal(gain_corrected_at(raw, gain, a.source_pixels(listed, index)),
                                      with_old.reshape(-1)[listed])
    assert n_differ > 0  # the change did change the corrected frames


def test_replacers_of_another_seed_differ_at_every_bad_pixel():
    rng = np.random.default_rng(36)
    bad = some_bad_mask(rng)
    same = PixelReplacer(bad, seed=1).pixels_drawn_differently(PixelReplacer(bad, seed=1))
    assert same.size == 0
    other_seed = PixelReplacer(bad, seed=1).pixels_drawn_differently(PixelReplacer(bad, seed=2))
    np.testing.assert_array_equal(other_seed, np.flatnonzero(bad.ravel()))
    with pytest.raises(ValueError, match="different frame shapes"):
        PixelReplacer(bad).pixels_drawn_differently(PixelReplacer(bad[:, :10]))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "float16"])
@pytest.mark.parametrize("with_gain", [True, False])
def test_gain_corrected_at_equals_apply_gain(dtype, with_gain):
    rng = np.random.default_rng(35)
    raw = (rng.poisson(40.0, (NY, NX)) * (1 if dtype[0] == "u" else -1) ** rng.integers(0, 2, (NY, NX)))
    raw = raw.astype(dtype) if dtype[0] != "u" else np.abs(raw).astype(dtype)
    gain = rng.uniform(0.5, 2.0, (NY, NX)).astype(np.float32) if with_gain else None
    picked = rng.choice(NY * NX, 300)
    got = gain_corrected_at(raw[:, :], gain, picked)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, apply_gain(raw, gain).reshape(-1)[picked])
    strided = raw[:, ::2]  # a frame that is a view reads the same values
    np.testing.assert_array_equal(gain_corrected_at(strided, None, picked % strided.size),
                                  apply_gain(np.ascontiguousarray(strided), None).reshape(-1)[picked % strided.size])


def test_large_dead_area_draws_from_the_nearest_good_pixels():
    bad = np.zeros((NY, NX), bool)
    bad[20:40, 30:60] = True
    replacer = PixelReplacer(bad, radius=2)
    frame = np.arange(NY * NX, dtype=np.float32).reshape(NY, NX)
    replacer.apply(frame, 0)
    assert_sources_near(bad, replacer.coordinates_xy, frame, 2)
    sy, sx = np.divmod(frame[bad].astype(np.int64), NX)
    # the nearest good pixel is 1 px outside the block, its window reaches 2 px further
    assert sy.min() >= 17 and sy.max() <= 42 and sx.min() >= 27 and sx.max() <= 62


def test_no_bad_pixels_and_all_bad_pixels():
    replacer = PixelReplacer(np.zeros((NY, NX), bool))
    frame = np.ones((NY, NX), np.float32)
    replacer.apply(frame, 0)
    assert replacer.coordinates_xy.shape == (0, 2) and (frame == 1).all()
    with pytest.raises(FramewatchError, match="every pixel"):
        PixelReplacer(np.ones((4, 4), bool))


def test_apply_checks_the_frame():
    replacer = PixelReplacer(np.eye(NY, NX, dtype=bool))
    with pytest.raises(ValueError, match="float32"):
        replacer.apply(np.zeros((NY, NX), np.float64), 0)
    with pytest.raises(ValueError, match="float32"):
        replacer.apply(np.zeros((NX, NY), np.float32), 0)


def test_dead_column_on_a_full_size_frame_is_fast():
    bad = np.zeros((4096, 4096), bool)
    bad[:, 1234] = True
    replacer = PixelReplacer(bad)
    frame = np.ones((4096, 4096), np.float32)
    replacer.apply(frame, 0)  # compile / warm up
    start = time.perf_counter()
    for index in range(20):
        replacer.apply(frame, index)
    per_frame_s = (time.perf_counter() - start) / 20
    assert per_frame_s < 0.01
