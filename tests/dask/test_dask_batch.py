"""`framewatch batch` on a real Dask cluster on localhost: a worker SIGKILLed mid-session, the
scheduler down at start, a worker of another version."""
import json
import time

import mrcfile
from daemon_helpers import read_journal
from dask_helpers import finished_session, other_version_path, run_batch


def _events(out):
    p = out / "framewatch.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def _wait_event(out, pred, proc, timeout=300.0, what=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in _events(out):
            if pred(e):
                return e
        if proc.poll() is not None:
            raise AssertionError(f"batch exited with {proc.returncode} before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_processing(address, timeout=120.0) -> dict:
    """Worker address -> keys of the framewatch tasks it is running, as soon as there is one."""
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as observer:
        deadline = time.time() + timeout
        while time.time() < deadline:
            busy = {a: [k for k in keys if "framewatch-correct" in str(k)] for a, keys in observer.processing().items()}
            busy = {a: k for a, k in busy.items() if k}
            if busy:
                return busy
            time.sleep(0.01)
    raise AssertionError("no worker was correcting a movie")


def _check_once_in_order(acq, out, state):
    rows = [r for r in read_journal(state) if r["state"] == "done"]
    assert sorted(r["path"] for r in rows) == sorted(str(m.path) for m in acq.written)  # every tilt exactly once
    rows.sort(key=lambda r: r["z"])
    assert [r["z"] for r in rows] == list(range(len(acq.written)))
    assert [r["path"] for r in rows] == [str(m.path) for m in sorted(acq.written, key=lambda m: m.index)]  # acquisition order
    tilts = [e for e in _events(out) if e["event"] == "tilt_corrected"]
    assert sorted(e["movie"] for e in tilts) == sorted(str(m.path) for m in acq.written)  # one line per tilt
    for k in ("", "_EVN", "_ODD"):
        with mrcfile.open(out / "TS_01" / f"TS_01{k}.mrc") as m:
            assert m.data.shape[0] == len(acq.written)
    assert (out / "TS_01" / "TS_01_sorted.mrc").exists()
    return tilts


def test_batch_two_workers_one_killed_after_the_first_tilt(tmp_path, cluster):
    acq = finished_session(tmp_path / "session", n_tilts=8, size=320, n_frames=8)
    cluster.start_scheduler()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    proc = run_batch(acq.directory, out, state, "--dask-address", cluster.address)
    try:
        _wait_event(out, lambda e: e["event"] == "tilt_corrected", proc, what="the first tilt")
        ready = {e["worker_name"]: e["worker"] for e in _events(out) if e["event"] == "dask_worker_ready"}
        assert set(ready) == {"w1", "w2"}
        # SIGKILL a worker while it is correcting a movie (asked of the scheduler)
        victim_address, keys = next(iter(_wait_processing(cluster.address).items()))
        victim = next(n for n, a in ready.items() if a == victim_address)
        cluster.kill_worker(victim)
        lost_movie_id = int(str(keys[0]).split("-")[2])
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = (out.parent / "batch-out.log").read_text()
    assert rc == 0, log[-3000:]
    tilts = _check_once_in_order(acq, out, state)
    survivor = ready["w1" if victim == "w2" else "w2"]
    lost = next(r["path"] for r in read_journal(state) if r["id"] == lost_movie_id)
    # the task of the killed worker ran again on the other one; its section landed once
    assert [e["worker"] for e in tilts if e["movie"] == lost] == [survivor]
    assert not [e for e in _events(out) if e["event"] == "movie_failed"]
    assert "8 movies: 8 corrected now, 0 done before, 0 failed" in log
    # a second run resumes: nothing to do, exit 0
    again = run_batch(acq.directory, out, state, "--dask-address", cluster.address)
    assert again.wait(300) == 0
    assert "8 movies: 0 corrected now, 8 done before, 0 failed" in (out.parent / "batch-out.log").read_text()


def test_scheduler_down_at_start_then_up_with_a_worker_of_another_version(tmp_path, cluster):
    acq = finished_session(tmp_path / "session", n_tilts=4, size=128)
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    config = tmp_path / "fw.toml"
    config.write_text("[scheduler]\nbacklog_log_s = 0.5\n\n[dask]\nconnect_timeout_s = 1.0\nreconnect_max_s = 2.0\n\n"
                      "[disk]\nwarn_below_gb = 0\nfloor_gb = 0\nresume_margin_gb = 0\n")
    proc = run_batch(acq.directory, out, state, "--dask-address", cluster.address, config=config)
    try:
        _wait_event(out, lambda e: e["event"] == "dask_unreachable", proc, what="dask_unreachable")
        _wait_event(out, lambda e: e["event"] == "backlog" and e["queued"] > 0, proc, what="the backlog line")
        time.sleep(3.0)  # a few more attempts: nothing may fail meanwhile
        assert not [e for e in _events(out) if e["event"] in ("movie_failed", "tilt_corrected")]
        cluster.start_scheduler()
        cluster.start_worker("other", env_extra={"PYTHONPATH": str(other_version_path(tmp_path))})
        cluster.start_worker("good")
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = (out.parent / "batch-out.log").read_text()
    assert rc == 0, log[-3000:]
    events = _events(out)
    unreachable = [e for e in events if e["event"] == "dask_unreachable"]
    assert unreachable and all(e["scheduler"] == cluster.address for e in unreachable)
    delays = [e["retry_in_s"] for e in unreachable]
    assert delays == sorted(delays) and max(delays) <= 2.0  # back-off, doubling up to reconnect_max_s
    refused = [e for e in events if e["event"] == "dask_worker_refused"]
    assert refused and refused[0]["worker_name"] == "other"
    assert "framewatch 9.9.9 on the worker" in refused[0]["reason"] and "in the daemon" in refused[0]["reason"]
    good = next(e["worker"] for e in events if e["event"] == "dask_worker_ready" and e["worker_name"] == "good")
    tilts = _check_once_in_order(acq, out, state)
    assert {e["worker"] for e in tilts} == {good}  # the refused worker got no movie


def test_batch_failed_movie_exit_1_and_listed(tmp_path):
    """Local pool: a movie that cannot be read fails, is listed, and the exit status is 1."""
    acq = finished_session(tmp_path / "session", n_tilts=3, size=128)
    bad = acq.written[1].path
    bad.write_bytes(bad.read_bytes()[: 2000])  # cut short: recorded failed at once (the batch does not wait for it)
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    proc = run_batch(acq.directory, out, state)
    rc = proc.wait(300)
    log = (out.parent / "batch-out.log").read_text()
    assert rc == 1, log[-3000:]
    assert f"failed: {bad}:" in log and "3 movies: 2 corrected now, 0 done before, 1 failed" in log
    fin = next(e for e in _events(out) if e["event"] == "batch_finished")
    assert fin["failed_movies"] == [str(bad)] and fin["done"] == 2


def test_scheduler_goes_away_mid_session_and_comes_back(tmp_path, cluster):
    """The scheduler is SIGKILLed while a worker corrects a movie: nothing fails, the daemon reconnects
    with back-off when a scheduler is back on the same address, the lost tasks are sent again."""
    acq = finished_session(tmp_path / "session", n_tilts=6, size=320, n_frames=8, seed=2)
    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    config = tmp_path / "fw.toml"
    config.write_text("[scheduler]\nbacklog_log_s = 0.5\n\n[dask]\nconnect_timeout_s = 1.0\nreconnect_max_s = 2.0\n\n"
                      "[disk]\nwarn_below_gb = 0\nfloor_gb = 0\nresume_margin_gb = 0\n")
    hold = tmp_path / "hold"  # w1 holds one movie at `worker_reading` (faults.py): it is in flight for sure
    hold.mkdir()
    (hold / "worker_reading.hold").write_text(acq.written[3].path.name)
    cluster.start_scheduler()
    cluster.start_worker("w1", env_extra={"FRAMEWATCH_HOLD_DIR": str(hold)})
    proc = run_batch(acq.directory, out, state, "--dask-address", cluster.address, config=config)
    try:
        deadline = time.monotonic() + 240
        while not (hold / "worker_reading.held").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "w1 never reached the held movie"
            time.sleep(0.05)
        cluster.scheduler.kill()  # while w1 holds a movie: its task is lost with the scheduler
        cluster.scheduler.wait(10)
        cluster.kill_worker("w1")
        _wait_event(out, lambda e: e["event"] == "dask_unreachable", proc, what="dask_unreachable after the loss")
        done_while_down = len([e for e in _events(out) if e["event"] == "tilt_corrected"])
        time.sleep(2.0)
        assert not [e for e in _events(out) if e["event"] == "movie_failed"]
        assert len([e for e in _events(out) if e["event"] == "tilt_corrected"]) == done_while_down
        cluster.start_scheduler()
        cluster.start_worker("w2")
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = (out.parent / "batch-out.log").read_text()
    assert rc == 0, log[-3000:]
    events = _events(out)
    assert [e["event"] for e in events].count("dask_disconnected") >= 1
    assert [e["reconnected"] for e in events if e["event"] == "dask_connected"][-1] is True
    assert not [e for e in events if e["event"] == "movie_failed"]
    resent = [e for e in events if e["event"] == "dask_task_resubmitted"]
    assert resent and resent[0]["reason"] == "the connection to the scheduler was lost"
    _check_once_in_order(acq, out, state)
