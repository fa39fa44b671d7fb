"""The Prometheus endpoint served over real HTTP on 127.0.0.1."""
from __future__ import annotations

import math
import urllib.request

import pytest

from framewatch.core.errors import SettingsError
from framewatch.daemon.service.metrics import Metrics, NullMetrics, create_metrics, parse_address

pytest.importorskip("prometheus_client")


def scrape(m: Metrics) -> dict[str, float]:
    host, port = m.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.fixture
def metrics():
    m = Metrics()
    m.serve("127.0.0.1:0")
    yield m
    m.close()


def tilt(series, z, *, total, early, frc, correct_s, latency_s, replayed=False):
    ev = dict(series=series, z=z, total_motion_a=total, early_motion_a=early, frc_0_143_a=frc,
              correct_s=correct_s, latency_s=latency_s)
    if replayed:
        ev["replayed"] = True
    return ev


class TestMetricsEndpoint:
    def test_bound_to_localhost_by_default(self):
        assert parse_address("9750") == ("127.0.0.1", 9750)
        assert parse_address(":9750") == ("127.0.0.1", 9750)
        assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
        assert parse_address("[::1]:9750") == ("::1", 9750)

    @pytest.mark.parametrize("bad", ["abc", "127.0.0.1:x", "127.0.0.1:70000", "host.example:9750", "[::1]9750"])
    def test_bad_address_names_the_key(self, bad):
        with pytest.raises(SettingsError, match=r"\[metrics\] address"):
            parse_address(bad)

    def test_values_after_a_series(self, metrics):
        """Counters, gauges and histograms show what the events said."""
        m = metrics
        m.movie_seen(4)
        m.observe_event("daemon_ready", {"warmup_s": 1.25})
        m.observe_event("tilt_corrected", tilt("TS_01", 0, total=3.0, early=1.0, frc=6.0, correct_s=2.0, latency_s=4.0))
        m.observe_event("tilt_corrected", tilt("TS_01", 1, total=5.5, early=2.5, frc=7.0, correct_s=3.0, latency_s=6.0))
        m.observe_event("tilt_flagged", {"series": "TS_01", "z": 1})
        m.observe_event("movie_failed", {"stage": "readiness"})
        m.observe_event("tilt_corrected", tilt("TS_02", 0, total=1.0, early=0.5, frc=None, correct_s=1.0, latency_s=2.0))
        m.set_queue(queued=2, processing=1, oldest_wait_s=12.5)
        m.set_free_bytes(123456789)
        m.set_paused(True)
        v = scrape(m)
        assert v["framewatch_movies_seen_total"] == 4
        assert v["framewatch_movies_done_total"] == 3
        assert v['framewatch_movies_failed_total{stage="readiness"}'] == 1
        assert v["framewatch_tilts_flagged_total"] == 1
        assert v["framewatch_queue_depth"] == 2
        assert v["framewatch_movies_processing"] == 1
        assert v["framewatch_oldest_waiting_movie_age_seconds"] == 12.5
        assert v['framewatch_series_tilts_done{series="TS_01"}'] == 2
        assert v['framewatch_series_tilts_done{series="TS_02"}'] == 1
        assert v["framewatch_last_tilt_total_motion_angstrom"] == 1.0
        assert v["framewatch_last_tilt_early_motion_angstrom"] == 0.5
        assert math.isnan(v["framewatch_last_tilt_frc_0_143_angstrom"])
        assert v["framewatch_last_tilt_timestamp_seconds"] > 0
        assert v["framewatch_correction_seconds_count"] == 3 and v["framewatch_correction_seconds_sum"] == 6.0
        assert v['framewatch_correction_seconds_bucket{le="2.0"}'] == 2
        assert v["framewatch_processing_lag_seconds_count"] == 3 and v["framewatch_processing_lag_seconds_sum"] == 12.0
        assert v["framewatch_output_free_bytes"] == 123456789
        assert v["framewatch_intake_paused"] == 1
        assert v["framewatch_kernel_warmup_seconds"] == 1.25

    def test_replayed_tilts_are_not_timed(self, metrics):
        """A tilt logged again after a restart counts as done but not in the timing histograms."""
        metrics.observe_event("tilt_corrected", tilt("TS", 0, total=1, early=1, frc=5, correct_s=9, latency_s=9, replayed=True))
        v = scrape(metrics)
        assert v["framewatch_movies_done_total"] == 1 and v["framewatch_correction_seconds_count"] == 0

    def test_series_labels_are_bounded(self, metrics):
        from framewatch.daemon.service import metrics as mod

        for i in range(mod.MAX_SERIES_LABELS + 5):
            metrics.set_series_tilts(f"S{i}", 1)
        series = [k for k in scrape(metrics) if k.startswith("framewatch_series_tilts_done{")]
        assert len(series) == mod.MAX_SERIES_LABELS and 'framewatch_series_tilts_done{series="S0"}' not in series

    def test_port_in_use(self, metrics):
        """A port already taken gives one message naming the key."""
        host, port = metrics.address
        with pytest.raises(SettingsError, match=r"\[metrics\] address .*cannot listen"):
            Metrics().serve(f"{host}:{port}")

    def test_off_by_default(self):
        """No address: a no-op object, no server."""
        m = create_metrics("")
        assert isinstance(m, NullMetrics)
        m.observe_event("tilt_corrected", {})
        m.set_queue(queued=1, processing=0, oldest_wait_s=None)

    def test_missing_prometheus_client_is_refused_clearly(self, monkeypatch):
        """Without prometheus-client, asking for the endpoint says what to install."""
        import builtins

        real = builtins.__import__

        def fake(name, *a, **k):
            if name.startswith("prometheus_client"):
                raise ImportError(name)
            return real(name, *a, **k)

        monkeypatch.setattr(builtins, "__import__", fake)
        with pytest.raises(SettingsError, match="pip install prometheus-client"):
            create_metrics("127.0.0.1:0")
        assert isinstance(create_metrics(None), NullMetrics)
