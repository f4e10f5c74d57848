"""Frames, root motion, fitted body and grounding on synthetic and real recordings.

What it measures (one process, BLAS limited to one thread):

1. Root-pose recovery: the embedded tripod gait's keypoints moved by a known rigid motion
   (accelerating yaw, pitch and roll oscillations, a bobbing height) and seen from an offset,
   tilted camera, with and without noise and NaN: position, orientation and velocity errors of
   `estimate_thorax_pose`, and the joint angles against those solved from the thorax frame.
2. The df3d and Anipose files: root motion found?, and the measured body's (`--body data`) fit
   error per keypoint against SeqIKPy's with the template (df3d: `seqik` with the template,
   which equals SeqIKPy's; Anipose: SeqIKPy's own forward kinematics shipped with the data),
   pooled mean and p95 ratios, seconds. `benchmarks/bodyfit_bench.py` scores the body against
   SeqIKPy with a data body, on held-out frames too.
3. Stance-leg odometry on the embedded gait (known speed) at 500 and 100 Hz.
4. A free fly tracking (`flyenv.sim.track_reference`) the 1000-frame df3d walk (100 Hz) solved
   with its fitted body and grounded start: upright for the whole clip?, mean joint tracking error,
   distance walked.

Run from the repository root:

    python benchmarks/frames_bench.py [--output benchmarks/results/frames_bench.json]
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one BLAS/OpenMP thread, before numpy loads)

# isort: split
import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import ik_bench
import numpy as np
from common import RESULTS
from scipy.spatial.transform import Rotation

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.data import DATA_DIR
from flyenv.ik_preprocess import IkOptions, run, solver
from flyenv.ik_preprocess.bodyfit import fit_body
from flyenv.ik_preprocess.io import load_recording
from flyenv.ik_preprocess.thorax import estimate_thorax_pose
from flyenv.motion import io as motion_io
from flyenv.motion.gait import tripod_gait
from flyenv.motion.grounding import ground, odometry
from flyenv.sim import track_reference

DATA = DATA_DIR  # the samples shipped in flyenv/data
DEFAULT_OUTPUT = RESULTS / "frames_bench.json"

KEYPOINTS = c.KEYPOINTS[1:]


def world_frame_gait(noise_mm: float = 0.0, nan_fraction: float = 0.0, seed: int = 0,
                     ) -> tuple[Any, np.ndarray, np.ndarray, Rotation]:
    """The gait in a camera frame: (gait, keypoints (T, 6, 5, 3), true root pos, true rot)."""
    gait = tripod_gait()
    t = np.arange(gait.num_frames) / gait.fps
    body_kp = np.asarray(gait.fk_keypoints)
    yaw = 0.3 * t ** 2 + 0.3 * t
    pitch = np.radians(4) * np.sin(2 * np.pi * 0.5 * t)
    roll = np.radians(3) * np.sin(2 * np.pi * 0.7 * t)
    rot = Rotation.from_euler("ZYX", np.stack([yaw, pitch, roll], 1))
    speed = gait.metadata["speed_mm_s"]
    vel = speed * np.stack([np.cos(yaw), np.sin(yaw)], 1)
    xy = np.concatenate([[[0.0, 0.0]], np.cumsum(0.5 * (vel[1:] + vel[:-1]), 0) / gait.fps])
    pos = np.column_stack([xy, gait.root_pos[:, 2] + 0.02 * np.sin(2 * np.pi * 3 * t)])
    world = np.einsum("tij,tlkj->tlki", rot.as_matrix(), body_kp) + pos[:, None, None]
    camera = Rotation.from_euler("xyz", [30, -50, 120], degrees=True)
    keypoints = camera.apply(world.reshape(-1, 3)).reshape(world.shape) + [12.0, -7.0, 3.0]
    rng = np.random.default_rng(seed)
    keypoints = keypoints + noise_mm * rng.standard_normal(keypoints.shape)
    keypoints[rng.random(keypoints.shape[:3]) < nan_fraction] = np.nan
    return gait, keypoints, pos, rot


def bench_root_recovery() -> dict[str, Any]:
    out = {}
    for noise, nan in ((0.0, 0.0), (0.01, 0.05)):
        gait, keypoints, pos, rot = world_frame_gait(noise, nan, seed=1)
        start = time.perf_counter()
        pose = estimate_thorax_pose(keypoints, BodyConfig.default().thc, gait.fps)
        seconds = time.perf_counter() - start
        rot_err = np.degrees((Rotation.from_quat(pose.root_quat_w, scalar_first=True)
                              * rot.inv()).magnitude())
        pos_err = np.linalg.norm(pose.root_pos_w - pos, axis=1)
        vel_err = np.linalg.norm(pose.root_lin_vel_w - np.gradient(pos, 1 / gait.fps, axis=0),
                                 axis=1)[10:-10]
        body = pose.to_thorax(keypoints)
        ok = np.isfinite(body).all(-1).all(-1)
        filled = solver.fill_gaps(body)[0]
        truth = np.asarray(gait.fk_keypoints)
        tmpl = BodyConfig.default()
        bounds = tmpl.bounds.reshape(6, 7, 2)
        q_est = solver.seqik(filled, tmpl.lengths, bounds, solver.SEQIKPY_SEED_RAD)
        q_true = solver.seqik(truth, tmpl.lengths, bounds, solver.SEQIKPY_SEED_RAD)
        angle_err = np.degrees(np.abs(q_est - q_true))[ok]
        out[f"noise_{noise}mm_nan_{nan}"] = {
            "root_motion_found": pose.moving, "up_source": pose.up_source,
            "seconds": seconds, "frames": gait.num_frames,
            "position_error_mm": {"mean": float(pos_err.mean()), "max": float(pos_err.max())},
            "orientation_error_deg": {"mean": float(rot_err.mean()),
                                      "max": float(rot_err.max())},
            "velocity_error_mm_s": {"mean": float(vel_err.mean()),
                                    "true_speed": gait.metadata["speed_mm_s"]},
            "joint_angle_error_vs_thorax_frame_deg": {"mean": float(angle_err.mean()),
                                                      "p95": float(np.percentile(angle_err, 95))},
        }
    return out


def error_table(errors: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    table = {}
    for k, name in enumerate(KEYPOINTS):
        mine, ref = float(errors[..., k].mean()), float(reference[..., k].mean())
        table[name] = {"mean_mm": mine, "seqikpy_mean_mm": ref, "ratio": mine / ref,
                       "p95_mm": float(np.percentile(errors[..., k], 95))}
    pooled = {"mean_mm": float(errors.mean()), "seqikpy_mean_mm": float(reference.mean()),
              "p95_mm": float(np.percentile(errors, 95)),
              "seqikpy_p95_mm": float(np.percentile(reference, 95))}
    pooled["mean_ratio"] = pooled["mean_mm"] / pooled["seqikpy_mean_mm"]
    pooled["p95_ratio"] = pooled["p95_mm"] / pooled["seqikpy_p95_mm"]
    worst = max(t["ratio"] for t in table.values())
    return {"per_keypoint": table, "pooled": pooled, "targets": {
        "every_keypoint_mean_at_most_seqikpy": worst <= 1.0,
        "pooled_mean_at_most_0.7": pooled["mean_ratio"] <= 0.7,
        "pooled_p95_at_most_0.7": pooled["p95_ratio"] <= 0.7}}


def fitted_errors(keypoints: np.ndarray, template: BodyConfig, legs: list[int],
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    start = time.perf_counter()
    pose = estimate_thorax_pose(keypoints, template.thc, 100.0)
    body_kp = pose.to_thorax(keypoints)
    fit = fit_body(body_kp, template)
    body = fit.body
    bounds = body.bounds.reshape(6, 7, 2)
    kp = body_kp[:, legs]
    tilt = body.tarsus_tilt[legs]
    angles = solver.seqik(kp, body.lengths[legs], bounds[legs], solver.SEQIKPY_SEED_RAD[legs],
                          tarsus_tilt_rad=tilt)
    # As `--body data` solves: its default lm settings, the floor scaled with the fly.
    lm = IkOptions(body="data").solve_lm
    lm = dataclasses.replace(lm, error_floor_mm=lm.error_floor_mm * fit.scale)
    angles = solver.lm(kp, body.lengths[legs], bounds[legs], angles, options=lm,
                       tarsus_tilt_rad=tilt)
    seconds = time.perf_counter() - start
    errors = solver.fit_error(kp, body.lengths[legs], angles, tilt)[:, :, 1:]
    return errors, {"seconds": seconds, "root_motion_found": pose.moving,
                    "thorax": pose.summary(), "body": body.to_dict()}


def anipose_template() -> BodyConfig:
    tmpl = BodyConfig.default()
    lengths = tmpl.lengths.copy()
    bounds = tmpl.bounds.reshape(6, 7, 2).copy()
    for leg in ik_bench.ANIPOSE_LEGS:
        lengths[c.LEGS.index(leg)] = ik_bench.ANIPOSE_LENGTHS_MM
        bounds[c.LEGS.index(leg)] = np.radians(ik_bench.ANIPOSE_BOUNDS_DEG[leg])
    return tmpl.replace(segment_lengths_mm=lengths, joint_bounds_rad=bounds.reshape(42, 2))


def bench_fitted_body() -> dict[str, Any]:
    out = {}
    df3d = ik_bench.load_df3d(DATA)
    reference = ik_bench.solver_errors(df3d, ik_bench.solve_seqik(df3d))
    errors, info = fitted_errors(load_recording(DATA / ik_bench.DF3D_100).keypoints,
                                 BodyConfig.default(), list(range(6)))
    out["df3d"] = {**error_table(errors, reference), **info}
    anipose, _, ref_fk = ik_bench.load_anipose(DATA)
    reference = ik_bench.fk_errors(anipose.keypoints, ref_fk)
    keypoints = load_recording(DATA / ik_bench.ANIPOSE_DIR / "pose3d_aligned.pkl").keypoints
    legs = [c.LEGS.index(leg) for leg in ik_bench.ANIPOSE_LEGS]
    errors, info = fitted_errors(keypoints, anipose_template(), legs)
    out["anipose"] = {**error_table(errors, reference), **info}
    return out


def bench_odometry() -> dict[str, Any]:
    out = {}
    for fps in (500.0, 100.0):
        gait = tripod_gait(fps=fps)
        claws = np.asarray(gait.fk_keypoints)[:, :, c.KEYPOINTS.index("Claw")]
        start = time.perf_counter()
        lin_vel, ang_vel = odometry(claws, fps)
        grounding = ground(claws, fps)
        seconds = time.perf_counter() - start
        speed = gait.metadata["speed_mm_s"]
        out[f"{fps:g}Hz"] = {
            "true_speed_mm_s": speed, "estimated_mean_speed_mm_s": float(lin_vel[:, 0].mean()),
            "speed_error_fraction": float(abs(lin_vel[:, 0].mean() - speed) / speed),
            "frame_speed_error_p95_fraction": float(np.percentile(
                np.abs(lin_vel[:, 0] - speed), 95) / speed),
            "max_abs_yaw_rate_rad_s": float(np.abs(ang_vel[:, 2]).max()),
            "grounded_height_mm": {"min": float(grounding.height_mm.min()),
                                   "max": float(grounding.height_mm.max()),
                                   "true": float(gait.root_pos[0, 2])},
            "seconds": seconds}
    return out


def bench_replay(workdir: Path) -> dict[str, Any]:
    start = time.perf_counter()
    report = run([DATA / ik_bench.DF3D_1000], workdir, IkOptions(body="data", fps=100.0))
    ik_seconds = time.perf_counter() - start
    motion = motion_io.load(report.files[0].output)
    claws = np.asarray(motion.fk_keypoints)[:, :, c.KEYPOINTS.index("Claw")]
    # Relative to each leg's tracked ThC; the body's ThC is what the simulator uses.
    claws = claws - np.asarray(motion.keypoints)[:, :, :1, :][:, :, 0] + motion.body.thc
    grounding = ground(claws, motion.fps, clearance_mm=0.03)
    lin_vel, ang_vel = odometry(claws, motion.fps, grounding.stance)
    start_motion = motion.replace(root_pos=grounding.root_pos_w, root_quat=grounding.quat_w,
                                  root_lin_vel=lin_vel, root_ang_vel=ang_vel)
    result = track_reference(start_motion, tethered=False)
    err = np.degrees(np.abs(result.tracking_error_rad))
    distance = float(np.linalg.norm(np.diff(result.root_pos[:, :2], axis=0), axis=1).sum())
    net = float(np.linalg.norm(result.root_pos[-1, :2] - result.root_pos[0, :2]))
    return {
        "ik_seconds_fitted_body": ik_seconds,
        "frames": motion.num_frames, "fps": motion.fps,
        "grounded_start_height_mm": float(grounding.height_mm[0]),
        "min_thorax_height_mm": float(result.root_pos[:, 2].min()),
        "upright_whole_clip": bool(result.root_pos[:, 2].min() > 0.3),
        "mean_joint_tracking_error_deg": float(np.nanmean(err)),
        "distance_walked_path_mm": distance, "net_displacement_mm": net,
        "odometry_mean_speed_mm_s": float(np.linalg.norm(lin_vel[:, :2], axis=1).mean()),
        "replay_wall_s": result.wall_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"root_recovery": bench_root_recovery()}
    print(json.dumps(results["root_recovery"], indent=1))
    results["odometry"] = bench_odometry()
    print(json.dumps(results["odometry"], indent=1))
    results["fitted_body"] = bench_fitted_body()
    for name, data in results["fitted_body"].items():
        print(name, json.dumps({k: data[k] for k in ("per_keypoint", "pooled", "targets",
                                                      "seconds", "root_motion_found")},
                               indent=1))
    if not args.skip_replay:
        with tempfile.TemporaryDirectory() as tmp:
            results["replay_df3d_1000"] = bench_replay(Path(tmp))
        print(json.dumps(results["replay_df3d_1000"], indent=1))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
