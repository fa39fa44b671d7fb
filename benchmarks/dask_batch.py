"""``framewatch batch`` throughput: the local pool against one and two Dask workers on this machine,
and what crosses the network per tilt.

``python -m benchmarks.dask_batch [--tilts 12] [--size 1024] [--frames 10] [--runs local1,dask1,dask2]
[--bytes-4k] [--workdir DIR]``

- A finished session (one tilt series, TIFF LZW and MRC alternating, with its mdoc) is simulated once
  into the work directory and reused.
- Each run is ``framewatch batch`` as a subprocess into a fresh OUT/STATE: ``localN`` with N local
  worker processes, ``daskN`` against a ``dask scheduler`` with N ``dask worker --nthreads 1``
  processes on localhost. Throughput = movies / (``batch_finished`` - ``daemon_ready``): kernel
  warm-up (which happens before ``daemon_ready``) is excluded, so the runs compare the steady state.
- ``--bytes-4k``: corrects one 4096 x 4096 x 10 TIFF (LZW) movie (the standard 4k tilt case) in a
  Dask worker and measures the bytes of the movie file (read by the worker from the shared file
  system), of the result as Dask serialises it (returned to the daemon), and the time to fetch that
  result over loopback TCP against writing it to a staging folder and reading it back.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_session(workdir: Path, tilts: int, size: int, frames: int) -> Path:
    from framewatch.daemon.commands.simulated_acquisition import Acquisition

    d = workdir / f"session_{tilts}x{size}x{frames}"
    if not (d / "TS_01.mrc.mdoc").exists():
        shutil.rmtree(d, ignore_errors=True)
        acq = Acquisition(d, n_tilts=tilts, shape=(size, size), n_frames=frames, dose_per_tilt_e_per_a2=3.0, pixel_size_a=1.5,
                          frame_interval_s=0.0, tilt_interval_s=0.0)
        acq.start_mdoc()
        for i in range(tilts):
            acq.write_tilt(i)
    return d


class DaskProcs:
    """``dask scheduler`` + N ``dask worker`` processes on localhost."""

    def __init__(self, n_workers: int, logdir: Path):
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        port = self.address.rsplit(":", 1)[1]
        logdir.mkdir(parents=True, exist_ok=True)
        sched = ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
        self.procs = [self._spawn(logdir / "scheduler.log", sched)]
        for i in range(n_workers):
            worker = ["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                      "--name", f"w{i}"]
            self.procs.append(self._spawn(logdir / f"worker{i}.log", worker))

    @staticmethod
    def _spawn(log: Path, args: list[str]) -> subprocess.Popen:
        with open(log, "ab") as f:
            return subprocess.Popen([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _ts(e: dict) -> float:
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()


def run_batch(session: Path, workdir: Path, run: str) -> dict:
    kind, n = run[:-1], int(run[-1])
    out, state = workdir / f"out_{run}", workdir / f"state_{run}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "batch", str(session), "--out", str(out),
           "--state", str(state),
           "--pixel-size-a", "1.5", "--no-progress"]
    cluster = None
    if kind == "dask":
        cluster = DaskProcs(n, workdir / f"dask_{run}")
        cmd += ["--dask-address", cluster.address]
    else:
        cmd += ["--workers", str(n)]
    try:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    finally:
        if cluster is not None:
            cluster.close()
    if r.returncode != 0:
        raise RuntimeError(f"{run}: batch exited {r.returncode}\n{r.stderr[-2000:]}")
    events = [json.loads(line) for line in (out / "framewatch.jsonl").read_text().splitlines() if line.strip()]
    ready = next(_ts(e) for e in events if e["event"] == "daemon_ready")
    fin = next(e for e in events if e["event"] == "batch_finished")
    tilts = [e for e in events if e["event"] == "tilt_corrected"]
    span = _ts(fin) - ready
    return {"run": run, "movies": len(tilts), "processing_s": round(span, 2), "movies_per_min": round(60 * len(tilts) / span, 2),
            "mean_correct_s": round(sum(e["correct_s"] for e in tilts) / len(tilts), 3), "wall_s_with_startup": round(wall, 1),
            "workers_used": sorted({e["worker"] for e in tilts})}


def bytes_4k(workdir: Path) -> dict:
    """Bytes and times per 4k tilt: movie read, result returned, fetch vs staging folder."""
    import numpy as np
    from distributed import Client
    from distributed.protocol import serialize_bytelist

    from benchmarks.__main__ import CASES, make_movie
    from framewatch.core.settings import CorrectionSettings
    from framewatch.daemon.processing.dask_worker_plugin import correct_on_worker, from_wire
    from framewatch.daemon.state.records import CorrectionJob

    case = next(c for c in CASES if c.name == "tilt_4k_tiff_lzw")
    movie = make_movie(case, workdir)
    cluster = DaskProcs(1, workdir / "dask_bytes")
    try:
        with Client(cluster.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=120)
            settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)
            job = CorrectionJob(1, str(movie), settings=settings, expected_frames=case.n_frames)
            fut = client.submit(correct_on_worker, job, pure=False)
            t = time.perf_counter()
            fut.result()  # compile + correct + fetch once
            first_s = time.perf_counter() - t
            fut2 = client.submit(correct_on_worker, job, pure=False)
            while fut2.status == "pending":  # computed on the worker, not fetched yet
                time.sleep(0.01)
            t = time.perf_counter()
            res = fut2.result()
            fetch_s = time.perf_counter() - t
            nbytes = sum(len(memoryview(b).cast("B")) for b in serialize_bytelist(res))
            staging = workdir / "staging"
            staging.mkdir(exist_ok=True)

            def write_staging(job):
                r = from_wire(correct_on_worker(job))
                t0 = time.perf_counter()
                p = staging / "TS_01_000.npz"
                np.savez(p, s=r.dose_weighted_sum, e=r.even_sum, o=r.odd_sum)
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
                return time.perf_counter() - t0

            fut3 = client.submit(write_staging, job, pure=False)
            write_s = fut3.result()
            t = time.perf_counter()
            with np.load(staging / "TS_01_000.npz") as z:
                _ = [z[k] for k in ("s", "e", "o")]
            read_s = time.perf_counter() - t
            staged = (staging / "TS_01_000.npz").stat().st_size
    finally:
        cluster.close()
    return {"movie_file_bytes": movie.stat().st_size, "result_bytes": nbytes, "first_task_s": round(first_s, 2),
            "fetch_result_loopback_s": round(fetch_s, 3), "staging_bytes": staged, "staging_write_fsync_s": round(write_s, 3),
            "staging_read_s": round(read_s, 3), "cpu_count": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dask_batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--tilts", type=int, default=12)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--runs", default="local1,dask1,dask2", help="comma-separated: localN, daskN")
    p.add_argument("--bytes-4k", action="store_true", help="also measure what crosses the network per 4k tilt")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "framewatch-bench-dask")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    session = make_session(args.workdir, args.tilts, args.size, args.frames)
    results = {"session": f"{args.tilts} tilts {args.size}x{args.size}x{args.frames}", "runs": []}
    with open("/proc/loadavg") as f:
        results["loadavg_before"] = f.read().split()[:3]
    for run in args.runs.split(","):
        r = run_batch(session, args.workdir, run.strip())
        results["runs"].append(r)
        print(json.dumps(r), flush=True)
    if args.bytes_4k:
        results["bytes_4k"] = bytes_4k(args.workdir)
        print(json.dumps(results["bytes_4k"]), flush=True)
    with open("/proc/loadavg") as f:
        results["loadavg_after"] = f.read().split()[:3]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k.startswith("load")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
