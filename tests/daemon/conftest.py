"""Fixtures of the daemon tests (the helpers live in daemon_helpers.py)."""
import pytest
from daemon_helpers import DaemonProc, verify_series


@pytest.fixture
def daemon(tmp_path):
    d = DaemonProc(tmp_path)
    yield d
    d.cleanup()


@pytest.fixture
def verify():
    return verify_series
