"""Helpers of the daemon tests: `framewatch watch` as a real subprocess, live stack validation,
the acceptance checks of one finished series (imported by conftest.py and the test modules)."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import mrcfile
import pytest

TEST_CONFIG = """\
[processing]
pixel_size_a = 1.5

[watch]
scan_period_s = 1.0
settle_s = 2.0
tiff_stable_s = 1.0
mdoc_wait_s = 3.0
retry_backoff_s = 0.3
max_attempts = 3

[series]
mdoc_quiet_s = 2.5
idle_s = 60.0

[thresholds]
total_motion_a = 15.0
max_frame_shift_a = 10.0

[disk]
# a full disk on the test machine must not pause the daemon (the floor is tested in tests/service)
warn_below_gb = 0
floor_gb = 0
resume_margin_gb = 0
"""


def holding_half_written(config_text: str) -> str:
    """``config_text`` with ``settle_s = 30`` for a test that holds a movie half-written while it
    waits for something (its stream to start, a scheduler or a worker to die). A file whose size has
    not changed for ``settle_s`` and that is not whole yet is broken by the readiness rules (a new
    version when the rest comes); at 2 s a slow run crossed it (the Dask streaming tests in CI, twelfth
    session). Movies without an mdoc are found complete by their size (MRC) or a stable page count
    (TIFF, ``tiff_stable_s``), which this does not change."""
    held = config_text.replace("settle_s = 2.0", "settle_s = 30.0")
    if held == config_text:
        raise ValueError("the configuration has no 'settle_s = 2.0' to raise")
    return held


class DaemonProc:
    """One watch/out/state triple and the daemon processes run on it."""

    def __init__(self, base: Path, config_text: str = TEST_CONFIG):
        self.base = base
        self.acq = base / "acq"
        self.out = base / "out"
        self.state = base / "state"
        self.acq.mkdir(parents=True, exist_ok=True)
        self.config = base / "framewatch.toml"
        self.config.write_text(config_text)
        self.proc: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []
        self.runs = 0
        self.prefix: list[str] = []  # e.g. setpriv ... (the daemon with fewer capabilities)
        self.env_extra: dict[str, str] = {}
        self.preexec_fn = None  # e.g. a resource limit for one run

    @property
    def log(self) -> Path:
        return self.out / "framewatch.jsonl"

    def start(self, *extra: str, pause_at: str | None = None) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env_extra)
        env.pop("FRAMEWATCH_PAUSE_AT", None)
        if pause_at:
            env["FRAMEWATCH_PAUSE_AT"] = pause_at
            env["FRAMEWATCH_PAUSE_DIR"] = str(self.base / "pause")
        self.runs += 1
        stdout = open(self.base / f"daemon-{self.runs}.out", "wb")
        cmd = [*self.prefix, sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(self.acq),
               "--out", str(self.out),
               "--state", str(self.state), "--config", str(self.config), *extra]
        self.proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env, preexec_fn=self.preexec_fn)
        stdout.close()
        self.procs.append(self.proc)
        return self.proc

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def wait_event(self, pred, timeout: float = 60.0, *, after: int = 0) -> dict:
        """The first event (from index ``after``) for which pred(event) is true."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            evs = self.events()
            for ev in evs[after:]:
                if pred(ev):
                    return ev
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting; last events: {[e.get('event') for e in self.events()[-10:]]}\n{self.output()}")

    def wait_ready(self, timeout: float = 90.0) -> dict:
        n = len(self.events())
        return self.wait_event(lambda e: e["event"] == "daemon_ready", timeout, after=n)

    def wait_marker(self, name: str, timeout: float = 60.0, keep: bool = False) -> None:
        p = self.base / "pause" / f"{name}.reached"
        deadline = time.time() + timeout
        while not p.exists():
            if time.time() > deadline:
                raise AssertionError(f"pause point {name} not reached\n{self.output()}")
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited:\n{self.output()}")
            time.sleep(0.05)
        if not keep:
            p.unlink()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        parts = []
        for p in sorted(self.base.glob("daemon-*.out")):
            parts.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)


class StackWatcher(threading.Thread):
    """Validates every stack under OUT again and again while the daemon runs (a live reader)."""

    def __init__(self, out: Path):
        super().__init__(daemon=True)
        self.out = out
        self.stop_event = threading.Event()
        self.checks = 0
        self.races = 0  # reads that overlapped an append (see run)
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            for p in self.out.glob("*/*.mrc"):
                before = _identity(p)
                buf = io.StringIO()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ok = mrcfile.validate(str(p), print_file=buf)
                if "FileNotFoundError" in buf.getvalue():
                    continue  # renamed away for an append: not visible
                if not ok and _identity(p) != before:
                    # the file was appended to while this (slow) reader held it open past the
                    # append's grace period: it read the old header and found the new size. Not a
                    # torn file at the path -- that one fails again and again.
                    self.races += 1
                    continue
                self.checks += 1
                if not ok:
                    self.failures.append(f"{p.name}: {buf.getvalue()[-300:]}")
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(10)


def _identity(p: Path):
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def add_section(acq, name, angle, index, frames=8):
    """The tilt-series mdoc line SerialEM writes for a tilt, whatever became of its movie."""
    import datetime

    when = (acq.clock_start + datetime.timedelta(seconds=acq.tilt_period_s * index)).strftime("%d-%b-%y  %H:%M:%S")
    with open(acq.mdoc_path, "a") as f:
        f.write(f"[ZValue = {acq._z}]\nTiltAngle = {angle}\nExposureDose = 3\nTargetDefocus = -3.5\n"
                f"SubFramePath = D:\\x\\{name}\n"
                f"NumSubFrames = {frames}\nDateTime = {when}\n\n")
    acq._z += 1


def corrupt_tiff_page(path, page, *, data: bytes | None = None) -> bytes:
    """Overwrite the compressed data of one TIFF page with 0xff (it no longer decodes); with
    ``data`` (the file's bytes) returns the corrupted bytes instead of rewriting the file."""
    import tifffile

    with tifffile.TiffFile(path if data is None else io.BytesIO(data)) as t:
        off, cnt = t.pages[page].dataoffsets[0], t.pages[page].databytecounts[0]
    buf = bytearray(Path(path).read_bytes() if data is None else data)
    buf[off : off + cnt] = b"\xff" * cnt
    if data is None:
        Path(path).write_bytes(bytes(buf))
    return bytes(buf)


def mount_tmpfs(directory: Path, size_mb: int) -> str | None:
    """Mount a tmpfs of ``size_mb`` on ``directory`` (a small output disk); None when done, else
    why it could not be (not root, no mount in a container ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(directory)], capture_output=True,
                       text=True)
    return None if r.returncode == 0 else f"mount -t tmpfs failed: {(r.stderr or r.stdout).strip()[:200]}"


def unmount(directory: Path) -> None:
    if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def fill_filesystem(filler: Path) -> int:
    """Write ``filler`` until the file system holding it is full, to the last byte; returns the
    bytes written. Delete the file to give the room back."""
    import errno

    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n = 0
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            buf = b"\0" * chunk
            while True:
                try:
                    n += os.write(fd, buf)
                except OSError as err:
                    if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    break
    finally:
        os.close(fd)
    return n


def read_journal(state: Path) -> list[dict]:
    import sqlite3

    db = sqlite3.connect(f"file:{state / 'framewatch.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = []
    for r in db.execute("SELECT * FROM movies ORDER BY id"):
        d = dict(r)
        for c in ("info_json", "stats_json", "flags_json", "timings_json"):
            d[c[:-5]] = json.loads(d[c]) if d[c] else None
        rows.append(d)
    db.close()
    return rows


def verify_series(d: DaemonProc, acq, good, *, dose_per_tilt: float, px: float = 1.5, compare_sections: bool = True,
                  series: str = "TS_01", angle_tol: float = 0.2) -> dict:
    """Everything the acceptance criteria ask of one finished series; returns measurements."""
    import numpy as np

    from framewatch.core.correct import correct_movie_file
    from framewatch.core.settings import CorrectionSettings
    from framewatch.daemon.outputs.driftlog import EVENT_KEYS, missing_keys
    from framewatch.daemon.outputs.tilt_table import read_tsv

    rows = read_journal(d.state)
    done = [r for r in rows if r["state"] == "done"]
    # every movie processed exactly once
    states = [(r["path"].rsplit("/", 1)[-1], r["state"], r["z"], r["error"], r["interruptions"], r["attempts"]) for r in rows]
    assert sorted(r["path"] for r in done) == sorted(str(m.path) for m in good), (states, d.output())
    assert len({r["path"] for r in done}) == len(done), states
    done.sort(key=lambda r: r["z"])
    assert [r["z"] for r in done] == list(range(len(good)))
    # one section per tilt, in acquisition order
    by_index = sorted(good, key=lambda m: m.index)
    assert [r["path"] for r in done] == [str(m.path) for m in by_index]
    writer = {str(m.path): m for m in good}
    for r in done:
        m = writer[r["path"]]
        assert r["n_frames"] == m.n_frames
        # never before complete: readiness was declared after the last bytes were being written
        assert r["complete_at"] >= m.last_write_started, (r["path"], r["complete_at"], m.last_write_started)
    out_dir = d.out / series
    stacks = {k: out_dir / f"{series}{k}.mrc" for k in ("", "_EVN", "_ODD")}
    data = {}
    for k, p in stacks.items():
        assert mrcfile.validate(str(p), print_file=io.StringIO())
        with mrcfile.open(p) as m:
            data[k] = m.data.reshape(-1, *m.data.shape[-2:]).copy()
            assert m.voxel_size.x == pytest.approx(px)
        assert data[k].shape[0] == len(good)
    assert not list(out_dir.glob(".*")) and not list(out_dir.glob("tilts/.*"))  # no working or temporary names left
    # sections equal correct_movie_file of the same movie with the same settings
    if compare_sections:
        for r in done:
            m = writer[r["path"]]
            s = CorrectionSettings(pixel_size_a=px, dose_per_frame_e_per_a2=dose_per_tilt / m.n_frames,
                                   prior_dose_e_per_a2=dose_per_tilt * m.index)
            ref = correct_movie_file(m.path, settings=s)
            for k, img in (("", ref.dose_weighted_sum), ("_EVN", ref.even_sum), ("_ODD", ref.odd_sum)):
                np.testing.assert_allclose(data[k][r["z"]], img, rtol=1e-4, atol=1e-4 * float(np.abs(img).max()))
    # prior doses follow the rule; the tilt table, rawtlt, sorted stack, tlt and STAR agree
    tsv = read_tsv(out_dir / f"{series}.tilts.tsv")
    assert [int(t["z"]) for t in tsv] == list(range(len(good)))
    for t, m in zip(tsv, by_index):
        assert float(t["prior_dose_e_per_a2"]) == pytest.approx(dose_per_tilt * m.index)
        assert t["prior_dose_rule"] in ("sum of earlier ExposureDose", "mdoc PriorRecordDose",
                                        "acquisition index x dose per tilt")
        assert float(t["dose_e_per_a2"]) == pytest.approx(dose_per_tilt)
        assert float(t["tilt_angle_deg"]) == pytest.approx(m.angle_deg, abs=0.01)
        assert t["movie"] == m.path.name
    rawtlt = [float(a) for a in (out_dir / f"{series}.rawtlt").read_text().split()]
    assert rawtlt == pytest.approx([m.angle_deg for m in by_index], abs=0.01)
    superseded = {int(t["z"]) for t in tsv if "superseded" in t["flags"]}
    kept = sorted((float(t["tilt_angle_deg"]), int(t["z"])) for t in tsv if int(t["z"]) not in superseded)
    tlt = [float(a) for a in (out_dir / f"{series}.tlt").read_text().split()]
    assert tlt == pytest.approx([a for a, _ in kept], abs=0.006)
    with mrcfile.open(out_dir / f"{series}_sorted.mrc") as m:
        sorted_data = m.data.reshape(-1, *m.data.shape[-2:])
        assert sorted_data.shape[0] == len(kept)
        for k, (_, z) in enumerate(kept):
            np.testing.assert_array_equal(sorted_data[k], data[""][z])
    for k in ("_sorted_EVN", "_sorted_ODD"):
        assert mrcfile.validate(str(out_dir / f"{series}{k}.mrc"), print_file=io.StringIO())
    tsv_by_z = {int(t["z"]): t for t in tsv}
    check_interop_outputs(d.out, series, done, kept, tsv_by_z, data)
    # the drift log parses and has the documented keys
    events = d.events()
    for ev in events:
        assert ev["event"] in EVENT_KEYS, ev["event"]
        assert missing_keys(ev) == [], (ev["event"], missing_keys(ev))
    tilts = [e for e in events if e["event"] == "tilt_corrected" and e["series"] == series]
    assert sorted(e["movie"] for e in tilts) == sorted(str(m.path) for m in good)
    for e in tilts:
        assert e["total_motion_a"] == pytest.approx(float(tsv_by_z[e["z"]]["total_motion_a"]), rel=1e-4)
    completed = [e for e in events if e["event"] == "series_completed" and e["series"] == series]
    assert completed and completed[-1]["n_tilts"] == len(good)
    # latency: from the movie being complete on disk to its section appended
    lat = {str(m.path): None for m in good}
    for r in done:
        lat[r["path"]] = (r["done_at"] - writer[r["path"]].completed, (r["timings"] or {}).get("correct_s"))
    return {"latency": lat, "events": events, "rows": rows, "tsv": tsv}


def check_interop_outputs(out: Path, series: str, done: list[dict], kept: list[tuple[float, int]], tsv_by_z: dict,
                          data: dict) -> None:
    """The next programs' view of a finished series, read as they read it: RELION 5 (starfile from
    the project directory = OUT: tilt_series.star -> data_global -> SERIES.star -> every image opens
    as one 2D image equal to its section), AreTomo3 (``_sorted_TLT.txt``) and IMOD (``_sorted.rawtlt``)."""
    import numpy as np
    import starfile

    from framewatch.daemon.outputs.relion_tables import tomo_name

    here = os.getcwd()
    os.chdir(out)  # RELION's jobs run in the project directory
    try:
        glob = starfile.read("tilt_series.star", always_dict=True)["global"]
        g = glob[glob["rlnTomoName"] == tomo_name(series)].iloc[0]
        assert g["rlnVoltage"] == 300.0 and g["rlnTomoTiltSeriesPixelSize"] == pytest.approx(1.5)
        df = starfile.read(g["rlnTomoTiltSeriesStarFile"], always_dict=True)[g["rlnTomoName"]]
        kept_z = sorted(z for _, z in kept)  # acquisition order = z order here
        assert len(df) == len(kept_z)
        assert list(df["rlnTomoNominalStageTiltAngle"]) == pytest.approx([float(tsv_by_z[z]["tilt_angle_deg"]) for z in kept_z],
                                                                          abs=1e-4)
        assert list(df["rlnMicrographPreExposure"]) == pytest.approx([float(tsv_by_z[z]["prior_dose_e_per_a2"]) for z in kept_z],
                                                                      rel=1e-5)
        assert list(df["rlnAccumMotionTotal"]) == pytest.approx([float(tsv_by_z[z]["total_motion_a"]) for z in kept_z], rel=1e-4)
        assert list(df["rlnAccumMotionEarly"]) == pytest.approx([float(tsv_by_z[z]["relion_early_motion_a"]) for z in kept_z],
                                                                 rel=1e-4)
        if any((r["info"]["tilt"] or {}).get("mdoc_path") for r in done):
            assert set(df["rlnTomoNominalTiltAxisAngle"]) == {85.3}  # the mdoc title of the simulated acquisition
        assert "rlnTomoNominalDefocus" not in df or (df["rlnTomoNominalDefocus"] != 0).all()
        for col, key in (("rlnMicrographName", ""), ("rlnMicrographNameEven", "_EVN"), ("rlnMicrographNameOdd", "_ODD")):
            for p, z in zip(df[col], kept_z):
                assert not os.path.isabs(p) and "@" not in p
                with mrcfile.open(p) as m:
                    assert m.data.ndim == 2
                    np.testing.assert_array_equal(m.data, data[key][z])
    finally:
        os.chdir(here)
    out_dir = out / series
    tlt = [line.split() for line in (out_dir / f"{series}_sorted_TLT.txt").read_text().splitlines() if line.strip()]
    assert [float(t[0]) for t in tlt] == pytest.approx([a for a, _ in kept], abs=0.006)
    assert sorted(int(t[1]) for t in tlt) == list(range(1, len(kept) + 1))
    assert [float(t[2]) for t in tlt] == pytest.approx([float(tsv_by_z[z]["dose_e_per_a2"]) for _, z in kept], rel=1e-3)
    with mrcfile.open(out_dir / f"{series}_sorted.mrc") as m:
        n_sorted = m.data.reshape(-1, *m.data.shape[-2:]).shape[0]
    assert len((out_dir / f"{series}_sorted.rawtlt").read_text().split()) == n_sorted


def latency_breakdown(rows, good) -> list[tuple]:
    """(movie, on disk -> found complete, found -> worker start, worker, append) per movie, seconds."""
    writer = {str(m.path): m for m in good}
    out = []
    for r in rows:
        if r["state"] != "done" or r["path"] not in writer:
            continue
        m = writer[r["path"]]
        t = r["timings"] or {}
        out.append((m.path.name, round(r["complete_at"] - m.completed, 3), t.get("wait_s"), t.get("correct_s"), t.get("append_s"),
                    r["info"].get("complete_signal")))
    return out
