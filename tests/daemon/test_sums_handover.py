"""The worker-to-daemon hand-over of a correction's sums through a file (processing/sums_handover.py),
with the spare file whose pages a worker writes while it waits for its next movie."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from framewatch.daemon.processing import sums_handover as sh

SHAPE = (64, 96)


def _sums(seed: int):
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=SHAPE).astype(np.float32) for _ in range(3))


def test_sums_round_trip_and_the_name_is_removed(tmp_path):
    sums = _sums(1)
    path = sh.put_sums(tmp_path, 7, sums, make_spare=False)
    assert os.path.getsize(path) == 3 * sums[0].nbytes
    got = sh.take_sums(path, SHAPE)
    assert not os.path.exists(path)
    for a, b in zip(sums, got):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.iterdir())  # no temporary file left


def test_a_spare_is_written_into_and_becomes_the_hand_over_file(tmp_path):
    first = _sums(2)
    nbytes = 3 * first[0].nbytes
    spare = sh.make_spare(tmp_path, nbytes + 4096)  # larger than the sums: cut to their size
    assert spare == sh.spare_path(tmp_path) and spare.stat().st_size == nbytes + 4096
    assert not spare.read_bytes().strip(b"\0")  # its pages written (zeros)
    inode = spare.stat().st_ino
    path = sh.put_sums(tmp_path, 8, first, make_spare=False)
    assert os.stat(path).st_ino == inode and os.path.getsize(path) == nbytes
    assert not spare.exists()
    for a, b in zip(first, sh.take_sums(path, SHAPE)):
        np.testing.assert_array_equal(a, b)


def test_sums_larger_than_the_spare_extend_it(tmp_path):
    sums = _sums(3)
    sh.make_spare(tmp_path, 1000)
    path = sh.put_sums(tmp_path, 9, sums, make_spare=False)
    for a, b in zip(sums, sh.take_sums(path, SHAPE)):
        np.testing.assert_array_equal(a, b)


def test_the_next_spare_is_made_after_a_hand_over(tmp_path, monkeypatch):
    monkeypatch.setattr(sh, "SPARE_DELAY_S", 0.0)
    sums = _sums(4)
    path = sh.put_sums(tmp_path, 10, sums)
    spare = sh.spare_path(tmp_path)
    deadline = time.monotonic() + 10
    while not spare.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spare.exists() and spare.stat().st_size == 3 * sums[0].nbytes
    sh.take_sums(path, SHAPE)
    again = sh.put_sums(tmp_path, 11, _sums(5), make_spare=False)  # the spare, not a new file
    assert not spare.exists()
    np.testing.assert_array_equal(sh.take_sums(again, SHAPE)[2], _sums(5)[2])


def test_spares_of_workers_that_are_gone_are_removed(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(gone.stdout)
    dead = sh.spare_path(tmp_path, dead_pid)
    dead.write_bytes(b"x" * 10)
    dead_tmp = dead.with_suffix(".tmp")  # a spare its worker did not finish
    dead_tmp.write_bytes(b"x")
    alive = sh.spare_path(tmp_path, os.getppid())
    alive.write_bytes(b"y" * 10)
    sh.make_spare(tmp_path, 100)
    assert not dead.exists() and not dead_tmp.exists()
    assert alive.exists() and sh.spare_path(tmp_path).stat().st_size == 100
