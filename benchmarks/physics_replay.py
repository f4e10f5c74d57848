"""The physics study's measurements: its clips, a whole-clip replay in one world, and random
starts in the env (`physics_study`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch
from physics_settings import CONTROL_DT_S, Setting

from flyenv.body import constants as c
from flyenv.body.kinematics import forward_kinematics
from flyenv.body.mjcf import ModelOptions, build_model
from flyenv.data import DATA_DIR
from flyenv.envs import FlyImitationVecEnv
from flyenv.envs.imitation import TERMINATIONS
from flyenv.envs.observations import CONTACT_THRESHOLD
from flyenv.motion.format import ReferenceMotion
from flyenv.motion.gait import tripod_gait
from flyenv.motion.grounding import clip_stance, ground, odometry, stance_claws
from flyenv.motion.io import load, save
from flyenv.motion.resample import resample
from flyenv.sim.contacts import contact_slide_speed

DATA = DATA_DIR  # the samples shipped in flyenv/data
ANIPOSE_SECONDS = 5.0
TURN_RATE_RAD_S = 1.6  # the turning gait's yaw rate: the df3d clip's odometry's mean turning
RANDOM_START_STEPS = 250  # 0.5 s of every random start


# References -------------------------------------------------------------------------------

def clips(cache: Path) -> dict[str, tuple[ReferenceMotion, Path | None]]:
    """The three clips (motion, .npz path or None for the embedded gait); IK cached in `cache`."""
    from flyenv.ik_preprocess import IkOptions, run

    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[ReferenceMotion, Path | None]] = {"gait": (tripod_gait(), None)}
    turning = tripod_gait(turn_rate_rad_s=TURN_RATE_RAD_S)
    save(turning, cache / "gait_turn.npz")
    out["gait_turn"] = (turning, cache / "gait_turn.npz")
    df3d = DATA / "df3d_210902_PR_Fly1/pose_result__210902_PR_Fly1_aligned.pkl"
    anipose = DATA / "anipose_220525_aJO_Fly001_001/pose3d_aligned.pkl"
    for name, path in (("df3d_walk", df3d), ("anipose_front", anipose)):
        report = run([path], cache / name, IkOptions(fps=100, align=True))
        (result,) = report.files
        if result.status == "failed":
            raise RuntimeError(f"IK of {path} failed: {result.message}")
        motion = load(result.output)
        target = result.output
        if name == "anipose_front":
            motion = _head(motion, ANIPOSE_SECONDS)
            target = cache / name / f"head_{ANIPOSE_SECONDS:g}s.npz"
            save(motion, target)
        out[name] = (motion, target)
    return out


def _head(motion: ReferenceMotion, seconds: float) -> ReferenceMotion:
    n = int(round(seconds * motion.fps))
    changes = {f.name: getattr(motion, f.name)[:n] for f in dataclasses.fields(motion)
               if isinstance(getattr(motion, f.name), np.ndarray)}
    return motion.replace(**changes)


# Whole clip, one world --------------------------------------------------------------------

def recording_truth(motion: ReferenceMotion) -> dict[str, float]:
    """What the clip itself says: forward speed and yaw rate (its root motion, else the stance
    odometry, `motion.grounding.odometry`, as the env's reference bank computes it) and the
    fraction of claw-frames in stance (`motion.grounding.stance_claws`)."""
    q = np.where(np.isfinite(motion.joint_angles), motion.joint_angles,
                 np.asarray(c.STANDING_POSE_RAD))
    present = motion.leg_mask > 0
    claws = forward_kinematics(motion.body, q)[:, :, c.KEYPOINTS.index("Claw")][:, present]
    grounding = ground(claws, motion.fps)
    stance = grounding.stance if grounding is not None else stance_claws(claws, motion.fps)
    lin, ang = odometry(claws, motion.fps, stance)
    out = {"odometry_speed_mm_s": float(lin[:, 0].mean()),
           "odometry_yaw_rate_rad_s": float(ang[:, 2].mean()),
           "odometry_turns": float(ang[:-1, 2].sum() / motion.fps / (2 * np.pi)),
           "stance_fraction": float(stance.mean())}
    if motion.has_root:
        speed, yaw_rate = _heading_speed_and_yaw_rate(motion.root_pos, motion.root_quat,
                                                      1.0 / motion.fps)
        out.update(speed_mm_s=speed, yaw_rate_rad_s=yaw_rate, source="root motion")
    else:
        out.update(speed_mm_s=out["odometry_speed_mm_s"],
                   yaw_rate_rad_s=out["odometry_yaw_rate_rad_s"], source="stance odometry")
    return out


def _heading_speed_and_yaw_rate(pos: np.ndarray, quat: np.ndarray, dt: float,
                                ) -> tuple[float, float]:
    # Mean forward speed along the thorax's heading [mm/s] and mean yaw rate [rad/s].
    w, x, y, z = np.asarray(quat, dtype=float).T
    yaw = np.unwrap(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    step = np.diff(np.asarray(pos)[:, :2], axis=0)
    mid = 0.5 * (yaw[1:] + yaw[:-1])
    forward = step[:, 0] * np.cos(mid) + step[:, 1] * np.sin(mid)
    duration = dt * len(step)
    return float(forward.sum() / duration), float((yaw[-1] - yaw[0]) / duration)


def _adhesion_targets(motion: ReferenceMotion, times_s: np.ndarray) -> np.ndarray:
    """(N, 6) adhesion commands at `times_s`: the clip's stance flags (`clip_stance`), the
    nearest frame's."""
    frames = np.clip(np.round(times_s * motion.fps).astype(int), 0, motion.num_frames - 1)
    return clip_stance(motion)[frames]


def _replay(motion: ReferenceMotion, setting: Setting) -> dict[str, float]:
    options = ModelOptions(timestep_s=setting.dt_s, **setting.options)
    model = build_model(motion.body, options=options)
    # A diverged replay must stop here, not be put back to the keyframe by mj_step's reset.
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_AUTORESET
    data = mujoco.MjData(model)
    ref = resample(motion, CONTROL_DT_S)
    targets = np.where(np.isfinite(ref.joint_angles), ref.joint_angles,
                       np.asarray(c.STANDING_POSE_RAD))
    ref_stance = _adhesion_targets(motion, np.arange(ref.num_frames) * CONTROL_DT_S)
    adhesion = ref_stance if options.adhesion else np.zeros((ref.num_frames, 0))
    present = np.isfinite(ref.joint_angles[0])
    mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    data.qpos[-c.NUM_DOFS:] = targets[0]
    data.qvel[-c.NUM_DOFS:] = np.nan_to_num(ref.joint_velocities[0])
    data.ctrl[:] = np.concatenate([targets[0], adhesion[0]])
    if model.na:
        data.act[:] = targets[0]
    mujoco.mj_forward(model, data)
    touch = np.array([model.sensor_adr[model.sensor(n).id] for n in c.TOUCH_SENSOR_NAMES])
    claws = np.array([model.site(f"{leg}_Claw").id for leg in c.LEGS])
    tarsi = [model.geom(f"{leg}_Tarsus").id for leg in c.LEGS]
    nstep, nsub = ref.num_frames - 1, setting.decimation
    q = np.empty((nstep, c.NUM_DOFS))
    root = np.empty((nstep + 1, 3))
    quat = np.empty((nstep + 1, 4))
    claw = np.empty((nstep + 1, c.NUM_LEGS, 2))
    slide = np.full((nstep + 1, c.NUM_LEGS), np.nan)
    force_mean = np.zeros((nstep, c.NUM_LEGS))
    force_max = np.zeros((nstep, c.NUM_LEGS))
    root[0], quat[0], claw[0] = data.qpos[:3], data.qpos[3:7], data.site_xpos[claws, :2]
    contact = np.zeros((nstep + 1, c.NUM_LEGS), dtype=bool)
    contact[0] = data.sensordata[touch] > CONTACT_THRESHOLD
    diverged = False
    start = time.perf_counter()
    for k in range(nstep):
        data.ctrl[:] = np.concatenate([targets[k + 1], adhesion[k + 1]])
        for _ in range(nsub):
            mujoco.mj_step(model, data)
            f = data.sensordata[touch]
            force_mean[k] += f
            np.maximum(force_max[k], f, out=force_max[k])
        if not np.isfinite(data.qpos).all() or data.warning[
                mujoco.mjtWarning.mjWARN_BADQACC].number:
            diverged = True
            break
        # After mj_step the derived fields describe the state before the last substep; a
        # forward pass puts positions and sensors at the current state, as the env reads them.
        mujoco.mj_forward(model, data)
        q[k] = data.qpos[-c.NUM_DOFS:]
        root[k + 1], quat[k + 1] = data.qpos[:3], data.qpos[3:7]
        claw[k + 1] = data.site_xpos[claws, :2]
        contact[k + 1] = data.sensordata[touch] > CONTACT_THRESHOLD
        slide[k + 1] = contact_slide_speed(model, data, tarsi)
    wall = time.perf_counter() - start
    if diverged:
        return {"diverged": True}
    force_mean /= nsub
    err = np.abs(q - targets[1:])[:, present]
    stance = contact[1:] & contact[:-1]
    slip = np.linalg.norm(np.diff(claw, axis=0), axis=2) / CONTROL_DT_S
    duration = nstep * CONTROL_DT_S
    distance = root[-1, 0] - root[0, 0]
    heading_speed, yaw_rate = _heading_speed_and_yaw_rate(root, quat, CONTROL_DT_S)
    touching = contact[1:] & np.isfinite(slide[1:])
    at_contact = slide[1:][touching]
    # Stance slide: where the clip's claw is in stance and the simulated tarsus touches; swing
    # drag: where the clip's claw swings but the simulated tarsus touches the ground.
    in_stance = ref_stance[1:] > 0.5
    stance_slide = slide[1:][touching & in_stance]
    drag = touching & ~in_stance
    return {"diverged": False, "duration_s": duration,
            "tracking_error_deg": float(np.degrees(err.mean())),
            "thorax_height_mm": float(root[1:, 2].mean()),
            "distance_mm": float(distance), "forward_speed_mm_s": float(distance / duration),
            "path_mm": float(np.linalg.norm(np.diff(root[:, :2], axis=0), axis=1).sum()),
            "heading_speed_mm_s": heading_speed, "yaw_rate_rad_s": yaw_rate,
            "claw_slip_mm_s": float(slip[stance].mean()) if stance.any() else 0.0,
            "claw_slip_median_mm_s": float(np.median(slip[stance])) if stance.any() else 0.0,
            "contact_slide_mm_s": float(at_contact.mean()) if at_contact.size else 0.0,
            "contact_slide_median_mm_s": (float(np.median(at_contact)) if at_contact.size
                                          else 0.0),
            "stance_contact_slide_mm_s": (float(stance_slide.mean()) if stance_slide.size
                                          else 0.0),
            "stance_contact_slide_median_mm_s": (float(np.median(stance_slide))
                                                 if stance_slide.size else 0.0),
            "swing_drag_fraction": float(drag.sum() / max((~in_stance).sum(), 1)),
            "swing_drag_slide_mm_s": float(slide[1:][drag].mean()) if drag.any() else 0.0,
            "stance_slide_mm": _stance_slide(claw, contact),
            "stance_fraction": float(contact[1:].mean()),
            "peak_force_2ms_uN": float(force_mean.max()),
            "peak_force_step_uN": float(force_max.max()),
            "mean_total_force_uN": float(force_mean.sum(axis=1).mean()),
            "one_world_realtime_factor": duration / wall,
            "joint_angles_rad": q}  # kept for the comparison with the reference, then dropped


def _stance_slide(claw: np.ndarray, contact: np.ndarray) -> float:
    # Mean horizontal claw displacement from touchdown to liftoff over the complete stance bouts
    # (at least 5 samples, 10 ms) of every leg [mm]: what the foot slid, jitter cancelled.
    slides = []
    for legid in range(contact.shape[1]):
        flags = np.concatenate([[False], contact[:, legid], [False]]).astype(np.int8)
        starts, ends = np.flatnonzero(np.diff(flags) == 1), np.flatnonzero(np.diff(flags) == -1)
        for a, b in zip(starts, ends, strict=True):
            if b - a >= 5 and a > 0 and b < len(contact):
                slides.append(np.linalg.norm(claw[b - 1, legid] - claw[a, legid]))
    return float(np.mean(slides)) if slides else 0.0


# Random starts in the env -----------------------------------------------------------------

def _random_starts(path: Path | None, setting: Setting, num_envs: int) -> dict[str, Any]:
    env = FlyImitationVecEnv(num_envs=num_envs, engine="mujoco", device="cpu",
                             reference=None if path is None else str(path),
                             physics_dt_s=setting.dt_s, control_decimation=setting.decimation,
                             model_options=setting.options, autoreset_mode="disabled")
    try:
        env.reset(seed=0)
        ever = {k: torch.zeros(num_envs, dtype=torch.bool) for k in TERMINATIONS}
        start = time.perf_counter()
        for _ in range(RANDOM_START_STEPS):
            _, _, _, _, info = env.step(env.replay_action())
            for k in TERMINATIONS:
                ever[k] |= info[f"termination/{k}"]
        wall = time.perf_counter() - start
    finally:
        env.close()
    any_end = torch.stack(list(ever.values())).any(dim=0)
    return {"terminated": int(any_end.sum()), "nonfinite": int(ever["nonfinite"].sum()),
            "by_cause": {k: int(v.sum()) for k, v in ever.items()},
            "env_realtime_factor": num_envs * RANDOM_START_STEPS * CONTROL_DT_S / wall}
