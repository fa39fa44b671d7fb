"""Issue 14, intake rows: one regression test per row (each fails on commit 7e3f13d).

Reads that could block or never end (a FIFO, /dev/zero) run in a child process with a memory limit
and a timeout, so that a regression fails the test instead of hanging or exhausting the machine."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from framewatch.daemon.intake.mdoc import parse_mdoc_text
from framewatch.daemon.intake.series_grouping import SeriesIndex
from framewatch.daemon.intake.watcher import Watcher
from framewatch.daemon.state.journal import Journal

SECTION = "[ZValue = {z}]\nTiltAngle = {a}\nExposureDose = 3\nSubFramePath = D:\\data\\frames\\{name}\nNumSubFrames = 8\n" \
          "DateTime = 14-Mar-25  09:{m:02d}:00\n\n"


def _child(code: str, timeout_s: float = 20.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python limited to 1 GB of address space; a hang is a timeout."""
    pre = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
    return subprocess.run([sys.executable, "-c", pre + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout_s)


# ---------------------------------------------------------------- row 1: names that are not UTF-8
def test_row1_undecodable_name_round_trips_through_the_journal(tmp_path):
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad\xff_001_0.0.tif")
    j = Journal(tmp_path / "state", tmp_path / "out")
    try:
        row = j.add(name, 10, 20, "h")
        assert j.latest(name, "h")["id"] == row["id"]  # raised UnicodeEncodeError on 7e3f13d
        assert j.get(row["id"])["path"] == name and os.fsencode(j.get(row["id"])["path"]).endswith(b"bad\xff_001_0.0.tif")
        assert j.latest(str(tmp_path / "good_001_0.0.tif"), "h") is None
        s, _ = j.series_for("h", "bad\\xff", os.path.dirname(name), "")
        assert j.series(s["id"])["source_dir"] == os.path.dirname(name)
        # stored as the exact bytes (a BLOB); ordinary names stay TEXT
        kinds = j.db.execute("SELECT typeof(path) FROM movies").fetchall()
        assert [k[0] for k in kinds] == ["blob"]
    finally:
        j.close()


def test_row1_undecodable_name_is_shown_escaped_in_the_log(tmp_path):
    from framewatch.daemon.outputs.driftlog import DriftLog

    log = DriftLog(tmp_path / "framewatch.jsonl")
    log.event("file_ignored", path=os.fsdecode(b"/w/bad\xff.tif"), rule="x")
    log.close()
    text = (tmp_path / "framewatch.jsonl").read_text(encoding="utf-8")
    assert "bad\\\\xff.tif" in text  # JSON of the text bad\xff.tif


# ---------------------------------------------------------------- row 2: DateTime out of range
@pytest.mark.parametrize("when", ["01-Jan-0001  00:00:01", "31-Dec-9999  23:59:59", "99-Foo-20  99:99:99"])
def test_row2_mdoc_datetime_out_of_range_is_a_warning_and_mtime_is_used(tmp_path, when):
    (tmp_path / "frames").mkdir()
    movie = tmp_path / "frames" / "TS_01_000_0.0.tif"
    mdoc = tmp_path / "TS_01.mrc.mdoc"
    mdoc.write_text(SECTION.format(z=0, a=0.0, name=movie.name, m=0).replace("14-Mar-25  09:00:00", when))
    idx = SeriesIndex()
    idx.note_mdoc(mdoc, 0.0)
    info = idx.tilt_info(movie, mtime=1234.0)  # ValueError in series._epoch on 7e3f13d (year 1)
    assert info.order_source == "mtime" and info.acquisition_time == 1234.0
    assert info.grouping == "mdoc" and info.series == "TS_01"
    assert any("DateTime" in w for _, _, ws in idx.warnings for w in ws)


# ---------------------------------------------------------------- row 3: FIFOs, sockets, devices
def test_row3_fifo_mdoc_and_frame_mdoc_never_block(tmp_path):
    os.mkfifo(tmp_path / "m_000_0.0.tif.mdoc")
    (tmp_path / "m_000_0.0.tif").write_bytes(b"x")
    os.mkfifo(tmp_path / "f.mdoc")
    r = _child(f"""
        from pathlib import Path
        from framewatch.daemon.intake.mdoc import read_mdoc
        from framewatch.daemon.intake.readiness import frame_mdoc_frames
        d = Path({str(tmp_path)!r})
        fm, n, problem = frame_mdoc_frames(d / "m_000_0.0.tif")
        print("frame:", n, problem)
        try:
            read_mdoc(d / "f.mdoc")
        except OSError as err:
            print("refused:", err)
    """, timeout_s=30)  # 7e3f13d: blocks in open() for ever (TimeoutExpired)
    assert r.returncode == 0, r.stderr
    assert "frame: None" in r.stdout and "FIFO" in r.stdout
    assert "refused:" in r.stdout and "only regular files" in r.stdout


def test_row3_fifo_named_like_a_movie_is_never_probed(tmp_path):
    from framewatch.daemon.intake.readiness import probe_movie

    os.mkfifo(tmp_path / "p_000_0.0.tif")
    r = _child(f"""
        from framewatch.daemon.intake.readiness import probe_movie
        try:
            print(probe_movie({str(tmp_path / "p_000_0.0.tif")!r}, size=0))
            print(probe_movie({str(tmp_path / "p_000_0.0.tif")!r}, size=100))
        except OSError as err:
            print("refused:", err)
    """, timeout_s=30)
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "FIFO" in r.stdout
    assert probe_movie  # imported in this process too: the module loads


# ---------------------------------------------------------------- row 4: links out of the root, size cap
def test_row4_frame_mdoc_link_to_dev_zero_is_refused(tmp_path):
    os.symlink("/dev/zero", tmp_path / "z_000_0.0.tif.mdoc")
    (tmp_path / "z_000_0.0.tif").write_bytes(b"x")
    r = _child(f"""
        from framewatch.daemon.intake.readiness import frame_mdoc_frames
        print(frame_mdoc_frames(__import__("pathlib").Path({str(tmp_path / "z_000_0.0.tif")!r})))
    """, timeout_s=30)  # 7e3f13d: reads /dev/zero until MemoryError
    assert r.returncode == 0, r.stderr
    assert "character device" in r.stdout


def test_row4_frame_mdoc_link_out_of_the_root_is_not_read(tmp_path):
    root, elsewhere = tmp_path / "w", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (elsewhere / "x.mdoc").write_text("Voltage = 300\n[FrameSet = 0]\nPixelSpacing = 0.5\nNumSubFrames = 8\n")
    os.symlink(elsewhere / "x.mdoc", root / "TS_01_000_0.0.tif.mdoc")
    idx = SeriesIndex(root=root)
    info = idx.tilt_info(root / "TS_01_000_0.0.tif", mtime=0.0)
    assert info.frame_mdoc_pixel_size_a is None  # 0.5 from outside the root on 7e3f13d
    assert any("outside the watch root" in w for _, _, ws in idx.warnings for w in ws)


def test_row4_mdoc_over_the_size_cap_is_one_warning_per_version(tmp_path):
    big = tmp_path / "big.mrc.mdoc"
    big.write_text(SECTION.format(z=0, a=0.0, name="TS_000_0.0.tif", m=0) * 50)
    idx = SeriesIndex(root=tmp_path, mdoc_max_bytes=1000)
    assert idx.note_mdoc(big, 0.0) is None
    assert idx.note_mdoc(big, 1.0) is None
    assert len(idx.warnings) == 1 and "more than the limit of 1000 bytes" in idx.warnings[0][2][0]
    with open(big, "a") as f:
        f.write("\n")
    idx.note_mdoc(big, 2.0)
    assert len(idx.warnings) == 2  # a new version: said again


# ---------------------------------------------------------------- row 6: SubFramePath in the mdoc's own tree
def test_row6_subframepath_matched_only_in_the_mdocs_tree(tmp_path):
    name = "TS_01_001_3.0.tif"
    for grid, angle in (("grid1", 3.0), ("grid2", 63.0)):
        (tmp_path / grid / "frames").mkdir(parents=True)
        (tmp_path / grid / "TS_01.mrc.mdoc").write_text(SECTION.format(z=0, a=angle, name=name, m=1 if grid == "grid1" else 30))
    idx = SeriesIndex()
    idx.note_mdoc(tmp_path / "grid1" / "TS_01.mrc.mdoc", 0.0)
    idx.note_mdoc(tmp_path / "grid2" / "TS_01.mrc.mdoc", 1.0)  # read last: won on 7e3f13d
    for grid, angle in (("grid1", 3.0), ("grid2", 63.0)):
        for movie in (tmp_path / grid / name, tmp_path / grid / "frames" / name):
            info = idx.tilt_info(movie, mtime=0.0)
            assert info.tilt_angle_deg == pytest.approx(angle), (grid, movie)
            assert info.mdoc_path == str(tmp_path / grid / "TS_01.mrc.mdoc")
    elsewhere = tmp_path / "grid3" / "frames" / name
    assert idx.tilt_info(elsewhere, mtime=0.0).grouping == "file name"  # no mdoc in its tree


# ---------------------------------------------------------------- row 8: bounded warnings
def test_row8_junk_mdoc_gives_a_bounded_warning_per_change(tmp_path):
    junk = tmp_path / "j.mdoc"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 5_000_000, dtype=np.uint8).tobytes())
    idx = SeriesIndex()
    idx.note_mdoc(junk, 0.0)
    (p, n, samples), = [w for w in idx.warnings if w[0] == str(junk)]
    assert n > 10_000 and len(samples) <= 201 and all(len(s) <= 200 for s in samples)
    assert sum(len(s) for s in samples) < 50_000  # 9.1 MB on 7e3f13d
    idx.warnings.clear()
    with open(junk, "ab") as f:  # an append: only the new lines are looked at
        f.write(b"\nnot a key value line\n")
    idx.note_mdoc(junk, 1.0)
    (p, n, samples), = idx.warnings
    assert n <= 3


# ---------------------------------------------------------------- row 11: implausible mdoc values
def test_row11_implausible_mdoc_values_are_warned_and_not_used(tmp_path):
    (tmp_path / "frames").mkdir()
    movie = tmp_path / "frames" / "TS_01_004_6.0.tif"
    text = SECTION.format(z=0, a=720, name=movie.name, m=0).replace("ExposureDose = 3",
                                                                     "ExposureDose = 1e300\nPriorRecordDose = nan")
    (tmp_path / "TS_01.mrc.mdoc").write_text(text)
    movie.with_name(movie.name + ".mdoc").write_text("[FrameSet = 0]\nPixelSpacing = 1e300\nFrameDosesAndNumber = inf 8\n"
                                                     "NumSubFrames = 8\n")
    idx = SeriesIndex()
    idx.note_mdoc(tmp_path / "TS_01.mrc.mdoc", 0.0)
    info = idx.tilt_info(movie, mtime=0.0)
    assert info.tilt_angle_deg == 6.0 and info.angle_source == "file name"  # 720 on 7e3f13d
    assert info.mdoc_exposure_dose_e_per_a2 is None and info.prior_record_dose_e_per_a2 is None
    assert info.frame_mdoc_pixel_size_a is None and info.mdoc_frame_dose_e_per_a2 is None
    warned = " ".join(w for _, _, ws in idx.warnings for w in ws)
    for key in ("TiltAngle", "ExposureDose", "PriorRecordDose", "PixelSpacing", "FrameDosesAndNumber"):
        assert key in warned, key
    from framewatch.daemon.config.processing_options import ProcessingOptions
    from framewatch.daemon.intake.dose_precedence import resolve

    res = resolve(info, ProcessingOptions(), 8)
    assert res.problem and res.problem.startswith("no pixel size")  # the movie fails clearly
    m = parse_mdoc_text("[ZValue = 0]\nTiltAngle = -90\nPixelSpacing = 0\n")
    assert m.sections[0].tilt_angle_deg == -90.0 and m.n_warnings == 0


# ---------------------------------------------------------------- row 18: ignore rules on name parts
def test_row18_ignore_rules_match_name_parts(tmp_path):
    taken = ["TS_again_001_0.0.tif", "TS_sorted_grid_001_0.0.tif", "DWarf_001_0.0.tif", "TS_ODDS_001_3.0.mrc",
             "gainful_001_0.0.tif"]
    ignored = ["TS_01_gain.tif", "Gain_ref_x1.m1.mrc", "CountRef_TS.mrc", "TS_07_sorted.mrc", "TS_07_sorted_EVN.mrc",
               "TS_07_ODD.mrc", "x_DW.mrc", ".hidden.tif", "y.tif.tmp"]
    for n in taken + ignored:
        (tmp_path / n).write_bytes(b"x")
    w = Watcher(tmp_path, patterns=("*.tif", "*.mrc"))
    movies, _ = w.scan()
    assert sorted(p.name for p in movies) == sorted(taken)
    said = w.drain_ignored()
    assert sorted(os.path.basename(p) for p, _ in said) == sorted(n for n in ignored if not n.startswith(".") and ".tmp" not in n)
    w.scan()
    assert w.drain_ignored() == []  # once


# ---------------------------------------------------------------- row 19: incremental re-parse
def test_row19_growing_mdoc_is_parsed_incrementally(tmp_path):
    from framewatch.daemon.intake.mdoc_follow import MdocFollower

    p = tmp_path / "TS_01.mrc.mdoc"
    body = "".join(SECTION.format(z=z, a=0.0, name=f"TS_01_{z:05d}_0.0.tif", m=z % 60) for z in range(20000))
    p.write_text("PixelSpacing = 5\n\n" + body)
    f = MdocFollower(p, root=tmp_path)
    first = f.read()
    assert len(first.sections) == 20000 and f.full_parses == 1
    extra = SECTION.format(z=20000, a=1.0, name="TS_01_20000_1.0.tif", m=1)
    with open(p, "a") as fh:
        fh.write(extra[:30])  # a section being written
    m = f.read()
    assert f.incremental_parses == 1 and f.last_parsed_bytes <= 30
    with open(p, "a") as fh:
        fh.write(extra[30:])
    m = f.read()
    assert f.incremental_parses == 2 and f.last_parsed_bytes == len(extra) - len(extra[:30].rsplit("\n", 1)[0]) - 1
    full = parse_mdoc_text(p.read_text(), p)
    assert m.sections == full.sections and m.header == full.header and m.kind == full.kind
    # edited in the middle (same size): parsed whole again
    text = p.read_text().replace("TiltAngle = 0.0", "TiltAngle = 0.5", 1)
    p.write_text(text)
    m = f.read()
    assert f.full_parses == 2 and m.sections[0].tilt_angle_deg == 0.5
    # shrunk: parsed whole again
    p.write_text(text[: len(text) // 2])
    m = f.read()
    assert f.full_parses == 3 and m.sections == parse_mdoc_text(text[: len(text) // 2]).sections


def test_row8_same_bytes_read_again_warn_once(tmp_path):
    """A junk mdoc read twice with nothing appended (touched, or read again because a stat taken
    before an append named the older version): its unfinished last line warns at the first read
    only (CI saw 12 lines for 10 changes of the junk mdoc)."""
    from framewatch.daemon.intake.mdoc_follow import MdocFollower

    p = tmp_path / "j.mdoc"
    p.write_bytes(b"junk line\nmore junk without an end")
    f = MdocFollower(p, root=tmp_path)
    first = f.read()
    assert first.n_warnings >= 2 and any("without an end" in w for w in first.warnings)
    os.utime(p, ns=(1, 1))
    assert f.read().n_warnings == 0
    with open(p, "ab") as fh:
        fh.write(b" and more")  # the unfinished line changed: looked at, and said, again
    again = f.read()
    assert again.n_warnings == 1 and "and more" in again.warnings[0]
    assert f.last_stat.st_size == p.stat().st_size


def test_row19_series_index_reads_only_the_appended_bytes(tmp_path):
    """The series index follows a growing mdoc through the incremental reader (the CPU it saves is
    measured in benchmarks/bench_mdoc_growth.py, not here)."""
    p = tmp_path / "TS_01.mrc.mdoc"
    p.write_text("".join(SECTION.format(z=z, a=0.0, name=f"TS_01_{z:05d}_0.0.tif", m=z % 60) for z in range(3000)))
    idx = SeriesIndex(root=tmp_path)
    idx.note_mdoc(p, 0.0)
    extra = SECTION.format(z=3000, a=1.0, name="TS_01_03000_1.0.tif", m=1)
    with open(p, "a") as fh:
        fh.write(extra)
    assert idx.note_mdoc(p, 1.0) is not None
    f = idx._followers[str(p)]
    assert (f.full_parses, f.incremental_parses, f.last_parsed_bytes) == (1, 1, len(extra))
    info = idx.tilt_info(tmp_path / "TS_01_03000_1.0.tif", mtime=0.0)
    assert info.zvalue == 3000 and info.tilt_angle_deg == 1.0 and info.grouping == "mdoc"
