"""What one run of the daemon is about, handed to each of its parts when the daemon builds them.

:class:`RunContext` is fixed at set-up (directories, the settings hash and its output set, the
processing options); :class:`LiveConfig` holds the daemon configuration, which SIGHUP may replace
while the daemon runs, so a part reads ``config.now`` when it uses a value.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunContext:
    """``settings_hash``: the hash of the processing settings (journal rows and series carry it);
    ``out_set``: its output directory relative to OUT ("" for OUT itself), ``set_dir`` the absolute
    one; ``opts``: the :class:`framewatch.daemon.config.processing_options.ProcessingOptions`."""

    watch_dir: Path
    out_dir: Path
    state_dir: Path
    settings_hash: str
    out_set: str
    set_dir: Path
    opts: Any

    @property
    def fourier_bin(self) -> int:
        return self.opts.fourier_bin

    def output_pixel_size_a(self, row: dict) -> float:
        """Pixel size of the outputs of a journal row: the movie's, times the Fourier binning (``--bin``)."""
        return float(row["info"]["resolved"]["pixel_size_a"]) * self.opts.fourier_bin


class LiveConfig:
    """The daemon configuration (:class:`framewatch.daemon.config.configuration.DaemonConfig`) now."""

    def __init__(self, cfg: Any):
        self.now = cfg

    def replace(self, cfg: Any) -> None:
        """A reloaded configuration (SIGHUP): every part sees it from its next use on."""
        self.now = cfg
