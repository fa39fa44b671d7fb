"""The output files of one series in ``OUT/[settings-HASH/]SERIES/`` and how they change.

``SERIES.mrc``, ``SERIES_EVN.mrc``, ``SERIES_ODD.mrc`` grow by one section per tilt (stack.py);
``SERIES.tilts.tsv``, ``SERIES.rawtlt`` and the RELION 5 table ``SERIES.star`` are rewritten from
the journal after every append (per-tilt images: tilt_images.py; RELION tables: relion_tables.py);
when the series is complete ``SERIES_sorted.mrc`` (+ ``_EVN``/``_ODD``), ``SERIES.tlt`` and, for
AreTomo and IMOD, ``SERIES_sorted_TLT.txt`` and ``SERIES_sorted.rawtlt`` are written from the
growing stacks in angle order (angle_files.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framewatch.daemon.outputs import stack
from framewatch.daemon.outputs.angle_files import aretomo_tlt_text
from framewatch.daemon.outputs.no_follow import atomic_write_text, check_not_link, check_real_dir, ensure_real_dir
from framewatch.daemon.outputs.tilt_table import angles_text, mark_reacquired, sorted_records, tilt_record, tsv_text
from framewatch.daemon.state import faults
from framewatch.daemon.state.records import TiltRecord


def _series_file(suffix: str, what: str) -> property:
    """The path ``DIR/NAME<suffix>`` of a series' file (a read-only property of SeriesPaths)."""
    return property(lambda self: self._p(suffix), doc=f"``NAME{suffix}``: {what}")


@dataclass(frozen=True)
class SeriesPaths:
    dir: Path
    name: str
    root: Path | None = None  # OUT: every directory between it and ``dir`` is checked not to be a link

    @classmethod
    def of(cls, out_root: str | Path, out_rel: str) -> "SeriesPaths":
        return cls(Path(out_root) / out_rel, Path(out_rel).name, Path(out_root))

    def check_dir(self) -> None:
        """Raise LinkInOutputError when the series directory (or one above it in OUT) is a link."""
        if self.root is not None:
            check_real_dir(self.root, self.dir)

    def make_dir(self) -> Path:
        """Create the series directory; a symbolic link on the way raises LinkInOutputError (no_follow.py)."""
        if self.root is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            return self.dir
        return ensure_real_dir(self.root, self.dir)

    def _p(self, suffix: str) -> Path:
        return self.dir / f"{self.name}{suffix}"

    stack = _series_file(".mrc", "the growing dose-weighted stack")
    evn = _series_file("_EVN.mrc", "the growing even-frame stack")
    odd = _series_file("_ODD.mrc", "the growing odd-frame stack")
    tsv = _series_file(".tilts.tsv", "the tilt table")
    rawtlt = _series_file(".rawtlt", "the angles of the growing stack")
    sorted_stack = _series_file("_sorted.mrc", "the angle-sorted stack")
    sorted_evn = _series_file("_sorted_EVN.mrc", "the angle-sorted even stack")
    sorted_odd = _series_file("_sorted_ODD.mrc", "the angle-sorted odd stack")
    tlt = _series_file(".tlt", "the angles of the sorted stack")
    star = _series_file(".star", "the RELION 5 table of the series")
    sorted_tlt_txt = _series_file("_sorted_TLT.txt", "the AreTomo angle file of the sorted stack")
    sorted_rawtlt = _series_file("_sorted.rawtlt", "the IMOD angle file of the sorted stack")

    @property
    def stacks(self) -> tuple[Path, Path, Path]:
        return self.stack, self.evn, self.odd


def append_tilt(paths: SeriesPaths, z_expected: int, images: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                pixel_size_a: float) -> int:
    """Append the dose-weighted, even and odd sums as section ``z_expected`` of the three stacks."""
    paths.make_dir()
    for path in paths.stacks:
        check_not_link(path)
        n_now = stack.inspect_stack(path).n_sections
        if n_now != z_expected or stack.hidden_name(path, "appending").exists():
            n_now, _ = stack.repair(path, z_expected)
            if n_now != z_expected:
                raise RuntimeError(f"{path} has {n_now} sections, the journal expects {z_expected}")

    def between(i):
        if i == 0:
            faults.checkpoint("append_between_stacks")

    zs = stack.append_sections(list(zip(paths.stacks, images)), pixel_size_a=pixel_size_a, label=f"framewatch: {paths.name}",
                               between=between)
    if zs != [z_expected] * 3:
        raise RuntimeError(f"appended as sections {zs}, expected {z_expected}")
    return z_expected


def repair_stacks(paths: SeriesPaths, n_expected: int) -> tuple[int, list[tuple[Path, int, str]]]:
    """Repair the three stacks to the journal's count; returns the smallest count now and actions."""
    paths.check_dir()  # never repair (truncate) a stack through a planted link
    actions = []
    n_min = n_expected
    for path in paths.stacks:
        check_not_link(path)
        n, what = stack.repair(path, n_expected)
        actions.append((path, n, what))
        n_min = min(n_min, n)
    if n_min < n_expected:  # keep the three stacks the same length
        for path in paths.stacks:
            stack.repair(path, n_min)
    return n_min, actions


def records_of(rows: list[dict], tolerance_deg: float) -> tuple[list[TiltRecord], list[TiltRecord]]:
    """(all records in z order with reacquisition flags, the records kept for sorted outputs)."""
    return mark_reacquired([tilt_record(r) for r in rows], tolerance_deg)


def rewrite_tables(paths: SeriesPaths, rows: list[dict], tolerance_deg: float, *,
                   series_name: str | None = None) -> list[TiltRecord]:
    """``SERIES.tilts.tsv`` and ``SERIES.rawtlt``; ``series_name`` (the series' own name, which the
    output names may shorten: output_names.py) goes into the table's ``series`` column."""
    paths.make_dir()
    recs, _ = records_of(rows, tolerance_deg)
    if series_name is not None:
        recs = [dataclasses.replace(r, series=series_name) for r in recs]
    atomic_write_text(paths.tsv, tsv_text(recs))
    atomic_write_text(paths.rawtlt, angles_text(r.tilt_angle_deg for r in recs))
    return recs


def write_sorted(paths: SeriesPaths, rows: list[dict], tolerance_deg: float, *, pixel_size_a: float) -> int:
    """Angle-sorted stacks and their angle files from the growing stacks; returns the number of sections."""
    _, kept = records_of(rows, tolerance_deg)
    order = sorted_records(kept)
    if not order:
        return 0
    zs = [r.z for r in order]
    paths.make_dir()
    label = f"framewatch: {paths.name} sorted by tilt angle"
    for src, dst in zip(paths.stacks, (paths.sorted_stack, paths.sorted_evn, paths.sorted_odd)):
        stack.write_stack(dst, stack.iter_sections(src, zs), pixel_size_a=pixel_size_a, label=label)
    atomic_write_text(paths.tlt, angles_text(r.tilt_angle_deg for r in order))
    atomic_write_text(paths.sorted_rawtlt, angles_text(r.tilt_angle_deg for r in order))
    atomic_write_text(paths.sorted_tlt_txt, aretomo_tlt_text(order))
    return len(order)
