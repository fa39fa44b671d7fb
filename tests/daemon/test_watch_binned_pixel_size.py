"""With ``--bin 2`` (super-resolution movies Fourier-cropped to the physical pixel) every output of
the daemon carries the output pixel size, twice the movie's: the stacks' and per-tilt images'
headers and RELION's ``rlnTomoTiltSeriesPixelSize`` (``rlnMicrographOriginalPixelSize`` stays the
movie's). Before, the daemon wrote the movie's pixel size into binned outputs."""
import mrcfile
import pytest
import starfile

from framewatch.daemon.commands.simulated_acquisition import Acquisition

PX = 0.75  # the super-resolution pixel


def test_binned_outputs_carry_the_output_pixel_size(daemon):
    acq = Acquisition(daemon.acq, n_tilts=2, shape=(256, 256), n_frames=6, pixel_size_a=PX, frame_interval_s=0.0,
                      tilt_interval_s=0.0)
    acq.start_mdoc()
    acq.write_tilt(0)
    acq.write_tilt(1)
    daemon.start("--dose-per-tilt", "3", "--pixel-size-a", str(PX), "--bin", "2")
    daemon.wait_ready()
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e.get("z") == 1, timeout=180)
    assert daemon.stop() == 0
    series = acq.series
    out = daemon.out / series
    for k in ("", "_EVN", "_ODD"):
        with mrcfile.open(out / f"{series}{k}.mrc") as m:
            assert m.data.shape[-2:] == (128, 128)
            assert m.voxel_size.x == pytest.approx(2 * PX)
    images = sorted((out / "tilts").glob("*.mrc"))
    assert len(images) == 6
    for p in images:
        with mrcfile.open(p) as m:
            assert m.data.shape == (128, 128) and m.voxel_size.x == pytest.approx(2 * PX)
    glob = starfile.read(daemon.out / "tilt_series.star")
    glob = glob if not isinstance(glob, dict) else next(iter(glob.values()))
    assert float(glob["rlnTomoTiltSeriesPixelSize"].iloc[0]) == pytest.approx(2 * PX)
    assert float(glob["rlnMicrographOriginalPixelSize"].iloc[0]) == pytest.approx(PX)
