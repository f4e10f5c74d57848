"""How well the simulated fly tracks a reference: its angles as position targets, one world.

This is how a reference is checked before anyone trains on it (C MuJoCo, no env, no policy):
tethered, it shows how well the actuators track the joint angles; free, whether the motion
carries the body forward. (In flyenv "replay" means the env run with zero residuals: the same
targets with the env's resets, rewards and terminations, see `flyenv.apps.replay`.)
"""

from __future__ import annotations

import dataclasses
import time

import mujoco
import numpy as np

from flyenv.body import constants as c
from flyenv.body.mjcf import ModelOptions, build_model
from flyenv.motion.format import ReferenceMotion
from flyenv.motion.grounding import clip_stance
from flyenv.motion.resample import resample


@dataclasses.dataclass(frozen=True)
class TrackingResult:
    """What one tracking run measured.

    Attributes:
        time_s: (N,) simulation time of each record [s].
        joint_angles: (N, 42) simulated joint angles [rad].
        target_angles: (N, 42) reference angles at the same times [rad] (NaN for missing legs).
        root_pos: (N, 3) simulated thorax position [mm], None when tethered.
        reference_root_pos: (N, 3) reference thorax position [mm], None without root motion.
        tethered: whether the thorax was fixed.
        wall_s: wall-clock time of the stepping loop [s].
        num_steps: physics steps taken.
        timestep_s: physics step [s].
    """

    time_s: np.ndarray
    joint_angles: np.ndarray
    target_angles: np.ndarray
    root_pos: np.ndarray | None
    reference_root_pos: np.ndarray | None
    tethered: bool
    wall_s: float
    num_steps: int
    timestep_s: float

    @property
    def tracking_error_rad(self) -> np.ndarray:
        """(N, 42) simulated minus reference angle [rad]."""
        return self.joint_angles - self.target_angles

    def tracking_rms_deg(self) -> np.ndarray:
        """(42,) RMS tracking error per DOF over the run [deg] (NaN for missing legs)."""
        return np.degrees(np.sqrt(np.mean(self.tracking_error_rad**2, axis=0)))

    @property
    def realtime_factor(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self.num_steps * self.timestep_s / self.wall_s


def track_reference(motion: ReferenceMotion, *, tethered: bool = False,
                    options: ModelOptions | None = None, record_every: int = 10,
                    ) -> TrackingResult:
    """Drives the body the clip was made for with the clip's joint angles as position targets.

    The simulation starts in the clip's first frame (joint angles and velocities; the free
    thorax at the clip's root pose, or at the standing height when the clip has none). Legs
    missing from the clip hold the standing pose. The tarsi's adhesion (a model with adhesion,
    the default) follows the clip's stance (`clip_stance`), as in the env's replay.

    Args:
        motion: the clip (any frame rate: it is resampled to the physics step).
        tethered: fix the thorax in space (no ground) instead of walking freely on the floor.
        options: physical parameters of the model.
        record_every: keep one record every this many physics steps.

    Returns:
        The simulated and reference trajectories.
    """
    if record_every < 1:
        raise ValueError(f"track_reference: record_every must be >= 1, got {record_every}")
    model = build_model(motion.body, tethered=tethered, options=options)
    ref = resample(motion, model.opt.timestep)
    targets = np.where(np.isfinite(ref.joint_angles), ref.joint_angles,
                       np.asarray(c.STANDING_POSE_RAD))
    if model.nu > c.NUM_DOFS:  # adhesion: the clip's stance at each physics step's time
        frames = np.clip(np.round(np.arange(ref.num_frames) * model.opt.timestep * motion.fps),
                         0, motion.num_frames - 1).astype(int)
        targets = np.concatenate([targets, clip_stance(motion)[frames]], axis=1)
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    data.qpos[-c.NUM_DOFS:] = targets[0, :c.NUM_DOFS]
    data.qvel[-c.NUM_DOFS:] = np.nan_to_num(ref.joint_velocities[0])
    if not tethered and ref.has_root:
        data.qpos[:3] = ref.root_pos[0]
        data.qpos[3:7] = ref.root_quat[0]

    records = range(0, ref.num_frames - 1, record_every)
    angles = np.empty((len(records), c.NUM_DOFS))
    root = None if tethered else np.empty((len(records), 3))
    start = time.perf_counter()
    for i in range(ref.num_frames - 1):
        data.ctrl[:] = targets[i + 1]
        mujoco.mj_step(model, data)
        if i % record_every == 0:
            angles[i // record_every] = data.qpos[-c.NUM_DOFS:]
            if root is not None:
                root[i // record_every] = data.qpos[:3]
    wall = time.perf_counter() - start
    idx = np.asarray(records) + 1
    if not np.isfinite(angles).all():
        raise FloatingPointError("track_reference: the simulation diverged (non-finite joint "
                                 "angles)")
    return TrackingResult(
        time_s=idx * model.opt.timestep, joint_angles=angles,
        target_angles=ref.joint_angles[idx], root_pos=root,
        reference_root_pos=ref.root_pos[idx] if ref.root_pos is not None else None,
        tethered=tethered, wall_s=wall, num_steps=ref.num_frames - 1,
        timestep_s=model.opt.timestep)
