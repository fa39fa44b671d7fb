"""Kernel warm-up and the numba cache directory check."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from framewatch.core.settings import CorrectionSettings
from framewatch.daemon.processing.warmup import FullSizeWarmup, cache_status, warm_full_size, warm_up


class TestCacheStatus:
    def test_writable_cache_dir(self, tmp_path):
        s = cache_status({"NUMBA_CACHE_DIR": str(tmp_path / "numba")})
        assert s.writable and s.source == "NUMBA_CACHE_DIR" and (tmp_path / "numba").is_dir()
        assert str(tmp_path / "numba") in s.message

    def test_unwritable_cache_dir_is_said_clearly(self, tmp_path):
        """A NUMBA_CACHE_DIR that cannot be used: the message names it, the consequence and the fix."""
        f = tmp_path / "a-file"
        f.write_text("")
        s = cache_status({"NUMBA_CACHE_DIR": str(f / "numba")})
        assert not s.writable
        assert f"NUMBA_CACHE_DIR={f / 'numba'} is not writable" in s.message
        assert "every start compiles" in s.message and "CacheDirectory=framewatch" in s.message

    def test_package_pycache_when_unset(self):
        s = cache_status({})
        assert s.source == "package __pycache__" and s.directory.name == "__pycache__"


def test_warm_up_compiles_the_kernels():
    """After the warm-up every engine kernel has a compiled (or cache-loaded) version."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import framewatch.core as core

    report = warm_up()
    assert {"whole_frame", "patches_2x2", "patches_2x2_warp", "dtype_uint16", "eer_decode",
            "streaming_mask_change"} <= set(report.steps_s)
    assert report.seconds >= sum(report.steps_s.values()) * 0.99
    top_level = {  # kernels called from Python (helpers inlined into them have no entry of their own)
        ("frame_arithmetic", "_gain_kernel"), ("frame_arithmetic", "_convert_kernel"), ("frame_arithmetic", "_add_kernel"),
        ("defects", "_hot_zscore_kernel"), ("defects", "_dead_runs_kernel"), ("pixel_replacement", "_replace_kernel"),
        ("weighted_sums", "_weighted_sums_kernel"), ("fourier", "_apply_phase_kernel"),
        ("frc", "_ring_sums_kernel"), ("global_align", "_loo_cross_power_kernel"),
        ("spectral_weight", "_add_power_kernel"),  # (no _prefilter_kernel: a correction prefilters in Fourier space)
        ("image_warp", "_warp_kernel"), ("mrc", "_unpack_4bit_kernel"),
        ("pixel_replacement", "_source_kernel"), ("sparse_spectrum", "_point_spectrum_kernel"),
        ("eer_decode", "_parse_frames"), ("eer_decode", "_scatter_blocks"),
    }
    found = {}
    for m in pkgutil.walk_packages(core.__path__, prefix="framewatch.core."):
        mod = importlib.import_module(m.name)
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__:
                found[(m.name.rsplit(".", 1)[-1], name)] = len(obj.signatures)
    missing = [k for k in top_level if found.get(k, 0) == 0]
    assert not missing, missing


@pytest.mark.parametrize("streaming, fourier_bin", [(True, 1), (False, 2)])
def test_full_size_warm_up_makes_the_sums_spare(tmp_path, streaming, fourier_bin):
    """The full-size warm-up corrects a movie of the given size (both paths) and leaves the worker a
    spare hand-over file the size of that movie's three sums."""
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, fourier_bin=fourier_bin, patches="auto")
    movie = FullSizeWarmup(n_frames=6, frame_shape=(256, 320), settings=settings, gain=True, streaming=streaming,
                           sums_dir=str(tmp_path))
    assert movie.label == "full_size 6x256x320"
    assert warm_full_size(movie) > 0
    spares = list(tmp_path.glob(".spare-*.f32"))
    assert [p.stat().st_size for p in spares] == [3 * 4 * (256 // fourier_bin) * (320 // fourier_bin)]


FAULTS_CODE = """
import resource, sys
import numpy as np
from framewatch.core.memory_reuse import keep_freed_memory
from framewatch.core.settings import CorrectionSettings
from framewatch.core.simulate import SimulationSpec, simulate_movie
from framewatch.core.streaming_correction import StreamingCorrection
from framewatch.daemon.processing.warmup import FullSizeWarmup, warm_full_size, warm_up
keep_freed_memory()
warm_up(dtypes=("uint8",))
sim = simulate_movie(SimulationSpec(ny=1024, nx=1024, n_frames=10, dose_per_frame_e_per_a2=0.3, dtype="uint8", seed=3))
settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)
if sys.argv[1] == "warm":
    warm_full_size(FullSizeWarmup(n_frames=10, frame_shape=(1024, 1024), settings=settings, gain=True))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
s = StreamingCorrection(settings, (1024, 1024), gain=sim.gain)
for f in sim.frames:
    s.add_frame(np.array(f))
s.finish()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_full_size_warm_up_puts_the_first_movies_memory_in_place():
    """In a fresh process the first movie of its size takes its buffers from the operating system page
    by page (page faults: the first tilt after a start was 3.5-5 s against 1.2-1.4 s, 4096² on the
    development VM); after the full-size warm-up the same movie finds most of them in place."""
    faults = {}
    for mode in ("cold", "warm"):
        out = subprocess.run([sys.executable, "-c", FAULTS_CODE, mode], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        faults[mode] = int(out.stdout.split()[-1])
    print(faults)
    assert faults["warm"] < faults["cold"] / 3, faults


@pytest.mark.slow
def test_warm_up_cold_vs_warm_cache(tmp_path):
    """With an empty NUMBA_CACHE_DIR the warm-up compiles; the second start loads from the cache
    and is many times faster."""
    code = "from framewatch.daemon.processing.warmup import warm_up; print(warm_up().seconds)"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    times = [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                                  timeout=600).stdout.split()[-1]) for _ in range(2)]
    print(f"warm-up cold {times[0]:.2f} s, warm cache {times[1]:.2f} s")
    assert times[1] < times[0] / 4
    assert any((tmp_path / "numba").rglob("*.nbi"))


class _Log:
    """The drift log's ``event`` (the events are read back by the test)."""

    def __init__(self):
        self.events = []

    def event(self, name, **fields):
        self.events.append((name, fields))


def _warmup_for(tmp_path, *, service_table: dict | None = None, opts=None, pool=None):
    from framewatch.daemon.config.configuration import config_from_dict
    from framewatch.daemon.config.processing_options import ProcessingOptions
    from framewatch.daemon.processing.scheduler import LocalProcessPool
    from framewatch.daemon.service.kernel_warmup import KernelWarmup
    from framewatch.daemon.state.journal import Journal
    from framewatch.daemon.state.run_context import LiveConfig, RunContext

    journal = Journal(tmp_path / "state", tmp_path / "out")
    opts = opts or ProcessingOptions()
    run = RunContext(tmp_path / "acq", tmp_path / "out", tmp_path / "state", "h1", "", tmp_path / "out", opts)
    config = LiveConfig(config_from_dict({"service": service_table or {}}))
    log = _Log()
    w = KernelWarmup(pool=pool or LocalProcessPool(1), log=log, service=None, config=config, state_dir=tmp_path / "state",
                     journal=journal, run=run, sums_dir=str(tmp_path / "sums"))
    return w, journal, log


def _done_movie(journal, *, frame_shape=(512, 768), n_frames=8, dose=0.4):
    s, _ = journal.series_for("h1", "TS_01", "/acq", "")
    r = journal.add("/acq/TS_01_000.tif", 10, 111, "h1")
    resolved = {"pixel_size_a": 1.2, "dose_per_frame_e_per_a2": dose, "voltage_kv": 300.0}
    journal.update(r["id"], state="processing", series_id=s["id"], n_frames=n_frames, info_json={"resolved": resolved})
    worker = {"pid": 1} if frame_shape is None else {"pid": 1, "frame_shape": list(frame_shape)}
    journal.mark_done(r["id"], z=0, stats={}, flags=[], timings={}, info={"resolved": resolved, "worker": worker}, now=5.0)


def test_full_size_warm_up_takes_the_last_done_movies_size(tmp_path):
    """The journal's last done movie gives the synthetic movie's frames and shape; its own values
    (pixel size, dose) stand in where the options give none; the local pool streams."""
    from framewatch.daemon.config.processing_options import ProcessingOptions

    w, journal, log = _warmup_for(tmp_path, opts=ProcessingOptions(fourier_bin=2, gain=tmp_path / "gain.mrc"))
    assert w.full_size() is None  # nothing corrected yet, and the gain is not there: nothing to go by
    assert [name for name, _ in log.events] == ["warmup_full_size_skipped"] and "gain" in log.events[0][1]["reason"]
    _done_movie(journal)
    m = w.full_size()
    assert (m.n_frames, m.frame_shape, m.streaming, m.gain, m.sums_dir) == (8, (512, 768), True, True, str(tmp_path / "sums"))
    assert (m.settings.pixel_size_a, m.settings.dose_per_frame_e_per_a2, m.settings.fourier_bin) == (1.2, 0.4, 2)
    assert m.source == "last movie"


def test_full_size_warm_up_of_a_new_state_directory_takes_the_gains_shape(tmp_path):
    """No movie corrected yet: the gain reference gives the frame shape, 10 frames; the options' own
    values win over the stand-ins (pixel size 1 A, 0.3 e/A^2 per frame)."""
    import mrcfile

    from framewatch.daemon.config.processing_options import ProcessingOptions
    from framewatch.daemon.service.kernel_warmup import NEW_STATE_FRAMES

    gain = tmp_path / "gain.mrc"
    with mrcfile.new(gain) as m:
        m.set_data(np.full((96, 160), 1.1, np.float32))
    w, journal, log = _warmup_for(tmp_path / "a", opts=ProcessingOptions(gain=gain))
    m = w.full_size()
    assert (m.n_frames, m.frame_shape, m.gain, m.source) == (NEW_STATE_FRAMES, (96, 160), True, "gain reference")
    assert (m.settings.pixel_size_a, m.settings.dose_per_frame_e_per_a2) == (1.0, 0.3)
    w, journal, log = _warmup_for(tmp_path / "b", opts=ProcessingOptions(gain=gain, pixel_size_a=0.83,
                                                                         dose_per_tilt_e_per_a2=4.0))
    m = w.full_size()
    assert (m.settings.pixel_size_a, m.settings.dose_per_frame_e_per_a2) == (0.83, 0.4)
    assert log.events == []
    _done_movie(journal)  # once a movie is done, its size
    assert (w.full_size().frame_shape, w.full_size().source) == ((512, 768), "last movie")
    w, journal, log = _warmup_for(tmp_path / "c")
    assert w.full_size() is None  # no gain, no movie: nothing to go by
    big = tmp_path / "superres.mrc"  # a super-resolution gain: the movies may be saved at half its size
    with mrcfile.new(big) as m:
        m.set_data(np.ones((64, 7000), np.float32))
    w, journal, log = _warmup_for(tmp_path / "d", opts=ProcessingOptions(gain=big))
    assert w.full_size() is None
    assert [name for name, _ in log.events] == ["warmup_full_size_skipped"] and "super-resolution" in log.events[0][1]["reason"]


def test_full_size_warm_up_is_skipped_when_off_old_or_invalid(tmp_path):
    """Switched off; a journal row of a version that did not record the shape; values that no longer
    make valid settings (logged, the kernels are warmed all the same)."""
    w, journal, log = _warmup_for(tmp_path / "off", service_table={"warmup_full_size": False})
    _done_movie(journal)
    assert w.full_size() is None
    w, journal, log = _warmup_for(tmp_path / "old")
    _done_movie(journal, frame_shape=None)
    assert w.full_size() is None
    w, journal, log = _warmup_for(tmp_path / "bad")
    _done_movie(journal, dose=None)
    assert w.full_size() is None
    assert [name for name, _ in log.events] == ["warmup_full_size_skipped"] and "dose" in log.events[0][1]["reason"]
