"""The simulator against its own ground truth: trajectory, dose, gain, defects, exactness, files, CLI."""
import json
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from framewatch.core import simulate as sim_mod
from framewatch.core.errors import SettingsError
from framewatch.core.settings import GainOrientation
from framewatch.core.simulate import (
    SimulationSpec,
    local_displacement_px,
    render_expected,
    simulate_movie,
    truth_dict,
    write_simulation,
)
from framewatch.core.simulated_counts import _poisson_frame
from framewatch.core.simulated_specimen import _splat_blobs

SMALL = dict(ny=256, nx=320, n_frames=10)


@pytest.fixture(scope="module")
def drift_sim():
    return simulate_movie(SimulationSpec(**SMALL, seed=3, n_hot_pixels=6, dead_column=17))


def test_drift_jump_trajectory():
    for seed in range(6):
        sim = simulate_movie(SimulationSpec(ny=32, nx=40, n_frames=10, seed=seed))
        s = sim.shifts_px
        assert s.shape == (10, 2) and s.dtype == np.float64
        assert np.all(s[0] == 0)
        assert np.hypot(*(s[2] - s[0])) >= 2.0  # the jump happens within the first two frames
        later_steps = np.hypot(*np.diff(s[3:], axis=0).T)
        assert np.all(later_steps < 0.4 + 0.3)  # then drift of 0.4 px/frame plus jitter


def test_subpixel_and_none_trajectories():
    for seed in range(4):
        s = simulate_movie(SimulationSpec(ny=32, nx=40, trajectory="subpixel", seed=seed)).shifts_px
        assert np.all(s[0] == 0)
        extent = np.hypot(*(s[:, None, :] - s[None, :, :]).transpose(2, 0, 1)).max()
        assert extent < 0.9 and np.abs(s).max() < 1.0
        assert np.any(np.abs(s[1:] - np.round(s[1:])) > 0.05)  # not integer
    assert np.all(simulate_movie(SimulationSpec(ny=32, nx=40, trajectory="none")).shifts_px == 0)


def test_explicit_trajectory_validation():
    with pytest.raises(SettingsError):
        SimulationSpec(n_frames=3, trajectory=((0, 0), (1, 1)))
    with pytest.raises(SettingsError):
        SimulationSpec(n_frames=2, trajectory=((1, 0), (1, 1)))
    spec = SimulationSpec(n_frames=2, trajectory=np.array([[0, 0], [1.5, -2]]))
    assert spec.trajectory == ((0.0, 0.0), (1.5, -2.0))
    hash(spec)


def test_mean_counts_follow_dose(drift_sim):
    spec = drift_sim.spec
    expected = spec.dose_per_frame_e_per_a2 * spec.pixel_size_a**2
    good = np.ones((spec.ny, spec.nx), bool)
    good[:, spec.dead_column] = False
    good[drift_sim.hot_pixels_xy[:, 1], drift_sim.hot_pixels_xy[:, 0]] = False
    per_frame = drift_sim.frames[:, good].mean(axis=1)
    assert np.all(np.abs(per_frame / expected - 1) < 0.02)
    assert drift_sim.frames.dtype == np.uint8
    # the ideal image: mean exactly dose x pixel area, the requested rms contrast, floor respected
    ideal = drift_sim.ideal
    assert ideal.dtype == np.float32 and ideal.shape == (spec.ny, spec.nx)
    assert abs(ideal.mean() / expected - 1) < 1e-4
    assert abs(ideal.std() / ideal.mean() - spec.contrast_rms) < 0.01
    assert ideal.min() >= 0.3 * expected * (1 - 1e-6)


def test_ideal_is_the_middle_frame(drift_sim):
    m = drift_sim.spec.n_frames // 2
    np.testing.assert_array_equal(drift_sim.ideal, render_expected(drift_sim, m))
    assert not np.allclose(render_expected(drift_sim, 0), drift_sim.ideal)


def test_integer_shift_is_exact():
    shifts = np.zeros((3, 2))
    shifts[1] = (3, -2)
    shifts[2] = (0.5, 0.25)
    sim = simulate_movie(SimulationSpec(**{**SMALL, "n_frames": 3}, trajectory=shifts, dose_per_frame_e_per_a2=1.0))
    np.testing.assert_array_equal(sim.shifts_px, shifts)
    f0 = render_expected(sim, 0).astype(np.float64)
    f1 = render_expected(sim, 1).astype(np.float64)
    ky = np.fft.fftfreq(f0.shape[0])[:, None]
    kx = np.fft.fftfreq(f0.shape[1])[None, :]
    moved = np.fft.ifft2(np.fft.fft2(f0) * np.exp(-2j * np.pi * (kx * 3 + ky * -2))).real
    inner = (slice(8, -8), slice(8, -8))  # away from the wrap-around of the Fourier shift
    assert np.abs(moved[inner] - f1[inner]).max() < 1e-5 * f0.max()
    # a sub-pixel shift is a different, exact image of the same specimen: same mean, not a copy
    f2 = render_expected(sim, 2).astype(np.float64)
    assert abs(f2.mean() / f0.mean() - 1) < 2e-3
    assert np.abs(f2 - f0).max() > 0.05 * f0.mean()


def test_pixels_integrate_the_blob_exactly():
    out = np.zeros((40, 40))
    sigma, amp = 0.7, 2.0
    for cx, cy in ((19.3, 20.71), (19.5, 20.5), (20.0, 19.9)):
        out[:] = 0
        _splat_blobs(out, np.array([cx]), np.array([cy]), np.array([sigma]), np.array([amp]), 4.0)
        truncated_mass = amp * 2 * np.pi * sigma**2 * math.erf(4 / math.sqrt(2)) ** 2
        assert abs(out.sum() / truncated_mass - 1) < 1e-12
        r = 4 * sigma

        def pixel_integral(i, c):  # numerical integral of the truncated profile over pixel i
            lo, hi = max(i - 0.5, c - r), min(i + 0.5, c + r)
            if lo >= hi:
                return 0.0
            return scipy.integrate.quad(lambda t: math.exp(-((t - c) ** 2) / (2 * sigma**2)), lo, hi, epsabs=1e-14)[0]

        for i, j in ((round(cx), round(cy)), (round(cx) + 1, round(cy) - 2), (math.floor(cx + r + 0.5), round(cy))):
            assert out[j, i] == pytest.approx(amp * pixel_integral(i, cx) * pixel_integral(j, cy), rel=1e-9, abs=1e-15)


def test_local_displacement():
    spec = SimulationSpec(**SMALL, trajectory="none", local_amplitude_px=1.5, seed=2)
    sim = simulate_movie(spec)
    yy, xx = np.mgrid[0 : spec.ny : 4, 0 : spec.nx : 4].astype(np.float64)
    dx0, dy0 = local_displacement_px(sim, xx, yy, 0)
    assert np.all(dx0 == 0) and np.all(dy0 == 0)
    dx, dy = local_displacement_px(sim, xx, yy, spec.n_frames - 1)
    assert dx.shape == xx.shape
    assert abs(np.hypot(dx, dy).max() / 1.5 - 1) < 0.02
    assert abs(dx.mean()) < 0.05 and abs(dy.mean()) < 0.05  # the local part carries no mean shift
    a = sim_mod.local_time_profile(spec.n_frames)
    assert a[0] == 0 and a[-1] == 1 and np.all(np.diff(a) > 0) and a[2] > 0.6  # fast early
    dxm, _ = local_displacement_px(sim, xx, yy, 4)
    np.testing.assert_allclose(dxm, a[4] * dx)
    # blobs move with the field at their own centres: the frames differ although the shifts are 0
    assert np.abs(render_expected(sim, spec.n_frames - 1) - render_expected(sim, 0)).max() > 0.05
    without = simulate_movie(SimulationSpec(**SMALL, trajectory="none", seed=2))
    np.testing.assert_array_equal(render_expected(without, 0), render_expected(without, spec.n_frames - 1))


def test_gain_corrected_frames_have_no_fixed_pattern():
    spec = SimulationSpec(ny=96, nx=128, n_frames=24, trajectory="none", gain_rms=0.1,
                          dose_per_frame_e_per_a2=8.0, dtype="uint16", seed=5)
    sim = simulate_movie(spec)
    lam = sim.ideal.astype(np.float64)  # no motion: every frame has the ideal's expectation
    corrected = (sim.frames * sim.true_gain.astype(np.float64)).mean(axis=0)
    poisson_var = float(np.mean(lam * sim.true_gain)) / spec.n_frames
    resid = corrected - lam
    assert abs(resid.mean()) < 3 * math.sqrt(poisson_var / resid.size)
    assert abs(resid.var() / poisson_var - 1) < 0.1
    raw_resid = sim.frames.mean(axis=0) - lam  # uncorrected: the fixed pattern dominates
    assert raw_resid.var() > 1.5 * poisson_var
    np.testing.assert_allclose(1 / sim.true_gain, 1 / sim.true_gain.mean(), rtol=0.6)
    assert abs(np.mean(1 / sim.true_gain.astype(np.float64)) - 1) < 1e-5  # sensitivity mean 1
    np.testing.assert_array_equal(sim.gain, sim.true_gain)


def test_gain_reference_error_and_columns():
    sim = simulate_movie(SimulationSpec(ny=64, nx=256, n_frames=2, gain_rms=0.0, gain_columns_rms=0.1,
                                        gain_reference_error_rms=0.05))
    sens = 1 / sim.true_gain.astype(np.float64)
    assert np.allclose(sens, sens[:1], rtol=1e-6)  # banding only: constant along columns
    assert 0.05 < sens[0].std() < 0.15
    ratio = sim.gain / sim.true_gain
    assert 0.04 < ratio.std() < 0.06 and abs(ratio.mean() - 1) < 0.01


def test_hot_pixels_and_dead_column(drift_sim):
    spec = drift_sim.spec
    hot = drift_sim.hot_pixels_xy
    assert hot.shape == (6, 2) and np.all(hot[:, 0] != spec.dead_column)
    assert len({tuple(p) for p in hot.tolist()}) == 6
    sums = drift_sim.frames.sum(axis=0, dtype=np.int64)
    others = np.delete(sums, spec.dead_column, axis=1)
    hot_sums = sums[hot[:, 1], hot[:, 0]]
    expected = spec.n_frames * (spec.hot_counts_per_frame + spec.dose_per_frame_e_per_a2 * spec.pixel_size_a**2)
    assert np.all(hot_sums > np.percentile(others, 99.9))
    assert abs(hot_sums.mean() / expected - 1) < 0.35
    assert np.all(drift_sim.frames[:, :, spec.dead_column] == 0)
    assert drift_sim.dead_column == spec.dead_column


def test_poisson_kernel_statistics():
    rng = np.random.default_rng(0)
    density = np.zeros((300, 400))
    sens = np.ones((300, 400), np.float32)
    for mu in (0.05, 0.7, 3.5, 9.9, 10.0, 25.0, 80.0):
        out = np.empty((300, 400), np.float32)
        clipped = _poisson_frame(density, 0.0, 0.0, mu, sens, np.uint64(rng.integers(2**63)), out, np.inf)
        assert clipped == 0
        n = out.size
        assert abs(out.mean() - mu) < 4 * math.sqrt(mu / n)
        assert abs(out.var() / mu - 1) < 4 * math.sqrt(2 / n) + 0.01
        ks = np.arange(int(out.max()) + 1)
        observed = np.bincount(out.astype(np.int64).ravel(), minlength=ks.size)
        expected = scipy.stats.poisson.pmf(ks, mu) * n
        keep = expected > 20
        chi2 = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
        assert scipy.stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, mu
    # neighbouring pixels are independent
    out = np.empty((300, 400), np.float32)
    _poisson_frame(density, 0.0, 0.0, 2.0, sens, np.uint64(7), out, np.inf)
    assert abs(np.corrcoef(out[:, :-1].ravel(), out[:, 1:].ravel())[0, 1]) < 0.015


def test_reproducible_whatever_the_threads():
    spec = SimulationSpec(ny=64, nx=80, n_frames=4, seed=9)
    a = simulate_movie(spec, threads=1)
    b = simulate_movie(spec, threads=2)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.gain, b.gain)
    c = simulate_movie(SimulationSpec(ny=64, nx=80, n_frames=4, seed=10))
    assert not np.array_equal(a.frames, c.frames)


def test_uint8_clipping_is_flagged():
    with pytest.warns(RuntimeWarning, match="clipped"):
        sim = simulate_movie(SimulationSpec(ny=32, nx=40, n_frames=2, dose_per_frame_e_per_a2=120.0))
    assert sim.counts_clipped and sim.frames.max() == 255
    sim16 = simulate_movie(SimulationSpec(ny=32, nx=40, n_frames=2, dose_per_frame_e_per_a2=120.0, dtype="uint16"))
    assert not sim16.counts_clipped and sim16.frames.max() > 255
    simf = simulate_movie(SimulationSpec(ny=32, nx=40, n_frames=2, dtype="float32"))
    assert simf.frames.dtype == np.float32 and np.all(simf.frames == np.round(simf.frames))


def test_truth_dict(drift_sim):
    truth = json.loads(json.dumps(truth_dict(drift_sim)))
    spec = drift_sim.spec
    assert truth["shifts_px"] == drift_sim.shifts_px.tolist()
    assert truth["hot_pixels_xy"] == drift_sim.hot_pixels_xy.tolist()
    assert truth["dead_column"] == spec.dead_column
    assert truth["reference_frame"] == spec.n_frames // 2
    np.testing.assert_allclose(
        truth["accumulated_dose_e_per_a2"], spec.prior_dose_e_per_a2 + spec.dose_per_frame_e_per_a2 * np.arange(1, 11)
    )
    for key in ("spec", "shift_convention", "local_motion", "dose_per_frame_e_per_a2", "prior_dose_e_per_a2"):
        assert key in truth


@pytest.mark.parametrize("movie_format,orientation", [("tiff", GainOrientation(rotate_ccw_90=1, flip="y")),
                                                      ("mrc", GainOrientation(invert=True))])
def test_write_simulation(tmp_path, movie_format, orientation):
    from framewatch.core.gain import orient_gain, read_gain
    from framewatch.core.movie_io import open_movie

    sim = simulate_movie(SimulationSpec(ny=48, nx=64, n_frames=3, prior_dose_e_per_a2=6.0, seed=1))
    paths = write_simulation(sim, tmp_path / "sub" / "sim", movie_format=movie_format, gain_orientation=orientation)
    assert set(paths) == {"movie", "gain", "ideal", "truth"}
    assert all(p.exists() for p in paths.values())
    assert paths["movie"].name == ("sim.tif" if movie_format == "tiff" else "sim.mrc")
    with open_movie(paths["movie"]) as reader:
        frames = np.stack([reader.read_frame(i) for i in range(reader.n_frames)])
    np.testing.assert_array_equal(frames, sim.frames)
    np.testing.assert_allclose(orient_gain(read_gain(paths["gain"]), orientation), sim.gain, rtol=1e-6)
    truth = json.loads(paths["truth"].read_text())
    assert truth["prior_dose_e_per_a2"] == 6.0
    assert truth["gain_orientation"]["invert"] == orientation.invert
    assert truth["files"]["movie"] == paths["movie"].name


def test_cli_simulate(tmp_path, capsys):
    from framewatch.daemon.commands.cli import main

    prefix = tmp_path / "demo"
    rc = main(["simulate", "--out", str(prefix), "--size", "40", "48", "--frames", "4", "--dose-per-tilt", "2.0",
               "--prior-dose", "3", "--trajectory", "subpixel", "--format", "mrc", "--hot-pixels", "2",
               "--dead-column", "5", "--gain-rot", "2", "--seed", "4"])
    assert rc == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 4
    truth = json.loads((tmp_path / "demo_truth.json").read_text())
    assert truth["dose_per_frame_e_per_a2"] == pytest.approx(0.5)
    assert truth["spec"]["ny"] == 40 and truth["spec"]["nx"] == 48 and truth["dead_column"] == 5
    assert truth["gain_orientation"]["rotate_ccw_90"] == 2
    for suffix in (".mrc", "_gain.mrc", "_ideal.mrc", "_truth.json"):
        assert (tmp_path / f"demo{suffix}").exists()


# ---------------------------------------------------------------------------------------------
# The harder simulator (issue 12): trajectories, spectral shape, localised bumps, oracle scoring
# ---------------------------------------------------------------------------------------------
def test_new_trajectory_kinds():
    n = 10
    for seed in range(4):
        smooth = simulate_movie(SimulationSpec(ny=32, nx=40, n_frames=n, trajectory="smooth", seed=seed)).shifts_px
        steps = np.diff(smooth, axis=0)
        speed = np.hypot(*steps.T)
        assert np.all(smooth[0] == 0) and np.allclose(speed, speed[0]) and 0.3 <= speed[0] <= 0.5
        assert np.abs(np.diff(steps, axis=0)).max() < 0.1  # no jerk: the direction turns steadily
        jerky = simulate_movie(SimulationSpec(ny=32, nx=40, n_frames=n, trajectory="jerky", seed=seed)).shifts_px
        accel = np.diff(jerky, n=2, axis=0)
        assert np.all(jerky[0] == 0) and np.sqrt(np.mean(accel**2)) > 0.3  # kicks of 0.4 px rms per axis
        fast = simulate_movie(SimulationSpec(ny=32, nx=40, n_frames=n, trajectory="fast_early", seed=seed)).shifts_px
        step = np.hypot(*np.diff(fast, axis=0).T)
        assert np.all(fast[0] == 0) and step[0] > 1.4 and step[0] > step[1] > step[2]
        assert np.all(step[4:] < 0.15)  # then slow: 0.1 px/frame plus the tail of the jump
    with pytest.raises(SettingsError, match="fast_early"):
        SimulationSpec(trajectory="wobbly")


def test_default_options_keep_the_same_movie():
    plain = simulate_movie(SimulationSpec(ny=48, nx=64, n_frames=3, seed=7, local_amplitude_px=1.0))
    spelled = simulate_movie(SimulationSpec(ny=48, nx=64, n_frames=3, seed=7, local_amplitude_px=1.0, local_bumps=0,
                                            blob_mass_exponent=0.0, local_tau_frames=2.0))
    np.testing.assert_array_equal(plain.frames, spelled.frames)
    np.testing.assert_array_equal(plain.blobs, spelled.blobs)


def _band_fractions(image):
    im = image.astype(np.float64) - image.mean()
    power = np.abs(np.fft.fft2(im)) ** 2
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(im.shape[0]), np.fft.fftfreq(im.shape[1]), indexing="ij"))
    total = power[r <= 0.5].sum()
    return np.array([power[(r > lo) & (r <= lo + 0.125)].sum() / total for lo in (0.0, 0.125, 0.25, 0.375)])


@pytest.mark.parametrize("contrast", [0.05, 0.25])
def test_spectral_shape_and_contrast(contrast):
    base = dict(ny=512, nx=512, n_frames=2, trajectory="none", contrast_rms=contrast, seed=4)
    fractions = []
    for exponent in (0.0, 1.0, 2.0):
        sim = simulate_movie(SimulationSpec(**base, blob_mass_exponent=exponent))
        assert sim.ideal.std() / sim.ideal.mean() == pytest.approx(contrast, rel=0.02)
        fractions.append(_band_fractions(sim.ideal))
    top_half = [f[2] + f[3] for f in fractions]
    # measured at 1024^2: e = 0: 17 %, e = 1: 12 %, e = 2: 4.5 % of the variance above Nyquist / 2
    assert top_half[0] > 1.2 * top_half[1] > 1.2 * 2.0 * top_half[2], np.round(top_half, 4)
    with pytest.raises(SettingsError, match="blob_mass_exponent"):
        SimulationSpec(blob_mass_exponent=9.0)


def test_localised_bumps():
    spec = SimulationSpec(ny=256, nx=256, n_frames=6, trajectory="none", local_bumps=2, local_bump_amplitude_px=2.5,
                          local_bump_sigma_px=20.0, seed=3)
    sim = simulate_movie(spec)
    assert sim.local_bumps.shape == (2, 5) and spec.has_local_motion
    np.testing.assert_allclose(np.hypot(sim.local_bumps[:, 3], sim.local_bumps[:, 4]), 2.5)
    yy, xx = np.mgrid[0:256:2, 0:256:2].astype(np.float64)
    dx, dy = local_displacement_px(sim, xx, yy, spec.n_frames - 1)
    mag = np.hypot(dx, dy)
    assert abs(dx.mean()) < 0.01 and abs(dy.mean()) < 0.01  # the mean is removed
    for cx, cy, sigma, ax, ay in sim.local_bumps:
        # at a bump's centre the displacement is (about) its amplitude; 4 sigma away, about nothing
        cdx, cdy = local_displacement_px(sim, np.array([cx]), np.array([cy]), spec.n_frames - 1)
        assert np.hypot(cdx[0] - ax, cdy[0] - ay) < 0.3
    far = np.ones_like(mag, dtype=bool)
    for cx, cy, *_ in sim.local_bumps:
        far &= np.hypot(xx - cx, yy - cy) > 80.0
    assert mag[far].max() < 0.15 and mag.max() > 2.0  # localised: a few px in the bump, ~0 elsewhere
    truth = truth_dict(sim)
    assert len(truth["local_motion"]["bumps"]) == 2 and truth["local_motion"]["tau_frames"] == 2.0
    json.dumps(truth)


def test_local_tau_controls_the_time_profile():
    spec = SimulationSpec(ny=64, nx=64, n_frames=8, trajectory="none", local_amplitude_px=1.0, local_tau_frames=0.5)
    sim = simulate_movie(spec)
    a = sim_mod.local_time_profile(8, tau_frames=0.5)
    assert a[1] > 0.85  # fast early
    x, y = np.array([10.0, 40.0]), np.array([20.0, 50.0])
    d1, _ = local_displacement_px(sim, x, y, 1)
    d7, _ = local_displacement_px(sim, x, y, 7)
    np.testing.assert_allclose(d1, a[1] * d7)


def test_oracle_correction_and_scoring():
    sim = simulate_movie(SimulationSpec(ny=256, nx=256, n_frames=6, trajectory="jerky", local_bumps=1,
                                        local_bump_amplitude_px=2.0, local_bump_sigma_px=30.0, seed=2,
                                        dose_per_frame_e_per_a2=2.0, dtype="uint16"))
    oracle = sim_mod.oracle_correction(sim)
    np.testing.assert_allclose(oracle.shifts_px, sim.shifts_px - sim.shifts_px[0])
    f_oracle = sim_mod.quarter_band_frc(oracle.dose_weighted_sum, sim.ideal)
    assert f_oracle.shape == (4,) and np.all(np.diff(f_oracle) < 0) and f_oracle[0] > 0.9
    # the true local field, registered to the middle frame, is zero there and undoes the bump
    field = sim_mod.true_local_displacement(sim)
    m = sim.middle_frame
    zx, zy = field(np.array([100.0]), np.array([100.0]), m)
    assert zx[0] == 0 and zy[0] == 0
    # without the local field the oracle's own image is worse near the bump: the field matters
    no_local = sim_mod.quarter_band_frc(
        sim_mod.oracle_correction(dataclass_replace_spec(sim)).dose_weighted_sum, sim.ideal)
    assert no_local[3] < f_oracle[3]


def dataclass_replace_spec(sim):
    """The same frames with the local motion forgotten (the oracle then applies only the global shifts)."""
    import dataclasses

    spec = dataclasses.replace(sim.spec, local_bumps=0)
    return dataclasses.replace(sim, spec=spec)
