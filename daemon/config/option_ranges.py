"""Plausible ranges of the processing options, checked where they enter (command line, configuration).

The ranges themselves are the engine's (:mod:`framewatch.core.value_ranges`); this module only
names the flag and the ``[processing]`` key in the message, so ``framewatch correct --pixel-size-a
inf``, ``watch`` and ``check-config`` stop with one line (exit status 2) before anything starts.
Values the mdoc gives are checked by the engine when a movie's settings are made: that movie fails
with the message, the daemon goes on.
"""
from __future__ import annotations

from framewatch.core import value_ranges as ranges
from framewatch.core.errors import SettingsError

# option field -> (range, what, flag, [processing] key)
_CHECKED = (
    ("pixel_size_a", ranges.PIXEL_SIZE_A, "pixel size", "--pixel-size-a", "pixel_size_a"),
    ("dose_per_frame_e_per_a2", ranges.DOSE_PER_FRAME_E_PER_A2, "dose per frame", "--dose-per-frame",
     "dose_per_frame_e_per_a2"),
    ("dose_per_tilt_e_per_a2", ranges.DOSE_PER_TILT_E_PER_A2, "dose per tilt", "--dose-per-tilt", "dose_per_tilt_e_per_a2"),
    ("prior_dose_e_per_a2", ranges.PRIOR_DOSE_E_PER_A2, "prior dose", "--prior-dose", "prior_dose_e_per_a2"),
    ("voltage_kv", ranges.VOLTAGE_KV, "voltage", "--voltage-kv", "voltage_kv"),
    ("eer_fraction_dose_e_per_a2", ranges.EER_FRACTION_DOSE_E_PER_A2, "EER dose per fraction", "--eer-fraction-dose",
     "eer_fraction_dose_e_per_a2"),
    ("eer_group_frames", ranges.EER_GROUP_FRAMES, "EER raw frames per fraction", "--eer-group-frames", "eer_group_frames"),
    ("threads", ranges.THREADS, "threads", "--threads", "threads"),
)


def check_option_ranges(opts) -> None:
    """Raise :class:`SettingsError` for the first processing option outside its plausible range.

    ``opts``: a :class:`~framewatch.daemon.config.processing_options.ProcessingOptions` (``None`` = not given).
    """
    for name, allowed, what, flag, key in _CHECKED:
        value = getattr(opts, name)
        if value is not None:
            ranges.require_in_range(value, allowed, what=what, fix=f"give {flag} (or [processing] {key}) in {allowed.text()}")
    for p in (() if isinstance(opts.patches, str) else opts.patches):
        if not ranges.PATCHES_PER_AXIS.contains(p):
            raise SettingsError(
                f"patches {list(opts.patches)} must be two counts in {ranges.PATCHES_PER_AXIS.text()}",
                fix="give --patches NX NY (or [processing] patches = [NX, NY]), e.g. 5 5; 0 0 = whole frame only",
            )
