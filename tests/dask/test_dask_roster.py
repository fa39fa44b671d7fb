"""The Dask pool's roster: a worker's ready report is kept by address, so it counts even when it
arrives before the scheduler lists the worker, or when the worker is listed again after a gap.

The two orders cannot be forced on a real cluster (they are races between the scheduler's roster
and the event topic), so the client here is a stand-in with the two calls the roster uses,
``scheduler_info`` and ``get_events``; the real-cluster paths are in test_dask_batch.py and
test_dask_watch.py.
"""
from framewatch.daemon.config.dask_options import dask_options_from_table
from framewatch.daemon.processing.dask_pool import DaskPool

A = "tcp://10.0.0.5:40000"


class _Roster:
    """Stand-in for distributed.Client: the workers listed now and the event topic so far."""

    def __init__(self):
        self.workers: dict = {}
        self.events: list = []

    def scheduler_info(self, n_workers=-1):
        return {"workers": dict(self.workers)}

    def get_events(self, topic):
        return list(self.events)


def _pool(client) -> DaskPool:
    pool = DaskPool(dask_options_from_table({"address": "tcp://127.0.0.1:8786"}), warmup=False)
    pool._client = client
    return pool


def _ready(pool) -> dict:
    return {a: w.ready for a, w in pool._workers.items()}


def test_a_ready_report_before_the_worker_is_listed_still_counts():
    client = _Roster()
    pool = _pool(client)
    client.events.append((0.0, {"token": pool._token, "worker": A, "status": "ready", "warmup_s": 1.0}))
    pool._refresh()  # the report is read, the worker is not listed yet
    assert _ready(pool) == {}
    client.workers[A] = {"nthreads": 1, "name": "w1"}
    pool._refresh()  # now listed: no new report comes, the kept one applies
    assert _ready(pool) == {A: True}


def test_a_worker_listed_again_after_a_gap_is_ready_again():
    client = _Roster()
    pool = _pool(client)
    client.workers[A] = {"nthreads": 1, "name": "w1"}
    client.events.append((0.0, {"token": pool._token, "worker": A, "status": "ready", "warmup_s": 1.0}))
    pool._refresh()
    assert _ready(pool) == {A: True}
    del client.workers[A]
    pool._refresh()
    assert _ready(pool) == {}
    client.workers[A] = {"nthreads": 1, "name": "w1"}
    pool._refresh()
    assert _ready(pool) == {A: True}


def test_a_report_of_an_earlier_registration_is_not_taken():
    client = _Roster()
    pool = _pool(client)
    client.workers[A] = {"nthreads": 1, "name": "w1"}
    client.events.append((0.0, {"token": "an-earlier-token", "worker": A, "status": "ready"}))
    pool._refresh()
    assert _ready(pool) == {A: False}
