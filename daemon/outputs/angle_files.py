"""Angle files of the angle-sorted stacks, for AreTomo and IMOD:

- ``SERIES_sorted_TLT.txt`` (AreTomo3 ``-Cmd 1``, AreTomo2 ``-AngFile``): one line per section of
  ``SERIES_sorted.mrc``: the tilt angle (ascending), the 1-based acquisition index (the order in
  which the sections kept in the sorted stack were acquired: 1..n) and the dose of that tilt in
  e/A^2. AreTomo3 reads the first two columns (``%f %d``); the third is there for dose weighting
  by programs that read it.
- ``SERIES_sorted.rawtlt``: the angles of ``SERIES_sorted.mrc`` in section order (IMOD's etomo
  looks for ``DATASET.rawtlt`` beside the stack ``DATASET.mrc``; tiltalign writes ``.tlt`` itself).

``SERIES.rawtlt`` stays the angle file of the growing stack (acquisition order).
"""
from __future__ import annotations

import math

from framewatch.daemon.state.records import TiltRecord


def acquisition_ranks(records: list[TiltRecord]) -> dict[int, int]:
    """z -> 1-based rank of each record in acquisition order (acquisition index, then z)."""
    def key(r):
        idx = r.acquisition_index
        return (math.inf if idx is None else idx, r.z)

    return {r.z: k for k, r in enumerate(sorted(records, key=key), start=1)}


def aretomo_tlt_text(sorted_recs: list[TiltRecord]) -> str:
    """The ``_TLT.txt`` lines of the records in sorted-stack order."""
    ranks = acquisition_ranks(sorted_recs)
    lines = []
    for r in sorted_recs:
        dose = r.dose_e_per_a2
        dose = 0.0 if dose is None or not math.isfinite(dose) else float(dose)
        lines.append(f"{float(r.tilt_angle_deg):8.2f}  {ranks[r.z]:4d}  {dose:8.3f}\n")
    return "".join(lines)
