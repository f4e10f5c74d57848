"""The bodyfit benchmark's problems: recordings in the thorax frame, the solves, the SeqIKPy
reference with a data body, the scores against the targets and the held-out splits
(`bodyfit_bench`, `bodyfit_limits`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ik_bench
import numpy as np

from flyenv import data
from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.body.kinematics import leg_forward_kinematics
from flyenv.ik_preprocess import LmOptions, load_recording, solver
from flyenv.ik_preprocess.align import robust_center, segment_lengths
from flyenv.ik_preprocess.bodyfit import fit_body
from flyenv.ik_preprocess.thorax import estimate_thorax_pose

TARGETS = {"keypoint_mean_ratio": 1.0, "pooled_mean_ratio": 0.7, "pooled_p95_ratio": 0.7,
           "synthetic_length_error_pct": 3.0, "synthetic_angle_deg": 1.0,
           "scale_p99_deg": 0.5, "estimate_over_thorax": 1.2}
@dataclasses.dataclass(frozen=True)
class Clip:
    """A recording in the canonical thorax frame, with the template it is solved against."""

    name: str
    keypoints: np.ndarray  # (T, 6, 5, 3) [mm]
    legs: list[int]
    template: BodyConfig

    @property
    def bounds(self) -> np.ndarray:
        """(6, 7, 2) [rad]."""
        return self.template.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)

    def frames(self, index: np.ndarray) -> Clip:
        """The clip on some frames."""
        return dataclasses.replace(self, keypoints=self.keypoints[index])


def load_clip(name: str, template: BodyConfig) -> Clip:
    """A shipped recording in the thorax frame `flyenv ik --frame estimate` finds."""
    recording = load_recording(data.path(name))
    pose = estimate_thorax_pose(recording.keypoints, template.thc, 100.0)
    return Clip(name, pose.to_thorax(recording.keypoints),
                [c.LEGS.index(leg) for leg in recording.legs_present], template)


def solve(clip: Clip, lengths: np.ndarray, lm: LmOptions | None = None,
          method: str = "lm", tilt: np.ndarray | None = None) -> np.ndarray:
    """Fit errors (T, L, 4) of CTr..Claw of the clip's legs for a body's (6, 4) lengths [mm]
    and (6,) tarsus tilts [rad] (None: 0)."""
    legs = clip.legs
    filled, tracked = solver.fill_gaps(clip.keypoints[:, legs])
    args = (lengths[legs], clip.bounds[legs])
    tilt = None if tilt is None else np.asarray(tilt)[legs]
    angles = solver.seqik(filled, *args, solver.SEQIKPY_SEED_RAD[legs], tarsus_tilt_rad=tilt)
    if method == "lm":
        angles = solver.lm(filled, *args, angles, keypoint_mask=tracked[..., 1:], options=lm,
                           tarsus_tilt_rad=tilt)
    return solver.fit_error(filled, lengths[legs], angles, tilt)[..., 1:]


def per_leg_lengths(clip: Clip) -> np.ndarray:
    """(6, 4) each leg's median segment distances (SeqIKPy's data body), template elsewhere."""
    measured = segment_lengths(clip.keypoints)
    return np.where(np.isfinite(measured), measured, clip.template.lengths)


def flyenv_data_body(train: Clip, test: Clip) -> np.ndarray:
    """Errors on `test` of `--body data` with the body measured on `train` (default lm)."""
    fit = fit_body(train.keypoints, train.template)
    lm = LmOptions(error_floor_mm=LmOptions().error_floor_mm * fit.scale)
    return solve(test, fit.body.lengths, lm, tilt=fit.body.tarsus_tilt)


def reference(clip: Clip) -> np.ndarray:
    """SeqIKPy with a data body measured on the clip itself."""
    return solve(clip, per_leg_lengths(clip), method="seqik")


def scored(errors: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """The errors, the reference's and their ratios, with the targets."""
    mine, theirs = ik_bench.error_stats(errors), ik_bench.error_stats(ref)
    ratios = ik_bench.error_ratios(mine, theirs)
    return {"flyenv_mm": mine, "seqikpy_data_body_mm": theirs, "ratio": ratios,
            "targets_met": {
                "every_keypoint_mean_at_most_seqikpy":
                    ratios["max_keypoint_mean"]["ratio"] <= TARGETS["keypoint_mean_ratio"],
                "pooled_mean_at_most_0.7": ratios["pooled_mean"] <= TARGETS["pooled_mean_ratio"],
                "pooled_p95_at_most_0.7": ratios["pooled_p95"] <= TARGETS["pooled_p95_ratio"]}}


def splits(num_frames: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and test frames of the held-out splits."""
    frames = np.arange(num_frames)
    half = num_frames // 2
    return {"first_half_to_second": (frames[:half], frames[half:]),
            "second_half_to_first": (frames[half:], frames[:half]),
            "even_to_odd": (frames[::2], frames[1::2])}


def proximal_first(clip: Clip) -> np.ndarray:
    """(6, 4) lengths fitted proximal segment first (see the module docstring)."""
    lengths = fit_body(clip.keypoints, clip.template).body.lengths
    legs = clip.legs
    filled, tracked = solver.fill_gaps(clip.keypoints[:, legs])
    for segment in range(1, c.NUM_SEGMENTS):
        angles = solver.seqik(filled, lengths[legs], clip.bounds[legs],
                              solver.SEQIKPY_SEED_RAD[legs])
        chain = leg_forward_kinematics(filled[:, :, 0], lengths[legs], angles)
        distance = np.linalg.norm(filled[:, :, segment + 1] - chain[:, :, segment], axis=-1)
        lengths[legs, segment] = robust_center(np.where(tracked[:, :, segment + 1], distance,
                                                        np.nan))
    return lengths
