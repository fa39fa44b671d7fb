"""A Dask cluster on localhost made of real processes (``dask scheduler``, ``dask worker``), so a
test can SIGKILL a worker, stop the scheduler, or start a worker that reports another version."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from framewatch.daemon.commands.simulated_acquisition import Acquisition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalDask:
    def __init__(self, base: Path):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self._procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
        log = open(self.base / f"{name}.log", "ab")
        p = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self._procs.append(p)
        return p

    def start_scheduler(self, timeout_s: float = 120.0) -> None:
        """Start the scheduler and wait until it listens on ``port`` (its log says ``Scheduler at:``),
        so that no worker started next can take that port for its own listener first. It happened
        once on a slow run: a worker's random port was the scheduler's, and the scheduler, a moment
        later, failed with "Address already in use" while the daemon waited for it."""
        log = self.base / "scheduler.log"
        started = self._count(log, "Scheduler at:")
        args = ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        self.scheduler = self._spawn("scheduler", args)
        deadline = time.time() + timeout_s
        while self._count(log, "Scheduler at:") <= started:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"the Dask scheduler exited ({self.scheduler.returncode}):\n{self.log('scheduler')}")
            if time.time() > deadline:
                raise TimeoutError(f"the Dask scheduler did not listen within {timeout_s:g} s:\n{self.log('scheduler')}")
            time.sleep(0.05)

    @staticmethod
    def _count(path: Path, text: str) -> int:
        return path.read_text(errors="replace").count(text) if path.exists() else 0

    def start_worker(self, name: str, *, env_extra: dict | None = None) -> subprocess.Popen:
        """One worker process (no nanny: a SIGKILL ends it for good), one thread, started with
        ``MALLOC_ARENA_MAX=1`` as the README advises (``env_extra`` may say otherwise)."""
        env = {"MALLOC_ARENA_MAX": "1", **(env_extra or {})}
        p = self._spawn(name, ["distributed.cli.dask_worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
                               "--no-dashboard", "--death-timeout", "300"], env)
        self.workers[name] = p
        return p

    def kill_worker(self, name: str) -> None:
        p = self.workers[name]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)

    def log(self, name: str) -> str:
        p = self.base / f"{name}.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def cleanup(self) -> None:
        """Stop every process: SIGTERM, then SIGKILL after 0.5 s (a worker closing gracefully waits for
        its scheduler, which is stopping too: the old 3 s grace ran out at every test's teardown)."""
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.time() + 0.5
        for p in self._procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def other_version_path(base: Path, version: str = "9.9.9") -> Path:
    """A directory whose framewatch metadata says ``version``: put first on a worker's PYTHONPATH,
    that worker reports another framewatch version (its code is the same, its metadata is not)."""
    d = base / f"framewatch-{version}-metadata"
    info = d / f"framewatch-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: framewatch\nVersion: {version}\n")
    return d


def finished_session(directory: Path, *, n_tilts: int, size: int = 128, n_frames: int = 6, seed: int = 0) -> Acquisition:
    """A tilt series already on disk (TIFF and MRC alternating, with its mdoc)."""
    acq = Acquisition(directory, n_tilts=n_tilts, shape=(size, size), n_frames=n_frames, dose_per_tilt_e_per_a2=3.0,
                      pixel_size_a=1.5, frame_interval_s=0.0, tilt_interval_s=0.0, seed=seed)
    acq.start_mdoc()
    for i in range(n_tilts):
        acq.write_tilt(i)
    return acq


def run_batch(session: Path, out: Path, state: Path, *extra: str, config: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "batch", str(session), "--out", str(out),
           "--state", str(state),
           "--pixel-size-a", "1.5", *(["--config", str(config)] if config else []), *extra]
    log = open(out.parent / f"batch-{out.name}.log", "ab")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    log.close()
    return p
