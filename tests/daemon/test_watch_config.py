"""The TOML configuration of `framewatch watch`."""
import pytest

from framewatch.core.errors import SettingsError
from framewatch.core.movie_io import watch_patterns
from framewatch.daemon.config.configuration import DaemonConfig, load_config, with_overrides


def test_defaults_without_file():
    c = load_config(None)
    # every movie suffix of core's format registry (tests/test_format_registry.py), the four of old among them
    assert c.watch.patterns == watch_patterns() and {"*.tif", "*.tiff", "*.mrc", "*.eer"} <= set(c.watch.patterns)
    assert c.watch.settle_s <= 10 and c.watch.inotify and c.scheduler.workers == 1


def test_full_file(tmp_path):
    p = tmp_path / "f.toml"
    p.write_text(
        "[processing]\npixel_size_a = 1.2\n"
        "[watch]\nscan_period_s = 1.5\ninotify = false\npatterns = ['*.mrc']\nignore = ['*bad*']\n"
        "[series]\nidle_s = 20\npatterns = [{regex = '^(?P<series>x)$', index_base = 1}]\n"
        "[scheduler]\nworkers = 2\nnewest_first_backlog = 5\n"
        "[thresholds]\ntotal_motion_a = 30\nfrc_0_143_a = 8\n"
    )
    c = load_config(p)
    assert c.watch.scan_period_s == 1.5 and not c.watch.inotify and c.watch.patterns == ("*.mrc",)
    assert c.series.idle_s == 20.0 and c.scheduler.workers == 2 and c.thresholds.frc_0_143_a == 8.0
    assert c.raw["processing"]["pixel_size_a"] == 1.2
    c2 = with_overrides(c, watch__inotify=True, scheduler__workers=None)
    assert c2.watch.inotify and c2.scheduler.workers == 2


@pytest.mark.parametrize(
    "text",
    ["[watch]\nbogus = 1\n", "[nope]\n", "[watch]\nscan_period_s = 0\n", "[watch]\ninotify = 'yes'\n", "not toml [",
     "[scheduler]\nworkers = 0\n"],
)
def test_bad_files(tmp_path, text):
    p = tmp_path / "f.toml"
    p.write_text(text)
    with pytest.raises(SettingsError):
        load_config(p)


def test_missing_file(tmp_path):
    with pytest.raises(SettingsError):
        load_config(tmp_path / "missing.toml")
    assert isinstance(load_config(None), DaemonConfig)
