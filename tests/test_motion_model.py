"""Smooth spatio-temporal B-spline model of local motion (framewatch.core.motion_model)."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framewatch.core.motion_model import LocalMotionModel, ModelFit, default_control_shape, fit_local_motion
from framewatch.core.resample import field_grid_shape

FIELD = 2048  # px, square field
N_FRAMES = 10
# 768 px patches with 50 % overlap on a 2048 px field: 5 x 5 centres
CENTRES = 384.0 + 320.0 * np.arange(5)
TIMES = 0.5 + 2.0 * np.arange(5)  # centres of 5 groups of 2 frames
_X, _Y, _T = (a.ravel() for a in np.meshgrid(CENTRES, CENTRES, TIMES, indexing="ij"))


def _wave(x, y, t, wavelength_px):
    """A 2 px field growing in time, with the given spatial wavelength."""
    a = 1.0 - np.exp(-np.asarray(t) / 3.0)
    k = 2 * np.pi / wavelength_px
    dx = 2.0 * a * np.sin(k * x + 0.4) * np.cos(k * y - 0.3)
    dy = 2.0 * a * np.cos(k * x - 0.2) * np.sin(k * y + 0.5)
    return dx, dy


def _random_model(rng, control_shape=(4, 4, 4), scale=1.0, reference_frame=None):
    return LocalMotionModel(
        control_shape=control_shape,
        coeffs_x=rng.normal(0, scale, control_shape),
        coeffs_y=rng.normal(0, scale, control_shape),
        image_shape=(FIELD, FIELD),
        n_frames=N_FRAMES,
        reference_frame=reference_frame,
    )


def _fit(dx, dy, **kw):
    kw.setdefault("image_shape", (FIELD, FIELD))
    kw.setdefault("n_frames", N_FRAMES)
    return fit_local_motion(_X, _Y, _T, dx, dy, **kw)


def test_default_control_shape_rule():
    assert default_control_shape(_X, _Y, _T, image_shape=(FIELD, FIELD), n_frames=N_FRAMES) == (4, 4, 4)
    xs = np.array([100.0, 900.0, 100.0, 900.0])
    ys = np.array([500.0, 500.0, 500.0, 500.0])
    ts = np.array([1.0, 1.0, 3.0, 3.0])
    assert default_control_shape(xs, ys, ts, image_shape=(FIELD, FIELD), n_frames=N_FRAMES) == (2, 1, 2)
    # a single frame: constant in time whatever the observations
    assert default_control_shape(xs, ys, ts, image_shape=(FIELD, FIELD), n_frames=1) == (1, 1, 2)


def test_recovers_an_exactly_representable_field():
    rng = np.random.default_rng(1)
    truth = _random_model(rng)
    dx, dy = truth.displacement(_X, _Y, _T)
    fit = _fit(dx, dy, smoothness=0.0)  # noiseless: no penalty bias
    assert fit.model.control_shape == (4, 4, 4)
    assert np.all(fit.weights == 1.0)
    xs, ys = rng.uniform(0, FIELD - 1, (2, 500))
    ts = rng.uniform(0, N_FRAMES - 1, 500)
    got, want = fit.model.displacement(xs, ys, ts), truth.displacement(xs, ys, ts)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)
    np.testing.assert_allclose(fit.model.coeffs_x, truth.coeffs_x, atol=1e-6)
    assert fit.rms_px < 1e-8


def test_basis_reproduces_quadratics_and_one_control_point_is_a_constant():
    # a quadratic-in-space, linear-in-time field is exact for any n >= 3 (n = 3 is the quadratics)
    def field(x, y, t):
        u, v = x / FIELD, y / FIELD
        return 0.3 + t * (u - 0.5 * u * u + 0.2 * u * v), -0.1 * t + v * v - 0.4 * u

    dx, dy = field(_X, _Y, _T)
    for shape in [(2, 3, 3), (3, 5, 4)]:
        fit = _fit(dx, dy, control_shape=shape, smoothness=0.0)
        got = fit.model.displacement(_X + 17.0, _Y - 9.0, _T + 0.3)
        want = field(_X + 17.0, _Y - 9.0, _T + 0.3)
        np.testing.assert_allclose(got, want, atol=1e-9)
    const = _fit(np.full(_X.shape, 0.7), np.full(_X.shape, -0.2), control_shape=(1, 1, 1))
    np.testing.assert_allclose(const.model.displacement([0.0, 2047.0], [5.0, 1000.0], [0.0, 9.0]), [[0.7, 0.7], [-0.2, -0.2]])


@pytest.mark.parametrize(
    ("wavelength_fields", "control_shape"),
    [(1.0, None), (1.5, None), (2.0, None), (1.0, (4, 5, 5)), (2.0, (4, 3, 3))],
)
def test_smooth_noisy_field_fitted_within_a_tenth_of_a_pixel(wavelength_fields, control_shape):
    rng = np.random.default_rng(2)
    dx, dy = _wave(_X, _Y, _T, wavelength_fields * FIELD)
    noisy = (dx + rng.normal(0, 0.05, dx.shape), dy + rng.normal(0, 0.05, dy.shape))
    fit = _fit(*noisy, control_shape=control_shape)
    mx, my = fit.model.displacement(_X, _Y, _T)
    rmse = float(np.sqrt(np.mean((mx - dx) ** 2 + (my - dy) ** 2)))
    assert rmse <= 0.1, f"RMSE {rmse:.3f} px at the patch centres, control shape {fit.model.control_shape}"
    assert np.all(fit.weights > 0), "clean data must not lose observations"
    assert 0.03 < fit.rms_px < 0.15


def test_bad_patch_is_rejected_and_does_not_pull_its_neighbours():
    rng = np.random.default_rng(3)
    dx, dy = _wave(_X, _Y, _T, 2.0 * FIELD)
    ox, oy = dx + rng.normal(0, 0.05, dx.shape), dy + rng.normal(0, 0.05, dy.shape)
    clean = _fit(ox, oy)
    bad = (_X == CENTRES[1]) & (_Y == CENTRES[2])
    angle = rng.uniform(0, 2 * np.pi, bad.sum())
    size = rng.uniform(3.0, 5.0, bad.sum())
    ox[bad] += size * np.cos(angle)
    oy[bad] += size * np.sin(angle)
    fit = _fit(ox, oy)
    assert np.all(fit.weights[bad] == 0), fit.weights[bad]
    assert np.all(fit.weights[~bad] > 0)
    assert np.all(fit.residuals_px[bad] > 2.5)
    mx, my = fit.model.displacement(_X, _Y, _T)
    err = np.hypot(mx - dx, my - dy)
    assert err.max() <= 0.15, f"max error {err.max():.3f} px (at the bad patch {err[bad].max():.3f} px)"
    # the same as the fit without the garbage, up to the loss of that patch's information
    cx, cy = clean.model.displacement(_X, _Y, _T)
    assert np.hypot(mx - cx, my - cy)[~bad].max() < 0.1


def test_reference_frame_zeroes_that_frame_and_keeps_differences():
    rng = np.random.default_rng(4)
    dx, dy = _wave(_X, _Y, _T, 1.5 * FIELD)
    raw = _fit(dx, dy)
    ref = _fit(dx, dy, reference_frame=5)
    assert ref.model.reference_frame == 5
    xs, ys = rng.uniform(-10, FIELD + 10, (2, 300))
    zx, zy = ref.model.displacement(xs, ys, 5)
    np.testing.assert_allclose(zx, 0, atol=1e-12)
    np.testing.assert_allclose(zy, 0, atol=1e-12)
    gx, gy = ref.model.field_on_grid(5.0, 64)
    assert np.abs(gx).max() < 1e-6 and np.abs(gy).max() < 1e-6
    # relative displacement = raw(t) - raw(reference)
    ts = rng.uniform(0, N_FRAMES - 1, 300)
    got = np.array(ref.model.displacement(xs, ys, ts))
    want = np.array(raw.model.displacement(xs, ys, ts)) - np.array(raw.model.displacement(xs, ys, 5.0))
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_array_equal(ref.weights, raw.weights)


def test_quality_zero_observations_are_ignored():
    rng = np.random.default_rng(5)
    dx, dy = _wave(_X, _Y, _T, 2.0 * FIELD)
    dx, dy = dx + rng.normal(0, 0.05, dx.shape), dy + rng.normal(0, 0.05, dy.shape)
    quality = rng.uniform(0.3, 1.0, dx.shape)
    drop = rng.random(dx.shape) < 0.2
    quality[drop] = 0.0
    gx, gy = dx.copy(), dy.copy()
    gx[drop] = 40.0  # garbage that would wreck the fit if used
    gy[drop] = np.nan
    fit = _fit(gx, gy, quality=quality)
    assert np.all(fit.weights[drop] == 0)
    keep = ~drop
    alone = fit_local_motion(
        _X[keep], _Y[keep], _T[keep], dx[keep], dy[keep], quality=quality[keep], image_shape=(FIELD, FIELD), n_frames=N_FRAMES
    )
    np.testing.assert_allclose(fit.model.coeffs_x, alone.model.coeffs_x, atol=1e-9)
    np.testing.assert_allclose(fit.model.coeffs_y, alone.model.coeffs_y, atol=1e-9)
    assert np.all(np.isnan(fit.residuals_px[drop]))
    np.testing.assert_allclose(fit.rms_px, alone.rms_px)
    with pytest.raises(ValueError, match="quality > 0"):
        _fit(dx, dy, quality=np.zeros(dx.shape))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    control_shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.01, 2.0),
)
def test_fit_reproduces_a_model_of_the_same_control_shape(control_shape, seed, scale):
    rng = np.random.default_rng(seed)
    truth = _random_model(rng, control_shape, scale)
    dx, dy = truth.displacement(_X, _Y, _T)
    fit = _fit(dx, dy, control_shape=control_shape, smoothness=0.0)
    np.testing.assert_allclose(fit.model.coeffs_x, truth.coeffs_x, atol=1e-8 * (1 + scale))
    np.testing.assert_allclose(fit.model.coeffs_y, truth.coeffs_y, atol=1e-8 * (1 + scale))
    assert np.all(fit.weights == 1.0)


def test_field_on_grid_matches_displacement_and_warp_grid_shape():
    rng = np.random.default_rng(6)
    model = LocalMotionModel((3, 4, 2), rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2)), (300, 500), 7)
    step = 32
    fx, fy = model.field_on_grid(2.5, step)
    assert fx.shape == fy.shape == field_grid_shape((300, 500), step)
    assert fx.dtype == np.float32
    jj, ii = np.mgrid[0 : fx.shape[0], 0 : fx.shape[1]] * step
    wx, wy = model.displacement(ii, jj, 2.5)
    np.testing.assert_allclose(fx, wx, atol=1e-5)
    np.testing.assert_allclose(fy, wy, atol=1e-5)
    # broadcasting and shapes
    d = model.displacement(np.array([[1.0, 2.0]]), 3.0, np.array([[0.0], [6.0]]))
    assert d[0].shape == (2, 2)


def test_summary_is_json_and_model_is_frozen():
    rng = np.random.default_rng(7)
    model = _random_model(rng, (4, 3, 2), reference_frame=5)
    summary = json.loads(json.dumps(model.summary()))
    assert summary["control_shape"] == [4, 3, 2]
    assert np.array(summary["coeffs_x_px"]).shape == (4, 3, 2)
    assert summary["knots"]["t"]["control_positions"] == pytest.approx([0.0, 3.0, 6.0, 9.0])
    assert summary["knots"]["x"]["control_positions"] == pytest.approx([0.0, FIELD - 1.0])
    assert summary["reference_frame"] == 5
    with pytest.raises(Exception):
        model.n_frames = 3
    with pytest.raises(ValueError):
        model.coeffs_x[0, 0, 0] = 1.0  # read-only


def test_model_and_fit_validation():
    z = np.zeros((2, 2, 2))
    with pytest.raises(ValueError, match="zero-length"):
        LocalMotionModel((2, 2, 2), z, z, (100, 100), 1)
    with pytest.raises(ValueError, match="shape"):
        LocalMotionModel((2, 2, 3), z, z, (100, 100), 5)
    with pytest.raises(ValueError, match="reference_frame"):
        LocalMotionModel((2, 2, 2), z, z, (100, 100), 5, reference_frame=5)
    dx, dy = np.zeros(_X.shape), np.zeros(_X.shape)
    with pytest.raises(ValueError, match="same length"):
        fit_local_motion(_X[:-1], _Y, _T, dx, dy, image_shape=(FIELD, FIELD), n_frames=N_FRAMES)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _fit(dx, dy, quality=np.full(_X.shape, 2.0))
    assert isinstance(_fit(dx, dy), ModelFit)


def test_options_object_and_keywords_fit_the_same():
    from framewatch.core.motion_model import LocalFitOptions

    rng = np.random.default_rng(4)
    dx, dy = _random_model(rng).displacement(_X, _Y, _T)
    by_keywords = _fit(dx, dy, control_shape=(3, 3, 3), smoothness=1e-2, reference_frame=5)
    by_options = _fit(dx, dy, options=LocalFitOptions(control_shape=(3, 3, 3), smoothness=1e-2, reference_frame=5))
    assert np.array_equal(by_keywords.model.coeffs_x, by_options.model.coeffs_x)
    assert by_options.model.reference_frame == 5
    with pytest.raises(ValueError, match="not both"):
        _fit(dx, dy, options=LocalFitOptions(), smoothness=0.0)
