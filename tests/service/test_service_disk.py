"""Free-space levels of the output disk, with a patched probe."""
from __future__ import annotations

import pytest

from framewatch.daemon.service.disk_space import DiskGuard, free_bytes


class Probe:
    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __call__(self, path):
        self.calls += 1
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


class TestDiskGuard:
    def test_levels_and_resume(self, tmp_path):
        """ok -> low (warn) -> floor (paused) -> back above floor + margin (resumed)."""
        probe = Probe(100)
        g = DiskGuard(tmp_path, warn_below_bytes=50, floor_bytes=10, resume_margin_bytes=5, check_period_s=0, probe=probe)
        r = g.check(0.0)
        assert (r.level, r.changed, g.paused) == ("ok", False, False)
        probe.value = 40
        r = g.check(1.0)
        assert (r.level, r.changed, g.paused) == ("low", True, False)
        probe.value = 9
        r = g.check(2.0)
        assert (r.level, r.changed, g.paused, r.free_bytes) == ("floor", True, True, 9)
        probe.value = 12  # above the floor, not above floor + margin: stay paused
        assert g.check(3.0).level == "floor" and g.paused
        probe.value = 15
        r = g.check(4.0)
        assert (r.level, r.changed, g.paused) == ("low", True, False)
        probe.value = 60
        assert g.check(5.0).level == "ok"

    def test_probe_period(self, tmp_path):
        """The probe runs at most every check_period_s (unless forced)."""
        probe = Probe(100)
        g = DiskGuard(tmp_path, warn_below_bytes=50, floor_bytes=10, check_period_s=10, probe=probe)
        assert g.check(0.0) is not None
        assert g.check(5.0) is None
        assert g.check(5.0, force=True) is not None
        assert g.check(16.0) is not None
        assert probe.calls == 3

    def test_probe_error_keeps_level(self, tmp_path):
        """A failing probe (share gone) keeps the previous level and says why."""
        probe = Probe(5)
        g = DiskGuard(tmp_path, warn_below_bytes=50, floor_bytes=10, check_period_s=0, probe=probe)
        g.check(0.0)
        probe.value = OSError(5, "Input/output error")
        r = g.check(1.0)
        assert g.paused and r.level == "floor" and "Input/output error" in g.error

    def test_real_probe(self, tmp_path):
        """The statvfs probe gives a positive number, also for a directory not made yet."""
        assert free_bytes(tmp_path) > 0
        assert free_bytes(tmp_path / "not" / "yet") == pytest.approx(free_bytes(tmp_path), rel=0.01)
