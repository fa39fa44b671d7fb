"""RELION per-movie STAR export: round trip, sign/origin, polynomial conversion; the one STAR
writer's quoting (names with quotes, spaces, #, _, $, control characters) through our reader and
through ``starfile`` (teamtomo)."""
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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
    xy = np.column_stack([np.array(g["rlnMicrographShiftX"], float), np.array(g["rlnMicrographShiftY"], float)])
    np.testing.assert_allclose(xy, shifts)
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


# -- the one STAR writer: quoting (hardening, issue 14) ------------------------------------------------
AWKWARD = ['q"x y_001_0.0.tif', "a b", "#hash", "a#b", "_underscore", "$dollar", "data_x", "loop_", "Save_me", "", ";semi",
           "[bracket]", 'end"', '"', "tab\there", "plain_name.mrc", "/abs/p ath/x.mrc", "ünïcode µ"]


def _roundtrip(tmp_path, values):
    from framewatch.core.star import star_loop, star_text, write_star_file

    path = tmp_path / "t.star"
    write_star_file(path, star_text([star_loop("t", ["rlnName", "rlnValue"], [(v, float(i)) for i, v in enumerate(values)])]))
    return path


def test_awkward_values_round_trip_through_our_reader_and_starfile(tmp_path):
    import starfile

    path = _roundtrip(tmp_path, AWKWARD)
    text = path.read_text()
    assert text.startswith("# version 50001\n")
    assert read_star(path)["t"]["rlnName"] == AWKWARD
    df = starfile.read(path, parse_as_string=["rlnName"])
    assert [("" if v != v else v) for v in df["rlnName"]] == AWKWARD  # pandas reads "" as NaN
    assert list(df["rlnValue"]) == [float(i) for i in range(len(AWKWARD))]  # every row keeps its columns


def test_single_quote_round_trips_through_our_reader_and_keeps_starfile_rows_intact(tmp_path):
    """starfile turns every ' in a file into " before parsing (a limitation of its reader): the
    value comes back with " there, but the row and its other columns are read correctly."""
    import starfile

    values = ["it's", "a'b c", "plain"]
    path = _roundtrip(tmp_path, values)
    assert read_star(path)["t"]["rlnName"] == values
    df = starfile.read(path, parse_as_string=["rlnName"])
    assert list(df["rlnName"]) == [v.replace("'", '"') for v in values]
    assert list(df["rlnValue"]) == [0.0, 1.0, 2.0]


def test_control_characters_never_split_a_row(tmp_path):
    """Line breaks and escape sequences in a name cannot be in a STAR row: written as visible text."""
    import starfile

    values = ["\x1b[2J\rTS_01_000_0.0.tif", "a\nb", "x\u2028y", "z\x85"]
    path = _roundtrip(tmp_path, values)
    text = path.read_text(encoding="utf-8")
    assert "\x1b" not in text and "\r" not in text and "\u2028" not in text and "\x85" not in text
    want = ["\\x1b[2J\\x0dTS_01_000_0.0.tif", "a\\x0ab", "x\\u2028y", "z\\x85"]
    assert read_star(path)["t"]["rlnName"] == want
    assert list(starfile.read(path, parse_as_string=["rlnName"])["rlnName"]) == want


def test_star_value_quotes_only_what_needs_it():
    from framewatch.core.star import star_value

    assert star_value("TS_01/tilts/TS_01_000_0_0.mrc") == "TS_01/tilts/TS_01_000_0_0.mrc"
    assert star_value('q"x y') == '"q""x y"'
    assert star_value("_x") == '"_x"' and star_value("") == '""' and star_value("data_x") == '"data_x"'
    assert star_value(3) == "3" and star_value(2.5) == "2.500000" and star_value(True) == "1"


_PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=_PRINTABLE, max_size=12), min_size=1, max_size=5))
def test_any_printable_text_round_trips_through_our_reader(values):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = _roundtrip(Path(d), values)
        assert read_star(path)["t"]["rlnName"] == values
