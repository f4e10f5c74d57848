"""SeqIKPy itself, run in its own interpreter on a problem, for the IK benchmark's reference."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from ik_problems import SEQIKPY_FK_ROWS, SEQIKPY_SEGMENTS, Problem, fk_errors

from flyenv.body import BodyConfig
from flyenv.body import constants as c

# The worker runs through ik_bench.py's command line (`--seqikpy-worker`).
IK_BENCH = Path(__file__).with_name("ik_bench.py")


def seqikpy_initial_angles(seed: np.ndarray, legs: tuple[str, ...]) -> dict[str, dict]:
    """SeqIKPy's per-stage initial angles (its body_config format) from (L, 7) seeds.

    Each stage's array covers the links of that stage's chain: the base link, then the joints
    (fixed ones included), then the end link. The stage-2 end link is FTi pitch: SeqIKPy's
    tutorial puts 1.4 there, the seed table 1.48; an end link's angle does not move its own
    origin (the stage's end effector), so the value does not change the solution.
    """
    out = {}
    for leg, (yaw, pitch, roll, ctr_pitch, ctr_roll, fti, tita) in zip(legs, seed, strict=True):
        out[leg] = {
            "stage_1": np.array([0.0, yaw, pitch, ctr_pitch]),
            "stage_2": np.array([0.0, yaw, pitch, roll, ctr_pitch, fti]),
            "stage_3": np.array([0.0, yaw, pitch, roll, ctr_pitch, ctr_roll, fti, tita]),
            "stage_4": np.array([0.0, yaw, pitch, roll, ctr_pitch, ctr_roll, fti, tita, 0.0]),
        }
    return out


def seqikpy_template(template: np.ndarray, legs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """SeqIKPy's template dict `{leg}_{Coxa..Claw}` from (L, 5, 3) zero-pose keypoints."""
    return {f"{leg}_{seg}": np.array(template[i, k])
            for i, leg in enumerate(legs) for k, seg in enumerate(SEQIKPY_SEGMENTS)}


def seqikpy_bounds(bounds: np.ndarray, legs: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """SeqIKPy's bounds dict `{leg}_{joint}: (lo, hi)` [rad] from (L, 7, 2)."""
    return {f"{leg}_{joint}": (float(bounds[i, j, 0]), float(bounds[i, j, 1]))
            for i, leg in enumerate(legs) for j, joint in enumerate(c.JOINTS)}


def seqikpy_worker(in_path: str, out_path: str) -> None:
    """Runs SeqIKPy serially on the problem in `in_path` (run in SeqIKPy's interpreter)."""
    from importlib.metadata import version

    from seqikpy.kinematic_chain import KinematicChainSeq
    from seqikpy.leg_inverse_kinematics import LegInvKinSeq
    from seqikpy.utils import calculate_body_size

    with np.load(in_path, allow_pickle=False) as data:
        keypoints, template = data["keypoints"], data["template"]
        bounds, seed = data["bounds"], data["seed"]
        legs = tuple(str(leg) for leg in data["legs"])
    kin_chain = KinematicChainSeq(
        bounds_dof=seqikpy_bounds(bounds, legs), legs_list=list(legs),
        body_size=calculate_body_size(seqikpy_template(template, legs), list(legs)))
    aligned = {f"{leg}_leg": np.ascontiguousarray(keypoints[:, i]) for i, leg in enumerate(legs)}
    seq_ik = LegInvKinSeq(aligned_pos=aligned, kinematic_chain_class=kin_chain,
                          initial_angles=seqikpy_initial_angles(seed, legs))
    start = time.perf_counter()
    angles, fk = seq_ik.run_ik_and_fk(n_workers=1, hide_progress_bar=True)
    seconds = time.perf_counter() - start
    np.savez(out_path, seconds=seconds, version=version("seqikpy"),
             angles=np.stack([np.stack([angles[f"Angle_{leg}_{joint}"] for joint in c.JOINTS],
                                       -1) for leg in legs], 1),
             fk=np.stack([fk[f"{leg}_leg"][:, list(SEQIKPY_FK_ROWS)] for leg in legs], 1))


def seqikpy_importable(python: str) -> bool:
    """Whether `python` exists and can import seqikpy."""
    if not Path(python).exists():
        return False
    probe = subprocess.run([python, "-c", "import seqikpy"], capture_output=True, check=False)
    return probe.returncode == 0


def run_seqikpy(problem: Problem, python: str, frames: int | None,
                workdir: Path) -> dict[str, Any]:
    """SeqIKPy on the first `frames` frames of `problem`, in a subprocess of `python`."""
    if not seqikpy_importable(python):
        return {"status": "not installed", "interpreter": python}
    keypoints = problem.keypoints[:frames]
    in_path, out_path = workdir / "seqikpy_in.npz", workdir / "seqikpy_out.npz"
    np.savez(in_path, keypoints=keypoints, legs=np.array(problem.legs),
             template=np.asarray(BodyConfig.default().zero_pose_keypoints()),
             bounds=problem.bounds, seed=problem.seed)
    proc = subprocess.run([python, str(IK_BENCH), "--seqikpy-worker", str(in_path), str(out_path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"status": "failed", "interpreter": python, "stderr": proc.stderr[-2000:]}
    with np.load(out_path, allow_pickle=False) as data:
        seconds, angles, fk = float(data["seconds"]), data["angles"], data["fk"]
        version = str(data["version"])
    leg_frames = keypoints.shape[0] * keypoints.shape[1]
    return {"status": "ok", "interpreter": python, "version": version,
            "frames": int(keypoints.shape[0]), "leg_frames": int(leg_frames),
            "seconds": seconds, "ms_per_leg_frame": seconds / leg_frames * 1e3,
            "angles": angles, "errors": fk_errors(keypoints, fk)}
