"""The Dask tests run a real scheduler and real worker processes on localhost; they are skipped
only when dask.distributed is not installed (pip install '.[test,dask]')."""
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))  # daemon_helpers (DaemonProc, verify_series)

from dask_helpers import LocalDask  # noqa: E402


@pytest.fixture
def cluster(tmp_path):
    c = LocalDask(tmp_path / "dask")
    yield c
    c.cleanup()
