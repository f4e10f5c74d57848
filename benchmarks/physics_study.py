"""Physics settings by measurement: which step and solver keep a walking fly's physics.

For the free fly on three clips (the embedded tripod gait; the DeepFly3D walk, 1000 frames at
100 Hz, replayed through the IK with `--align`; the first 5 s of the Anipose recording, front
legs only), every setting in `SETTINGS` (Euler steps 5e-5 to 1e-3 s; implicitfast, elliptic
cones, fewer solver iterations, a looser tolerance and 10x joint armature at the coarse steps) is
compared with a fine reference step (2.5e-5 s, today's model). The policy rate stays 500 Hz: a
step `dt` runs `2 ms / dt` substeps per control step, the targets being the clip's next frame
(zero residuals), as the env does.

Per clip and setting:
- whole clip, one world, C MuJoCo (`_replay`): mean joint tracking error [deg], mean thorax
  height [mm], distance walked (net forward thorax displacement) [mm] and mean forward speed
  [mm/s], claw slip in stance (horizontal claw speed while its tarsus touch sensor reads contact,
  at consecutive 500 Hz samples; mean, and median reported) [mm/s], the claw's net slide from
  touchdown to liftoff per stance bout [mm], stance fraction (tarsus contact, all legs), peak
  contact force (largest 2 ms mean of one tarsus's touch force) [µN] and the largest single-step
  value (reported, not judged);
- random starts (`_random_starts`): 64 flies in `FlyImitationVecEnv` (mujoco engine, seeded reset,
  autoreset disabled) for 0.5 s: worlds terminated (any cause, and by cause), non-finite worlds,
  and the env's simulated seconds per wall second on this machine (noisy: a shared 2-core box).

Each metric has a tolerance against the fine reference (`TOLERANCES`, their reasons in
`TOLERANCE_REASONS`), widened to the metric's noise floor: the largest distance from the
reference that the steps no coarser than the old default (5e-5 and 1e-4 s) already show, since
a difference that a finer step also makes is not the coarse step's doing. A setting passes when
every metric on every clip is within it. The JSON (`benchmarks/results/physics_study.json`)
holds every number, the tolerances and the verdicts; the PNG the metrics against the step; the
.md the table. IK references are cached in a temporary folder (never in the repository).

Issue 22 added fidelity against the recordings: `--screen` replays the walking clips (the
tripod gait straight and turning at 1.6 rad/s, known root motion; the df3d walk, its stance
odometry) and reports forward speed and yaw rate against the clip's own (`recording_truth`),
slide at the contact in the clip's stance (`flyenv.sim.contacts.contact_slide_speed`), swing
drag and stance fraction, judged by `FIDELITY`; `--terminations` runs the random starts alone;
`--options '{"adhesion_gain_uN": 20, ...}'` puts a contact model under every setting, the fine
reference included (last round's question asked again with it). Every setting's options are
relative to the model before issue 22's feet (`SLIDING_FEET`: no adhesion, no noslip), so the
rounds keep their meaning now that adhesion and noslip are the defaults; "defaults" is today's
model.

Usage (from the repository root; about 30 minutes on the 2-core box, 40 when it is shared):

    python benchmarks/physics_study.py [--settings NAME ...] [--starts 64] [--out DIR]
    python benchmarks/physics_study.py --starts-from OLD.json  # redo the replays only
    python benchmarks/physics_study.py --from-json OLD.json    # judge and plot again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch

from flyenv.apps.bench import environment_info
from flyenv.body import constants as c
from flyenv.body.kinematics import forward_kinematics
from flyenv.body.mjcf import SLIDING_FEET, ModelOptions, build_model
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
CONTROL_DT_S = 2e-3  # the policy rate stays 500 Hz
FINE_DT_S = 2.5e-5
ANIPOSE_SECONDS = 5.0
TURN_RATE_RAD_S = 1.6  # the turning gait's yaw rate: the df3d clip's odometry's mean turning
RANDOM_START_STEPS = 250  # 0.5 s of every random start


@dataclasses.dataclass(frozen=True)
class Setting:
    """A physics step and the `ModelOptions` fields that differ from the defaults (`main` puts
    `SLIDING_FEET` under them: the model before issue 22's feet)."""

    name: str
    dt_s: float
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def decimation(self) -> int:
        """Substeps per 2 ms control step."""
        return round(CONTROL_DT_S / self.dt_s)


def _settings() -> list[Setting]:
    out = [Setting(f"euler dt {dt:g}", dt) for dt in (FINE_DT_S, 5e-5, 1e-4, 2e-4, 2.5e-4,
                                                       4e-4, 5e-4, 1e-3)]
    for dt in (4e-4, 5e-4, 1e-3):
        out += [Setting(f"implicitfast dt {dt:g}", dt, {"integrator": "implicitfast"}),
                Setting(f"elliptic dt {dt:g}", dt, {"cone": "elliptic"}),
                Setting(f"elliptic implicitfast dt {dt:g}", dt,
                        {"cone": "elliptic", "integrator": "implicitfast"})]
    out += [Setting("iter 10/5 dt 0.0005", 5e-4,
                    {"solver_iterations": 10, "linesearch_iterations": 5}),
            Setting("tol 1e-6 dt 0.0005", 5e-4, {"solver_tolerance": 1e-6}),
            *[Setting(f"armature 1e-4 dt {dt:g}", dt, {"joint_armature": 1e-4})
              for dt in (2.5e-4, 4e-4, 5e-4, 1e-3)],
            Setting("implicitfast armature 1e-4 dt 0.001", 1e-3,
                    {"integrator": "implicitfast", "joint_armature": 1e-4})]
    return out


def _contact_settings() -> list[Setting]:
    """Issue 22: what holds the feet (adhesion, noslip, elliptic cones with impratio, friction,
    a softer floor with the 2x-step clamp in mind, the actuator filter), at today's step, then
    the best of them at coarser steps."""
    holds = {"adhesion 20": {"adhesion_gain_uN": 20.0},
             "adhesion 40": {"adhesion_gain_uN": 40.0},
             "noslip 3": {"noslip_iterations": 3},
             "elliptic impratio 10": {"cone": "elliptic", "impratio": 10.0},
             "impratio 10": {"impratio": 10.0},
             "friction 2": {"friction": 2.0},
             "solref 1e-3": {"contact_solref": (1e-3, 1.0)},
             "filter 10ms": {"actuator_timeconst_s": 0.01},
             "adhesion 20 elliptic impratio 10": {"adhesion_gain_uN": 20.0, "cone": "elliptic",
                                                  "impratio": 10.0},
             "adhesion 20 elliptic impratio 10 noslip 3": {
                 "adhesion_gain_uN": 20.0, "cone": "elliptic", "impratio": 10.0,
                 "noslip_iterations": 3},
             "adhesion 40 friction 2": {"adhesion_gain_uN": 40.0, "friction": 2.0},
             # Round 2: the fly sags under kp 50 and drags its swing claws; stiffer joints.
             "kp 50": {"actuator_kp": 50.0},  # the default before issue 22
             "kp 100": {"actuator_kp": 100.0},
             "kp 150": {"actuator_kp": 150.0},
             "kp 150 adhesion 20": {"actuator_kp": 150.0, "adhesion_gain_uN": 20.0},
             "kp 150 adhesion 40": {"actuator_kp": 150.0, "adhesion_gain_uN": 40.0},
             "kp 100 adhesion 20": {"actuator_kp": 100.0, "adhesion_gain_uN": 20.0},
             "kp 150 adhesion 20 noslip 3": {"actuator_kp": 150.0, "adhesion_gain_uN": 20.0,
                                             "noslip_iterations": 3},
             "kp 150 adhesion 20 impratio 10": {"actuator_kp": 150.0, "adhesion_gain_uN": 20.0,
                                                "impratio": 10.0},
             "kp 150 impratio 10": {"actuator_kp": 150.0, "impratio": 10.0},
             "kp 150 noslip 3": {"actuator_kp": 150.0, "noslip_iterations": 3},
             # Today's defaults (adhesion and noslip on since issue 22).
             "defaults": {name: getattr(ModelOptions(), name) for name in SLIDING_FEET}}
    out = []
    for name, options in holds.items():
        for dt in (1e-4, 2e-4, 4e-4):
            out.append(Setting(f"{name} dt {dt:g}", dt, options))
    return out


SETTINGS = _settings() + _contact_settings()
REFERENCE = SETTINGS[0].name
TODAY = "euler dt 0.0001"  # FlyGym's step, the default before this study (kp 150 since issue 22)
# Steps no coarser than the old default: how far they already stand from the fine reference is
# the metric's noise floor (chaotic contacts), below which no difference is the step's doing.
NOISE_FLOOR = ("euler dt 5e-05", TODAY)

# metric -> (kind, value): "abs_more" (at most value above the reference), "rel" (within value
# of it, relative), "rel_or_abs" ((relative, absolute floor)), "abs" (within value), "count_more".
TOLERANCES: dict[str, tuple[str, Any]] = {
    "tracking_error_deg": ("abs_more", 0.2),
    "thorax_height_mm": ("rel", 0.05),
    "distance_mm": ("rel_or_abs", (0.05, 0.1)),
    "forward_speed_mm_s": ("rel_or_abs", (0.05, 0.1 / 2.0)),
    "claw_slip_mm_s": ("rel_or_abs", (0.25, 0.5)),
    "stance_slide_mm": ("rel_or_abs", (0.25, 0.01)),
    "stance_fraction": ("abs", 0.03),
    "peak_force_2ms_uN": ("rel", 0.2),
    "terminated": ("count_more", 2),
    "nonfinite": ("count_more", 0),
}
TOLERANCE_REASONS = {
    "tracking_error_deg": "0.2 deg more than the fine step: a quarter of the error itself, "
                          "far below the IK fit error",
    "thorax_height_mm": "5% (~0.04 mm, about a tarsus diameter): softer contacts must not sink "
                        "the fly",
    "distance_mm": "5% of the distance walked over the clip (0.1 mm floor for clips that barely "
                   "move): the issue's walking criterion",
    "forward_speed_mm_s": "distance / duration: same 5% (floor 0.1 mm over the clip)",
    "claw_slip_mm_s": "25% (floor 0.5 mm/s): stick-slip is noisy, but doubled slip would change "
                      "how the feet push",
    "stance_slide_mm": "25% (floor 0.01 mm) of the claw's net slide from touchdown to liftoff "
                       "per stance bout: what the foot loses, contact jitter cancelled",
    "stance_fraction": "0.03 absolute: the contact flags are observations",
    "peak_force_2ms_uN": "20% of the largest 2 ms mean tarsus force (single-step peaks are "
                         "impulses that scale with the step and are reported, not judged)",
    "terminated": "at most 2 more of the 64 random starts than the fine step (chaotic starts)",
    "nonfinite": "none more than the fine step",
}


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


# Verdicts ---------------------------------------------------------------------------------

def allowed(metric: str, reference: float) -> float:
    """How far from the fine reference's value the metric may be (above it for one-sided ones)."""
    kind, tol = TOLERANCES[metric]
    if kind in ("abs_more", "count_more", "abs"):
        return tol
    if kind == "rel":
        return tol * abs(reference)
    rel, floor = tol
    return max(rel * abs(reference), floor)


def _distance(metric: str, value: float, reference: float) -> float:
    one_sided = TOLERANCES[metric][0] in ("abs_more", "count_more")
    return (value - reference) if one_sided else abs(value - reference)


def within(metric: str, value: float, reference: float, floor: tuple[float, ...] = ()) -> bool:
    """Whether `value` is within the metric's tolerance of the fine reference's.

    `floor`: the metric at the noise-floor steps (`NOISE_FLOOR`); the tolerance widens to the
    largest of their own distances from the reference.
    """
    limit = max([allowed(metric, reference)]
                + [_distance(metric, v, reference) for v in floor])
    return _distance(metric, value, reference) <= limit


def judge(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per setting: pass/fail, the failing (clip, metric) pairs and the mean env throughput."""
    verdicts = {}
    for name, per_clip in results.items():
        failures = []
        for clip, row in per_clip.items():
            ref = results[REFERENCE][clip]
            if row["replay"].get("diverged"):
                failures.append(f"{clip}: diverged")
                continue
            for metric in TOLERANCES:
                part = "starts" if metric in ("terminated", "nonfinite") else "replay"
                floor = tuple(results[n][clip][part][metric] for n in NOISE_FLOOR
                              if n in results and metric in results[n][clip][part])
                if not within(metric, row[part][metric], ref[part][metric], floor):
                    failures.append(f"{clip}: {metric}")
        rtf = [row["starts"]["env_realtime_factor"] for row in per_clip.values()]
        verdicts[name] = {"passes": not failures, "failures": failures,
                          "env_realtime_factor_64": float(np.mean(rtf))}
    return verdicts


def run_study(settings: list[Setting], num_envs: int, cache: Path,
              starts_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every setting on every clip; the fine reference is always included.

    `starts_from`: the results of an earlier run whose random starts are kept (only the
    whole-clip replays are run again).
    """
    if REFERENCE not in [s.name for s in settings]:
        settings = [SETTINGS[0], *settings]
    motions = clips(cache)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    fine_q: dict[str, np.ndarray] = {}
    for setting in settings:
        results[setting.name] = {}
        for clip, (motion, path) in motions.items():
            replay = _replay(motion, setting)
            q = replay.pop("joint_angles_rad", None)
            if setting.name == REFERENCE:
                fine_q[clip] = q
            if q is not None:
                replay["vs_fine_joint_deg"] = float(np.degrees(np.abs(q - fine_q[clip]).mean()))
            if starts_from is not None and setting.name in starts_from:
                starts = starts_from[setting.name][clip]["starts"]
            else:
                starts = _random_starts(path, setting, num_envs)
            results[setting.name][clip] = {"replay": replay, "starts": starts}
            _log(setting, clip, replay, starts)
    return {"settings": [dataclasses.asdict(s) | {"decimation": s.decimation} for s in settings],
            "results": results}


def _log(setting: Setting, clip: str, replay: dict[str, Any], starts: dict[str, Any]) -> None:
    keys = ("tracking_error_deg", "thorax_height_mm", "distance_mm", "claw_slip_mm_s",
            "stance_fraction", "peak_force_2ms_uN")
    shown = " ".join(f"{k.split('_')[0]}={replay.get(k, float('nan')):.3g}" for k in keys)
    print(f"{setting.name:<36} {clip:<14} {shown} term={starts['terminated']} "
          f"nan={starts['nonfinite']} rtf={starts['env_realtime_factor']:.2f}", flush=True)


# Fidelity against the recordings (issue 22) -----------------------------------------------

# The targets: forward speed within 10% of the clip's own (root motion or stance odometry), yaw
# rate within 20% (an absolute floor for clips that barely turn), mean slide at the contact in
# stance (the clip's stance, the simulated tarsus touching) below 0.5 mm/s.
FIDELITY = {"speed": 0.10, "yaw_rate": 0.20, "yaw_rate_floor_rad_s": 0.1,
            "contact_slide_mm_s": 0.5}
WALKING_CLIPS = ("gait", "gait_turn", "df3d_walk")


def fidelity(replay: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    """The replay against what the clip says (`recording_truth`): ratios and pass/fail."""
    if replay.get("diverged"):
        return {"passes": False, "failures": ["diverged"]}
    speed_ratio = replay["heading_speed_mm_s"] / truth["speed_mm_s"]
    yaw_miss = abs(replay["yaw_rate_rad_s"] - truth["yaw_rate_rad_s"])
    yaw_allowed = max(FIDELITY["yaw_rate"] * abs(truth["yaw_rate_rad_s"]),
                      FIDELITY["yaw_rate_floor_rad_s"])
    failures = []
    if abs(speed_ratio - 1) > FIDELITY["speed"]:
        failures.append("speed")
    if yaw_miss > yaw_allowed:
        failures.append("yaw_rate")
    if replay["stance_contact_slide_mm_s"] > FIDELITY["contact_slide_mm_s"]:
        failures.append("stance_contact_slide")
    return {"speed_ratio": speed_ratio,
            "yaw_rate_ratio": (replay["yaw_rate_rad_s"] / truth["yaw_rate_rad_s"]
                               if truth["yaw_rate_rad_s"] else None),
            "stance_fraction_minus_recording": (replay["stance_fraction"]
                                                - truth["stance_fraction"]),
            "passes": not failures, "failures": failures}


def screen(settings: list[Setting], cache: Path, out: Path,
           clip_names: tuple[str, ...] = WALKING_CLIPS) -> dict[str, Any]:
    """Whole-clip replays only, against the recordings; JSON rewritten after every replay."""
    motions = {k: v for k, v in clips(cache).items() if k in clip_names}
    study: dict[str, Any] = {
        "truth": {clip: recording_truth(m) for clip, (m, _) in motions.items()},
        "fidelity_targets": FIDELITY, "environment": environment_info("cpu"),
        "settings": [dataclasses.asdict(s) | {"decimation": s.decimation} for s in settings],
        "results": {}}
    for setting in settings:
        study["results"][setting.name] = {}
        for clip, (motion, _) in motions.items():
            replay = _replay(motion, setting)
            replay.pop("joint_angles_rad", None)
            row = {"replay": replay, "fidelity": fidelity(replay, study["truth"][clip])}
            study["results"][setting.name][clip] = row
            _log_fidelity(setting, clip, row)
            out.write_text(json.dumps(study, indent=1, default=_json) + "\n")
    return study


def terminations(settings: list[Setting], cache: Path, out: Path, num_envs: int,
                 clip_names: tuple[str, ...]) -> dict[str, Any]:
    """Random starts only (`_random_starts`) per setting and clip; JSON rewritten as it goes."""
    motions = {k: v for k, v in clips(cache).items() if k in clip_names}
    study: dict[str, Any] = {"environment": environment_info("cpu"), "num_starts": num_envs,
                             "random_start_steps": RANDOM_START_STEPS, "results": {}}
    for setting in settings:
        study["results"][setting.name] = {}
        for clip, (_, path) in motions.items():
            starts = _random_starts(path, setting, num_envs)
            study["results"][setting.name][clip] = starts
            print(f"{setting.name:<44} {clip:<14} terminated {starts['terminated']} "
                  f"{starts['by_cause']} rtf {starts['env_realtime_factor']:.2f}", flush=True)
            out.write_text(json.dumps(study, indent=1, default=_json) + "\n")
    return study


def _log_fidelity(setting: Setting, clip: str, row: dict[str, Any]) -> None:
    r, f = row["replay"], row["fidelity"]
    if r.get("diverged"):
        print(f"{setting.name:<44} {clip:<10} diverged", flush=True)
        return
    print(f"{setting.name:<44} {clip:<10} speed {r['heading_speed_mm_s']:6.2f} "
          f"({f['speed_ratio']:.2f}x) yaw {r['yaw_rate_rad_s']:+.2f} rad/s stance slide "
          f"{r['stance_contact_slide_mm_s']:.2f} (med {r['stance_contact_slide_median_mm_s']:.2f})"
          f" drag {r['swing_drag_fraction']:.2f} @ {r['swing_drag_slide_mm_s']:.1f} claw slip "
          f"{r['claw_slip_mm_s']:.2f} stance {r['stance_fraction']:.2f} track "
          f"{r['tracking_error_deg']:.2f} rt {r['one_world_realtime_factor']:.2f} "
          f"{'PASS' if f['passes'] else f['failures']}", flush=True)


# Output -----------------------------------------------------------------------------------

def plot(study: dict[str, Any], path: Path) -> Path:
    """Each judged metric against the step (Euler lines per clip, other settings as markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [*TOLERANCES, "env_realtime_factor"]
    fig, axes = plt.subplots(2, 6, figsize=(24, 7.5))
    settings = {s["name"]: s for s in study["settings"]}
    results = study["results"]
    clip_names = list(next(iter(results.values())))
    colors = {clip: f"C{i}" for i, clip in enumerate(clip_names)}
    markers = {"implicitfast": "s", "elliptic implicitfast": "*", "elliptic": "^", "iter": "v",
               "tol": "D", "armature": "P"}
    for ax, metric in zip(axes.flat, metrics, strict=False):
        part = "replay" if metric not in ("terminated", "nonfinite", "env_realtime_factor") \
            else "starts"
        for clip in clip_names:
            euler = sorted((s["dt_s"], results[n][clip]) for n, s in settings.items()
                           if n.startswith("euler"))
            xs = [dt for dt, r in euler if metric in r[part]]
            ys = [r[part][metric] for _, r in euler if metric in r[part]]
            ax.plot(xs, ys, "-o", color=colors[clip], label=f"{clip} (Euler)")
            for name, s in settings.items():
                key = next((k for k in markers if name.startswith(k)), None)
                value = results[name][clip][part].get(metric)
                if key and value is not None:
                    ax.plot(s["dt_s"] * (1.06 if "armature" in name else 1.0), value,
                            markers[key], color=colors[clip], alpha=0.7, ms=6)
            if metric in TOLERANCES:
                ref = results[REFERENCE][clip][part][metric]
                ax.axhline(ref, color=colors[clip], lw=0.6, ls=":")
        ax.set(xscale="log", title=metric, xlabel="physics step [s]")
        ax.grid(True, alpha=0.3)
    handles = [plt.Line2D([], [], marker=m, ls="", color="k", label=k) for k, m in markers.items()]
    axes.flat[0].legend(handles=axes.flat[0].get_legend_handles_labels()[0] + handles,
                        fontsize="x-small")
    fig.suptitle(f"Free fly, 500 Hz control, against dt {FINE_DT_S:g} s (dotted)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(study: dict[str, Any]) -> str:
    """Markdown: per setting and clip, the judged metrics (fine reference first)."""
    head = ("| setting | clip | track ° | height mm | dist mm | slip mm/s | slide mm | stance | "
            "peak µN | term | NaN | env ×RT (64) | pass |")
    lines = [head, "|" + "---|" * 13]
    for name, per_clip in study["results"].items():
        verdict = study["verdicts"][name]
        for clip, row in per_clip.items():
            r, s = row["replay"], row["starts"]
            if r.get("diverged"):
                lines.append(f"| {name} | {clip} | diverged ||||||| {s['terminated']} | "
                             f"{s['nonfinite']} | {s['env_realtime_factor']:.2f} | no |")
                continue
            bad = {f.split(": ")[1] for f in verdict["failures"] if f.startswith(f"{clip}: ")}

            def cell(metric: str, fmt: str, r: dict = r, s: dict = s, bad: set = bad) -> str:
                value = (s if metric in ("terminated", "nonfinite") else r)[metric]
                return f"{value:{fmt}}" + (" ✗" if metric in bad else "")

            lines.append(
                f"| {name} | {clip} | {cell('tracking_error_deg', '.2f')} | "
                f"{cell('thorax_height_mm', '.3f')} | {cell('distance_mm', '.2f')} | "
                f"{cell('claw_slip_mm_s', '.2f')} | {cell('stance_slide_mm', '.3f')} | "
                f"{cell('stance_fraction', '.2f')} | "
                f"{cell('peak_force_2ms_uN', '.1f')} | {cell('terminated', 'd')} | "
                f"{cell('nonfinite', 'd')} | {s['env_realtime_factor']:.2f} | "
                f"{'yes' if verdict['passes'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the study and writes physics_study.json, .png and .md under --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", help="setting names (default: all)")
    parser.add_argument("--starts", type=int, default=64, help="random starts per clip")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--from-json", type=Path,
                        help="judge, tabulate and plot the results of an earlier run again")
    parser.add_argument("--starts-from", type=Path,
                        help="keep the random starts of an earlier run's JSON, redo the replays")
    parser.add_argument("--screen", type=Path,
                        help="replays only, against the recordings (issue 22), JSON to this path")
    parser.add_argument("--options", type=json.loads, default={},
                        help="ModelOptions fields (JSON) under every setting, the reference too")
    parser.add_argument("--terminations", type=Path,
                        help="random starts only (--starts per clip), JSON to this path")
    parser.add_argument("--clips", nargs="+", default=list(WALKING_CLIPS),
                        help="clips of --screen and --terminations")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "flyenv-physics-study")
    args = parser.parse_args(argv)
    chosen = [s for s in SETTINGS if args.settings is None or s.name in args.settings]
    if args.options and not (args.screen or args.terminations):
        chosen = [SETTINGS[0]] + [s for s in chosen if s.name != REFERENCE]
    # The model before issue 22's feet, then --options, under every setting, the fine
    # reference included.
    chosen = [dataclasses.replace(s, options={**SLIDING_FEET, **args.options, **s.options})
              for s in chosen]
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.screen:
        screen(chosen, args.cache, args.screen, tuple(args.clips))
        return 0
    if args.terminations:
        terminations(chosen, args.cache, args.terminations, args.starts, tuple(args.clips))
        return 0
    if args.from_json:
        study = json.loads(args.from_json.read_text())
        environment, start = study["environment"], start - study["wall_s"]
    else:
        environment = environment_info("cpu")
        previous = (json.loads(args.starts_from.read_text())["results"] if args.starts_from
                    else None)
        study = run_study(chosen, args.starts, args.cache, previous)
    study["verdicts"] = judge(study["results"])
    passing = {n: v for n, v in study["verdicts"].items() if v["passes"]}
    fastest = max(passing, key=lambda n: passing[n]["env_realtime_factor_64"], default=None)
    study.update(reference=REFERENCE, old_default=TODAY, noise_floor=NOISE_FLOOR,
                 control_dt_s=CONTROL_DT_S,
                 random_start_steps=RANDOM_START_STEPS, num_starts=args.starts,
                 tolerances={k: {"kind": v[0], "value": v[1], "why": TOLERANCE_REASONS[k]}
                             for k, v in TOLERANCES.items()},
                 fastest_passing=fastest, environment=environment,
                 wall_s=time.perf_counter() - start,
                 date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "physics_study.json").write_text(json.dumps(study, indent=1, default=_json) + "\n")
    plot(study, args.out / "physics_study.png")
    text = table(study)
    (args.out / "physics_study.md").write_text(text + "\n")
    print(text)
    print(f"fastest setting within every tolerance: {fastest}")
    return 0


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
