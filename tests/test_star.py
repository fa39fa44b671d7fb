"""RELION per-movie STAR export: round trip, sign/origin, polynomial conversion."""
import numpy as np

from framewatch.core.star import fit_relion_polynomial, read_star, relion_polynomial_design, write_motion_star

SHAPE = (3000, 4000)


def test_global_shifts_and_hot_pixels_round_trip(tmp_path):
    shifts = np.array([[0.0, 0.0], [1.25, -0.5], [2.0, -0.75]])
    hot = np.array([[10, 20], [3999, 0]])
    info = write_motion_star(
        tmp_path / "m.star", shifts_px=shifts, image_shape=SHAPE, movie_name="TS_01_000_0.0.tif",
        pixel_size_a=0.83, dose_per_frame_e_per_a2=0.3, prior_dose_e_per_a2=6.0, voltage_kv=300,
        gain_name="gain ref.mrc", hot_pixels_xy=hot,
    )
    assert info["motion_model_version"] == 0
    star = read_star(tmp_path / "m.star")
    general = star["general"]
    assert (general["rlnImageSizeX"], general["rlnImageSizeY"], general["rlnImageSizeZ"]) == ("4000", "3000", "3")
    assert general["rlnMicrographGainName"] == "gain ref.mrc"
    assert float(general["rlnMicrographPreExposure"]) == 6.0
    assert general["rlnMotionModelVersion"] == "0"
    g = star["global_shift"]
    assert g["rlnMicrographFrameNumber"] == ["1", "2", "3"]  # 1-based, frame 1 = (0, 0)
    np.testing.assert_allclose(np.column_stack([np.array(g["rlnMicrographShiftX"], float), np.array(g["rlnMicrographShiftY"], float)]), shifts)
    np.testing.assert_allclose(np.array(star["hot_pixels"]["rlnCoordinateX"], float), [10, 3999])
    assert "local_motion_model" not in star


def test_polynomial_local_model_is_recovered_exactly_and_written(tmp_path):
    rng = np.random.default_rng(1)
    cx, cy = rng.normal(0, 0.05, 18), rng.normal(0, 0.05, 18)

    def displacement(x, y, t):
        design = relion_polynomial_design(x, y, t, shape=SHAPE)
        return design @ cx, design @ cy

    fx, fy, misfit = fit_relion_polynomial(displacement, shape=SHAPE, n_frames=8)
    assert misfit < 1e-9
    np.testing.assert_allclose(fx, cx, atol=1e-8)
    info = write_motion_star(
        tmp_path / "m.star", shifts_px=np.zeros((8, 2)), image_shape=SHAPE, movie_name="m.tif", pixel_size_a=1.0,
        dose_per_frame_e_per_a2=0.5, prior_dose_e_per_a2=0.0, voltage_kv=300, local_displacement=displacement,
    )
    assert info["motion_model_version"] == 1
    star = read_star(tmp_path / "m.star")
    assert star["general"]["rlnMotionModelVersion"] == "1"
    coeffs = np.array(star["local_motion_model"]["rlnMotionModelCoeff"], float)
    np.testing.assert_allclose(coeffs, np.concatenate([cx, cy]), atol=1e-6)


def test_a_model_relion_cannot_express_is_left_out_with_a_reason(tmp_path):
    def wavy(x, y, t):  # three periods across the field: no cubic polynomial in x, y fits it
        return 2.0 * np.sin(6 * np.pi * x / SHAPE[1]) * t / 7, np.zeros_like(x)

    info = write_motion_star(
        tmp_path / "m.star", shifts_px=np.zeros((8, 2)), image_shape=SHAPE, movie_name="m.tif", pixel_size_a=1.0,
        dose_per_frame_e_per_a2=0.5, prior_dose_e_per_a2=0.0, voltage_kv=300, local_displacement=wavy,
    )
    assert info["motion_model_version"] == 0 and info["polynomial_misfit_px"] > 0.1
    text = (tmp_path / "m.star").read_text()
    assert "not expressible" in text and "local_motion_model" not in read_star(tmp_path / "m.star")
