"""Which is wrong on the df3d walk, the free replay's speed or the recording's odometry?

Issue 22: replayed free (default IK, template body), the DeepFly3D walk (a tethered fly on a
ball, 1000 frames at 100 Hz) walked ~8 mm/s while the recording's own stance odometry
(`flyenv.motion.grounding.odometry`) said 5.2 mm/s, and the two turned opposite ways. Neither
has a ground truth (the ball's rotation was not recorded), but the simulation is a fly with
known motion: its claws, seen in its own thorax frame as a recording would see them, move with
its known root motion on a flat floor, and with the default feet (adhesion, noslip) they barely
slide. So this:

1. replays the clip free (C MuJoCo, 1e-4 s, 500 Hz control, the default model and the one
   before issue 22, `SLIDING_FEET`), recording the thorax pose, the claws and the tarsus
   contacts (touch sensors);
2. runs the odometry on the simulated claws (at 500 Hz and at the recording's 100 Hz, with
   0.03 mm of keypoint noise too), with its own stance rule and with the simulation's contacts
   as stance, against the simulation's own speed and yaw rate (the test of the odometry on a
   realistic gait with known truth);
3. runs it on the recording's claws, with its own stance and with the simulation's contacts as
   stance, and compares it with the free replay: whole clip and 2 s windows (the issue's
   targets: speed within 10%, yaw rate within 20%);
4. reports how far the stance rule and the simulated contacts agree per leg, and whether the
   recording's stance claws lie on a plane or a ball (a sphere fitted to them).

`--label` keys the run in the JSON, so an older checkout on PYTHONPATH can be measured too (the
stance rule before issue 22's fix: `--label before-fix` with commit 2da4054).

Usage (from the repository root; ~2 minutes on the 2-core box):

    python benchmarks/df3d_odometry.py [--label current] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from flyenv.apps.machine import environment_info
from flyenv.body import constants as c
from flyenv.body.kinematics import forward_kinematics
from flyenv.body.mjcf import SLIDING_FEET, ModelOptions, build_model
from flyenv.envs.observations import CONTACT_THRESHOLD
from flyenv.motion.format import ReferenceMotion
from flyenv.motion.grounding import clip_stance, ground, odometry
from flyenv.motion.resample import resample

CONTROL_DT_S = 2e-3
WINDOW_S = 2.0
NOISE_MM = 0.03
TARGETS = {"speed_rel": 0.10, "yaw_rate_rel": 0.20}
_CLAW = c.KEYPOINTS.index("Claw")


def df3d_walk(cache: Path) -> ReferenceMotion:
    """The df3d walk through the IK (`--align`, 100 Hz, template body), cached in `cache`."""
    from physics_replay import clips

    return clips(cache)["df3d_walk"][0]


def _stance_targets(motion: ReferenceMotion, num: int) -> np.ndarray:
    """(num, 6) the clip's stance flags at the control steps (nearest frame), as the env's
    (`clip_stance`)."""
    frames = np.clip(np.round(np.arange(num) * CONTROL_DT_S * motion.fps).astype(int), 0,
                     motion.num_frames - 1)
    return clip_stance(motion)[frames]


def replay(motion: ReferenceMotion, options: ModelOptions) -> dict[str, np.ndarray]:
    """Free replay at 500 Hz: root (N, 3), quat (N, 4), claws in the world (N, 6, 3), tarsus
    contact (N, 6) bool, per control step (the first: the start)."""
    model = build_model(motion.body, options=options)
    data = mujoco.MjData(model)
    ref = resample(motion, CONTROL_DT_S)
    targets = np.where(np.isfinite(ref.joint_angles), ref.joint_angles,
                       np.asarray(c.STANDING_POSE_RAD))
    if options.adhesion:
        targets = np.concatenate([targets, _stance_targets(motion, ref.num_frames)], axis=1)
    mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    data.qpos[-c.NUM_DOFS:] = targets[0, :c.NUM_DOFS]
    data.qvel[-c.NUM_DOFS:] = np.nan_to_num(ref.joint_velocities[0])
    data.ctrl[:] = targets[0]
    mujoco.mj_forward(model, data)
    touch = np.array([model.sensor_adr[model.sensor(n).id] for n in c.TOUCH_SENSOR_NAMES])
    sites = np.array([model.site(f"{leg}_Claw").id for leg in c.LEGS])
    n, substeps = ref.num_frames, round(CONTROL_DT_S / options.timestep_s)
    out = {"root": np.empty((n, 3)), "quat": np.empty((n, 4)),
           "claws": np.empty((n, c.NUM_LEGS, 3)), "contact": np.zeros((n, c.NUM_LEGS), bool)}

    def record(k: int) -> None:
        out["root"][k], out["quat"][k] = data.qpos[:3], data.qpos[3:7]
        out["claws"][k] = data.site_xpos[sites]
        out["contact"][k] = data.sensordata[touch] > CONTACT_THRESHOLD

    record(0)
    for k in range(n - 1):
        data.ctrl[:] = targets[k + 1]
        for _ in range(substeps):
            mujoco.mj_step(model, data)
        mujoco.mj_forward(model, data)  # positions and sensors at the current state
        record(k + 1)
    return out


def heading_motion(root: np.ndarray, quat: np.ndarray, dt: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(N-1,) forward speed along the heading [mm/s] and yaw rate [rad/s] of each step."""
    w, x, y, z = np.asarray(quat).T
    yaw = np.unwrap(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    step = np.diff(root[:, :2], axis=0)
    mid = 0.5 * (yaw[1:] + yaw[:-1])
    return (step[:, 0] * np.cos(mid) + step[:, 1] * np.sin(mid)) / dt, np.diff(yaw) / dt


def _reading(lin: np.ndarray, ang: np.ndarray) -> dict[str, float]:
    return {"speed_mm_s": float(lin[:, 0].mean()), "yaw_rate_rad_s": float(ang[:, 2].mean())}


def _versus(reading: dict[str, float], truth: dict[str, float]) -> dict[str, Any]:
    speed = reading["speed_mm_s"] / truth["speed_mm_s"]
    yaw = reading["yaw_rate_rad_s"] / truth["yaw_rate_rad_s"]
    return {**reading, "speed_ratio": speed, "yaw_rate_ratio": yaw,
            "within_targets": bool(abs(speed - 1) <= TARGETS["speed_rel"]
                                   and abs(yaw - 1) <= TARGETS["yaw_rate_rel"])}


def _windows(values: dict[str, np.ndarray], fps: float) -> list[dict[str, float]]:
    # Means over consecutive WINDOW_S windows of per-frame series of the same rate.
    size = int(round(WINDOW_S * fps))
    num = min(len(v) for v in values.values()) // size
    return [{k: float(v[i * size:(i + 1) * size].mean()) for k, v in values.items()}
            for i in range(num)]


def sim_as_truth(sim: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, Any]:
    """The odometry on the simulated claws (thorax frame) against the simulation's motion."""
    rotation = Rotation.from_quat(sim["quat"], scalar_first=True)
    claws_b = np.stack([rotation.inv().apply(sim["claws"][:, leg] - sim["root"])
                        for leg in range(c.NUM_LEGS)], axis=1)
    speed, yaw = heading_motion(sim["root"], sim["quat"], CONTROL_DT_S)
    truth = {"speed_mm_s": float(speed.mean()), "yaw_rate_rad_s": float(yaw.mean())}
    out: dict[str, Any] = {"truth": truth}
    for label, every, noise in (("500hz", 1, 0.0), ("100hz", 5, 0.0),
                                (f"100hz_noise{NOISE_MM}mm", 5, NOISE_MM)):
        claws = claws_b[::every] + rng.normal(0.0, noise, claws_b[::every].shape)
        fps = 1.0 / (CONTROL_DT_S * every)
        grounding = ground(claws, fps)
        contact = sim["contact"][::every]
        out[label] = {
            "own_stance": _versus(_reading(*odometry(claws, fps, grounding.stance)), truth),
            "sim_contact_as_stance": _versus(_reading(*odometry(claws, fps, contact)), truth),
            "stance_fraction_per_leg": grounding.stance.mean(0).tolist(),
            "contact_fraction_per_leg": contact.mean(0).tolist()}
    return out


def support_shape(claws: np.ndarray, stance: np.ndarray) -> dict[str, Any]:
    """Do the recording's stance claws (thorax frame: the tethered fly's ball is fixed in it)
    lie on one plane or one sphere? RMS distance of each fit [mm]."""
    points = claws[stance]
    design = np.c_[np.ones(len(points)), points[:, :2]]
    coef = np.linalg.lstsq(design, points[:, 2], rcond=None)[0]
    plane_rms = float(np.sqrt(np.mean((points[:, 2] - design @ coef) ** 2)))
    start = np.r_[points[:, :2].mean(0), points[:, 2].mean() - 5.0, 5.0]
    fit = least_squares(lambda p: np.linalg.norm(points - p[:3], axis=1) - p[3], start)
    return {"stance_points": len(points), "plane_rms_mm": plane_rms,
            "sphere_rms_mm": float(np.sqrt(np.mean(fit.fun ** 2))),
            "sphere_radius_mm": float(fit.x[3]), "sphere_center_mm": fit.x[:3].tolist()}


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison and writes benchmarks/results/df3d_odometry.json (keyed by label)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="current")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "flyenv-physics-study")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    motion = df3d_walk(args.cache)
    q = np.where(np.isfinite(motion.joint_angles), motion.joint_angles,
                 np.asarray(c.STANDING_POSE_RAD))
    claws = forward_kinematics(motion.body, q)[:, :, _CLAW]
    grounding = ground(claws, motion.fps)
    lin, ang = odometry(claws, motion.fps, grounding.stance)
    recording = {**_reading(lin, ang),
                 "stance_fraction_per_leg": grounding.stance.mean(0).tolist(),
                 "support": support_shape(claws, grounding.stance)}
    every = round(1.0 / (motion.fps * CONTROL_DT_S))  # control steps per recording frame
    result: dict[str, Any] = {"recording_odometry": recording, "models": {}}
    for name, options in (("defaults", ModelOptions()),
                          ("sliding_feet", ModelOptions(**SLIDING_FEET))):
        sim = replay(motion, options)
        speed, yaw = heading_motion(sim["root"], sim["quat"], CONTROL_DT_S)
        free = {"speed_mm_s": float(speed.mean()), "yaw_rate_rad_s": float(yaw.mean())}
        contact = sim["contact"][::every][:motion.num_frames]
        frames = len(contact)
        with_contact = _reading(*odometry(claws[:frames], motion.fps, contact))
        # Per window: the replay's steps and the recording's frames over the same 2 s.
        replay_windows = _windows({"speed": speed, "yaw": yaw}, 1.0 / CONTROL_DT_S)
        odometry_windows = _windows({"speed": lin[:, 0], "yaw": ang[:, 2]}, motion.fps)
        result["models"][name] = {
            "options": {k: getattr(options, k) for k in SLIDING_FEET},
            "free_replay": free,
            "recording_odometry_vs_free_replay": _versus(_reading(lin, ang), free),
            "recording_claws_with_sim_contact_as_stance": _versus(with_contact, free),
            "stance_agreement_per_leg": (contact == grounding.stance[:frames]).mean(0).tolist(),
            "stance_not_contact_per_leg": (grounding.stance[:frames] & ~contact).mean(0).tolist(),
            "contact_not_stance_per_leg": (contact & ~grounding.stance[:frames]).mean(0).tolist(),
            "windows_s": WINDOW_S,
            "windows": [{"replay_speed_mm_s": r["speed"], "odometry_speed_mm_s": o["speed"],
                         "replay_yaw_rate_rad_s": r["yaw"], "odometry_yaw_rate_rad_s": o["yaw"]}
                        for r, o in zip(replay_windows, odometry_windows, strict=False)],
            "odometry_on_simulated_claws": sim_as_truth(sim, rng)}
        print(f"{args.label} {name}: free replay {free['speed_mm_s']:.2f} mm/s "
              f"{free['yaw_rate_rad_s']:+.2f} rad/s; recording odometry "
              f"{recording['speed_mm_s']:.2f} {recording['yaw_rate_rad_s']:+.2f}; with the "
              f"sim's contacts {with_contact['speed_mm_s']:.2f} "
              f"{with_contact['yaw_rate_rad_s']:+.2f}", flush=True)
    path = args.out / "df3d_odometry.json"
    study = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    study.update(what=__doc__.split("\n\n")[0], targets=TARGETS, control_dt_s=CONTROL_DT_S)
    study["runs"][args.label] = {**result, "environment": environment_info("cpu"),
                                 "wall_s": time.perf_counter() - start,
                                 "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(study, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
