"""Resampling a reference motion to the simulator's step, with velocities."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation, RotationSpline

from flyenv.motion.format import ReferenceMotion


def resample(motion: ReferenceMotion, dt: float, *, smooth_frames: int = 7,
             polyorder: int = 3) -> ReferenceMotion:
    """Smooths a clip and interpolates it to a new time step, adding velocities.

    Joint angles and root position are smoothed with a Savitzky-Golay filter over the original
    frames, then interpolated with a cubic spline whose derivative gives the velocities; the root
    orientation is interpolated with a `scipy` rotation spline. Angles are clipped to the body's
    joint ranges afterwards (a cubic can overshoot a bound the data touches). Per-frame
    measurements (`keypoints`, `fk_keypoints`, `ik_error`, `underdetermined`) do not exist at the
    new times and are dropped. NaN columns of missing legs stay NaN.

    Args:
        motion: the clip.
        dt: new time step [s], e.g. the physics step times the control decimation.
        smooth_frames: Savitzky-Golay window in original frames (odd; shortened to fit short
            clips; 0 or 1 disables smoothing).
        polyorder: Savitzky-Golay polynomial order.

    Returns:
        A new `ReferenceMotion` at `fps = 1 / dt` covering the same time span, with
        `joint_velocities` (and `root_lin_vel`, `root_ang_vel` when it has root motion).
    """
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"resample: dt must be a finite number > 0, got {dt}")
    t_old = np.arange(motion.num_frames) / motion.fps
    num_new = int(np.floor(t_old[-1] / dt + 1e-9)) + 1
    if num_new < 2:
        raise ValueError(f"resample: dt={dt} s is longer than the clip ({motion.duration_s} s)")
    t_new = np.arange(num_new) * dt
    window = _window(smooth_frames, polyorder, motion.num_frames)

    angles = np.full((num_new, motion.joint_angles.shape[1]), np.nan)
    velocities = np.full_like(angles, np.nan)
    present = np.isfinite(motion.joint_angles).all(axis=0)
    spline = CubicSpline(t_old, _smooth(motion.joint_angles[:, present], window, polyorder))
    bounds = motion.body.bounds[present]
    angles[:, present] = np.clip(spline(t_new), bounds[:, 0], bounds[:, 1])
    velocities[:, present] = spline(t_new, 1)

    root = {}
    if motion.root_pos is not None:
        pos_spline = CubicSpline(t_old, _smooth(motion.root_pos, window, polyorder))
        root["root_pos"] = pos_spline(t_new)
        root["root_lin_vel"] = pos_spline(t_new, 1)
    if motion.root_quat is not None:
        rot_spline = RotationSpline(t_old, Rotation.from_quat(motion.root_quat,
                                                              scalar_first=True))
        rotations = rot_spline(t_new)
        root["root_quat"] = rotations.as_quat(scalar_first=True)
        # RotationSpline's rates are in the body frame; the format stores world-frame rates.
        root["root_ang_vel"] = rotations.apply(rot_spline(t_new, 1))

    metadata = dict(motion.metadata)
    metadata["resampled"] = {"from_fps": motion.fps, "savgol_window": window,
                             "savgol_polyorder": polyorder}
    return ReferenceMotion(fps=1.0 / dt, joint_angles=angles, joint_velocities=velocities,
                           metadata=metadata, **root)


def _window(smooth_frames: int, polyorder: int, num_frames: int) -> int:
    window = min(int(smooth_frames), num_frames - (num_frames % 2 == 0))
    window -= window % 2 == 0
    return window if window > polyorder else 0


def _smooth(values: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    if window == 0 or values.shape[1] == 0:
        return values
    return savgol_filter(values, window, polyorder, axis=0, mode="interp")
