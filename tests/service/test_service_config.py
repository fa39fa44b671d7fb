"""The configuration: config.example.toml documents every option; each kind of error gives one
message naming the key; check-config; what a reload applies."""
from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from framewatch.core.errors import SettingsError
from framewatch.daemon.commands.cli import main
from framewatch.daemon.config.configuration import _TABLES, PROCESSING_KEYS, config_from_dict, load_config, reload_merge

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def example_doc(tmp_path) -> dict:
    doc = tomllib.loads(EXAMPLE.read_text())
    (tmp_path / "frames").mkdir(exist_ok=True)
    doc["watch"]["dir"] = str(tmp_path / "frames")
    return doc


class TestExample:
    def test_every_option_is_documented_with_its_default(self, tmp_path):
        """Every key of every table appears in the example (commented-out keys count), and the
        example's values are the defaults (paths and the processing values excepted)."""
        text = EXAMPLE.read_text()
        doc = tomllib.loads(text)
        commented = set(re.findall(r"^#\s*([a-z_0-9]+)\s*=", text, re.M))
        for name, cls in _TABLES.items():
            assert name in doc, f"[{name}] missing from config.example.toml"
            for f in fields(cls):
                assert f.name in doc[name] or f.name in commented, f"[{name}] {f.name} not documented"
        for key in PROCESSING_KEYS:
            assert key in doc["processing"] or key in commented, f"[processing] {key} not documented"
        cfg = config_from_dict(example_doc(tmp_path))
        for name, cls in _TABLES.items():
            default = cls()
            for f in fields(cls):
                if (name, f.name) in {("watch", "dir"), ("output", "dir")}:
                    continue
                assert getattr(cfg, name) .__getattribute__(f.name) == getattr(default, f.name), (name, f.name)

    def test_every_line_states_a_unit_or_meaning(self):
        """Each key line carries a comment."""
        for line in EXAMPLE.read_text().splitlines():
            if re.match(r"^[a-z_0-9]+\s*=", line):
                assert "#" in line, line


BAD = [
    ("[watch]\nsetle_s = 3\n", "unknown key 'setle_s' in [watch]; did you mean 'settle_s'?"),
    ("[wacth]\n", "unknown table [wacth]; did you mean 'watch'?"),
    ("[processing]\npixel_size = 1.0\n", "unknown key 'pixel_size' in [processing]; did you mean 'pixel_size_a'?"),
    ("[thresholds]\ntotal_motion = 3\n", "did you mean 'total_motion_a'?"),
    ("[watch]\nsettle_s = \"ten\"\n", "[watch] settle_s = 'ten': expected a number, got a string"),
    ("[scheduler]\nworkers = 2.5\n", "[scheduler] workers = 2.5: expected an integer, got a number"),
    ("[watch]\ninotify = \"yes\"\n", "[watch] inotify = 'yes': expected true or false, got a string"),
    ("[watch]\npatterns = \"*.tif\"\n", "[watch] patterns = '*.tif': expected an array of strings"),
    ("[processing]\npatches = [5]\n", "[processing] patches = [5]: expected two integers [NX, NY]"),
    ("[processing]\nvoltage_kv = \"300\"\n", "[processing] voltage_kv = '300': expected a number"),
    ("[watch]\nscan_period_s = 0\n", "[watch] scan_period_s = 0 must be > 0"),
    ("[disk]\nfloor_gb = 60\n", "[disk] floor_gb = 60 must not be above warn_below_gb = 50"),
    ("[metrics]\naddress = \"localhost:http\"\n", "[metrics] address 'localhost:http' has no valid port"),
    ("[log]\nformat = \"xml\"\n", "[log] format = 'xml'"),
    ("[watch]\ndir = \"/no/such/dir\"\n", "[watch] dir = '/no/such/dir': no such directory"),
    ("[processing]\ngain = \"/no/such/gain.mrc\"\n", "[processing] gain = '/no/such/gain.mrc': no such file"),
    ("[processing]\ndefects = \"/no/such/defects.txt\"\n", "[processing] defects = '/no/such/defects.txt': no such file"),
    ("[processing]\ngain_flip = \"z\"\n", "[processing] gain_flip = 'z'"),
    ("watch = 3\n", "[watch] must be a table"),
    ("not toml [", "not valid TOML"),
    ("[output]\ntomo_hand = 0\n", "[output] tomo_hand = 0 must be -1 or 1"),
    ("[output]\namplitude_contrast = 1.5\n", "[output] amplitude_contrast = 1.5 must be >= 0 and < 1"),
    ("[output]\nspherical_aberration_mm = -1\n", "[output] spherical_aberration_mm = -1 must be >= 0"),
    ("[output]\ntilt_axis_deg = \"85\"\n", "[output] tilt_axis_deg = '85': expected a number"),
    ("[output]\ntilt_axis_deg = 400\n", "[output] tilt_axis_deg = 400.0 must be an angle"),
    ("[output]\nrelion_project_dir = \"/no/such/project\"\n",
     "[output] relion_project_dir = '/no/such/project': no such directory"),
    ("[output]\noptics_group = \"a b\"\n", "[output] optics_group = 'a b' must not contain spaces"),
    ("[output]\nper_tilt_images = \"no\"\n", "[output] per_tilt_images = 'no': expected true or false"),
    ("[outputs]\nper_tilt_images = false\n", "unknown table [outputs]; did you mean 'output'?"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_config_errors_name_the_key(tmp_path, text, message):
    p = tmp_path / "f.toml"
    p.write_text(text)
    with pytest.raises(SettingsError) as exc:
        load_config(p)
    assert message in str(exc.value)
    assert str(p) in str(exc.value)  # and the file


def test_missing_required_dirs(tmp_path, capsys):
    """Without [watch] dir / [output] dir (and no command line), watch and check-config say which."""
    p = tmp_path / "f.toml"
    p.write_text("[processing]\npixel_size_a = 1.0\n")
    assert main(["check-config", str(p)]) == 2
    assert "missing required value [watch] dir" in capsys.readouterr().err
    (tmp_path / "acq").mkdir()
    p.write_text(f"[watch]\ndir = \"{tmp_path / 'acq'}\"\n")
    assert main(["watch", "--config", str(p)]) == 2
    assert "missing required value [output] dir" in capsys.readouterr().err
    assert main(["check-config", "--no-dirs", str(p)]) == 0


def test_check_config_ok(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text(EXAMPLE.read_text().replace("/data/microscope/frames", str(tmp_path)))
    assert main(["check-config", str(p)]) == 0
    out = capsys.readouterr().out
    assert f"{p}: OK" in out and "pixel size 1.08 A" in out
    assert "per-tilt images on; RELION project (OUT); Cs 2.7 mm, amplitude contrast 0.1, hand -1" in out


class TestReload:
    def test_reloadable_values_apply_others_wait(self, tmp_path):
        doc = example_doc(tmp_path)
        old = config_from_dict(doc)
        doc2 = {k: dict(v) for k, v in doc.items()}
        doc2["thresholds"]["total_motion_a"] = 9.0
        doc2["watch"]["settle_s"] = 4.0
        doc2["scheduler"]["workers"] = 3
        doc2["metrics"]["address"] = "127.0.0.1:9999"
        doc2["processing"]["pixel_size_a"] = 2.0
        cfg, applied, restart = reload_merge(old, config_from_dict(doc2))
        assert cfg.thresholds.total_motion_a == 9.0 and cfg.watch.settle_s == 4.0
        assert cfg.scheduler.workers == 1 and cfg.metrics.address == ""
        assert cfg.raw["processing"]["pixel_size_a"] == 1.08
        assert sorted(applied) == ["thresholds.total_motion_a", "watch.settle_s"]
        assert sorted(restart) == ["metrics.address", "processing", "scheduler.workers"]
