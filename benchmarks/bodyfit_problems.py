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
from flyenv.body.kinematics import forward_kinematics, leg_forward_kinematics
from flyenv.ik_preprocess import IkOptions, LmOptions, load_recording, solver
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


def data_body_lm(scale: float, weights: tuple[float, ...] | None = None) -> LmOptions:
    """The lm settings `--body data` solves with for a fly `scale` x the template: `weights`
    (None: the measured body's default, `IkOptions(body="data").solve_lm`), the floor scaled."""
    lm = IkOptions(body="data", lm=LmOptions(keypoint_weights=weights)).solve_lm
    return dataclasses.replace(lm, error_floor_mm=lm.error_floor_mm * scale)


def flyenv_data_body(train: Clip, test: Clip) -> np.ndarray:
    """Errors on `test` of `--body data` with the body measured on `train` (default lm)."""
    fit = fit_body(train.keypoints, train.template)
    return solve(test, fit.body.lengths, data_body_lm(fit.scale), tilt=fit.body.tarsus_tilt)


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


def synthetic_fly(angles: np.ndarray, size: float, seed: int, noise_mm: float = 0.01,
                  ) -> tuple[BodyConfig, np.ndarray, np.ndarray]:
    """A fly of `size` x the template, +-15% per segment (both sides alike), tarsi tilted
    up to 15 deg (mirrored), moving with
    `angles` (T, 42): its body, exact keypoints and tracked ones (noise, drops)."""
    rng = np.random.default_rng(seed)
    template = BodyConfig.default()
    factors = rng.uniform(0.85, 1.15, c.NUM_SEGMENTS)
    tilt = np.radians(rng.uniform(-15.0, 15.0, 3))
    body = template.replace(segment_lengths_mm=size * template.lengths * factors,
                            thc_mm=size * template.thc,
                            tarsus_tilt_rad=np.concatenate([tilt, -tilt]))
    exact = forward_kinematics(body, angles)
    tracked = exact + noise_mm * size * rng.standard_normal(exact.shape)
    tracked[rng.random(exact.shape[:3]) < 0.05] = np.nan
    for legid in rng.choice(c.NUM_LEGS, 3, replace=False):
        start = int(rng.integers(0, len(angles) - 30))
        tracked[start:start + 30, legid, 4] = np.nan
    return body, exact, tracked


def solve_angles(keypoints: np.ndarray, body: BodyConfig, bounds: np.ndarray,
                 lm: LmOptions) -> tuple[np.ndarray, np.ndarray]:
    """lm angles (T, 6, 7) on a body and which the tracking determines."""
    filled, tracked = solver.fill_gaps(keypoints)
    tilt = body.tarsus_tilt
    angles = solver.seqik(filled, body.lengths, bounds, solver.SEQIKPY_SEED_RAD,
                          tarsus_tilt_rad=tilt)
    angles = solver.lm(filled, body.lengths, bounds, angles, keypoint_mask=tracked[..., 1:],
                       options=lm, tarsus_tilt_rad=tilt)
    return angles, ~solver.undetermined_angles(tracked)


def synthetic_motion(df3d: Clip) -> np.ndarray:
    """(T, 42) joint angles the synthetic flies move with: the df3d walk's, solved with lm
    (the template's weights) on its per-leg median segment lengths."""
    template = BodyConfig.default()
    measured = template.replace(segment_lengths_mm=per_leg_lengths(df3d))
    bounds = template.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    motion, _ = solve_angles(df3d.keypoints, measured, bounds, LmOptions())
    return motion.reshape(len(motion), c.NUM_DOFS)
