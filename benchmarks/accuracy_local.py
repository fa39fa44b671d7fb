"""The local-motion accuracy grid of issue 12: ``python -m benchmarks.accuracy_local [FILTER]``.

2048^2 x 10 frames, 3 e/A^2 per tilt, 1.5 A/px; 4 contrasts x 2 spectra x 4 local fields, the
trajectory kinds in turn (the same movies as tests/test_accuracy_local.py's slow grid). For each
movie: quarter-band FRC against the ideal image of whole-frame alignment (``--patches 0 0``) and of
the defaults, each relative to the oracle (true global and local motion), the defaults relative to
whole-frame (worst band), and the decision with its z statistic and the field's uncertainty. One
JSON line per movie on stdout; FILTER keeps movies whose description contains it.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from framewatch.core.correct import correct_movie
from framewatch.core.simulate import SimulationSpec, oracle_correction, quarter_band_frc, simulate_movie

OPTIONS = dict(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)
FIELDS = {"none": {}, "smooth2": dict(local_amplitude_px=2.0), "smooth3": dict(local_amplitude_px=3.0),
          "bumpy": dict(local_amplitude_px=2.0, local_bumps=4)}
TRAJECTORIES = ("drift_jump", "jerky", "fast_early")


def cases(size: int = 2048) -> list[tuple[str, dict]]:
    out, i = [], 0
    for contrast in (0.05, 0.10, 0.15, 0.25):
        for exponent in (0.0, 1.5):
            for name, field in FIELDS.items():
                trajectory = TRAJECTORIES[i % 3]
                i += 1
                out.append((name, dict(ny=size, nx=size, n_frames=10, contrast_rms=contrast, blob_mass_exponent=exponent,
                                       trajectory=trajectory, seed=100 + i, **field)))
    return out


def main(argv: list[str]) -> int:
    wanted = argv[0] if argv else ""
    for name, spec in cases():
        if wanted not in name + json.dumps(spec):
            continue
        sim = simulate_movie(SimulationSpec(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, **spec))
        f_oracle = quarter_band_frc(oracle_correction(sim).dose_weighted_sum, sim.ideal)
        whole = correct_movie(sim.frames, gain=sim.gain, patches=(0, 0), **OPTIONS)
        default = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
        f_whole = quarter_band_frc(whole.dose_weighted_sum, sim.ideal)
        f_default = quarter_band_frc(default.dose_weighted_sum, sim.ideal)
        st = default.statistics
        print(json.dumps(dict(field=name, **spec, whole_over_oracle=np.round(f_whole / f_oracle, 4).tolist(),
                              default_over_oracle=np.round(f_default / f_oracle, 4).tolist(),
                              default_over_whole_min=round(float(np.min(f_default / f_whole)), 4),
                              decision=st.local_motion, z=st.local_evidence_z, field_rms_px=st.local_field_rms_px,
                              field_uncertainty_px=st.local_field_uncertainty_px)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
