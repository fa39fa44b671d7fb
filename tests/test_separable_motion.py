"""The pooled local-motion estimator and its evidence rule, on synthetic patch measurements.

Measurements as the patch step delivers them: 5 x 5 patch centres on a 2048 px field, 10 frames,
each patch's trajectory with its own zero (an offset), a per-frame common translation (what the
whole-frame alignment left), Gaussian noise per axis, and a true deformation
``(a(t) - a(5)) * U(x, y)`` with ``a(t) = 1 - exp(-t / 2)`` (fast early) and ``U`` smooth plane waves
without their image mean, scaled to a given RMS displacement at the patch centres over all frames.
"""
import json

import numpy as np
import pytest

from framewatch.core.local_align import patch_grid
from framewatch.core.local_evidence import cross_validate_local_motion
from framewatch.core.separable_motion import (
    PatchShiftData,
    SeparableFitOptions,
    SeparableMotionModel,
    fit_separable_motion,
)

FIELD = (2048, 2048)
N_FRAMES = 10
REF = N_FRAMES // 2
CENTRES = (patch_grid((1024, 1024), patches=(5, 5), overlap=0.5).centres_px + 0.5) * 2.0 - 0.5
TIMES = np.arange(N_FRAMES, dtype=float)
OPTIONS = SeparableFitOptions(spatial_shape=(4, 4))


class WaveField:
    """``(a(t) - a(REF)) * U(x, y)``, ``U`` two plane waves per component of wavelength >= the field
    width (as the simulator's smooth fields), without its image mean."""

    def __init__(self, rng, scale: float = 1.0):
        self.k = rng.uniform(-0.8, 0.8, (2, 2)) / 2048.0
        self.phase = rng.uniform(0, 2 * np.pi, 2)
        self.scale = scale
        gx, gy = np.meshgrid(np.linspace(0, 2047, 65), np.linspace(0, 2047, 65))
        self.mean = [float(np.mean(self._u(gx, gy, c))) for c in (0, 1)]

    def _u(self, x, y, c):
        return np.sin(2 * np.pi * (self.k[c, 0] * x + self.k[c, 1] * y) + self.phase[c])

    def relative_profile(self, t):
        a = lambda v: 1.0 - np.exp(-np.asarray(v, float) / 2.0)  # noqa: E731
        return a(t) - a(REF)

    def displacement(self, x, y, t):
        g = self.relative_profile(t) * self.scale
        return g * (self._u(x, y, 0) - self.mean[0]), g * (self._u(x, y, 1) - self.mean[1])


def true_model(rng, rms_px: float) -> WaveField:
    field = WaveField(rng)
    field.scale = rms_px / centre_rms(field)
    return field


def centre_rms(model) -> float:
    """RMS displacement at the patch centres over all frames (what the patches can see)."""
    d = np.stack(model.displacement(CENTRES[:, :1], CENTRES[:, 1:], TIMES[None, :]))
    return float(np.sqrt(np.mean(np.sum(d**2, axis=0))))


def field_rms(model) -> float:
    gx, gy = np.meshgrid(np.linspace(0, 2047, 17), np.linspace(0, 2047, 17))
    return float(np.sqrt(np.mean([np.sum(np.square(model.displacement(gx, gy, t))) / gx.size for t in range(N_FRAMES)])))


def error_rms(fit_model, truth, *, whole_field: bool = False) -> float:
    """RMS error over the box of the patch centres (where the patches measured), or the whole field."""
    lo, hi = (0.0, 2047.0) if whole_field else (CENTRES.min(), CENTRES.max())
    gx, gy = np.meshgrid(np.linspace(lo, hi, 17), np.linspace(lo, hi, 17))
    err = [np.square(np.subtract(fit_model.displacement(gx, gy, t), truth.displacement(gx, gy, t))).sum(axis=0)
           for t in range(N_FRAMES)]
    return float(np.sqrt(np.mean(err)))


def measurements(rng, truth, noise_px: float) -> np.ndarray:
    """``(25, 10, 2)`` as the patch step gives them (each patch's frame 0 at its own zero)."""
    if truth is None:
        m = np.zeros((len(CENTRES), N_FRAMES, 2))
    else:
        dx, dy = truth.displacement(CENTRES[:, :1], CENTRES[:, 1:], TIMES[None, :])
        m = np.stack([dx, dy], axis=2)
    m = m + rng.normal(0, 0.5, (len(CENTRES), 1, 2)) + rng.normal(0, 0.3, (1, N_FRAMES, 2))  # offsets, common
    m = m + rng.normal(0, noise_px, m.shape)
    return m - m[:, :1]


def fit(m, **kw):
    return fit_separable_motion(_data(m), options=kw.pop("options", OPTIONS), **kw)


def _data(m, times=TIMES):
    return PatchShiftData(shifts_px=m, centres_px=CENTRES, times=times, n_frames=N_FRAMES, image_shape=FIELD,
                          reference_frame=REF)


def test_recovers_the_field_and_its_uncertainty_explains_the_error():
    errors, whole_field, uncertainties = [], [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        truth = true_model(rng, rms_px=0.4)
        result = fit(measurements(rng, truth, noise_px=0.15))
        errors.append(error_rms(result.model, truth))
        whole_field.append(error_rms(result.model, truth, whole_field=True))
        uncertainties.append(result.field_uncertainty_px)
        # the profile: fast early, relative to the middle frame
        g_true = truth.relative_profile(TIMES) / abs(truth.relative_profile(0.0))
        g_fit = result.model.relative_profile(TIMES) / abs(result.model.relative_profile(0.0))
        assert np.max(np.abs(g_fit - g_true)) < 0.15, np.round(g_fit - g_true, 3)
    # 0.15 px per-frame noise, pooled over 25 patches x 10 frames: about a tenth of the per-frame noise
    # where the patches measured (the model is a spline, the truth plane waves: part of it is misfit)
    assert max(errors) < 0.12, np.round(errors, 3)
    # the reported uncertainty is over the whole field, corners (extrapolated) included
    ratio = np.mean(whole_field) / np.mean(uncertainties)
    assert 0.5 < ratio < 2.0, f"whole-field error / reported uncertainty = {ratio:.2f}"


def test_a_bad_patch_is_rejected_and_does_not_pull_the_field():
    rng = np.random.default_rng(11)
    truth = true_model(rng, rms_px=0.4)
    m = measurements(rng, truth, noise_px=0.1)
    clean = fit(m)
    m[12, 1:] += rng.normal(0, 3.0, (N_FRAMES - 1, 2))  # the centre patch: noise peaks in every frame
    result = fit(m)
    assert np.count_nonzero(result.weights[12]) <= 2, result.weights[12].round(2)
    assert error_rms(result.model, truth) < error_rms(clean.model, truth) + 0.03


def test_model_is_zero_at_the_reference_frame_and_serialises():
    rng = np.random.default_rng(3)
    model = fit(measurements(rng, true_model(rng, rms_px=0.5), noise_px=0.1)).model
    dx, dy = model.displacement(CENTRES[:, 0], CENTRES[:, 1], float(REF))
    assert np.all(dx == 0) and np.all(dy == 0)
    assert json.loads(json.dumps(model.summary()))["reference_frame"] == REF
    with pytest.raises(ValueError):
        SeparableMotionModel(np.zeros(N_FRAMES), np.zeros((3, 3)), np.zeros((3, 2)), FIELD, REF)


def _evidence(m):
    return cross_validate_local_motion(_data(m), fit_options=SeparableFitOptions(spatial_shape=(3, 3)),
                                       patch_weights=np.ones(len(CENTRES)))


def test_evidence_declines_pure_noise():
    outcomes = [_evidence(measurements(np.random.default_rng(100 + s), None, noise_px=0.3)) for s in range(12)]
    assert not any(o.supported for o in outcomes), [round(o.z, 2) for o in outcomes]
    assert all(o.gain_fraction < 0.02 for o in outcomes)
    assert "z =" in outcomes[0].reason


def test_evidence_supports_a_field_well_above_the_noise():
    for s in range(6):
        rng = np.random.default_rng(200 + s)
        outcome = _evidence(measurements(rng, true_model(rng, rms_px=0.3), noise_px=0.15))
        assert outcome.supported, outcome.reason
        assert outcome.gain_fraction > 0.1 and outcome.n_patches == 25


def test_evidence_needs_enough_frames_and_patches():
    rng = np.random.default_rng(5)
    m = measurements(rng, true_model(rng, rms_px=0.5), noise_px=0.1)
    few_times = cross_validate_local_motion(_data(m[:, :3], TIMES[:3]), fit_options=OPTIONS, patch_weights=np.ones(25))
    assert not few_times.supported and "frame groups" in few_times.reason
    weights = np.zeros(25)
    weights[:3] = 1.0
    few_patches = cross_validate_local_motion(_data(m), fit_options=OPTIONS, patch_weights=weights)
    assert not few_patches.supported and "patches" in few_patches.reason
