"""The growing MRC stack: valid at every moment a reader can see it, torn appends repaired."""
import io
import os
import threading
import warnings

import mrcfile
import numpy as np
import pytest

from framewatch.daemon.outputs import stack


def sections(n, shape=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(10 * i, 1 + i, shape).astype(np.float32) for i in range(n)]


def valid(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return mrcfile.validate(str(path), print_file=io.StringIO())


def test_append_grows_and_stays_valid(tmp_path):
    p = tmp_path / "TS.mrc"
    secs = sections(6)
    for i, s in enumerate(secs):
        assert stack.append_section(p, s, pixel_size_a=1.37) == i
        assert valid(p)
        with mrcfile.open(p) as m:
            np.testing.assert_array_equal(m.data.reshape(-1, 48, 64), np.stack(secs[: i + 1]))
            assert m.voxel_size.x == pytest.approx(1.37)
            assert m.header.ispg == 0
    assert not any(f.name.startswith(".") for f in tmp_path.iterdir())
    np.testing.assert_array_equal(stack.read_section(p, 3), secs[3])


def test_shape_mismatch_is_refused(tmp_path):
    p = tmp_path / "TS.mrc"
    stack.append_section(p, sections(1)[0], pixel_size_a=1.0)
    with pytest.raises(ValueError):
        stack.append_section(p, np.zeros((10, 10), np.float32), pixel_size_a=1.0)
    assert valid(p) and stack.inspect_stack(p).n_sections == 1


def test_reader_never_sees_an_invalid_stack(tmp_path):
    """A reader polling while sections are appended finds the file valid whenever it exists."""
    p = tmp_path / "TS.mrc"
    secs = sections(25, shape=(128, 128))
    stack.append_section(p, secs[0], pixel_size_a=1.0)
    done = threading.Event()
    checks, bad = [0], []

    def reader():
        while not done.is_set():
            out = io.StringIO()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                ok = mrcfile.validate(str(p), print_file=out)
            if "FileNotFoundError" in out.getvalue():
                continue  # during an append the name is briefly absent: not visible, not invalid
            checks[0] += 1
            if not ok:
                bad.append(out.getvalue())

    t = threading.Thread(target=reader)
    t.start()
    evn = tmp_path / "TS_EVN.mrc"
    n = 0
    # until the reader has looked often enough (faster appends give it fewer chances per section)
    while n < 24 or (checks[0] <= 10 and n < 2000):
        s = secs[1 + n % 24]
        stack.append_sections([(p, s), (evn, s)], pixel_size_a=1.0)
        n += 1
    done.set()
    t.join()
    assert checks[0] > 10, f"the reader looked {checks[0]} times during {n} appends"
    assert bad == []


def torn(p, extra_sections=1, header_grown=False):
    """Simulate a crash after data was written (and optionally after the header grew)."""
    st = stack.inspect_stack(p)
    work = stack.hidden_name(p, "appending")
    os.replace(p, work)
    with open(work, "r+b") as f:
        f.seek(0, 2)
        f.write(np.ones((48, 64), np.float32).tobytes() * extra_sections)
        f.write(b"partial")
        if header_grown:
            h = stack.read_header(f)
            h["nz"] = st.n_sections + extra_sections
            f.seek(0)
            f.write(h.tobytes())
    return work


def test_repair_torn_append(tmp_path):
    p = tmp_path / "TS.mrc"
    secs = sections(4)
    for s in secs:
        stack.append_section(p, s, pixel_size_a=1.0)
    work = torn(p)
    assert not p.exists()
    st = stack.inspect_stack(p)
    assert st.under_work_name and st.n_sections == 4 and st.extra_bytes > 0
    n, what = stack.repair(p, 4)
    assert n == 4 and "renamed back" in what and "truncated" in what
    assert p.exists() and not work.exists() and valid(p)
    with mrcfile.open(p) as m:
        np.testing.assert_array_equal(m.data, np.stack(secs))
    # the next append continues where the journal says
    assert stack.append_section(p, secs[0], pixel_size_a=1.0) == 4


def test_repair_to_journal_count_after_header_grew(tmp_path):
    p = tmp_path / "TS.mrc"
    secs = sections(3)
    for s in secs:
        stack.append_section(p, s, pixel_size_a=1.0)
    torn(p, extra_sections=1, header_grown=True)
    n, what = stack.repair(p, 3)  # the journal never recorded the 4th section
    assert n == 3 and "statistics recomputed" in what and valid(p)
    with mrcfile.open(p) as m:
        np.testing.assert_array_equal(m.data, np.stack(secs))


def test_repair_changes_a_visible_stack_only_under_its_working_name(tmp_path, monkeypatch):
    """A stack at its visible name whose header counts a section the journal never recorded (a kill
    after the rename back, before the journal): repair truncates it and rewrites its header. Found by
    the torture run: done in place, a live reader saw the old header over the truncated file
    ("Data block could not be read"). Now nothing is at the visible name while the file is changed."""
    p = tmp_path / "TS.mrc"
    secs = sections(3)
    for s in secs:
        stack.append_section(p, s, pixel_size_a=1.0)
    seen = []  # at each header rewrite (the truncation comes just before it, on the same file):
    write_header = stack._write_header  # is anything at the visible name, and how big is the working file?

    def write_header_watched(f, h):
        seen.append((p.exists(), os.fstat(f.fileno()).st_size))
        return write_header(f, h)

    monkeypatch.setattr(stack, "_write_header", write_header_watched)
    n, what = stack.repair(p, 2)  # the journal knows two of the three sections
    assert n == 2 and "statistics recomputed" in what and "truncated" in what
    assert seen == [(False, 1024 + 2 * 48 * 64 * 4)], seen
    assert p.exists() and not stack.hidden_name(p, "appending").exists() and valid(p)
    with mrcfile.open(p) as m:
        np.testing.assert_array_equal(m.data, np.stack(secs[:2]))


def test_repair_missing_sections_and_empty(tmp_path):
    p = tmp_path / "TS.mrc"
    for s in sections(2):
        stack.append_section(p, s, pixel_size_a=1.0)
    assert stack.repair(p, 5) == (2, "ok")  # the caller must redo sections 2..4
    assert stack.repair(p, 0)[0] == 0 and not p.exists()
    assert stack.repair(tmp_path / "none.mrc", 0) == (0, "ok")
    (tmp_path / ".x.mrc.tmp").write_bytes(b"stale")
    stack.repair(tmp_path / "x.mrc", 0)
    assert not (tmp_path / ".x.mrc.tmp").exists()


def test_write_stack_streams_sections(tmp_path):
    p = tmp_path / "sorted.mrc"
    secs = sections(5)
    assert stack.write_stack(p, iter(secs[::-1]), pixel_size_a=2.0) == 5
    assert valid(p)
    with mrcfile.open(p) as m:
        np.testing.assert_array_equal(m.data, np.stack(secs[::-1]))
        assert m.voxel_size.x == pytest.approx(2.0)
    with pytest.raises(ValueError):
        stack.write_stack(tmp_path / "empty.mrc", iter([]), pixel_size_a=1.0)
    assert not (tmp_path / ".empty.mrc.tmp").exists()


def _three(tmp_path):
    return [tmp_path / "TS.mrc", tmp_path / "TS_EVN.mrc", tmp_path / "TS_ODD.mrc"]


def test_the_stacks_of_a_tilt_are_appended_side_by_side_with_exact_statistics(tmp_path):
    """append_sections writes each stack in a thread of its own: every stack gets its own section,
    at the z it reports, and a header whose statistics are those of all its pixels (float64)."""
    paths = _three(tmp_path)
    rounds = [sections(3, shape=(96, 80), seed=k) for k in range(4)]
    for k, images in enumerate(rounds):
        assert stack.append_sections(list(zip(paths, images)), pixel_size_a=1.5, grace_s=0.0) == [k, k, k]
    for j, p in enumerate(paths):
        assert valid(p)
        expected = np.stack([images[j] for images in rounds]).astype(np.float64)
        with mrcfile.open(p) as m:
            np.testing.assert_array_equal(m.data, expected.astype(np.float32))
            h = m.header
            assert float(h.dmin) == expected.min() and float(h.dmax) == expected.max()
            assert float(h.dmean) == pytest.approx(expected.mean(), rel=1e-6)
            assert float(h.rms) == pytest.approx(expected.std(), rel=1e-6)
    assert not any(f.name.startswith(".") for f in tmp_path.iterdir())


def test_a_stack_that_fails_mid_append_leaves_all_three_repairable(tmp_path, monkeypatch):
    """One stack's thread fails (a disk error): the error reaches the caller after the other threads
    end, and repair brings every stack back to the sections the journal knows."""
    paths = _three(tmp_path)
    rounds = [sections(3, seed=k) for k in range(3)]
    for images in rounds[:2]:
        stack.append_sections(list(zip(paths, images)), pixel_size_a=1.0, grace_s=0.0)
    real = stack._append_in_place

    def failing(work, a):
        if "EVN" in work.name:
            raise OSError(28, "No space left on device")
        return real(work, a)

    monkeypatch.setattr(stack, "_append_in_place", failing)
    with pytest.raises(OSError, match="No space"):
        stack.append_sections(list(zip(paths, rounds[2])), pixel_size_a=1.0, grace_s=0.0)
    monkeypatch.undo()
    grown = [stack.inspect_stack(p) for p in paths]
    assert [s.under_work_name for s in grown] == [True, True, True]
    assert [s.n_sections for s in grown] == [3, 2, 3]  # the others finished theirs
    for j, p in enumerate(paths):
        assert stack.repair(p, 2)[0] == 2 and valid(p)
        with mrcfile.open(p) as m:
            np.testing.assert_array_equal(m.data, np.stack([images[j] for images in rounds[:2]]))


def _direct_io_works(directory) -> bool:
    """Whether this file system writes with O_DIRECT (probed independently of stack.write_at)."""
    import mmap

    probe = directory / "probe"
    probe.write_bytes(b"\0" * 4096)
    buf = mmap.mmap(-1, 4096)  # page-aligned
    fd = os.open(probe, os.O_WRONLY | os.O_DIRECT) if hasattr(os, "O_DIRECT") else None
    if fd is None:
        return False
    try:
        return os.pwrite(fd, buf, 1024) == 4096
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def test_sections_go_straight_to_the_disk_when_aligned_and_give_the_same_stack(tmp_path):
    """A section whose memory, offset and size are aligned is written with O_DIRECT where the file
    system takes it (a page-aligned mapping, as a worker's hand-over is); a section that is not goes
    through the page cache. Both give the same valid stack, read back value for value."""
    import mmap

    shape = (256, 384)  # 384 KiB sections: offsets 1024 + k * 393216, multiples of 512
    secs = sections(4, shape=shape, seed=3)
    aligned_mem = mmap.mmap(-1, secs[0].nbytes)
    direct_expected = _direct_io_works(tmp_path)
    for name, page_aligned in (("direct.mrc", True), ("cached.mrc", False)):
        p = tmp_path / name
        stack.write_stack(p, secs[:1], pixel_size_a=1.5)
        for k, s in enumerate(secs[1:], start=1):
            if page_aligned:
                a = np.frombuffer(aligned_mem, dtype=np.float32).reshape(shape)
                a[:] = s
            else:  # the same values one float into a larger buffer: never 512-aligned
                a = np.empty(s.size + 1, np.float32)[1:].reshape(shape)
                a[:] = s
            with stack.open_file(p, "r+b") as f:
                offset = stack.HEADER_BYTES + k * s.nbytes
                f.truncate(offset)
                assert stack.write_at(f, offset, a) is (page_aligned and direct_expected)
            h = stack.read_header(open(p, "rb"))
            h["nz"] = k + 1
            h["mz"] = k + 1
            h["cella"]["z"] = (k + 1) * 1.5
            with open(p, "r+b") as f:
                stack._write_header(f, h)
        with mrcfile.open(p, permissive=True) as m:
            np.testing.assert_array_equal(m.data, np.stack(secs))


def test_appends_of_page_aligned_sections_make_a_valid_stack(tmp_path):
    """append_sections with sections in a page-aligned mapping (the hand-over's): valid stacks, exact
    statistics, the same bytes as from ordinary arrays."""
    import mmap

    shape = (128, 256)
    rounds = [sections(3, shape=shape, seed=10 + k) for k in range(3)]
    mem = mmap.mmap(-1, 3 * rounds[0][0].nbytes)
    mapped = np.frombuffer(mem, dtype=np.float32).reshape(3, *shape)
    direct, cached = [tmp_path / f"d{j}.mrc" for j in range(3)], [tmp_path / f"c{j}.mrc" for j in range(3)]
    for images in rounds:
        mapped[:] = np.stack(images)
        stack.append_sections(list(zip(direct, mapped)), pixel_size_a=1.5, grace_s=0.0)
        stack.append_sections(list(zip(cached, images)), pixel_size_a=1.5, grace_s=0.0)
    for d, c in zip(direct, cached):
        assert valid(d) and d.read_bytes() == c.read_bytes()
