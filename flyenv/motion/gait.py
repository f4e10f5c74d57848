"""A parametric tripod gait: flyenv's own embedded reference motion.

The demo and the tests imitate a walking cycle generated here, and its known root motion is the
ground truth that the stance-leg odometry (`flyenv.motion.grounding.odometry`) is checked on.
Each claw follows a parametric path in the thorax frame: during stance it is a world-fixed point
seen from a thorax moving forward at constant speed and turning at a constant yaw rate (straight
back by one stride when the fly walks straight, an arc about the turning centre otherwise), on
the ground plane; during swing it returns along a cubic Hermite curve, whose end velocities are
the stance velocities, with a lift bump. The four proximal joints of the leg (ThC pitch and
roll, CTr pitch, FTi pitch) are solved for that path by damped least squares on the forward
kinematics, starting from the standing pose, and the result is checked by FK. Legs LF, RM, LH
step together, half a cycle apart from RF, LM, RH. The thorax moves forward at the speed (and
turns at the rate) that keeps stance claws still on the ground.
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
                lift_mm: float = 0.15, turn_rate_rad_s: float = 0.0,
                tolerance_mm: float = 1e-6) -> ReferenceMotion:
    """Generates a tripod walk, straight or turning at a constant rate.

    Args:
        body: the body; the default template when None.
        duration_s: clip length [s].
        fps: frame rate [Hz].
        step_freq_hz: stepping frequency [Hz] (Drosophila walks at roughly 5-15 Hz).
        stride_mm: claw travel relative to the thorax during one stance [mm].
        duty: fraction of the cycle each leg is on the ground (> 0.5 gives double support).
        lift_mm: peak claw height above the ground during swing [mm].
        turn_rate_rad_s: yaw rate of the thorax [rad/s], positive to the left (counter-clockwise
            seen from above); 0 walks straight.
        tolerance_mm: how far a stance claw may be from the ground plane [mm].

    Returns:
        The clip, with root motion (thorax starting at the origin heading along +x, at constant
        height and forward speed `metadata["speed_mm_s"]`, turning at `turn_rate_rad_s`; claws
        of the standing pose on the plane z = 0) and `fk_keypoints`.

    Raises:
        ValueError: for parameters out of range, or if the gait leaves the joint ranges.
        RuntimeError: if the stance claws cannot be kept on the ground (checked by FK).
    """
    body = BodyConfig.default() if body is None else body
    _check_params(duration_s, fps, step_freq_hz, stride_mm, duty, lift_mm, turn_rate_rad_s)
    q_stand = np.asarray(c.STANDING_POSE_RAD).reshape(c.NUM_LEGS, c.DOF_PER_LEG)
    claw_stand = leg_forward_kinematics(body.thc, body.lengths, q_stand, body.tarsus_tilt)[:, 4]
    ground_z = claw_stand[:, 2].mean()

    t = np.arange(int(round(duration_s * fps)) + 1) / fps
    phase = (t[:, None] * step_freq_hz + np.array([_TRIPOD_PHASE[leg] for leg in c.LEGS])) % 1
    stance = phase < duty
    speed = stride_mm * step_freq_hz / duty

    # Claw targets in the thorax frame: world-fixed on the ground plane in stance (so a stance
    # claw does not slip), forward and lifted in swing.
    planar, lift = _claw_paths(claw_stand[:, 0] + 1j * claw_stand[:, 1], phase, duty,
                               step_freq_hz, speed, turn_rate_rad_s)
    target = np.broadcast_to(claw_stand, (t.size, c.NUM_LEGS, 3)).copy()
    target[..., 0], target[..., 1] = planar.real, planar.imag
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
    heading = turn_rate_rad_s * t  # [rad]
    travel = speed * t * _phasor_integral(turn_rate_rad_s * t)  # complex, [mm]
    root_pos = np.stack([travel.real, travel.imag, np.full_like(t, -ground_z)], axis=1)
    root_quat = np.stack([np.cos(heading / 2), np.zeros_like(t), np.zeros_like(t),
                          np.sin(heading / 2)], axis=1)
    # Slip: how much stance claws move in the world, given the root motion above.
    claw_w = travel[:, None] + np.exp(1j * heading)[:, None] * (
        keypoints[..., 4, 0] + 1j * keypoints[..., 4, 1])
    claw_vel = np.gradient(claw_w, t, axis=0)
    claw_vel = np.stack([claw_vel.real, claw_vel.imag], axis=-1)
    metadata = {
        "source": "flyenv.motion.gait.tripod_gait",
        "flyenv_version": __version__,
        "generator": {"duration_s": duration_s, "fps": fps, "step_freq_hz": step_freq_hz,
                      "stride_mm": stride_mm, "duty": duty, "lift_mm": lift_mm,
                      "turn_rate_rad_s": turn_rate_rad_s},
        "body": body.to_dict(),
        "speed_mm_s": speed,
        "turn_rate_rad_s": turn_rate_rad_s,
        "stance_claw_height_max_mm": stance_error,
        "swing_claw_height_max_mm": float(claw_z[~stance].max()) if (~stance).any() else 0.0,
        "stance_claw_slip_rms_mm_s": float(np.sqrt(np.mean(np.sum(claw_vel[stance] ** 2, -1)))),
    }
    motion = ReferenceMotion(fps=fps, joint_angles=angles, root_pos=root_pos,
                             root_quat=root_quat, fk_keypoints=keypoints, metadata=metadata)
    motion.validate(body)
    return motion


def _check_params(duration_s: float, fps: float, step_freq_hz: float, stride_mm: float,
                  duty: float, lift_mm: float, turn_rate_rad_s: float) -> None:
    for name, value in (("duration_s", duration_s), ("fps", fps), ("step_freq_hz", step_freq_hz),
                        ("stride_mm", stride_mm)):
        if not value > 0:
            raise ValueError(f"tripod_gait: {name} must be > 0, got {value}")
    if not 0 < duty < 1:
        raise ValueError(f"tripod_gait: duty must be in (0, 1), got {duty}")
    if lift_mm < 0:
        raise ValueError(f"tripod_gait: lift_mm must be >= 0, got {lift_mm}")
    if not np.isfinite(turn_rate_rad_s):
        raise ValueError(f"tripod_gait: turn_rate_rad_s must be finite, got {turn_rate_rad_s}")
    if fps < 4 * step_freq_hz:
        raise ValueError(f"tripod_gait: fps ({fps}) must be at least 4x step_freq_hz "
                         f"({step_freq_hz}) to resolve a step")


def _phasor_integral(angle: np.ndarray) -> np.ndarray:
    """(exp(i angle) - 1) / (i angle), 1 at angle 0: mean of exp(i a) over a in [0, angle]."""
    angle = np.asarray(angle, dtype=float)
    small = np.abs(angle) < 1e-8
    safe = np.where(small, 1.0, angle)
    return np.where(small, 1.0 + 0.5j * angle, (np.exp(1j * safe) - 1) / (1j * safe))


def _claw_paths(stand: np.ndarray, phase: np.ndarray, duty: float, step_freq_hz: float,
                speed: float, turn: float) -> tuple[np.ndarray, np.ndarray]:
    """Planar claw positions (x + iy, thorax frame) [mm] and lift in [0, 1], both (T, L).

    In stance (time tau from mid-stance, [s]) a world-fixed claw seen from a thorax moving at
    `speed` [mm/s] and turning at `turn` [rad/s] obeys dc/dtau = -(speed + i turn c), through
    the standing claw `stand` (L,) at mid-stance: c = stand e^(-i turn tau) - speed tau
    P(-turn tau) with P the mean phasor (`_phasor_integral`). Swing returns from lift-off to
    touch-down along a cubic Hermite curve with the stance velocity at both ends, so the claw
    velocity is continuous there.
    """
    stance_s, swing_s = duty / step_freq_hz, (1 - duty) / step_freq_hz

    def position(tau: np.ndarray) -> np.ndarray:
        return stand * np.exp(-1j * turn * tau) - speed * tau * _phasor_integral(-turn * tau)

    def velocity(tau: np.ndarray) -> np.ndarray:
        return -(speed + 1j * turn * position(tau))

    tau = (phase / duty - 0.5) * stance_s
    v = (phase - duty) / (1 - duty)
    end, start = 0.5 * stance_s, -0.5 * stance_s  # lift-off and touch-down
    swing = ((2 * v**3 - 3 * v**2 + 1) * position(end)
             + (v**3 - 2 * v**2 + v) * swing_s * velocity(end)
             + (-2 * v**3 + 3 * v**2) * position(start)
             + (v**3 - v**2) * swing_s * velocity(start))
    stance = phase < duty
    planar = np.where(stance, position(np.where(stance, tau, 0.0)), swing)
    lift = np.where(stance, 0.0, np.sin(np.pi * v) ** 2)
    return planar, lift


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
        claw = leg_forward_kinematics(body.thc, body.lengths, q, body.tarsus_tilt)[..., 4, :]
        residual = claw - target
        if np.abs(residual).max() < 1e-12:
            break
        jacobian = np.empty((*residual.shape, len(_SOLVED)))
        for k, joint in enumerate(_SOLVED):
            q_step = q.copy()
            q_step[..., joint] += step
            jacobian[..., k] = (leg_forward_kinematics(body.thc, body.lengths, q_step,
                                                       body.tarsus_tilt)[..., 4, :] - claw) / step
        jt = np.swapaxes(jacobian, -1, -2)
        update = np.linalg.solve(jt @ jacobian + damping * eye, jt @ residual[..., None])[..., 0]
        q[..., _SOLVED] -= np.clip(update, -0.2, 0.2)
    return q
