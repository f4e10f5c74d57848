"""Names, orders and default numbers of the fly body.

Everything here is plain data. Orders matter: the 42 DOFs are laid out leg by leg in `LEGS`
order and, within a leg, in `JOINTS` order; the simulator's joints and actuators follow the same
order, so an IK solution `(T, 42)` drives the model with no reindexing.

Source of the numbers: the NeuroMechFly locomotion template published with SeqIKPy
(Apache-2.0). Units are the template's own, millimetres; axes x anterior, y left, z up, origin
in the thorax.
"""

from __future__ import annotations

import math

LEGS: tuple[str, ...] = ("LF", "LM", "LH", "RF", "RM", "RH")
KEYPOINTS: tuple[str, ...] = ("ThC", "CTr", "FTi", "TiTa", "Claw")
SEGMENTS: tuple[str, ...] = ("Coxa", "Femur", "Tibia", "Tarsus")
JOINTS: tuple[str, ...] = (
    "ThC_yaw",
    "ThC_pitch",
    "ThC_roll",
    "CTr_pitch",
    "CTr_roll",
    "FTi_pitch",
    "TiTa_pitch",
)
# Rotation axis of each joint in its segment's frame (yaw about x, pitch about y, roll about z).
JOINT_AXES: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.0, 1.0, 0.0),
    (0.0, 1.0, 0.0),
)
# Index into SEGMENTS of the segment each joint rotates (the joint sits at its proximal end).
JOINT_SEGMENT: tuple[int, ...] = (0, 0, 0, 1, 1, 2, 3)

NUM_LEGS = len(LEGS)
NUM_KEYPOINTS = len(KEYPOINTS)
NUM_SEGMENTS = len(SEGMENTS)
DOF_PER_LEG = len(JOINTS)
NUM_DOFS = NUM_LEGS * DOF_PER_LEG

DOF_NAMES: tuple[str, ...] = tuple(f"{leg}_{joint}" for leg in LEGS for joint in JOINTS)
KEYPOINT_NAMES: tuple[str, ...] = tuple(f"{leg}_{kp}" for leg in LEGS for kp in KEYPOINTS)
# Touch sensors (and their sites) on the tarsi of the MuJoCo model, in LEGS order.
TOUCH_SENSOR_NAMES: tuple[str, ...] = tuple(f"{leg}_tarsus_touch" for leg in LEGS)
# The tarsus adhesion actuators of a model built with adhesion (after the 42 joint actuators).
ADHESION_NAMES: tuple[str, ...] = tuple(f"{leg}_tarsus_adhesion" for leg in LEGS)

# ThC (thorax-coxa) position of each leg in the thorax frame [mm].
TEMPLATE_THC_MM: tuple[tuple[float, float, float], ...] = (
    (0.35, 0.27, 0.4),
    (0.0, 0.125, 0.0),
    (-0.215, 0.087, -0.073),
    (0.35, -0.27, 0.4),
    (0.0, -0.125, 0.0),
    (-0.215, -0.087, -0.073),
)
# Heights of CTr, FTi, TiTa, Claw in the zero pose (segments along -z from ThC) [mm].
_TEMPLATE_Z_MM: dict[str, tuple[float, float, float, float]] = {
    "F": (-0.025, -0.731, -1.249, -1.912),
    "M": (-0.182, -0.965, -1.633, -2.328),
    "H": (-0.272, -1.108, -1.793, -2.588),
}


def _template_keypoints() -> tuple[tuple[tuple[float, float, float], ...], ...]:
    legs = []
    for leg, thc in zip(LEGS, TEMPLATE_THC_MM, strict=True):
        distal = tuple((thc[0], thc[1], z) for z in _TEMPLATE_Z_MM[leg[1]])
        legs.append((thc, *distal))
    return tuple(legs)


# Zero-pose keypoints, (NUM_LEGS, NUM_KEYPOINTS, 3) [mm]. Segment lengths are the distances
# between consecutive rows.
TEMPLATE_KEYPOINTS_MM = _template_keypoints()

_FRONT_BOUNDS_DEG = ((-180, 180), (-90, 90), (-180, 180), (-180, 180), (-180, 180), (-180, 180),
                     (-180, 0))
_MID_BOUNDS_DEG = ((-50, 50), (-180, 180), (0, 180), (-180, 180), (-180, 180), (-180, 180),
                   (-180, 0))
_HIND_BOUNDS_DEG = ((-50, 50), (-50, 50), (0, 180), (-180, 0), (-180, 180), (-180, 180),
                    (-180, 0))


def _mirror(bounds: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    # SeqIKPy's right-leg bounds are the left ones with ThC_roll mirrored (roll is about z, and
    # the right side is the left seen in a mirror through the x-z plane).
    out = list(bounds)
    lo, hi = out[2]
    out[2] = (-hi, -lo)
    return tuple(out)


# Joint bounds per DOF in DOF_NAMES order, (NUM_DOFS, 2) [deg].
JOINT_BOUNDS_DEG: tuple[tuple[int, int], ...] = (
    _FRONT_BOUNDS_DEG + _MID_BOUNDS_DEG + _HIND_BOUNDS_DEG
    + _FRONT_BOUNDS_DEG + _mirror(_MID_BOUNDS_DEG) + _mirror(_HIND_BOUNDS_DEG)
)
JOINT_BOUNDS_RAD: tuple[tuple[float, float], ...] = tuple(
    (math.radians(lo), math.radians(hi)) for lo, hi in JOINT_BOUNDS_DEG
)

# A standing pose inside the bounds: claws on the ground in a splayed stance with the thorax
# origin STANDING_HEIGHT_MM above it and the tarsi tilted 30 deg down. (NUM_DOFS,) [rad].
_STAND_LEFT_RAD = (
    (-0.414, 0.588, 0.795, -2.123, 0.163, 1.578, -1.200),
    (-0.311, 0.042, 1.506, -2.200, 0.046, 2.368, -1.525),
    (-0.264, -0.183, 2.104, -2.419, -0.185, 2.478, -1.413),
)


def _mirror_pose(left: tuple[float, ...]) -> tuple[float, ...]:
    # Mirroring through the x-z plane negates rotations about x (yaw) and z (rolls).
    sign = (-1, 1, -1, 1, -1, 1, 1)
    return tuple(s * q for s, q in zip(sign, left, strict=True))


STANDING_POSE_RAD: tuple[float, ...] = tuple(
    q for leg in _STAND_LEFT_RAD + tuple(_mirror_pose(p) for p in _STAND_LEFT_RAD) for q in leg
)
STANDING_HEIGHT_MM = 0.9

# Physical scale of NeuroMechFly as FlyGym builds it (units mm, g, s).
TOTAL_MASS_G = 1.024e-3
GRAVITY_MM_S2 = 9810.0

# FlyGym / NeuroMechFly DOF names for the same joints, in DOF_NAMES order.
_FLYGYM_JOINT_PATTERNS = (
    "c_thorax-{l}_coxa-yaw",
    "c_thorax-{l}_coxa-pitch",
    "c_thorax-{l}_coxa-roll",
    "{l}_coxa-{l}_trochanterfemur-pitch",
    "{l}_coxa-{l}_trochanterfemur-roll",
    "{l}_trochanterfemur-{l}_tibia-pitch",
    "{l}_tibia-{l}_tarsus1-pitch",
)
FLYGYM_DOF_NAMES: tuple[str, ...] = tuple(
    pattern.format(l=leg.lower()) for leg in LEGS for pattern in _FLYGYM_JOINT_PATTERNS
)
# FlyGym makes left and right anatomically symmetric by negating the yaw and roll DOFs of the
# right legs; SeqIKPy (and flyenv) do not. +1/-1 per DOF in DOF_NAMES order.
FLYGYM_SIGN: tuple[int, ...] = tuple(
    -1 if leg.startswith("R") and (joint.endswith("yaw") or joint.endswith("roll")) else 1
    for leg in LEGS
    for joint in JOINTS
)

# The mirror image across the sagittal plane (thorax y -> -y): each leg becomes its partner on
# the other side (LF<->RF, LM<->RM, LH<->RH), and the DOFs turning about x (yaw) or z (roll)
# change sign while those about y (pitch) do not. MIRROR_DOF: DOF_NAMES index of each mirrored
# DOF's source; MIRROR_SIGN: +1/-1 per DOF in DOF_NAMES order.
MIRROR_LEGS: tuple[int, ...] = (3, 4, 5, 0, 1, 2)
MIRROR_DOF: tuple[int, ...] = tuple(
    MIRROR_LEGS[leg] * len(JOINTS) + joint for leg in range(len(LEGS)) for joint in
    range(len(JOINTS))
)
MIRROR_SIGN: tuple[int, ...] = tuple(
    -1 if joint.endswith("yaw") or joint.endswith("roll") else 1
    for _ in LEGS
    for joint in JOINTS
)
