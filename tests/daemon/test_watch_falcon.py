"""End to end with the daemon as a subprocess: a Falcon-style EER tilt series (Thermo Tomography 5
file names, no SerialEM mdoc) and ``gain_orientation = "auto"`` (found and kept for the session;
refused on a featureless, low-signal session)."""
import os
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the test-side EER writer

from daemon_helpers import read_journal  # noqa: E402
from eer_encoder import encode_movie, events_from_mask, split_counts_into_raw_frames, write_eer  # noqa: E402

from framewatch.core.correct import correct_movie_file  # noqa: E402
from framewatch.core.gain import unorient_gain  # noqa: E402
from framewatch.core.movie_io import write_image_mrc, write_movie  # noqa: E402
from framewatch.core.settings import CorrectionSettings, GainOrientation  # noqa: E402
from framewatch.core.simulate import SimulationSpec, simulate_movie  # noqa: E402
from framewatch.daemon.outputs.driftlog import EVENT_KEYS, missing_keys  # noqa: E402
from framewatch.daemon.outputs.tilt_table import read_tsv  # noqa: E402

PX = 1.5
SHAPE = (256, 256)


def _write_slowly(path: Path, data: bytes, chunks: int = 4, pause_s: float = 0.05) -> None:
    """Write ``data`` in a few pieces, as an acquisition does (the daemon must wait for the end)."""
    step = -(-len(data) // chunks)
    with open(path, "wb") as f:
        for at in range(0, len(data), step):
            f.write(data[at: at + step])
            f.flush()
            time.sleep(pause_s)


def _sections(out_dir: Path, series: str) -> dict:
    data = {}
    for k in ("", "_EVN", "_ODD"):
        with mrcfile.open(out_dir / f"{series}{k}.mrc") as m:
            data[k] = m.data.reshape(-1, *m.data.shape[-2:]).copy()
            assert m.voxel_size.x == pytest.approx(PX)
    return data


def _assert_same(section: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(section, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def _check_event_keys(events: list[dict]) -> None:
    for ev in events:
        assert ev["event"] in EVENT_KEYS, ev["event"]
        assert missing_keys(ev) == [], (ev["event"], missing_keys(ev))


def test_falcon_eer_series_with_tomo5_names(daemon, tmp_path):
    """EER movies named like Tomography 5, dose from --dose-per-tilt, fractions by --eer-fraction-dose."""
    dose_per_tilt, fraction_dose, n_fractions, raw_per_fraction = 3.0, 0.5, 6, 10
    angles = [0.0, 3.0, -3.0, 6.0, -6.0, 9.0]  # dose-symmetric acquisition order
    stage = tmp_path / "stage"
    stage.mkdir()
    movies = []
    for i, angle in enumerate(angles):
        sim = simulate_movie(SimulationSpec(ny=SHAPE[0], nx=SHAPE[1], n_frames=n_fractions, pixel_size_a=PX,
                                            dose_per_frame_e_per_a2=fraction_dose, seed=100 + i))
        rng = np.random.default_rng(i)
        counts = np.minimum(sim.frames, raw_per_fraction)  # at most one event per pixel and raw frame
        masks = split_counts_into_raw_frames(counts, [raw_per_fraction] * n_fractions, rng)
        strips = encode_movie([events_from_mask(m, rng) for m in masks], shape=SHAPE)
        tmp = stage / f"{i}.eer"
        write_eer(tmp, strips, shape=SHAPE)
        name = f"Position_1_{i + 1:03d}[{angle:.2f}]_EER.eer"  # Tomo 5 counts tilts from 1
        movies.append((daemon.acq / name, tmp.read_bytes(), i, angle))

    extra = ("--dose-per-tilt", str(dose_per_tilt), "--eer-fraction-dose", str(fraction_dose))
    movies[0][0].write_bytes(movies[0][1])  # present before the daemon starts
    daemon.start(*extra)
    daemon.wait_ready()
    for path, data, _, _ in movies[1:]:
        _write_slowly(path, data)
        time.sleep(0.2)
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e.get("z") == len(movies) - 1, timeout=120)
    assert daemon.stop() == 0

    rows = read_journal(daemon.state)
    done = sorted((r for r in rows if r["state"] == "done"), key=lambda r: r["z"])
    # every movie processed once, one section per tilt in acquisition order
    assert len(rows) == len(movies), [(r["path"], r["state"], r["error"]) for r in rows]
    assert [r["path"] for r in done] == [str(m[0]) for m in movies]
    assert [r["z"] for r in done] == list(range(len(movies)))
    out_dir = daemon.out / "Position_1"
    data = _sections(out_dir, "Position_1")
    assert data[""].shape[0] == len(movies)
    # sections equal correct_movie_file of the same movie with the same settings
    for r, (path, _, index, _) in zip(done, movies):
        s = CorrectionSettings(pixel_size_a=PX, dose_per_frame_e_per_a2=1.0, prior_dose_e_per_a2=dose_per_tilt * index,
                               eer_fraction_dose_e_per_a2=fraction_dose)
        ref = correct_movie_file(path, settings=s, movie_dose_e_per_a2=dose_per_tilt)
        assert ref.n_frames == n_fractions and ref.settings.dose_per_frame_e_per_a2 == pytest.approx(fraction_dose)
        for k, img in (("", ref.dose_weighted_sum), ("_EVN", ref.even_sum), ("_ODD", ref.odd_sum)):
            _assert_same(data[k][r["z"]], img)
    # the tilt table: the dose per frame is the dose per fraction; angles, order and prior doses from the names
    tsv = read_tsv(out_dir / "Position_1.tilts.tsv")
    assert [t["movie"] for t in tsv] == [m[0].name for m in movies]
    for t, (_, _, index, angle) in zip(tsv, movies):
        assert float(t["dose_per_frame_e_per_a2"]) == pytest.approx(fraction_dose)
        assert int(t["n_frames"]) == n_fractions
        assert float(t["dose_e_per_a2"]) == pytest.approx(dose_per_tilt)
        assert float(t["prior_dose_e_per_a2"]) == pytest.approx(dose_per_tilt * index)
        assert float(t["tilt_angle_deg"]) == pytest.approx(angle, abs=0.01)
        assert t["complete_signal"] in ("tiff_pages_stable", "settled")
    _check_event_keys(daemon.events())


def _gain_session(base: Path, *, n_movies: int, orientation: GainOrientation, low_signal: bool, seed: int = 7):
    """Movies (MRC, SerialEM names, 6 frames each) cut from one simulation, so they share the
    detector; the gain is stored un-oriented by ``orientation``. ``low_signal``: featureless
    Poisson frames at 0.01 counts/pixel that carry no gain pattern at all."""
    n_frames = 6
    sim = simulate_movie(SimulationSpec(ny=SHAPE[0], nx=SHAPE[1], n_frames=n_frames * n_movies, pixel_size_a=PX,
                                        dose_per_frame_e_per_a2=0.5, gain_rms=0.15, seed=seed))
    frames = sim.frames
    if low_signal:
        frames = np.random.default_rng(seed).poisson(0.01, frames.shape).astype(np.uint8)
    stage = base / "stage"
    stage.mkdir(exist_ok=True)
    gain_path = base / "gain.mrc"
    write_image_mrc(gain_path, unorient_gain(sim.gain, orientation), pixel_size_a=PX)
    movies = []
    for i in range(n_movies):
        tmp = stage / f"{i}.mrc"
        write_movie(tmp, frames[i * n_frames:(i + 1) * n_frames])
        movies.append((tmp, f"TS_01_{i:03d}_{3.0 * ((i + 1) // 2) * (-1) ** i:.1f}.mrc"))
    return gain_path, movies, sim


def _config_with(daemon, extra: str) -> None:
    daemon.config.write_text(daemon.config.read_text().replace("[processing]\n", "[processing]\n" + extra, 1))


def test_auto_gain_orientation_is_found_kept_and_applied(daemon, tmp_path):
    stored = GainOrientation(rotate_ccw_90=1, flip="y")
    gain, movies, _ = _gain_session(tmp_path, n_movies=4, orientation=stored, low_signal=False)
    _config_with(daemon, f'gain = "{gain}"\ngain_orientation = "auto"\n')
    daemon.start("--dose-per-tilt", "3.0")
    daemon.wait_ready()
    for tmp, name in movies[:3]:
        os.replace(tmp, daemon.acq / name)
        time.sleep(0.2)
    chosen = daemon.wait_event(lambda e: e["event"] == "gain_orientation_chosen", timeout=60)
    assert chosen["orientation"] == {"rotate_ccw_90": 1, "flip": "y", "invert": False}
    assert chosen["margin"] is None or chosen["margin"] >= 10 and chosen["best_z"] >= 10
    assert 1 <= chosen["n_movies"] <= 3
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e.get("z") == 2, timeout=90)
    assert daemon.stop() == 0
    # a restart keeps the choice (from the journal): no new sum, the next movie gets it too
    n_events = len(daemon.events())
    daemon.start("--dose-per-tilt", "3.0")
    daemon.wait_ready()
    tmp, name = movies[3]
    os.replace(tmp, daemon.acq / name)
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e.get("z") == 3, timeout=90, after=n_events)
    assert daemon.stop() == 0
    events = daemon.events()
    assert [e["event"] for e in events].count("gain_orientation_chosen") == 1
    _check_event_keys(events)
    # the first start had no movie to go by: it warmed up at the gain's (stored, rotated) size; the
    # second at the last movie's
    warmed = [e for e in events if e["event"] == "kernels_warmed"]
    assert [(e["full_size"], e["full_size_from"]) for e in warmed] == [
        ([10, SHAPE[1], SHAPE[0]], "gain reference"), ([6, SHAPE[0], SHAPE[1]], "last movie")]

    rows = sorted((r for r in read_journal(daemon.state) if r["state"] == "done"), key=lambda r: r["z"])
    assert [Path(r["path"]).name for r in rows] == [name for _, name in movies]
    data = _sections(daemon.out / "TS_01", "TS_01")
    for r in rows:
        s = CorrectionSettings(pixel_size_a=PX, dose_per_frame_e_per_a2=0.5, prior_dose_e_per_a2=3.0 * r["z"],
                               gain_orientation=stored)
        ref = correct_movie_file(r["path"], settings=s, gain=gain)
        _assert_same(data[""][r["z"]], ref.dose_weighted_sum)
        _assert_same(data["_EVN"][r["z"]], ref.even_sum)


def test_auto_gain_orientation_refused_on_a_featureless_low_signal_session(daemon, tmp_path):
    gain, movies, _ = _gain_session(tmp_path, n_movies=3, orientation=GainOrientation(rotate_ccw_90=2), low_signal=True)
    _config_with(daemon, f'gain = "{gain}"\ngain_orientation = "auto"\n')
    daemon.start("--dose-per-tilt", "0.05")
    daemon.wait_ready()
    for tmp, name in movies:
        os.replace(tmp, daemon.acq / name)
        time.sleep(0.2)
    refused = daemon.wait_event(lambda e: e["event"] == "gain_orientation_refused", timeout=60)
    assert refused["n_movies"] == 3 and "--gain-rot" in refused["reason"]
    failed = []
    deadline = time.time() + 30
    while len(failed) < 3 and time.time() < deadline:
        failed = [e for e in daemon.events() if e["event"] == "movie_failed"]
        time.sleep(0.1)
    assert sorted(Path(e["movie"]).name for e in failed) == sorted(name for _, name in movies)
    assert {e["stage"] for e in failed} == {"gain_orientation"} and all(e["reason"] == refused["reason"] for e in failed)
    assert daemon.proc.poll() is None  # the daemon keeps running
    assert daemon.stop() == 0
    rows = read_journal(daemon.state)
    assert [r["state"] for r in rows] == ["failed"] * 3 and {r["error"] for r in rows} == {refused["reason"]}
    assert not any(e["event"] == "tilt_corrected" for e in daemon.events())
    _check_event_keys(daemon.events())
