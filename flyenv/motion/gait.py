"""A parametric tripod gait: flyenv's own embedded reference motion.

The project ships no third-party recording, so the demo and the tests imitate a walking cycle
generated here. Each claw follows a parametric path in the thorax frame: during stance it moves
straight back by one stride on the ground plane, during swing it returns along a smooth cubic
with a lift bump; the four proximal joints of the leg (ThC pitch and roll, CTr pitch, FTi pitch)
are solved for that path by damped least squares on the forward kinematics, starting from the
standing pose, and the result is checked by FK. Legs LF, RM, LH step together, half a cycle apart
from RF, LM, RH. The thorax moves forward at the speed that keeps stance claws still on the
ground.
"""

from __future__ import annotations

import numpy as np

from flyenv._version import __version__
from flyenv.body import constants as c
from flyenv.body.config import BodyConfig
from flyenv.body.kinematics import forward_kinematics, leg_forward_kinematics
from flyenv.motion.format import ReferenceMotion

# Joints solved to place each claw; the others keep their standing values.
_SOLVED = [c.JOINTS.index(j) for j in ("ThC_pitch", "ThC_roll", "CTr_pitch", "FTi_pitch")]
_TRIPOD_PHASE = {"LF": 0.0, "RM": 0.0, "LH": 0.0, "RF": 0.5, "LM": 0.5, "RH": 0.5}


def tripod_gait(body: BodyConfig | None = None, *, duration_s: float = 2.0, fps: float = 500.0,
                step_freq_hz: float = 10.0, stride_mm: float = 0.6, duty: float = 0.6,
                lift_mm: float = 0.15, tolerance_mm: float = 1e-6) -> ReferenceMotion:
    """Generates a straight tripod walk.

    Args:
        body: the body; the default template when None.
        duration_s: clip length [s].
        fps: frame rate [Hz].
        step_freq_hz: stepping frequency [Hz] (Drosophila walks at roughly 5-15 Hz).
        stride_mm: claw travel relative to the thorax during one stance [mm].
        duty: fraction of the cycle each leg is on the ground (> 0.5 gives double support).
        lift_mm: peak claw height above the ground during swing [mm].
        tolerance_mm: how far a stance claw may be from the ground plane [mm].

    Returns:
        The clip, with root motion (thorax moving along +x at constant height, claws of the
        standing pose on the plane z = 0) and `fk_keypoints`.

    Raises:
        ValueError: for parameters out of range, or if the gait leaves the joint ranges.
        RuntimeError: if the stance claws cannot be kept on the ground (checked by FK).
    """
    body = BodyConfig.default() if body is None else body
    _check_params(duration_s, fps, step_freq_hz, stride_mm, duty, lift_mm)
    q_stand = np.asarray(c.STANDING_POSE_RAD).reshape(c.NUM_LEGS, c.DOF_PER_LEG)
    ground_z = leg_forward_kinematics(body.thc, body.lengths, q_stand)[:, 4, 2].mean()

    t = np.arange(int(round(duration_s * fps)) + 1) / fps
    phase = (t[:, None] * step_freq_hz + np.array([_TRIPOD_PHASE[leg] for leg in c.LEGS])) % 1
    stance = phase < duty
    profile, lift = _swing_profile(phase, duty)

    # Claw targets in the thorax frame: straight back by stride_mm over stance at constant y on
    # the ground plane (so a stance claw does not slip), forward and lifted in swing.
    claw_stand = leg_forward_kinematics(body.thc, body.lengths, q_stand)[:, 4]
    target = np.broadcast_to(claw_stand, (t.size, c.NUM_LEGS, 3)).copy()
    target[..., 0] -= 0.5 * stride_mm * profile
    target[..., 2] = ground_z + lift_mm * lift
    q = np.broadcast_to(q_stand, (t.size, *q_stand.shape)).copy()
    q = _solve_claw(body, q, target)
    angles = q.reshape(t.size, c.NUM_DOFS)
    keypoints = forward_kinematics(body, angles)

    claw_z = keypoints[..., 4, 2] - ground_z
    stance_error = float(np.abs(claw_z[stance]).max())
    if stance_error > tolerance_mm:
        raise RuntimeError(f"tripod_gait: stance claws are up to {stance_error:.2e} mm off the "
                           f"ground (tolerance {tolerance_mm:.0e}); the leg cannot reach it "
                           f"for this body and stride")
    speed = stride_mm * step_freq_hz / duty
    root_pos = np.stack([speed * t, np.zeros_like(t), np.full_like(t, -ground_z)], axis=1)
    root_quat = np.tile([1.0, 0.0, 0.0, 0.0], (t.size, 1))
    # Slip: how much stance claws move in the world, given the thorax speed above.
    claw_vel = np.gradient(keypoints[..., 4, :2], t, axis=0)
    claw_vel[..., 0] += speed
    metadata = {
        "source": "flyenv.motion.gait.tripod_gait",
        "flyenv_version": __version__,
        "generator": {"duration_s": duration_s, "fps": fps, "step_freq_hz": step_freq_hz,
                      "stride_mm": stride_mm, "duty": duty, "lift_mm": lift_mm},
        "body": body.to_dict(),
        "speed_mm_s": speed,
        "stance_claw_height_max_mm": stance_error,
        "swing_claw_height_max_mm": float(claw_z[~stance].max()) if (~stance).any() else 0.0,
        "stance_claw_slip_rms_mm_s": float(np.sqrt(np.mean(np.sum(claw_vel[stance] ** 2, -1)))),
    }
    motion = ReferenceMotion(fps=fps, joint_angles=angles, root_pos=root_pos,
                             root_quat=root_quat, fk_keypoints=keypoints, metadata=metadata)
    motion.validate(body)
    return motion


def _check_params(duration_s: float, fps: float, step_freq_hz: float, stride_mm: float,
                  duty: float, lift_mm: float) -> None:
    for name, value in (("duration_s", duration_s), ("fps", fps), ("step_freq_hz", step_freq_hz),
                        ("stride_mm", stride_mm)):
        if not value > 0:
            raise ValueError(f"tripod_gait: {name} must be > 0, got {value}")
    if not 0 < duty < 1:
        raise ValueError(f"tripod_gait: duty must be in (0, 1), got {duty}")
    if lift_mm < 0:
        raise ValueError(f"tripod_gait: lift_mm must be >= 0, got {lift_mm}")
    if fps < 4 * step_freq_hz:
        raise ValueError(f"tripod_gait: fps ({fps}) must be at least 4x step_freq_hz "
                         f"({step_freq_hz}) to resolve a step")


def _swing_profile(phase: np.ndarray, duty: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised fore-aft claw progress (-1 at touch-down, +1 at lift-off) and lift in [0, 1]."""
    u = phase / duty
    v = (phase - duty) / (1 - duty)
    # Swing returns from +1 to -1 as a cubic Hermite whose end slopes equal the stance slope,
    # so the claw velocity is continuous at lift-off and touch-down.
    slope = 2 * (1 - duty) / duty
    hermite = ((2 * v**3 - 3 * v**2 + 1) + slope * (v**3 - 2 * v**2 + v)
               - (-2 * v**3 + 3 * v**2) + slope * (v**3 - v**2))
    stance = phase < duty
    profile = np.where(stance, 2 * u - 1, hermite)
    lift = np.where(stance, 0.0, np.sin(np.pi * v) ** 2)
    return profile, lift


def _solve_claw(body: BodyConfig, q: np.ndarray, target: np.ndarray, iterations: int = 50,
                damping: float = 1e-4) -> np.ndarray:
    """Moves each claw to `target` with the four proximal leg joints.

    Damped least squares (Levenberg-Marquardt) with a finite-difference Jacobian, vectorised over
    frames and legs. The distal joints (CTr roll, TiTa pitch) keep their standing values, and the
    redundancy of 4 joints for 3 coordinates is resolved by the damping, which keeps the solution
    near the starting pose.

    Args:
        body: the body.
        q: (T, 6, 7) starting angles.
        target: (T, 6, 3) claw positions in the thorax frame [mm].
        iterations: maximum number of solver iterations.
        damping: Levenberg-Marquardt damping [rad^-2 mm^2].

    Returns:
        (T, 6, 7) angles.
    """
    q = q.copy()
    step = 1e-7
    eye = np.eye(len(_SOLVED))
    for _ in range(iterations):
        claw = leg_forward_kinematics(body.thc, body.lengths, q)[..., 4, :]
        residual = claw - target
        if np.abs(residual).max() < 1e-12:
            break
        jacobian = np.empty((*residual.shape, len(_SOLVED)))
        for k, joint in enumerate(_SOLVED):
            q_step = q.copy()
            q_step[..., joint] += step
            jacobian[..., k] = (leg_forward_kinematics(body.thc, body.lengths, q_step)[..., 4, :]
                                - claw) / step
        jt = np.swapaxes(jacobian, -1, -2)
        update = np.linalg.solve(jt @ jacobian + damping * eye, jt @ residual[..., None])[..., 0]
        q[..., _SOLVED] -= np.clip(update, -0.2, 0.2)
    return q
