"""The IK benchmarks' problems: the shipped recordings, their bodies and the error measures."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.ik_preprocess import solver
from flyenv.ik_preprocess.io import load_pickle_safely, load_recording

DF3D_100 = "df3d_210902_PR_Fly1/pose3d_aligned.pkl"
DF3D_1000 = "df3d_210902_PR_Fly1/pose_result__210902_PR_Fly1_aligned.pkl"
ANIPOSE_DIR = "anipose_220525_aJO_Fly001_001"
FIT_KEYPOINTS = c.KEYPOINTS[1:]  # CTr, FTi, TiTa, Claw
# Rows of SeqIKPy's forward kinematics (9 chain links) that are ThC, CTr, FTi, TiTa, Claw.
SEQIKPY_FK_ROWS = (0, 4, 6, 7, 8)
SEQIKPY_SEGMENTS = ("Coxa", "Femur", "Tibia", "Tarsus", "Claw")
AGREEMENT_TOL_DEG = 0.01

# SeqIKPy's default NeuroMechFly configuration for the front legs (its body_config.py), which
# produced the Anipose file's leg_joint_angles.pkl. Joints in JOINTS order.
ANIPOSE_LEGS = ("LF", "RF")
ANIPOSE_LENGTHS_MM = (0.40, 0.69, 0.54, 0.63)
ANIPOSE_BOUNDS_DEG = {
    "LF": ((-50, 50), (-40, 60), (-50, 130), (-180, 0), (0, 150), (0, 170), (-150, 0)),
    "RF": ((-50, 50), (-40, 60), (-130, 50), (-180, 0), (-150, 0), (0, 170), (-150, 0)),
}
ANIPOSE_SEED_RAD = {
    "LF": (-0.45, -0.07, 0.32, -2.14, 1.25, 1.48, 0.0),
    "RF": (0.45, -0.07, -0.32, -2.14, -1.25, 1.48, 0.0),
}

@dataclasses.dataclass(frozen=True)
class Settings:
    """How much work each measurement does."""

    repeats: int  # timed calls per solver (best is reported)
    tile_frames: int  # the 100-frame df3d file tiled to this many frames
    seqikpy_frames: int | None  # frames SeqIKPy solves on df3d (None: all)
    workers_frames: int  # the 1000-frame df3d file tiled to this many frames
    workers_repeats: int  # runner runs per worker count (best is reported)
    memory_counts: tuple[int, ...]  # numbers of file copies for the memory check
    chunk_frames: int = 5000


FULL = Settings(repeats=7, tile_frames=2000, seqikpy_frames=None, workers_frames=100_000,
                workers_repeats=2, memory_counts=(10, 40))
QUICK = Settings(repeats=2, tile_frames=500, seqikpy_frames=10, workers_frames=10_000,
                 workers_repeats=1, memory_counts=(3, 6))


@dataclasses.dataclass(frozen=True)
class Problem:
    """Keypoints of some legs and the body to fit them with."""

    name: str
    source: str
    legs: tuple[str, ...]
    keypoints: np.ndarray  # (T, L, 5, 3) [mm]
    lengths: np.ndarray  # (L, 4) [mm]
    bounds: np.ndarray  # (L, 7, 2) [rad]
    seed: np.ndarray  # (L, 7) [rad]

    @property
    def leg_frames(self) -> int:
        """T * L."""
        return int(self.keypoints.shape[0] * self.keypoints.shape[1])

    def tiled(self, frames: int) -> Problem:
        """The recording repeated in time to `frames` frames."""
        reps = -(-frames // self.keypoints.shape[0])
        keypoints = np.tile(self.keypoints, (reps, 1, 1, 1))[:frames]
        return dataclasses.replace(self, keypoints=np.ascontiguousarray(keypoints))


# -- data -----------------------------------------------------------------------------------------


def load_df3d(data_dir: Path) -> Problem:
    """The df3d 100-frame recording with flyenv's default body and SeqIKPy's seeds."""
    path = data_dir / DF3D_100
    recording = load_recording(path)
    if recording.legs_present != c.LEGS:
        raise ValueError(f"{path}: expected all six legs, got {recording.legs_present}")
    body = BodyConfig.default()
    return Problem("df3d", str(path), c.LEGS, np.asarray(recording.keypoints), body.lengths,
                   body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2),
                   np.asarray(solver.SEQIKPY_SEED_RAD))


def load_anipose(data_dir: Path) -> tuple[Problem, np.ndarray, np.ndarray]:
    """The Anipose front-leg recording, SeqIKPy's angles (T, 2, 7) and its FK keypoints."""
    folder = data_dir / ANIPOSE_DIR
    recording = load_recording(folder / "pose3d_aligned.pkl")
    legs = [c.LEGS.index(leg) for leg in ANIPOSE_LEGS]
    keypoints = np.ascontiguousarray(recording.keypoints[:, legs])
    problem = Problem(
        "anipose", str(folder / "pose3d_aligned.pkl"), ANIPOSE_LEGS, keypoints,
        np.array([ANIPOSE_LENGTHS_MM] * len(ANIPOSE_LEGS)),
        np.radians(np.array([ANIPOSE_BOUNDS_DEG[leg] for leg in ANIPOSE_LEGS], dtype=float)),
        np.array([ANIPOSE_SEED_RAD[leg] for leg in ANIPOSE_LEGS]))
    angles = load_pickle_safely(folder / "leg_joint_angles.pkl")
    ref_angles = np.stack([np.stack([angles[f"Angle_{leg}_{joint}"] for joint in c.JOINTS], -1)
                           for leg in ANIPOSE_LEGS], axis=1)
    fk = load_pickle_safely(folder / "forward_kinematics.pkl")
    ref_fk = np.stack([fk[f"{leg}_leg"][:, list(SEQIKPY_FK_ROWS)] for leg in ANIPOSE_LEGS], 1)
    return problem, ref_angles, ref_fk


# -- solvers and errors ---------------------------------------------------------------------------


def solve_seqik(problem: Problem) -> np.ndarray:
    """flyenv's closed-form SeqIKPy stages, (T, L, 7)."""
    return solver.seqik(problem.keypoints, problem.lengths, problem.bounds, problem.seed)


def solve_lm(problem: Problem, seed_angles: np.ndarray) -> np.ndarray:
    """flyenv's joint fit with default options, seeded with `seed_angles`, (T, L, 7)."""
    return solver.lm(problem.keypoints, problem.lengths, problem.bounds, seed_angles)


def fk_errors(keypoints: np.ndarray, fk_keypoints: np.ndarray) -> np.ndarray:
    """Distances (T, L, 4) of CTr, FTi, TiTa, Claw between tracked and chain keypoints."""
    return np.linalg.norm(fk_keypoints[:, :, 1:] - keypoints[:, :, 1:], axis=-1)


def solver_errors(problem: Problem, angles: np.ndarray) -> np.ndarray:
    """Fit errors (T, L, 4) of flyenv angles, chain rooted at the tracked ThC."""
    return solver.fit_error(problem.keypoints, problem.lengths, angles)[:, :, 1:]


def error_stats(errors: np.ndarray) -> dict[str, Any]:
    """Mean and p95 per keypoint and pooled over the four, [mm]."""
    per_keypoint = {name: {"mean": float(errors[..., k].mean()),
                           "p95": float(np.percentile(errors[..., k], 95))}
                    for k, name in enumerate(FIT_KEYPOINTS)}
    return {"per_keypoint": per_keypoint,
            "pooled": {"mean": float(errors.mean()), "p95": float(np.percentile(errors, 95))}}


def error_ratios(stats: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """stats / reference: pooled mean, pooled p95, each keypoint's mean and the worst of those."""
    per_keypoint = {name: stats["per_keypoint"][name]["mean"]
                    / reference["per_keypoint"][name]["mean"] for name in FIT_KEYPOINTS}
    worst = max(per_keypoint, key=per_keypoint.get)
    return {"pooled_mean": stats["pooled"]["mean"] / reference["pooled"]["mean"],
            "pooled_p95": stats["pooled"]["p95"] / reference["pooled"]["p95"],
            "per_keypoint_mean": per_keypoint,
            "max_keypoint_mean": {"keypoint": worst, "ratio": per_keypoint[worst]}}


def angle_agreement(angles: np.ndarray, reference: np.ndarray, legs: tuple[str, ...],
                    tol_deg: float = AGREEMENT_TOL_DEG) -> dict[str, Any]:
    """Fraction of leg-frames whose angles are within `tol_deg` of the reference (wrapped)."""
    diff = np.degrees(np.abs((angles - reference + np.pi) % (2 * np.pi) - np.pi))
    close = diff <= tol_deg
    per_joint = {joint: float(close[..., j].mean()) for j, joint in enumerate(c.JOINTS)}
    return {
        "tolerance_deg": tol_deg,
        "leg_frames": int(close.shape[0] * close.shape[1]),
        "all_joints": float(close.all(-1).mean()),
        "per_joint": per_joint,
        "per_leg": {leg: float(close[:, i].all(-1).mean()) for i, leg in enumerate(legs)},
        "worst_joint": min(per_joint, key=per_joint.get),
        "max_abs_diff_deg": {joint: float(diff[..., j].max())
                             for j, joint in enumerate(c.JOINTS)},
    }
