"""The job for one movie: its settings resolved from the movie's values (mdoc, explicit options, the
session's gain orientation), as the dispatcher hands a complete movie to the pool, a streaming job
starts (provisional values) and a streaming job ends (the final ones)."""
from __future__ import annotations

from collections.abc import Mapping

from framewatch.daemon.state.records import CorrectionJob, StreamChannel


def resolved_settings(resolved: Mapping, *, opts, n_frames: int | None):
    """The CorrectionSettings of a movie whose values are ``resolved`` (as :func:`movie_job` takes
    them; a missing value counts as not given): explicit options win, then these values, then the
    defaults. Raises :class:`~framewatch.core.errors.FramewatchError` when they are not valid."""
    prior = resolved.get("prior_dose_e_per_a2")
    return opts.settings(
        n_frames=n_frames,
        pixel_size_a=resolved.get("pixel_size_a"),
        dose_per_frame_e_per_a2=resolved.get("dose_per_frame_e_per_a2"),
        prior_dose_e_per_a2=prior if prior is not None else 0.0,
        voltage_kv=resolved.get("voltage_kv"),
    )


def movie_job(movie_id: int, movie: str, resolved: Mapping, *, opts, gain_session, n_frames: int | None,
              stream: StreamChannel | None = None, sums_dir: str | None = None) -> CorrectionJob:
    """The :class:`CorrectionJob` of a movie whose values are ``resolved`` (``pixel_size_a``,
    ``dose_per_frame_e_per_a2``, ``prior_dose_e_per_a2``, ``voltage_kv``, ``dose_e_per_a2``:
    dose_precedence.Resolved as a dict); ``n_frames``: the count it was found complete with (None
    while it is written). Raises :class:`~framewatch.core.errors.FramewatchError` when its settings
    are not valid (the caller records the movie failed)."""
    settings = gain_session.apply(resolved_settings(resolved, opts=opts, n_frames=n_frames))
    return CorrectionJob(
        movie_id=movie_id,
        movie=movie,
        settings=settings,
        gain=None if opts.gain is None else str(opts.gain),
        defects=None if opts.defects is None else str(opts.defects),
        expected_frames=n_frames,
        movie_dose_e_per_a2=resolved.get("dose_e_per_a2"),  # EER: groups the raw frames by dose
        stream=stream,
        sums_dir=sums_dir,
    )


def correction_job(row: dict, *, opts, gain_session, sums_dir: str | None = None) -> CorrectionJob:
    """The job of a complete movie's journal row (``row["info"]["resolved"]``)."""
    return movie_job(row["id"], row["path"], row["info"]["resolved"], opts=opts, gain_session=gain_session,
                     n_frames=row["n_frames"], sums_dir=sums_dir)
