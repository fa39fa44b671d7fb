"""framewatch engine: formats and numerics (arrays and paths in, results out).

The main entry points are :func:`correct_movie` (frames in memory) and :func:`correct_movie_file`
(a movie file read frame by frame); both return a :class:`MovieResult`.
"""
from .correct import correct_movie, correct_movie_file
from .errors import FramewatchError, GainError, MovieFormatError, SettingsError
from .result import DriftStatistics, MovieResult, result_summary
from .settings import CorrectionSettings, GainOrientation

__all__ = [
    "CorrectionSettings",
    "DriftStatistics",
    "FramewatchError",
    "GainError",
    "GainOrientation",
    "MovieFormatError",
    "MovieResult",
    "SettingsError",
    "correct_movie",
    "correct_movie_file",
    "result_summary",
]
