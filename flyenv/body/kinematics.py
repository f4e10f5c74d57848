"""Forward kinematics of the leg chains in numpy, batched over any leading shape."""

from __future__ import annotations

import numpy as np

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig


def rotation_matrix(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices about a principal axis.

    Args:
        axis: "x", "y" or "z".
        angle: (...) [rad].

    Returns:
        (..., 3, 3) rotation matrices.
    """
    angle = np.asarray(angle, dtype=float)
    cos, sin = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "x": ((one, zero, zero), (zero, cos, -sin), (zero, sin, cos)),
        "y": ((cos, zero, sin), (zero, one, zero), (-sin, zero, cos)),
        "z": ((cos, -sin, zero), (sin, cos, zero), (zero, zero, one)),
    }[axis]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def leg_forward_kinematics(thc_mm: np.ndarray, lengths_mm: np.ndarray,
                           angles_rad: np.ndarray) -> np.ndarray:
    """Keypoints of leg chains.

    All arguments broadcast against each other over their leading dimensions, so one call can
    cover frames × legs.

    Args:
        thc_mm: (..., 3) ThC positions [mm].
        lengths_mm: (..., 4) coxa, femur, tibia, tarsus lengths [mm].
        angles_rad: (..., 7) joint angles in `JOINTS` order [rad].

    Returns:
        (..., 5, 3) ThC, CTr, FTi, TiTa, Claw positions [mm].
    """
    return _leg_chain(thc_mm, lengths_mm, angles_rad)[0]


def leg_jacobian(thc_mm: np.ndarray, lengths_mm: np.ndarray, angles_rad: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of leg chains and their analytic Jacobian with respect to the joint angles.

    Args: as `leg_forward_kinematics`.

    Returns:
        keypoints (..., 5, 3) [mm] and jacobian (..., 5, 3, 7) [mm/rad]: d keypoint / d angle,
        zero where a joint is distal to the keypoint.
    """
    keypoints, axes = _leg_chain(thc_mm, lengths_mm, angles_rad)
    # A hinge at point p with unit axis a moves a point x at a x (x - p).
    # Each joint sits at the proximal keypoint of its segment (keypoint index = segment index).
    pivots = keypoints[..., c.JOINT_SEGMENT, :]  # (..., 7, 3)
    lever = keypoints[..., :, None, :] - pivots[..., None, :, :]  # (..., 5, 7, 3)
    jacobian = np.cross(np.broadcast_to(axes[..., None, :, :], lever.shape), lever)
    jacobian = jacobian * _DEPENDS[..., None]
    return keypoints, np.swapaxes(jacobian, -1, -2)


# Which keypoints each joint moves, (5, 7): those distal to the joint's own keypoint.
_DEPENDS = (np.arange(c.NUM_KEYPOINTS)[:, None] > np.asarray(c.JOINT_SEGMENT)[None, :]).astype(
    float)
_AXIS_NAMES = tuple("xyz"[int(np.argmax(axis))] for axis in c.JOINT_AXES)


def _leg_chain(thc_mm: np.ndarray, lengths_mm: np.ndarray, angles_rad: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (..., 5, 3) and the world axis of each joint (..., 7, 3)."""
    thc_mm = np.asarray(thc_mm, dtype=float)
    lengths_mm = np.asarray(lengths_mm, dtype=float)
    q = np.asarray(angles_rad, dtype=float)
    if q.shape[-1:] != (c.DOF_PER_LEG,):
        raise ValueError(f"angles_rad must have shape (..., 7), got {q.shape}")
    rot = np.broadcast_to(np.eye(3), (*q.shape[:-1], 3, 3))
    axes, points = [], [thc_mm]
    for j, (name, segid) in enumerate(zip(_AXIS_NAMES, c.JOINT_SEGMENT, strict=True)):
        axes.append(rot @ np.asarray(c.JOINT_AXES[j]))
        rot = rot @ rotation_matrix(name, q[..., j])
        if j + 1 == c.DOF_PER_LEG or c.JOINT_SEGMENT[j + 1] != segid:
            # Last joint of the segment: it points along the -z axis of this frame.
            points.append(points[-1] - lengths_mm[..., segid:segid + 1] * rot[..., :, 2])
    claw_shape = points[-1].shape
    points = [np.broadcast_to(p, claw_shape) for p in points]
    return np.stack(points, axis=-2), np.stack(axes, axis=-2)


def forward_kinematics(config: BodyConfig, angles_rad: np.ndarray) -> np.ndarray:
    """Keypoints of all six legs in the thorax frame.

    Args:
        config: the body.
        angles_rad: (..., 42) joint angles in `DOF_NAMES` order [rad]. NaN angles (a leg
            missing from a recording) give NaN keypoints for that leg.

    Returns:
        (..., 6, 5, 3) keypoint positions [mm], legs in `LEGS` order.
    """
    q = np.asarray(angles_rad, dtype=float)
    if q.shape[-1:] != (c.NUM_DOFS,):
        raise ValueError(f"angles_rad must have shape (..., {c.NUM_DOFS}), got {q.shape}")
    q = q.reshape(*q.shape[:-1], c.NUM_LEGS, c.DOF_PER_LEG)
    return leg_forward_kinematics(config.thc, config.lengths, q)
