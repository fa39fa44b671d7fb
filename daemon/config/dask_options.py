"""The ``[dask]`` table of the configuration: where the Dask cluster is and how to reach the movies.

```toml
[scheduler]
backend = "dask"                      # "local" (worker processes on this machine, the default) or "dask"

[dask]
address = "tcp://cluster-head:8786"   # a running scheduler (`dask scheduler`); or --dask-address
# cluster = "slurm"                   # or start one: "slurm", "pbs", "sge", "lsf" (dask-jobqueue)
connect_timeout_s = 10.0              # one connection attempt
reconnect_max_s = 30.0                # back-off between attempts doubles up to this
retries = 1                           # Dask re-runs a task that raised this many times
path_map = { "/data/microscope" = "/mnt/microscope" }   # daemon path prefix -> worker path prefix

[dask.jobqueue]                       # passed to dask-jobqueue (cluster = ...)
cores = 8
memory = "32GB"
processes = 1
walltime = "08:00:00"
queue = "cryoem"
account = "facility"
job_extra_directives = ["--gres=gpu:0"]
adapt_minimum = 1                     # workers kept (Cluster.adapt minimum)
adapt_maximum = 10                    # workers at most
```

Parsed into the frozen :class:`DaskOptions` here, without importing dask (the default install has
no dask; only ``backend = "dask"`` needs the ``framewatch[dask]`` extra).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from framewatch.core.errors import SettingsError

from .toml_values import require_table, suggest, type_name

CLUSTERS = ("slurm", "pbs", "sge", "lsf")
BACKENDS = ("local", "dask")

# [dask.jobqueue] key -> accepted TOML types; the keys dask-jobqueue takes, plus adapt_minimum/maximum
JOBQUEUE_KEYS: dict[str, tuple[type, ...]] = {
    "cores": (int,),
    "memory": (str,),
    "processes": (int,),
    "walltime": (str,),
    "queue": (str,),
    "account": (str,),
    "job_extra_directives": (list,),
    "job_script_prologue": (list,),
    "worker_extra_args": (list,),
    "local_directory": (str,),
    "log_directory": (str,),
    "python": (str,),
    "interface": (str,),
    "job_name": (str,),
    "adapt_minimum": (int,),
    "adapt_maximum": (int,),
}
_DASK_KEYS = ("address", "cluster", "connect_timeout_s", "reconnect_max_s", "retries", "path_map", "jobqueue")


@dataclass(frozen=True)
class JobqueueOptions:
    """The ``[dask.jobqueue]`` table (only the keys that were given are passed on)."""

    values: tuple[tuple[str, object], ...] = ()

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.values}


@dataclass(frozen=True)
class DaskOptions:
    address: str = ""
    cluster: str = ""
    connect_timeout_s: float = 10.0
    reconnect_max_s: float = 30.0
    retries: int = 1
    path_map: tuple[tuple[str, str], ...] = ()  # (daemon prefix, worker prefix), longest first
    jobqueue: JobqueueOptions = field(default_factory=JobqueueOptions)

    def describe(self) -> str:
        """Where the cluster is, for log lines: the address or ``slurm (dask-jobqueue)``."""
        return self.address or (f"{self.cluster} (dask-jobqueue)" if self.cluster else "")


def dask_options_from_table(table, *, source: str | Path | None = None) -> DaskOptions:
    """Validate the ``[dask]`` table (with its ``path_map`` and ``jobqueue`` sub-tables); each
    problem raises a SettingsError naming the key."""
    src = None if source is None else Path(source)
    require_table(table, "dask", src)
    for k in table:
        if k not in _DASK_KEYS:
            raise SettingsError(f"unknown key {k!r} in [dask]", path=src, fix=suggest(k, _DASK_KEYS, in_order=True))
    address = table.get("address", "")
    cluster = table.get("cluster", "")
    for k, v in (("address", address), ("cluster", cluster)):
        if not isinstance(v, str):
            raise SettingsError(f"[dask] {k} = {v!r}: expected a string, got a {type_name(v)}", path=src)
    if address and "://" not in address and ":" not in address:
        raise SettingsError(f"[dask] address = {address!r}: expected a scheduler address", path=src, fix='e.g. address = "tcp://host:8786"')
    if cluster and cluster not in CLUSTERS:
        raise SettingsError(f"[dask] cluster = {cluster!r}: expected one of {', '.join(map(repr, CLUSTERS))}", path=src)
    if address and cluster:
        raise SettingsError("[dask] has both address and cluster", path=src,
                            fix="give address to use a running scheduler, or cluster to start one through dask-jobqueue")
    nums = {}
    for k, default, lo in (("connect_timeout_s", 10.0, 0.1), ("reconnect_max_s", 30.0, 0.1)):
        v = table.get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SettingsError(f"[dask] {k} = {v!r}: expected a number (seconds), got a {type_name(v)}", path=src)
        if v < lo:
            raise SettingsError(f"[dask] {k} = {v!r} must be >= {lo} (seconds)", path=src)
        nums[k] = float(v)
    retries = table.get("retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SettingsError(f"[dask] retries = {retries!r}: expected an integer >= 0", path=src)
    pm = table.get("path_map", {})
    if not isinstance(pm, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in pm.items()):
        raise SettingsError(f"[dask] path_map = {pm!r}: expected a table of \"daemon prefix\" = \"worker prefix\" strings",
                            path=src,
                            fix='e.g. path_map = { "/data/microscope" = "/mnt/microscope" }')
    for a in pm:
        if not a.startswith("/") or not pm[a].startswith("/"):
            raise SettingsError(f"[dask] path_map {a!r} = {pm[a]!r}: both prefixes must be absolute paths", path=src)
    path_map = tuple(sorted(((str(PurePosixPath(a)), str(PurePosixPath(b))) for a, b in pm.items()), key=lambda ab: -len(ab[0])))
    jq = table.get("jobqueue", {})
    require_table(jq, "dask.jobqueue", src)
    vals = []
    for k, v in jq.items():
        if k not in JOBQUEUE_KEYS:
            raise SettingsError(f"unknown key {k!r} in [dask.jobqueue]", path=src, fix=suggest(k, JOBQUEUE_KEYS, in_order=True))
        want = JOBQUEUE_KEYS[k][0]
        if want is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise SettingsError(f"[dask.jobqueue] {k} = {v!r}: expected an integer >= 0", path=src)
        if want is str and not isinstance(v, str):
            raise SettingsError(f"[dask.jobqueue] {k} = {v!r}: expected a string, got a {type_name(v)}", path=src)
        if want is list:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise SettingsError(f"[dask.jobqueue] {k} = {v!r}: expected an array of strings", path=src)
            v = tuple(v)
        vals.append((k, v))
    jqd = dict(vals)
    if jq and not cluster:
        raise SettingsError("[dask.jobqueue] is given but [dask] cluster is not", path=src,
                            fix='set cluster = "slurm" (or "pbs", "sge", "lsf"), or remove [dask.jobqueue]')
    if cluster and not jqd.get("cores"):
        raise SettingsError(f"[dask] cluster = {cluster!r} needs [dask.jobqueue] cores (and memory)", path=src,
                            fix='e.g. [dask.jobqueue] cores = 8, memory = "32GB"')
    if cluster and not jqd.get("memory"):
        raise SettingsError(f"[dask] cluster = {cluster!r} needs [dask.jobqueue] memory", path=src, fix='e.g. memory = "32GB"')
    lo, hi = jqd.get("adapt_minimum"), jqd.get("adapt_maximum")
    if lo is not None and hi is not None and lo > hi:
        raise SettingsError(f"[dask.jobqueue] adapt_minimum = {lo} is above adapt_maximum = {hi}", path=src)
    return DaskOptions(address=address, cluster=cluster, retries=retries, path_map=path_map,
                       jobqueue=JobqueueOptions(tuple(vals)), **nums)


def map_path(path: str | None, path_map: tuple[tuple[str, str], ...]) -> str | None:
    """The path a worker sees for the daemon's ``path``: the longest matching prefix of
    ``path_map`` replaced (whole path components only); unchanged when none matches."""
    if path is None:
        return None
    p = str(path)
    for src, dst in path_map:
        if p == src or p.startswith(src.rstrip("/") + "/"):
            return dst + p[len(src):] if src != "/" else dst.rstrip("/") + p
    return p
