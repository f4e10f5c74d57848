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
                           angles_rad: np.ndarray, tarsus_tilt_rad: np.ndarray | float = 0.0,
                           ) -> np.ndarray:
    """Keypoints of leg chains.

    All arguments broadcast against each other over their leading dimensions, so one call can
    cover frames × legs.

    Args:
        thc_mm: (..., 3) ThC positions [mm].
        lengths_mm: (..., 4) coxa, femur, tibia, tarsus lengths [mm].
        angles_rad: (..., 7) joint angles in `JOINTS` order [rad].
        tarsus_tilt_rad: (...) the tarsus's constant angle out of the leg's plane
            (`BodyConfig.tarsus_tilt_rad`) [rad].

    Returns:
        (..., 5, 3) ThC, CTr, FTi, TiTa, Claw positions [mm].
    """
    points, _ = _leg_chain_components(thc_mm, lengths_mm, angles_rad, tarsus_tilt_rad)
    return np.moveaxis(points, (0, 1), (-2, -1))


def leg_jacobian(thc_mm: np.ndarray, lengths_mm: np.ndarray, angles_rad: np.ndarray,
                 tarsus_tilt_rad: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of leg chains and their analytic Jacobian with respect to the joint angles.

    Args: as `leg_forward_kinematics`.

    Returns:
        keypoints (..., 5, 3) [mm] and jacobian (..., 5, 3, 7) [mm/rad]: d keypoint / d angle,
        zero where a joint is distal to the keypoint.
    """
    points, axes = _leg_chain_components(thc_mm, lengths_mm, angles_rad, tarsus_tilt_rad)
    jacobian = np.zeros((c.NUM_KEYPOINTS, 3, c.DOF_PER_LEG, *points.shape[2:]))
    for j, segid in enumerate(c.JOINT_SEGMENT):
        # A hinge at point p with unit axis a moves a point x at a x (x - p); each joint sits
        # at the proximal keypoint of its segment (keypoint index = segment index).
        lever = points[segid + 1:] - points[segid]
        jacobian[segid + 1:, :, j] = _cross(axes[j], lever)
    return np.moveaxis(points, (0, 1), (-2, -1)), np.moveaxis(jacobian, (0, 1, 2), (-3, -2, -1))


# For each joint axis (0 x, 1 y, 2 z), the other two columns (i, k) in cyclic order:
# R @ R_axis(q) maps column i to cos(q) c_i + sin(q) c_k and column k to cos(q) c_k - sin(q) c_i.
_ROTATED_COLUMNS = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
_AXIS_INDEX = tuple(int(np.argmax(axis)) for axis in c.JOINT_AXES)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product a x b, a (3, ...) and b (m, 3, ...), components first (vs np.cross: faster)."""
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return np.stack([a[1] * b2 - a[2] * b1, a[2] * b0 - a[0] * b2, a[0] * b1 - a[1] * b0],
                    axis=1)


def _leg_chain_components(thc_mm: np.ndarray, lengths_mm: np.ndarray, angles_rad: np.ndarray,
                          tarsus_tilt_rad: np.ndarray | float = 0.0,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (5, 3, ...) and the world axis of each joint (7, 3, ...), components first.

    The chain's rotation is carried as its three columns and updated in place of 3x3 products
    (a rotation about a principal axis only mixes the other two columns), which keeps every
    operation a flat elementwise one over the batch.
    """
    thc = np.asarray(thc_mm, dtype=float)
    lengths = np.asarray(lengths_mm, dtype=float)
    q = np.asarray(angles_rad, dtype=float)
    if q.shape[-1:] != (c.DOF_PER_LEG,):
        raise ValueError(f"angles_rad must have shape (..., 7), got {q.shape}")
    tilt = np.asarray(tarsus_tilt_rad, dtype=float)
    batch = np.broadcast_shapes(thc.shape[:-1], lengths.shape[:-1], q.shape[:-1], tilt.shape)
    q = np.moveaxis(np.broadcast_to(q, (*batch, c.DOF_PER_LEG)), -1, 0)
    tilt = np.broadcast_to(tilt, batch)
    lengths = np.moveaxis(np.broadcast_to(lengths, (*batch, c.NUM_SEGMENTS)), -1, 0)
    cos, sin = np.cos(q), np.sin(q)
    eye = np.eye(3).reshape(3, 3, *(1,) * len(batch))
    columns = [np.broadcast_to(eye[:, i], (3, *batch)) for i in range(3)]
    points = [np.moveaxis(np.broadcast_to(thc, (*batch, 3)), -1, 0)]
    axes = []
    for j, segid in enumerate(c.JOINT_SEGMENT):
        axis = _AXIS_INDEX[j]
        axes.append(columns[axis])
        i, k = _ROTATED_COLUMNS[axis]
        col_i, col_k = columns[i], columns[k]
        columns[i] = cos[j] * col_i + sin[j] * col_k
        columns[k] = cos[j] * col_k - sin[j] * col_i
        if j + 1 == c.DOF_PER_LEG or c.JOINT_SEGMENT[j + 1] != segid:
            # Last joint of the segment: the segment points along -z of this frame (the
            # tarsus tilted towards +y, the TiTa pitch axis, by its constant tilt).
            if segid == c.NUM_SEGMENTS - 1 and tilt.any():
                points.append(points[-1] + lengths[segid] * (np.sin(tilt) * columns[1]
                                                             - np.cos(tilt) * columns[2]))
            else:
                points.append(points[-1] - lengths[segid] * columns[2])
    return np.stack(points), np.stack(axes)


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
    return leg_forward_kinematics(config.thc, config.lengths, q, config.tarsus_tilt)
