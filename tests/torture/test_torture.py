"""The torture run of `framewatch watch` (torture.py has the faults and the checks).

The short version runs in the default test run (two series of ten tilts, every fault once, five
SIGKILL restarts; about half a minute on 2 cores). The long version (four series of fourteen
tilts, every fault twice, at least 20 restarts) is marked slow; it is also a script:
``python -m tests.torture --seed 7 --restarts 20 --profile long``.
"""
import pytest

from .torture import run_torture


def _run(tmp_path, **kw):
    lines = []
    summary = run_torture(tmp_path, log=lines.append, **kw)
    print("\n".join(lines))
    print(summary.text())
    return summary


@pytest.mark.torture
def test_torture_short(tmp_path):
    summary = _run(tmp_path, seed=1, profile="short")
    assert not summary.problems, summary.text()
    assert summary.kills >= 5 and summary.lost == 0 and summary.duplicated == 0
    assert summary.good_ok == summary.good and summary.bad_ok == summary.bad


@pytest.mark.torture
@pytest.mark.slow
@pytest.mark.parametrize("seed", [7])
def test_torture_long(tmp_path, seed):
    summary = _run(tmp_path, seed=seed, profile="long", restarts=20)
    assert not summary.problems, summary.text()
    assert summary.kills >= 20 and summary.lost == 0 and summary.duplicated == 0
