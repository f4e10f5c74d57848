"""Root pose and velocity for clips without root motion, from the legs alone.

A tethered or egocentric recording gives the legs in the thorax frame and nothing about where
the thorax is. Two estimates fill that in:

- Grounding (`ground`): in each frame the stance claws (low, and not swinging forward) are
  fitted with a plane, z = a + b x + c y in the thorax frame (least squares, all frames at
  once); the thorax then stands at the plane's distance above a flat floor
  (plus the claw's `clearance_mm`), pitched and rolled so the plane is level (the smallest
  rotation, no yaw). Heights and plane normals are smoothed over `SMOOTH_WINDOW_S`. A fly
  started from any frame of the clip stands on its feet.
- Stance-leg odometry (`odometry`): stance claws do not slip, so in the thorax frame a stance
  claw c moves as dc/dt = -(v + w x c); the planar velocity (vx, vy) and yaw rate wz of each
  frame are the least-squares solution over the largest set of its stance claws that agree on
  one rigid motion (two or more; one gives the
  velocity with wz = 0, none takes the neighbouring frames' values), then smoothed over
  `SMOOTH_WINDOW_S`.

Limits: frames with fewer than three stance claws use the three lowest claws; a curved support
(a ball) reads as a tilted floor; fewer than three legs cannot be grounded (`ground` returns
None). Odometry assumes flat, rigid, non-slipping contact: it reads a ball's rotation as
walking (which it is, for a tethered fly), it is biased where stance is sparse (fast gaits,
grooming) and during sharp turns where the claws' velocities are small and noisy, and it
ignores pitch and roll.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation

from flyenv.body import constants as c
from flyenv.body.kinematics import forward_kinematics
from flyenv.motion.format import ReferenceMotion

# Stance claws: within this height of the frame's floor plane [mm] ...
FLOOR_TOL_MM = 0.1
# ... and not swinging: forward speed in the thorax frame below this fraction of the claws'
# 90th-percentile speed.
SWING_SPEED_FRACTION = 0.3
SMOOTH_WINDOW_S = 0.05
MIN_STANCE = 3
# Odometry's consensus: a stance claw whose velocity a candidate rigid motion misses by more
# than this fraction of the motion's speed does not agree with it.
OUTLIER_FRACTION = 0.15


@dataclasses.dataclass(frozen=True)
class Grounding:
    """Where the thorax stands in each frame of a clip without root motion.

    Attributes:
        height_mm: (T,) thorax origin above the floor [mm].
        quat_w: (T, 4) thorax orientation (w, x, y, z), pitch and roll only.
        stance: (T, L) bool, claws taken as in stance.
    """

    height_mm: np.ndarray
    quat_w: np.ndarray
    stance: np.ndarray

    @property
    def root_pos_w(self) -> np.ndarray:
        """(T, 3) thorax position above the origin [mm]."""
        return np.stack([np.zeros_like(self.height_mm), np.zeros_like(self.height_mm),
                         self.height_mm], axis=1)


def stance_claws(claws_mm: np.ndarray, fps: float) -> np.ndarray:
    """Which claws are in stance: on the frame's floor plane, not swinging (module docstring).

    Args:
        claws_mm: (T, L, 3) claw positions in the thorax frame [mm], finite.
        fps: frame rate [Hz].

    Returns:
        (T, L) bool.
    """
    return _stance_and_plane(np.asarray(claws_mm, dtype=float), fps)[0]


def clip_stance(motion: ReferenceMotion) -> np.ndarray:
    """The stance flags of a clip's claws (`stance_claws`, its body's forward kinematics).

    What drives the tarsi's adhesion in a replay (1 in stance, 0 in swing and for legs the clip
    lacks).

    Args:
        motion: the clip (legs it lacks are left out of the stance plane).

    Returns:
        (T, 6) float, LEGS order.
    """
    present = np.asarray(motion.leg_mask) > 0
    q = np.where(np.repeat(present, c.DOF_PER_LEG), motion.joint_angles,
                 np.asarray(c.STANDING_POSE_RAD))
    claws = forward_kinematics(motion.body, q)[:, :, c.KEYPOINTS.index("Claw")]
    out = np.zeros((motion.num_frames, c.NUM_LEGS))
    if present.any() and motion.num_frames >= 2:
        out[:, present] = stance_claws(claws[:, present], motion.fps)
    return out


def ground(claws_mm: np.ndarray, fps: float, clearance_mm: float = 0.0) -> Grounding | None:
    """Thorax height, pitch and roll per frame at which the stance claws rest on a flat floor.

    Args:
        claws_mm: (T, L, 3) claw positions in the thorax frame [mm] of the L legs present.
        fps: frame rate [Hz].
        clearance_mm: how far below the claw point the foot's surface is [mm].

    Returns:
        The grounding, or None with fewer than three legs.
    """
    claws = np.asarray(claws_mm, dtype=float)
    if claws.shape[1] < MIN_STANCE:
        return None
    stance, coef = _stance_and_plane(claws, fps)
    normal = np.stack([-coef[:, 1], -coef[:, 2], np.ones(len(coef))], axis=1)
    norm = np.linalg.norm(normal, axis=1)
    height = -coef[:, 0] / norm + clearance_mm
    normal /= norm[:, None]
    window = _window(len(claws), fps)
    if window:
        height = savgol_filter(height, window, 2)
        normal = savgol_filter(normal, window, 2, axis=0)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    # The smallest rotation taking the floor normal (thorax frame) to world up.
    up = np.array([0.0, 0.0, 1.0])
    axis = np.cross(normal, up)
    angle = np.arctan2(np.linalg.norm(axis, axis=1), normal @ up)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(np.linalg.norm(axis, axis=1, keepdims=True) > 1e-12,
                        axis / np.linalg.norm(axis, axis=1, keepdims=True), 0.0)
    quat = Rotation.from_rotvec(unit * angle[:, None]).as_quat(scalar_first=True)
    return Grounding(height, quat, stance)


def odometry(claws_mm: np.ndarray, fps: float, stance: np.ndarray | None = None,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Planar thorax velocity and yaw rate from stance claws that do not slip.

    Args:
        claws_mm: (T, L, 3) claw positions in the thorax frame [mm].
        fps: frame rate [Hz].
        stance: (T, L) bool stance claws; `stance_claws` when None.

    Returns:
        lin_vel (T, 3) [mm/s] (vx, vy, 0) and ang_vel (T, 3) [rad/s] (0, 0, wz), in the
        thorax's heading frame.
    """
    claws = np.asarray(claws_mm, dtype=float)
    stance = stance_claws(claws, fps) if stance is None else np.asarray(stance, dtype=bool)
    # Central differences, not a smoothing derivative: a window spanning lift-off would mix
    # swing velocities into the stance claw's.
    claw_vel = np.gradient(claws, 1.0 / fps, axis=0)
    solution = _rigid_planar_motion(claws, claw_vel, stance)  # (T, 3) vx, vy, wz; NaN: none
    frames = np.arange(len(claws))
    good = np.isfinite(solution[:, 0])
    if not good.any():
        solution[:] = 0.0
    elif not good.all():
        solution = np.stack([np.interp(frames, frames[good], solution[good, i])
                             for i in range(3)], axis=1)
    window = _window(len(claws), fps)
    if window:
        solution = savgol_filter(solution, window, 2, axis=0)
    zeros = np.zeros(len(claws))
    return (np.stack([solution[:, 0], solution[:, 1], zeros], axis=1),
            np.stack([zeros, zeros, solution[:, 2]], axis=1))


def _rigid_planar_motion(c: np.ndarray, dc: np.ndarray, use: np.ndarray) -> np.ndarray:
    """(T, 3) (vx, vy, wz) with dc = -(v + w x c) for claws c, velocities dc (T, L, 3).

    Only the claws `use` (T, L) count; frames without one get NaN. Consensus, all frames at
    once: each pair of claws gives a rigid motion; the claws within `OUTLIER_FRACTION` of its
    speed agree with it. The largest agreeing set is solved by least squares. Ties go to the
    motion that misses all the stance claws least relative to its speed (the summed miss over
    its speed, scale-free; then the first pair). Choosing the faster motion instead, as this
    did before, let a swing claw mislabelled as stance win whenever three noisy claws
    disagreed: on turning gaits at 100 Hz with 0.02 mm tracking noise it misread the yaw rate
    by up to 1.2 rad/s, where this rule stays within 0.2 rad/s (17% of fast turns) and 4% of
    the speed, noise-free too (tests/test_ik_frames.py). A frame with one claw gets its
    velocity, wz = 0.
    """
    num_frames, num_legs = use.shape
    pairs = np.array(list(itertools.combinations(range(num_legs), 2)), dtype=int).reshape(-1, 2)
    members = np.zeros((len(pairs), num_legs), dtype=bool)
    members[np.arange(len(pairs))[:, None], pairs] = True  # (P, L)
    valid = use[:, pairs].all(-1)  # (T, P)
    motion = _planar_lstsq(c[:, None], dc[:, None], members[None])  # (T, P, 3)
    miss = _miss(motion[:, :, None], c[:, None], dc[:, None])  # (T, P, L)
    speed = np.linalg.norm(motion[..., :2], axis=-1)
    agree = ((miss <= OUTLIER_FRACTION * speed[..., None] + 1e-9) & use[:, None]) | members
    count = np.where(valid, agree.sum(-1), -1)
    # Largest count first, then the least miss per speed; argmax takes the first pair of a tie.
    top = valid & (count == count.max(-1, keepdims=True))
    relative_miss = np.where(use[:, None], miss, 0.0).sum(-1) / (speed + 1e-9)  # (T, P)
    best = np.argmax(np.where(top, -relative_miss, -np.inf), axis=-1)
    chosen = agree[np.arange(num_frames), best]  # (T, L)
    solution = _planar_lstsq(c, dc, chosen)
    single = use.sum(-1) == 1
    alone = np.where(use[..., None], dc[..., :2], 0.0).sum(1)  # the one claw's (vx, vy)
    solution[single] = np.column_stack([-alone[single], np.zeros(single.sum())])
    solution[use.sum(-1) == 0] = np.nan
    return solution


def _planar_lstsq(c: np.ndarray, dc: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Least-squares (vx, vy, wz) (..., 3) over the claws `rows` (..., L) of c, dc (..., L, 3).

    vx - wz cy = -dcx ; vy + wz cx = -dcy per claw; the minimum-norm solution where the claws
    cannot fix wz (one claw, or claws at one point), as `scipy.linalg.lstsq` gives.
    """
    shape = np.broadcast_shapes(c.shape[:-1], rows.shape)
    c, dc = np.broadcast_to(c, (*shape, 3)), np.broadcast_to(dc, (*shape, 3))
    rows = np.broadcast_to(rows, shape)[..., None]
    design = np.zeros((*shape, 2, 3))
    design[..., 0, 0], design[..., 0, 2] = 1.0, -c[..., 1]
    design[..., 1, 1], design[..., 1, 2] = 1.0, c[..., 0]
    # Claws left out are zero rows (np.where, so a NaN there stays out).
    design = np.where(rows[..., None], design, 0.0).reshape(*shape[:-1], 2 * shape[-1], 3)
    target = np.where(rows, -dc[..., :2], 0.0).reshape(*shape[:-1], 2 * shape[-1], 1)
    return (np.linalg.pinv(design) @ target)[..., 0]


def _miss(solution: np.ndarray, c: np.ndarray, dc: np.ndarray) -> np.ndarray:
    """How far (...) each claw's velocity is from the rigid motion's; solution (..., 3)."""
    rotation = solution[..., 2:3] * np.stack([-c[..., 1], c[..., 0]], axis=-1)
    return np.linalg.norm(-(solution[..., :2] + rotation) - dc[..., :2], axis=-1)


def _window(num_frames: int, fps: float) -> int:
    window = max(int(round(SMOOTH_WINDOW_S * fps)) | 1, 5)
    window = min(window, num_frames if num_frames % 2 else num_frames - 1)
    return window if window >= 5 else 0


def _stance_and_plane(claws: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Stance (T, L) and the floor plane coefficients (T, 3) (a, b, c: z = a + b x + c y)."""
    num_frames, num_legs = claws.shape[:2]
    velocity = np.gradient(claws, axis=0) * fps if num_frames > 1 else np.zeros_like(claws)
    speed = np.linalg.norm(velocity, axis=-1)
    swinging = velocity[..., 0] > SWING_SPEED_FRACTION * max(np.percentile(speed, 90), 1e-9)
    # The three lowest claws, then twice: fit the plane, take the claws near it and not
    # swinging, while there are at least three (frames that run out keep their last plane).
    use = np.zeros((num_frames, num_legs), dtype=bool)
    np.put_along_axis(use, np.argsort(claws[..., 2], axis=1)[:, :MIN_STANCE], True, axis=1)
    coef = np.zeros((num_frames, 3))
    active = np.ones(num_frames, dtype=bool)
    design = np.concatenate([np.ones((num_frames, num_legs, 1)), claws[..., :2]], axis=-1)
    for _ in range(2):
        rows = np.where(use[..., None], design, 0.0)
        fitted = (np.linalg.pinv(rows) @ np.where(use, claws[..., 2], 0.0)[..., None])[..., 0]
        coef = np.where(active[:, None], fitted, coef)
        above = claws[..., 2] - np.einsum("tlk,tk->tl", design, coef)
        candidate = (above < FLOOR_TOL_MM) & ~swinging
        active &= candidate.sum(1) >= MIN_STANCE
        use = np.where(active[:, None], candidate, use)
    return use, coef
