"""The [dask] table, path mapping, the version check, the Slurm job script, and that the default
install never imports dask."""
import dataclasses
import subprocess
import sys

import pytest

from framewatch.core.errors import SettingsError
from framewatch.daemon.config.configuration import config_from_dict, with_overrides
from framewatch.daemon.config.dask_options import dask_options_from_table, map_path
from framewatch.daemon.processing.dask_cluster import job_script, jobqueue_kwargs
from framewatch.daemon.processing.dask_worker_plugin import correct_on_worker, from_wire, version_mismatch, versions
from framewatch.daemon.state.records import CorrectionJob

SLURM = {"cluster": "slurm", "jobqueue": {"cores": 8, "memory": "32GB", "walltime": "08:00:00", "queue": "cryoem",
                                          "account": "facility", "job_extra_directives": ["--constraint=avx2", "--exclusive"],
                                          "adapt_minimum": 1, "adapt_maximum": 10}}


def test_slurm_job_script_from_the_jobqueue_table():
    script = job_script(dask_options_from_table(SLURM))
    lines = script.splitlines()
    for want in ("#SBATCH -p cryoem", "#SBATCH -A facility", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G",
                 "#SBATCH -t 08:00:00", "#SBATCH --constraint=avx2", "#SBATCH --exclusive"):
        assert want in lines, (want, script)
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    # one single-threaded worker process per core (one movie at a time each)
    assert "--nworkers 8" in worker and "--nthreads 1" in worker, worker
    assert "adapt" not in script
    # one malloc arena, exported before the worker starts (dask_worker_plugin.arena_advice)
    assert lines.index("export MALLOC_ARENA_MAX=1") < lines.index(worker)


def test_a_prologue_that_sets_the_arenas_is_kept_as_given():
    table = {**SLURM, "jobqueue": {**SLURM["jobqueue"], "job_script_prologue": ["export MALLOC_ARENA_MAX=2"]}}
    assert jobqueue_kwargs(dask_options_from_table(table))["job_script_prologue"] == ["export MALLOC_ARENA_MAX=2"]


def test_arena_advice_names_the_variable_unless_it_is_set():
    from framewatch.daemon.processing.dask_worker_plugin import arena_advice

    assert "MALLOC_ARENA_MAX=1" in arena_advice({})
    assert "MALLOC_ARENA_MAX=1" in arena_advice({"MALLOC_ARENA_MAX": "4"})
    assert arena_advice({"MALLOC_ARENA_MAX": "1"}) is None
    assert arena_advice({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"}) is None


def test_sge_and_lsf_take_the_account_as_project():
    kw = jobqueue_kwargs(dask_options_from_table({**SLURM, "cluster": "sge"}))
    assert kw["project"] == "facility" and "account" not in kw and "adapt_maximum" not in kw


@pytest.mark.parametrize(("table", "message"), [
    ({"adress": "tcp://h:8786"}, "unknown key 'adress' in [dask]; did you mean 'address'?"),
    ({"cluster": "kubernetes"}, "[dask] cluster = 'kubernetes': expected one of"),
    ({"address": "tcp://h:8786", "cluster": "slurm"}, "[dask] has both address and cluster"),
    ({"cluster": "slurm"}, "needs [dask.jobqueue] cores"),
    ({"cluster": "slurm", "jobqueue": {"cores": 4}}, "needs [dask.jobqueue] memory"),
    ({"cluster": "slurm", "jobqueue": {"cores": 4, "memory": "8GB", "walltme": "1:00:00"}}, "did you mean 'walltime'?"),
    ({"cluster": "slurm", "jobqueue": {"cores": 4, "memory": "8GB", "adapt_minimum": 5, "adapt_maximum": 2}},
     "is above adapt_maximum"),
    ({"jobqueue": {"cores": 4}}, "[dask.jobqueue] is given but [dask] cluster is not"),
    ({"path_map": {"data": "/mnt"}}, "both prefixes must be absolute"),
    ({"retries": -1}, "[dask] retries = -1"),
])
def test_dask_table_errors_name_the_key(table, message):
    with pytest.raises(SettingsError) as e:
        dask_options_from_table(table)
    assert message in str(e.value)


def test_backend_dask_needs_a_scheduler_and_dask_address_sets_it():
    with pytest.raises(SettingsError, match="needs a scheduler"):
        config_from_dict({"scheduler": {"backend": "dask"}})
    with pytest.raises(SettingsError, match="backend = 'slurm'"):
        config_from_dict({"scheduler": {"backend": "slurm"}})
    cfg = with_overrides(config_from_dict({}), dask__address="tcp://127.0.0.1:8786", scheduler__backend="dask")
    assert cfg.scheduler.backend == "dask" and cfg.dask.address == "tcp://127.0.0.1:8786"
    # --dask-address wins over a cluster to start
    cfg = with_overrides(config_from_dict({"dask": SLURM}), dask__address="tcp://h:1", scheduler__backend="dask")
    assert cfg.dask.cluster == "" and cfg.dask.address == "tcp://h:1"


def test_path_map_longest_prefix_whole_components():
    pm = dask_options_from_table({"path_map": {"/data": "/mnt/d", "/data/scope1": "/scratch/s1"}}).path_map
    assert map_path("/data/scope1/TS_01/a.tif", pm) == "/scratch/s1/TS_01/a.tif"
    assert map_path("/data/other/a.tif", pm) == "/mnt/d/other/a.tif"
    assert map_path("/data", pm) == "/mnt/d"
    assert map_path("/database/a.tif", pm) == "/database/a.tif"  # not a path component of /data
    assert map_path(None, pm) is None


def test_version_mismatch_names_both_versions():
    mine = versions()
    assert version_mismatch(mine, dict(mine)) is None
    why = version_mismatch(mine, {**mine, "framewatch": "9.9.9", "numba": "0.1"})
    assert f"framewatch 9.9.9 on the worker, {mine['framewatch']} in the daemon" in why
    assert f"numba 0.1 on the worker, {mine['numba']} in the daemon" in why


def test_a_movie_the_worker_cannot_see_fails_with_that_reason(tmp_path):
    res = from_wire(correct_on_worker(CorrectionJob(1, str(tmp_path / "nowhere" / "TS_01_000_0.0.tif"))))
    assert res.retryable and res.kind == "MovieNotVisible"
    assert "cannot see the movie" in res.error and "path_map" in res.error and "is not there either" in res.error


def test_default_import_paths_do_not_import_dask():
    code = ("import sys; import framewatch.daemon.commands.cli as c; c.build_parser(); import framewatch.daemon.service.daemon, "
            "framewatch.daemon.service.batch, framewatch.daemon.processing.pool_choice, framewatch.daemon.config.configuration; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'dask_jobqueue')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_batch_progress_line_counts_and_eta():
    import io

    from framewatch.daemon.service.batch import Progress

    buf = io.StringIO()
    p = Progress(buf, enabled=True)
    p.update(finished=3, total=12, failed=1, s_per_movie=2.0, eta_s=18.0)
    p.update(finished=12, total=12, failed=1, s_per_movie=2.0, eta_s=0.0)
    p.close()
    first, last = buf.getvalue().split("\r")[1:3]
    assert "] 3/12 movies  1 failed  2.0 s/movie  ETA 0:18" in first and first.startswith("[#######.")
    assert "12/12 movies" in last and "ETA 0:00" in last and "." not in last.split("]")[0]
    quiet = io.StringIO()
    Progress(quiet, enabled=False).update(finished=1, total=2, failed=0, s_per_movie=None, eta_s=None)
    assert quiet.getvalue() == ""  # not a terminal: no bar


def test_stream_signals_send_worker_paths_and_a_cancel_is_never_ended():
    """The Dask pool's streaming signals (no scheduler needed: values are kept for when one is
    reachable): a streaming job and its end carry the workers' paths (path_map), a cancelled movie
    is not ended afterwards, and the variable's value is forgotten when the job comes back."""
    import pickle

    from framewatch.daemon.processing.dask_pool import DaskPool
    from framewatch.daemon.state.records import StreamChannel

    opts = dask_options_from_table({"address": "tcp://127.0.0.1:1", "path_map": {"/data/scope": "/mnt/scope"}})
    pool = DaskPool(opts)
    signals = pool.stream_signals("/unused")
    assert signals.channel == StreamChannel("dask", signals.prefix) and signals.prefix.startswith("framewatch-stream-")
    job = CorrectionJob(7, "/data/scope/TS_01_000_0.0.tif", gain="/data/scope/gain.mrc", expected_frames=10)
    signals.end(job)
    sent = pickle.loads(signals._values[7]["end"])
    assert (sent.movie, sent.gain, sent.expected_frames) == ("/mnt/scope/TS_01_000_0.0.tif", "/mnt/scope/gain.mrc", 10)
    signals.cancel(8, "deleted")
    signals.end(CorrectionJob(8, "/data/scope/TS_01_001_3.0.tif"))
    assert signals._values[8] == {"cancel": "deleted"}
    signals.clear(7)
    assert 7 not in signals._values
    pool.submit(dataclasses.replace(job, stream=signals.channel))  # not connected: kept for later, mapped
    assert pool.in_flight[7].job.movie == "/mnt/scope/TS_01_000_0.0.tif" and pool.in_flight[7].future is None
    pool.shutdown()
