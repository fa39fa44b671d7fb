"""Completeness: frame mdoc, MRC size, TIFF pages, settle time; broken files after settling."""
from pathlib import Path

import numpy as np
import pytest
import tifffile

from framewatch.daemon.commands.simulated_acquisition import mrc_header_for, write_frame_mdoc
from framewatch.daemon.intake.readiness import Observation, decide, probe_movie, refresh_probe, stat_key

FRAMES = np.random.default_rng(1).poisson(1.0, (6, 32, 40)).astype(np.uint8)


def observe(path, obs, now):
    key = stat_key(Path(path).stat())
    if obs is None:
        obs = Observation(key, now)
    else:
        obs.observe(key, now)
    refresh_probe(Path(path), obs, now)
    return obs


def check(path, obs, now, **kw):
    kw.setdefault("settle_s", 10.0)
    kw.setdefault("tiff_stable_s", 2.0)
    return decide(Path(path), obs, now, **kw)


def write_mrc(path, n):
    with open(path, "wb") as f:
        f.write(mrc_header_for(FRAMES))
        for i in range(n):
            f.write(FRAMES[i].tobytes())


@pytest.mark.parametrize("name", ["m.mrc", "m.st", "m.mrcs", "m.MRC"])
def test_mrc_complete_by_size_only(tmp_path, name):
    """Every MRC suffix of core's format registry (regression: ``.st``/``.mrcs`` settled only by time)."""
    p = tmp_path / name
    write_mrc(p, 3)
    obs = observe(p, None, 0.0)
    assert obs.probe.fmt == "mrc"
    d = check(p, obs, 0.0)
    assert d.state == "wait" and "truncated" in d.reason and obs.probe.header_frames == 6 and obs.probe.n_frames == 3
    write_mrc(p, 6)
    obs = observe(p, obs, 0.1)
    d = check(p, obs, 0.1)
    assert (d.state, d.signal, d.n_frames) == ("ready", "mrc_size", 6)


def test_truncated_mrc_is_broken_after_settling(tmp_path):
    p = tmp_path / "m.mrc"
    write_mrc(p, 4)
    obs = observe(p, None, 0.0)
    assert check(p, obs, 5.0).state == "wait"
    obs = observe(p, obs, 10.5)
    d = check(p, obs, 10.5)
    assert d.state == "broken" and "the header says 6 frames, the file holds 4" in d.reason


def test_mrc_with_wrong_count_for_mdoc(tmp_path):
    p = tmp_path / "m.mrc"
    write_mrc(p, 6)
    obs = observe(p, None, 0.0)
    assert check(p, obs, 0.0, expected_frames=8).state == "wait"
    d = check(p, obs, 11.0, expected_frames=8)
    assert d.state == "broken" and "says 8" in d.reason


def append_pages(p, n):
    for i in range(n):
        tifffile.imwrite(p, FRAMES[i], append=True, photometric="minisblack", compression="lzw", metadata=None)


def test_tiff_pages_stable(tmp_path):
    p = tmp_path / "m.tif"
    append_pages(p, 2)
    obs = observe(p, None, 0.0)
    assert obs.probe.n_frames == 2 and obs.probe.last_page_ok
    assert check(p, obs, 1.0).state == "wait"
    append_pages(p, 1)  # grows: stability starts again
    obs = observe(p, obs, 1.5)
    assert check(p, obs, 3.0).state == "wait"
    obs = observe(p, obs, 3.6)
    d = check(p, obs, 3.6)
    assert (d.state, d.signal, d.n_frames) == ("ready", "tiff_pages_stable", 3)


def test_tiff_expected_pages_from_mdoc(tmp_path):
    p = tmp_path / "m.tif"
    append_pages(p, 5)
    obs = observe(p, None, 0.0)
    assert check(p, obs, 0.0, expected_frames=6).state == "wait"
    append_pages(p, 1)
    obs = observe(p, obs, 0.2)
    d = check(p, obs, 0.2, expected_frames=6)
    assert (d.state, d.signal) == ("ready", "tiff_expected_pages")


def test_frame_mdoc_signal(tmp_path):
    p = tmp_path / "m.tif"
    append_pages(p, 6)
    obs = observe(p, None, 0.0)
    write_frame_mdoc(p, 6, angle=0, pixel_size_a=1, dose_per_frame=0.5)
    d = check(p, obs, 0.0)
    assert (d.state, d.signal) == ("ready", "frame_mdoc")
    # the frame mdoc says more frames than the file has: wait, then broken ("wrong frame count")
    write_frame_mdoc(p, 8, angle=0, pixel_size_a=1, dose_per_frame=0.5)
    assert check(p, obs, 1.0).state == "wait"
    d = check(p, obs, 10.0)
    assert d.state == "broken" and "NumSubFrames = 8" in d.reason


def test_corrupt_last_tiff_page(tmp_path):
    p = tmp_path / "m.tif"
    append_pages(p, 6)
    data = bytearray(p.read_bytes())
    t = tifffile.TiffFile(p)
    off = t.pages[5].dataoffsets[0]
    cnt = t.pages[5].databytecounts[0]
    t.close()
    data[off : off + cnt] = b"\xff" * cnt
    p.write_bytes(bytes(data))
    obs = observe(p, None, 0.0)
    assert obs.probe.problem is not None
    d = check(p, obs, 10.0)
    assert d.state == "broken" and d.reason


@pytest.mark.parametrize("name", ["z.mrc", "z.tif", "z.eer"])
def test_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    obs = observe(p, None, 0.0)
    assert check(p, obs, 1.0).state == "wait"
    d = check(p, obs, 10.0)
    assert d.state == "broken" and "empty" in d.reason


def test_probe_unknown_mode(tmp_path):
    p = tmp_path / "m.mrc"
    h = bytearray(mrc_header_for(FRAMES))
    h[12:16] = (77).to_bytes(4, "little")
    p.write_bytes(bytes(h) + FRAMES.tobytes())
    assert "mode 77" in probe_movie(p).problem
