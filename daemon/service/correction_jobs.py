"""The job for one movie: its settings resolved from the journal row (mdoc values, explicit options,
the session's gain orientation), as the dispatcher hands it to the pool and a streaming job ends with."""
from __future__ import annotations

from framewatch.daemon.state.records import CorrectionJob


def correction_job(row: dict, *, opts, gain_session, stream_dir: str | None = None,
                   sums_dir: str | None = None) -> CorrectionJob:
    """The :class:`CorrectionJob` of a complete movie's journal row (``row["info"]["resolved"]``:
    dose_precedence.py). Raises :class:`~framewatch.core.errors.FramewatchError` when its settings
    are not valid (the caller records the movie failed)."""
    res = row["info"]["resolved"]
    settings = gain_session.apply(opts.settings(
        n_frames=row["n_frames"],
        pixel_size_a=res["pixel_size_a"],
        dose_per_frame_e_per_a2=res["dose_per_frame_e_per_a2"],
        prior_dose_e_per_a2=res["prior_dose_e_per_a2"] if res["prior_dose_e_per_a2"] is not None else 0.0,
        voltage_kv=res["voltage_kv"],
    ))
    return CorrectionJob(
        movie_id=row["id"],
        movie=row["path"],
        settings=settings,
        gain=None if opts.gain is None else str(opts.gain),
        defects=None if opts.defects is None else str(opts.defects),
        expected_frames=row["n_frames"],
        movie_dose_e_per_a2=res.get("dose_e_per_a2"),  # EER: groups the raw frames by dose
        stream_dir=stream_dir,
        sums_dir=sums_dir,
    )
