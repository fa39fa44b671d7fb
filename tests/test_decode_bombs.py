"""Issue 14, row 9: decompression bombs are refused before anything is decoded, in bounded memory.

Each bomb is opened and read frame by frame in a child process (as a worker does), which reports
its peak RSS (VmHWM) before and after; the refusal must be a DecodeLimitError that names the file,
and the peak may grow by less than 200 MB. On 7e3f13d these files were decoded: 1.8 GB, ~5.4 GB
and 4 GiB.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from eer_encoder import write_eer
from tiff_bombs import deflate_bomb_tiff

from framewatch.core.decode_limits import (
    DecodeLimits,
    check_decoded_size,
    check_eer_streams,
    check_tiff_storage,
    eer_max_pixels_per_byte,
)
from framewatch.core.errors import DecodeLimitError, SettingsError
from framewatch.core.movie_io import open_movie, write_movie

HERE = Path(__file__).resolve().parent
RSS_GROWTH_LIMIT_MB = 200

CHILD = textwrap.dedent("""
    import json, sys
    from framewatch.core.decode_limits import DecodeLimits
    from framewatch.core.errors import FramewatchError
    from framewatch.core.movie_io import open_movie

    def hwm_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    path, limits = sys.argv[1], DecodeLimits(**json.loads(sys.argv[2]))
    before = hwm_kb()
    outcome = {"error": None, "kind": None}
    try:
        with open_movie(path, limits=limits) as reader:
            for i in range(reader.n_frames):
                reader.read_frame(i)
    except FramewatchError as err:
        outcome = {"error": str(err), "kind": type(err).__name__}
    except MemoryError as err:
        outcome = {"error": repr(err), "kind": "MemoryError"}
    outcome["growth_mb"] = (hwm_kb() - before) / 1024
    print(json.dumps(outcome))
""")


def _open_in_child(path: Path, limits: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(limits or {})],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(HERE)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _refused_quickly(outcome: dict, path: Path, *needles: str) -> None:
    assert outcome["kind"] == "DecodeLimitError", outcome
    assert str(path) in outcome["error"]
    for needle in needles:
        assert needle in outcome["error"], outcome["error"]
    assert outcome["growth_mb"] < RSS_GROWTH_LIMIT_MB, outcome


def test_16_kb_tiff_declaring_one_30208_x_30000_page(tmp_path):
    path = tmp_path / "bomb_one_page.tif"
    size = deflate_bomb_tiff(path, width=30000, height=30208, n_pages=1)
    assert size < 17_000
    _refused_quickly(_open_in_child(path), path, "30000 x 30208 px", "max_frame_pixels")
    # with the frame ceiling raised, the deflate bound still refuses it (1.8 GB cannot fit in 16 kB)
    raised = {"max_frame_pixels": 2**31}
    _refused_quickly(_open_in_child(path, raised), path, "deflate pages need at least")


def test_tiny_tiff_of_40_8k_pages(tmp_path):
    path = tmp_path / "bomb_40_pages.tif"
    size = deflate_bomb_tiff(path, width=8192, height=8192, n_pages=40)
    assert size < 10_000
    _refused_quickly(_open_in_child(path), path, "40 page(s) of 5.4 GB", "decompression bomb")


def test_tiny_eer_claiming_a_65535_squared_sensor(tmp_path):
    path = tmp_path / "bomb.eer"
    write_eer(path, [bytes(range(256)) * 2], shape=(65535, 65535))
    assert path.stat().st_size < 1000
    _refused_quickly(_open_in_child(path), path, "65535 x 65535 sensor")


def test_framewatch_correct_refuses_a_bomb_in_one_line(tmp_path):
    path = tmp_path / "bomb_40_pages.tif"
    deflate_bomb_tiff(path, width=8192, height=8192, n_pages=40)
    proc = subprocess.run([sys.executable, "-m", "framewatch.daemon.commands.cli", "correct",
                           str(path), "--out", str(tmp_path / "o"),
                           "--pixel-size-a", "1.5", "--dose-per-tilt", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "decompression bomb" in lines[0] and "Traceback" not in proc.stderr


def test_sparse_mrc_beyond_the_decoded_ceiling(tmp_path):
    """An MRC's data must be in the file; a sparse file can still declare terabytes: the ceiling refuses it."""
    path = tmp_path / "sparse.mrc"
    write_movie(path, np.zeros((2, 64, 64), np.uint16))
    with open(path, "r+b") as f:  # nz = 100000 frames, and make the file that long without writing it
        f.seek(8)
        f.write(np.int32(100000).tobytes())
        f.truncate(1024 + 100000 * 64 * 64 * 2)
    with pytest.raises(DecodeLimitError, match="more than the limit of"):
        open_movie(path, limits=DecodeLimits(max_movie_bytes_decoded=100 * 2**20))
    with open_movie(path, limits=DecodeLimits(max_movie_bytes_decoded=2**30)) as reader:  # raised: read as before
        assert reader.n_frames == 100000


def test_real_compressed_movies_pass_the_default_limits(tmp_path):
    """Low-dose LZW/deflate movies (mostly zeros) stay far below the bounds; zstd is held to the ratio limit."""
    rng = np.random.default_rng(0)
    frames = rng.poisson(0.01, (4, 256, 256)).astype(np.uint8)
    for comp in ("lzw", "zlib"):
        write_movie(tmp_path / f"m_{comp}.tif", frames, tiff_compression=comp)
        with open_movie(tmp_path / f"m_{comp}.tif") as reader:
            assert np.array_equal(np.stack(list(reader)), frames)
    import tifffile

    with tifffile.TiffWriter(tmp_path / "zeros.tif") as writer:
        for _ in range(4):
            writer.write(np.zeros((512, 512), np.uint8), photometric="minisblack", compression="zstd")
    with pytest.raises(DecodeLimitError, match="max_compression_ratio"):
        open_movie(tmp_path / "zeros.tif", limits=DecodeLimits(max_compression_ratio=50))
    with open_movie(tmp_path / "zeros.tif", limits=DecodeLimits(max_compression_ratio=100_000)) as reader:
        assert reader.read_frame(3).sum() == 0


def test_pure_checks_and_their_defaults():
    d = DecodeLimits()
    assert d.max_frame_pixels >= 11520 * 8184 and d.max_frame_pixels >= 8192 * 8192  # K3 super-res, EER 8K
    assert check_decoded_size(path="k3.tif", frame_shape=(8184, 11520), n_frames=100, itemsize=1, limits=d) == 8184 * 11520 * 100
    with pytest.raises(DecodeLimitError, match="k3.tif"):
        check_decoded_size(path="k3.tif", frame_shape=(8184, 11520), n_frames=400, itemsize=1, limits=d)
    check_tiff_storage(path="a.tif", page_decoded_bytes=[1000] * 3, page_compressions=[1] * 3, file_bytes=3000, limits=d)
    with pytest.raises(DecodeLimitError):
        check_tiff_storage(path="a.tif", page_decoded_bytes=[1000] * 3, page_compressions=[1] * 3, file_bytes=2000, limits=d)
    assert round(eer_max_pixels_per_byte(7)) == 145
    with pytest.raises(DecodeLimitError, match="share"):
        check_eer_streams(path="e.eer", sensor_shape=(64, 64), frame_bytes=[100, 100], skip_bits=7, file_bytes=150)
    for bad in ({"max_frame_pixels": 0}, {"max_movie_bytes_decoded": 1.5}, {"max_compression_ratio": float("inf")}):
        with pytest.raises(SettingsError):
            DecodeLimits(**bad)
