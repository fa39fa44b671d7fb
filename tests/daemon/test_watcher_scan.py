"""What the watcher takes and ignores; symlinks out of the root; inotify hints vs scan only."""
import os
import time

from framewatch.daemon.intake.watcher import Watcher


def make(tmp_path):
    root = tmp_path / "acq"
    (root / "frames").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for name in ("TS_01_000_0.0.tif", "TS_01_001_3.0.MRC", "x.eer", "a.tiff", "TS_01.mrc.mdoc", "x.tif.mdoc",
                 "CountRef_TS_01.mrc", "gain.mrc", "TS_01_sorted.mrc", "TS_01_EVN.mrc", "movie.tif.tmp", "movie.tif~",
                 ".movie.tif", "notes.txt"):
        (root / "frames" / name).write_bytes(b"x")
    (root / ".hidden" / "y.tif").write_bytes(b"x")
    return root


def test_scan_takes_movies_and_mdocs_only(tmp_path):
    root = make(tmp_path)
    w = Watcher(root, patterns=("*.tif", "*.tiff", "*.mrc", "*.eer"))
    movies, mdocs = w.scan()
    assert sorted(p.name for p in movies) == ["TS_01_000_0.0.tif", "TS_01_001_3.0.MRC", "a.tiff", "x.eer"]
    assert sorted(p.name for p in mdocs) == ["TS_01.mrc.mdoc", "x.tif.mdoc"]
    w2 = Watcher(root, patterns=("*.tif",), ignore=("TS_*",))
    assert [p.name for p in w2.scan()[0]] == []


def test_output_and_state_dirs_inside_root_are_excluded(tmp_path):
    root = make(tmp_path)
    (root / "out" / "TS_01").mkdir(parents=True)
    (root / "out" / "TS_01" / "TS_01.mrc").write_bytes(b"x")
    w = Watcher(root, patterns=("*.mrc",), exclude_dirs=(root / "out",))
    assert all("out" not in p.parts for p in w.scan()[0])
    assert w.accept(root / "out" / "TS_01" / "TS_01.mrc") is None


def test_symlinks_leading_outside_are_not_followed(tmp_path):
    root = make(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret_001_3.0.tif").write_bytes(b"x")
    os.symlink(outside, root / "link_dir")
    os.symlink(outside / "secret_001_3.0.tif", root / "link_file_001_3.0.tif")
    inside = root / "frames" / "TS_01_000_0.0.tif"
    os.symlink(inside, root / "alias_000_0.0.tif")
    os.symlink(root / "frames", root / "frames_alias")  # a loop-free alias inside the root
    w = Watcher(root, patterns=("*.tif",))
    names = [str(p.relative_to(root)) for p in w.scan()[0]]
    assert "alias_000_0.0.tif" in names
    assert not any("secret" in n or "link_" in n for n in names)
    assert w.accept(root / "link_file_001_3.0.tif") is None


def test_inotify_hints_and_scan_only(tmp_path):
    root = make(tmp_path)
    w = Watcher(root, patterns=("*.tif",), use_inotify=True)
    w.start()
    try:
        assert w.backend == "inotify+scan"
        (root / "frames" / "new_000_1.0.tif").write_bytes(b"y")
        assert w.wake.wait(5)
        deadline = time.time() + 5
        hints = set()
        while time.time() < deadline and not any(h.endswith("new_000_1.0.tif") for h in hints):
            hints |= w.drain_hints()
            time.sleep(0.05)
        assert any(h.endswith("new_000_1.0.tif") for h in hints)
    finally:
        w.stop()
    w = Watcher(root, patterns=("*.tif",), use_inotify=False)
    w.start()
    assert w.backend == "scan"
    (root / "frames" / "new2_000_1.0.tif").write_bytes(b"y")
    assert not w.wake.wait(0.3) and w.drain_hints() == set()
    assert any(p.name == "new2_000_1.0.tif" for p in w.scan()[0])
