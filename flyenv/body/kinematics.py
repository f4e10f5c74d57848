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
    thc_mm = np.asarray(thc_mm, dtype=float)
    lengths_mm = np.asarray(lengths_mm, dtype=float)
    q = np.asarray(angles_rad, dtype=float)
    if q.shape[-1:] != (c.DOF_PER_LEG,):
        raise ValueError(f"angles_rad must have shape (..., 7), got {q.shape}")
    rot = rotation_matrix("x", q[..., 0]) @ rotation_matrix("y", q[..., 1])
    rot = rot @ rotation_matrix("z", q[..., 2])
    # Each segment points along the -z axis of its frame: position += -L * R[:, :, 2].
    ctr = thc_mm - lengths_mm[..., 0:1] * rot[..., :, 2]
    rot = rot @ rotation_matrix("y", q[..., 3]) @ rotation_matrix("z", q[..., 4])
    fti = ctr - lengths_mm[..., 1:2] * rot[..., :, 2]
    rot = rot @ rotation_matrix("y", q[..., 5])
    tita = fti - lengths_mm[..., 2:3] * rot[..., :, 2]
    rot = rot @ rotation_matrix("y", q[..., 6])
    claw = tita - lengths_mm[..., 3:4] * rot[..., :, 2]
    thc_b = np.broadcast_to(thc_mm, claw.shape)
    return np.stack([thc_b, ctr, fti, tita, claw], axis=-2)


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
