"""Root pose and velocity for clips without root motion, from the legs alone.

A tethered or egocentric recording gives the legs in the thorax frame and nothing about where
the thorax is. Two estimates fill that in:

- Grounding (`ground`): in each frame the stance claws (low, and not swinging forward) are
  fitted with a plane, z = a + b x + c y in the thorax frame (least squares,
  `scipy.linalg.lstsq`); the thorax then stands at the plane's distance above a flat floor
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
from scipy.linalg import lstsq
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation

# Stance claws: within this height of the frame's floor plane [mm] ...
FLOOR_TOL_MM = 0.1
# ... and not swinging: forward speed in the thorax frame below this fraction of the claws'
# 90th-percentile speed.
SWING_SPEED_FRACTION = 0.3
SMOOTH_WINDOW_S = 0.05
MIN_STANCE = 3
# Odometry drops a stance claw whose velocity the rigid motion misses by more than this
# fraction of the estimated speed, and solves again.
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
    """Which claws are in stance (see the module docstring) and the floor plane per frame.

    Args:
        claws_mm: (T, L) x (3,) claw positions in the thorax frame [mm], finite.
        fps: frame rate [Hz].

    Returns:
        (T, L) bool.
    """
    return _stance_and_plane(np.asarray(claws_mm, dtype=float), fps)[0]


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
    solution = np.full((len(claws), 3), np.nan)  # vx, vy, wz
    for t in range(len(claws)):
        use = stance[t]
        n = int(use.sum())
        if n == 0:
            continue
        solution[t] = _rigid_planar_motion(claws[t, use], claw_vel[t, use])
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


def _rigid_planar_motion(c: np.ndarray, dc: np.ndarray) -> np.ndarray:
    """(vx, vy, wz) with dc = -(v + w x c) for claws c (n, 3) moving at dc (n, 3).

    Consensus: each pair of claws gives a rigid motion; the claws within `OUTLIER_FRACTION`
    of its speed agree with it. The largest agreeing set is solved by least squares. Ties go
    to the motion that misses all the stance claws least relative to its speed (the summed
    miss over its speed, scale-free). Choosing the faster motion instead, as this did before,
    let a swing claw mislabelled as stance win whenever three noisy claws disagreed: on
    turning gaits at 100 Hz with 0.02 mm tracking noise it misread the yaw rate by up to
    1.2 rad/s, where this rule stays within 0.2 rad/s (17% of fast turns) and 4% of the
    speed, noise-free too (tests/test_ik_frames.py).
    """
    if len(c) == 1:
        return np.array([-dc[0, 0], -dc[0, 1], 0.0])
    best, best_key = np.ones(len(c), dtype=bool), (-1, -np.inf)
    for a, b in itertools.combinations(range(len(c)), 2):
        pair = np.zeros(len(c), dtype=bool)
        pair[[a, b]] = True
        solution = _planar_lstsq(c[pair], dc[pair])
        miss = _miss(solution, c, dc)
        speed = float(np.linalg.norm(solution[:2]))
        agree = miss <= OUTLIER_FRACTION * speed + 1e-9
        agree |= pair
        key = (int(agree.sum()), -float(miss.sum()) / (speed + 1e-9))
        if key > best_key:
            best, best_key = agree, key
    return _planar_lstsq(c[best], dc[best])


def _planar_lstsq(c: np.ndarray, dc: np.ndarray) -> np.ndarray:
    # vx - wz cy = -dcx ; vy + wz cx = -dcy
    n = len(c)
    design = np.zeros((2 * n, 3))
    design[0::2, 0], design[0::2, 2] = 1.0, -c[:, 1]
    design[1::2, 1], design[1::2, 2] = 1.0, c[:, 0]
    return lstsq(design, -dc[:, :2].reshape(-1))[0]


def _miss(solution: np.ndarray, c: np.ndarray, dc: np.ndarray) -> np.ndarray:
    predicted = -(solution[:2] + solution[2] * np.stack([-c[:, 1], c[:, 0]], axis=1))
    return np.linalg.norm(predicted - dc[:, :2], axis=1)


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
    stance = np.zeros((num_frames, num_legs), dtype=bool)
    coef = np.zeros((num_frames, 3))
    for t in range(num_frames):
        lowest = np.argsort(claws[t, :, 2])[:MIN_STANCE]
        use = np.zeros(num_legs, dtype=bool)
        use[lowest] = True
        for _ in range(2):
            design = np.column_stack([np.ones(use.sum()), claws[t, use, 0], claws[t, use, 1]])
            coef[t] = lstsq(design, claws[t, use, 2])[0]
            above = claws[t, :, 2] - (coef[t, 0] + coef[t, 1:] @ claws[t, :, :2].T)
            candidate = (above < FLOOR_TOL_MM) & ~swinging[t]
            if candidate.sum() < MIN_STANCE:
                break
            use = candidate
        stance[t] = use
    return stance, coef
