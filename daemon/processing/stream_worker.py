"""What a worker process does with a streaming job: correct a movie while the acquisition writes it.

The job's movie is followed frame by frame (core's ``stream_correct_file``: each frame is decoded,
gain- and defect-corrected and transformed as soon as the format says it is whole on disk) until the
daemon leaves the final job in the stream directory (stream_signals.py): then only the rest of the
work is left (the final defect mask, alignment, local motion, dose weighting, the sums).

What can go wrong, and what follows:

- the daemon cancels (the file was deleted, found broken, the daemon stops): ``dropped``, nothing
  else; the daemon's normal path decides what the movie is;
- the file is truncated, replaced or rewritten while followed (core's ``MovieChangedError``), or a
  frame's data cannot be read yet: before the movie is complete, ``dropped`` (the normal path takes
  the movie when it is complete); after, the finished file is read afresh as for any complete
  movie (:func:`worker.correct_complete`: a failure record or a result, as today);
- the final settings differ from the provisional ones in what the first pass used (the frame
  geometry, the gain orientation; the mdoc's pixel size can change the alignment binning): the
  finished file is read afresh too;
- the movie was complete before the stream had corrected a frame (a movie renamed into place in
  whole, its frame mdoc close behind): it is read as a complete movie (:func:`worker.correct_complete`:
  the final defect mask known before any transform, two readers at once; 1.5-2 s sooner at
  4096² x 10 LZW than taking every frame through the stream; the one or two frames the stream's
  reader had decoded are read again). Not a drop: no ``fallback``;
- any other error once the movie is complete: the same outcome as a complete movie's.

The job brings the final defect mask of the last movie of its camera (``job.expected_mask``: the
daemon keeps it, across restarts too, state/defect_masks.py), so frames are rarely transformed twice
(core/streaming_correction.py).
"""
from __future__ import annotations

import dataclasses
import time

from framewatch.daemon.processing.stream_signals import control_for
from framewatch.daemon.processing.worker import correct_complete, failure, outcome, where
from framewatch.daemon.state import faults
from framewatch.daemon.state.records import CorrectionJob, CorrectionOutcome


class _EndOfMovie:
    """Core's stream control over the daemon's signals: the final frame count, settings and dose."""

    def __init__(self, control):
        self._control = control
        self._seen = False

    def end(self):
        from framewatch.core.streamed_file import StreamEnd

        job = self._control.end()
        if job is None:
            return None
        if not self._seen:  # the movie is complete: from here it is read as a complete movie is
            self._seen = True
            faults.checkpoint("worker_reading", job.movie)
        return StreamEnd(n_frames=job.expected_frames, settings=job.settings,
                         movie_dose_e_per_a2=job.movie_dose_e_per_a2)

    def cancelled(self) -> bool:
        return self._control.cancelled()


def stream(job: CorrectionJob) -> CorrectionOutcome:
    """Follow ``job.movie`` while it is written and correct it (module docstring)."""
    from framewatch.core.errors import MovieChangedError, StreamCancelled, StreamNotStarted, StreamSettingsChanged
    from framewatch.core.streamed_file import stream_correct_file

    control = control_for(job.stream, job.movie_id)
    hint = job.expected_mask
    try:
        streamed = stream_correct_file(
            job.movie, settings=job.settings, control=_EndOfMovie(control),
            gain=job.gain,  # a file: oriented by the settings once the frame size is known
            defects_path=job.defects, movie_dose_e_per_a2=job.movie_dose_e_per_a2,
            expected_mask=None if hint is None else hint.as_array(), stop_if_not_started=True,
        )
    except StreamNotStarted:
        return correct_complete(control.end())
    except StreamCancelled:
        return CorrectionOutcome.stream_dropped(job, control.cancel_reason(), worker=where())
    except (MovieChangedError, StreamSettingsChanged) as err:
        final = control.end()
        if final is None:
            return CorrectionOutcome.stream_dropped(job, f"{type(err).__name__}: {err}", worker=where())
        # a fresh read of the finished file, as for any complete movie
        return dataclasses.replace(correct_complete(final), fallback=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - reported as data, never kills the worker
        final = control.end()
        if final is None:
            return CorrectionOutcome.stream_dropped(job, f"{type(err).__name__}: {err}", worker=where())
        return failure(final, err)
    faults.checkpoint("worker_corrected")
    final = control.end()
    # worker_s: the time after the movie was complete (what streaming leaves), not the exposure
    return outcome(final, streamed.result, n_raw_frames=final.expected_frames,
                   started=time.perf_counter() - streamed.finish_s, streamed_frames=streamed.frames_before_end,
                   mask_hint_pixels=None if hint is None else int(hint.flat.size))

