"""Issue 14, rows 14, 15 and 16: the outputs survive a moment of no write permission, never follow a
link planted in OUT, and fit the file system's limit on one name.

Real mechanisms only: the tests run as root, which ignores file modes, so "not writable" is a real
``chattr +i`` (immutable directory: even root gets EPERM); links are real symlinks; names are real
255-byte names on the real file system.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from daemon_helpers import read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.outputs import stack
from framewatch.daemon.outputs.no_follow import LinkInOutputError, atomic_write_text, ensure_real_dir
from framewatch.daemon.outputs.tilt_table import read_tsv
from framewatch.daemon.state.output_names import NAME_MAX_BYTES, SERIES_NAME_MAX_BYTES, fit_name, series_out_name


def chattr(flag: str, path: Path) -> str | None:
    exe = shutil.which("chattr")
    if exe is None:
        return "chattr is not installed (e2fsprogs)"
    r = subprocess.run([exe, flag, str(path)], capture_output=True, text=True)
    return None if r.returncode == 0 else f"chattr {flag} failed: {r.stderr.strip()[:200]}"


# ---------------------------------------------------------------------------------------- row 14
def test_append_waits_while_the_series_directory_is_not_writable(daemon, verify):
    """A brief permission problem at append (EPERM from an immutable directory) retries with
    back-off and appends the movie, in its place, once OUT is writable again; nothing fails."""
    d = daemon
    acq = Acquisition(d.acq, n_tilts=3, shape=(96, 96), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    d.start()
    d.wait_ready()
    acq.write_tilt(0)
    d.wait_event(lambda e: e["event"] == "tilt_corrected")
    series_dir = d.out / "TS_01"
    why = chattr("+i", series_dir)
    if why:
        pytest.skip(f"needs an immutable directory to stand for an unwritable one (root ignores modes): {why}")
    try:
        n = len(d.events())
        acq.write_tilt(1)
        retry = d.wait_event(lambda e: e["event"] == "movie_retry", after=n)
        assert "output directory not writable" in retry["reason"] and "PermissionError" in retry["reason"], retry
        assert retry["movie"] == str(acq.written[1].path)
    finally:
        assert chattr("-i", series_dir) is None
    d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["z"] == 1, timeout=90)
    acq.write_tilt(2)
    d.wait_event(lambda e: e["event"] == "series_completed", timeout=90)
    assert d.stop() == 0
    res = verify(d, acq, acq.written, dose_per_tilt=3.0)  # all three, in order, each once, sections exact
    assert not [e for e in res["events"] if e["event"] == "movie_failed"]


# ---------------------------------------------------------------------------------------- row 15
def test_a_link_planted_in_out_is_never_followed(daemon):
    """OUT inside WATCH (allowed), a directory link planted at OUT/TS_09: that series fails with a
    message naming the link, nothing is written outside OUT, the other series is corrected."""
    d = daemon
    d.out = d.acq / "out"  # OUT inside the watch directory: the watcher skips it
    elsewhere = d.base / "elsewhere"
    elsewhere.mkdir()
    (d.out).mkdir()
    (d.out / "TS_09").symlink_to(Path("..") / ".." / "elsewhere")
    good = Acquisition(d.acq, series="TS_01", n_tilts=2, shape=(96, 96), n_frames=4, frame_interval_s=0.0, tilt_interval_s=0.0)
    bad = Acquisition(d.acq, series="TS_09", n_tilts=2, shape=(96, 96), n_frames=4, frame_interval_s=0.0, tilt_interval_s=0.0,
                      seed=9)
    good.start_mdoc()
    bad.start_mdoc()
    d.start()
    d.wait_ready()
    for i in range(2):
        good.write_tilt(i)
        bad.write_tilt(i)
    d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["series"] == "TS_01" and e["z"] == 1, timeout=90)
    for m in bad.written:
        failed = d.wait_event(lambda e, m=m: e["event"] == "movie_failed" and e["movie"] == str(m.path), timeout=90)
        assert "is a symbolic link" in failed["reason"] and str(d.out.resolve() / "TS_09") in failed["reason"], failed
    assert d.stop() == 0
    assert [p for p in elsewhere.rglob("*")] == []  # nothing written through the link
    assert (d.out / "TS_09").is_symlink()
    with mrcfile.open(d.out / "TS_01" / "TS_01.mrc") as m:
        assert m.data.shape[0] == 2
    # the watcher never took a file from OUT as a movie
    assert all(Path(r["path"]).parent == d.acq / "frames" for r in read_journal(d.state))


def test_stack_and_table_writers_refuse_links(tmp_path):
    """A link planted at a working name (``.NAME.tmp``) or at a stack itself is refused by the
    kernel (O_NOFOLLOW); the file the link points to is untouched."""
    target = tmp_path / "victim.bin"
    target.write_bytes(b"keep")
    d = tmp_path / "out" / "TS_01"
    d.mkdir(parents=True)
    (d / ".TS_01.tilts.tsv.tmp").symlink_to(target)
    with pytest.raises(LinkInOutputError, match="symbolic link"):
        atomic_write_text(d / "TS_01.tilts.tsv", "z\n0\n")
    (d / ".TS_01.mrc.tmp").symlink_to(target)
    with pytest.raises(LinkInOutputError):
        stack.write_stack(d / "TS_01.mrc", [np.zeros((4, 4), np.float32)], pixel_size_a=1.0)
    (d / "TS_01_EVN.mrc").symlink_to(target)  # a link at the stack's own name
    with pytest.raises(LinkInOutputError):
        stack.append_section(d / "TS_01_EVN.mrc", np.zeros((4, 4), np.float32), pixel_size_a=1.0)
    assert target.read_bytes() == b"keep"
    (tmp_path / "out" / "TS_02").symlink_to(tmp_path)
    with pytest.raises(LinkInOutputError, match="TS_02"):
        ensure_real_dir(tmp_path / "out", tmp_path / "out" / "TS_02")


# ---------------------------------------------------------------------------------------- row 16
def test_fit_name_keeps_short_names_and_hashes_long_ones():
    assert fit_name("TS_07", max_bytes=20) == "TS_07"
    long = "TS_" + "é" * 200  # 403 bytes
    a = fit_name(long, max_bytes=100)
    assert len(os.fsencode(a)) <= 100 and a.startswith("TS_é") and "~" in a
    assert a == fit_name(long, max_bytes=100)  # the same after a restart
    assert fit_name(long + "x", max_bytes=100) != a  # two names sharing their start stay apart
    a.encode("utf-8")  # never cut inside a character
    assert series_out_name("s" * SERIES_NAME_MAX_BYTES) == "s" * SERIES_NAME_MAX_BYTES
    undecodable = os.fsdecode(b"TS_\xff" + b"x" * 300)
    assert len(os.fsencode(series_out_name(undecodable))) <= SERIES_NAME_MAX_BYTES
    # the longest output name of a series with its working name still fits
    stem = series_out_name("x" * 400)
    assert len(os.fsencode(f".{stem}_999_sorted_EVN.mrc.appending")) <= NAME_MAX_BYTES


def test_long_names_complete_with_their_sorted_stacks(daemon):
    """A 255-byte movie name (its series 243 characters) and a 236-character series are corrected,
    appended and completed with their sorted stacks; the tilt table keeps the original names."""
    d = daemon
    s255 = "TS_" + "a" * 240  # movie TS_aaa..._000_0.0.tif: 255 bytes
    s236 = "TS_" + "b" * 233
    acqs = [Acquisition(d.acq, series=s255, n_tilts=2, formats=("tiff",), shape=(96, 96), n_frames=4, frame_interval_s=0.0,
                        tilt_interval_s=0.0),
            Acquisition(d.acq, series=s236, n_tilts=3, shape=(96, 96), n_frames=4, frame_interval_s=0.0, tilt_interval_s=0.0,
                        seed=3)]
    for a in acqs:
        a.start_mdoc()
    d.start()
    d.wait_ready()
    for a in acqs:
        for i in range(a.n_tilts):
            a.write_tilt(i)
    assert len(os.fsencode(acqs[0].written[0].path.name)) == 255
    for a in acqs:
        done = d.wait_event(lambda e, a=a: e["event"] == "series_completed" and e["series"] == a.series, timeout=120)
        assert done["n_tilts"] == done["n_sorted"] == a.n_tilts
    assert d.stop() == 0
    assert not [e for e in d.events() if e["event"] == "movie_failed"]
    for a in acqs:
        stem = series_out_name(a.series)
        out = d.out / stem
        assert len(os.fsencode(stem)) <= SERIES_NAME_MAX_BYTES and stem != a.series and stem.startswith(a.series[:100])
        for suffix in (".mrc", "_EVN.mrc", "_ODD.mrc", "_sorted.mrc", "_sorted_EVN.mrc", "_sorted_ODD.mrc"):
            with mrcfile.open(out / f"{stem}{suffix}") as m:
                assert m.data.shape[0] == a.n_tilts, suffix
        tsv = read_tsv(out / f"{stem}.tilts.tsv")
        assert [t["series"] for t in tsv] == [a.series] * a.n_tilts
        assert sorted(t["movie"] for t in tsv) == sorted(m.path.name for m in a.written)
        assert len((out / f"{stem}.tlt").read_text().split()) == a.n_tilts
        assert not list(out.glob(".*"))
