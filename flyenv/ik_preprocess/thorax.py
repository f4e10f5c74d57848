"""Thorax pose per frame from the ThC keypoints, and the canonical frames it defines.

Pose trackers write keypoints in a camera, arena or egocentric frame. The six ThC keypoints sit
on the rigid thorax, so a rigid fit of the body's ThC layout (`BodyConfig.thc`) to them in each
frame (Kabsch, one batched SVD over all frames) gives the thorax's position and orientation in
the input frame. Untracked ThC are left out of a frame's fit. Mistracked ones are left out too:
a frame whose fit leaves a ThC farther than `OUTLIER_FACTOR` times the recording's median
distance (and `OUTLIER_MM`) is refitted on the best subset without up to two of its ThC (the
least truncated squared distance over all of them, MSAC), so two mistracked points in the same
frame do not tilt the thorax. The fit is done twice: against the body's layout, then against
the recording's own (each ThC's robust position in the thorax frames of the first pass, turned
onto the body's layout so that the frame keeps its definition), so a fly whose ThC sit a little
off the template's loses none of them while a mistracked one stands out against tracking noise.
Frames with fewer than three tracked ThC take the pose interpolated from their neighbours.

Two outcomes (`ThoraxPose.moving`):

- The thorax stays put (tethered or egocentric input): the pose, median-filtered over
  `DETECT_WINDOW_S` (so a burst of mistracking shorter than half of it cannot decide), moves
  less than `ROOT_MOTION_MM` and turns less than `ROOT_MOTION_DEG` from its median. One
  constant rigid transform, fitted to the robust ThC positions of the whole recording, defines
  the canonical thorax frame (origin and axes of the body's layout: x anterior, y left, z up);
  the clip has no root motion.
- It moves or turns (a fly walking freely, tracked in the world): the legs are expressed in the
  smoothed per-frame thorax frame, and the root motion goes to a canonical world frame: z up
  (the normal of the plane the stance claws walk on, found from claw height and speed, or the
  `up` a user gives), the floor at z = 0, the origin below the thorax in the first frame and x
  along its first heading. Positions and orientations are smoothed with a Savitzky-Golay filter
  (`SMOOTH_WINDOW_S`), velocities are its derivative.

Checks (a `RecordingError`): the recorded layout must match a fly, i.e. be the body's size
within `LAYOUT_SCALE_RANGE` (wrong units otherwise) and fit it, up to scale, within
`LAYOUT_RESIDUAL_FRACTION` of its radius; left and right legs whose labels are swapped (the
layout then fits the mirror image of the fly far better) are refused by name. With fewer than
three legs the orientation about the line through the ThC cannot be found: the canonical frame
then takes the input's axes turned minimally onto that line, and a recording whose ThC move is
refused (give it in the thorax frame and turn the estimate off).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation, Slerp

from flyenv.body import constants as c
from flyenv.ik_preprocess import rigid
from flyenv.ik_preprocess.align import robust_center
from flyenv.ik_preprocess.limits import RecordingError
from flyenv.motion.stance import not_swinging, on_plane, savgol_window

# Root motion: the smoothed thorax leaves its median position by more than this [mm] ...
ROOT_MOTION_MM = 0.25
# ... or its median orientation by more than this [deg].
ROOT_MOTION_DEG = 10.0
# The recorded ThC layout's size relative to the body's (Umeyama scale) must lie in this range.
LAYOUT_SCALE_RANGE = (0.5, 2.0)
# Median RMS residual of the rigid fit, as a fraction of the layout's RMS radius, above which
# the ThC do not form a fly's layout.
LAYOUT_RESIDUAL_FRACTION = 0.25
# Left/right swap: the mirrored labelling fits with less than this fraction of the residual.
SWAP_RESIDUAL_RATIO = 0.5
# A ThC this many times the recording's median distance from its fit away (and at least
# OUTLIER_MM) is left out of that frame's fit.
OUTLIER_FACTOR = 3.0
OUTLIER_MM = 0.05
# Savitzky-Golay window [s] (at least 5 frames) and order of the root smoothing.
SMOOTH_WINDOW_S = 0.05
# Median-filter window of the pose the root-motion test looks at: tracking noise on the ThC of a
# tethered fly (up to 0.05 mm in the df3d file) turns the per-frame pose by several degrees, and
# glitches last a few frames, while a walking fly's travel and turns last longer than this [s].
DETECT_WINDOW_S = 0.25
SMOOTH_ORDER = 3
_MIRROR = np.array(c.MIRROR_LEGS)  # LF<->RF, LM<->RM, LH<->RH
# Frames (evenly spaced) that the recording's own layout and the layout check are taken from.
_LAYOUT_FRAMES = 500


@dataclasses.dataclass(frozen=True, eq=False)
class ThoraxPose:
    """The thorax in every frame of a recording.

    Attributes:
        rotation: (T,) scipy Rotation, thorax frame -> input frame.
        position_mm: (T, 3) thorax origin in the input frame [mm].
        moving: whether root motion was found (see `ROOT_MOTION_MM`, `ROOT_MOTION_DEG`).
        travel_mm: largest distance of the smoothed thorax from its median position [mm].
        turn_deg: largest angle of the smoothed thorax from its median orientation [deg].
        residual_mm: (T,) RMS distance of the tracked ThC from the fitted layout [mm].
        scale: median size of the recorded ThC layout relative to the body's.
        legs_fitted: legs whose ThC entered the fit.
        up: (3,) world up in the input frame (moving clips), else None.
        up_source: "floor" (from the stance claws), "given", "thorax" (the thorax's mean up,
            when too few stance claws were found), or None.
        root_pos_w: (T, 3) thorax position in the canonical world frame [mm], or None.
        root_quat_w: (T, 4) thorax orientation in it (w, x, y, z), or None.
        root_lin_vel_w: (T, 3) [mm/s] or None.
        root_ang_vel_w: (T, 3) [rad/s] or None.
    """

    rotation: Rotation
    position_mm: np.ndarray
    moving: bool
    travel_mm: float
    turn_deg: float
    residual_mm: np.ndarray
    scale: float
    legs_fitted: tuple[str, ...]
    up: np.ndarray | None = None
    up_source: str | None = None
    root_pos_w: np.ndarray | None = None
    root_quat_w: np.ndarray | None = None
    root_lin_vel_w: np.ndarray | None = None
    root_ang_vel_w: np.ndarray | None = None

    def to_thorax(self, points_mm: np.ndarray) -> np.ndarray:
        """Input-frame points (T, ..., 3) [mm] in the thorax frame of their frame; NaN stays."""
        points = np.asarray(points_mm, dtype=float)
        matrices = self.rotation.as_matrix()  # (T, 3, 3)
        shift = points - self.position_mm.reshape(-1, *(1,) * (points.ndim - 2), 3)
        return np.einsum("tji,t...j->t...i", matrices, shift)

    def summary(self) -> dict[str, Any]:
        """JSON-able facts for the clip's metadata and the report."""
        out: dict[str, Any] = {
            "root_motion": self.moving, "travel_mm": self.travel_mm, "turn_deg": self.turn_deg,
            "layout_scale": self.scale, "layout_residual_median_mm":
                float(np.nanmedian(self.residual_mm)),
            "legs_fitted": list(self.legs_fitted),
            "thresholds": {"travel_mm": ROOT_MOTION_MM, "turn_deg": ROOT_MOTION_DEG}}
        if self.moving:
            out["up_in_input_frame"] = self.up.tolist()
            out["up_source"] = self.up_source
            out["distance_mm"] = float(np.linalg.norm(np.diff(self.root_pos_w[:, :2], axis=0),
                                                      axis=1).sum())
        else:
            out["thorax_in_input_frame"] = {
                "position_mm": self.position_mm[0].tolist(),
                "quat_wxyz": self.rotation[0].as_quat(scalar_first=True).tolist()}
        return out


def estimate_thorax_pose(keypoints_mm: np.ndarray, layout_mm: np.ndarray, fps: float, *,
                         up: np.ndarray | None = None, path: str | Path = "recording",
                         ) -> ThoraxPose:
    """Finds the thorax in every frame from the ThC keypoints.

    Args:
        keypoints_mm: (T, 6, 5, 3) keypoints in the input frame [mm], NaN where untracked.
        layout_mm: (6, 3) the body's ThC positions in the thorax frame [mm].
        fps: frame rate [Hz] (smoothing window, velocities).
        up: (3,) world up in the input frame for moving clips; None finds it from the floor.
        path: the recording, named in errors.

    Returns:
        The pose; see the module docstring for what the frames mean.

    Raises:
        RecordingError: no ThC tracked, a layout that does not match a fly (scale, residual,
            left/right swapped), or moving input with fewer than three legs.
    """
    keypoints = np.asarray(keypoints_mm, dtype=float)
    layout = np.asarray(layout_mm, dtype=float)
    thc = keypoints[:, :, 0]  # (T, 6, 3)
    legs = np.flatnonzero(np.isfinite(thc).all(-1).any(0))
    names = tuple(c.LEGS[i] for i in legs)
    if legs.size == 0:
        raise RecordingError(path, "no ThC keypoint is tracked in any frame; the thorax cannot "
                                   "be placed")
    if legs.size < 3:
        return _few_legs(thc, layout, legs, names, fps, path)
    rotation, position, residual, scales, shape_residual = _fit_frames(thc, layout, path)
    scale = float(np.nanmedian(scales))
    _check_layout(thc, layout, legs, shape_residual, scale, path)
    travel, turn = _spread(rotation, position, _window(len(thc), fps, DETECT_WINDOW_S))
    if travel <= ROOT_MOTION_MM and turn <= ROOT_MOTION_DEG:
        rot0, pos0 = _fit_constant(thc, layout, legs)
        return ThoraxPose(rot0 * Rotation.identity(len(thc)), np.tile(pos0, (len(thc), 1)),
                          False, travel, turn, residual, scale, names)
    window = _window(len(thc), fps)
    rotation, position = _smooth(rotation, position, window)
    claws = keypoints[:, :, c.KEYPOINTS.index("Claw")]
    up_vec, source = _up_axis(claws, rotation, position, fps, up, path)
    root = _world_root(rotation, position, claws, up_vec, fps, window)
    return ThoraxPose(rotation, position, True, travel, turn, residual, scale, names, up_vec,
                      source, *root)


# -- fitting --------------------------------------------------------------------------------------

def _fit_frames(thc: np.ndarray, layout: np.ndarray, path: str | Path,
                ) -> tuple[Rotation, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Robust rigid fits of every frame, vectorised over frames.

    A first pass fits the body's layout (`rigid.robust_fits`); the recording's own ThC layout (the
    robust centre of each ThC in the fitted thorax frames, turned onto the body's layout so the
    frame keeps its definition) is then fitted again, so a fly whose ThC sit a little off the
    template's does not have a ThC dropped in every frame, and a mistracked one stands out
    against tracking noise alone.

    Returns rotation (T,), position (T, 3), rigid residual (T,) and the similarity scale (T,)
    and residual (T,) against the body's layout; NaN residuals and scales for frames with
    fewer than 3 ThC.
    """
    tracked = np.isfinite(thc).all(-1)
    if not (tracked.sum(1) >= 3).any():
        raise RecordingError(path, "no frame has three or more ThC keypoints tracked; the "
                                   "thorax pose cannot be found")
    # The recording's own layout, from evenly spaced frames (a robust centre needs no more).
    some = _spaced(tracked.sum(1) >= 3, _LAYOUT_FRAMES)
    rot, pos, use = rigid.robust_fits(thc[some], tracked[some], layout, OUTLIER_FACTOR,
                                       OUTLIER_MM)
    local = np.einsum("tji,tkj->tki", rot, thc[some] - pos[:, None])
    legs = tracked[some].any(0)
    own = layout.copy()
    own[legs] = robust_center(local[:, legs])
    if legs.sum() >= 3:
        turn, shift = rigid.kabsch_batch(layout[None], own, legs[None])
        own = own @ turn[0].T + shift[0]
    rot, pos, use = rigid.robust_fits(thc, tracked, own, OUTLIER_FACTOR, OUTLIER_MM)
    good = use.sum(1) >= 3
    dist = rigid.distances(thc, own, rot, pos)
    with np.errstate(invalid="ignore"):
        residual = np.where(good, np.sqrt(np.where(use, dist ** 2, 0.0).sum(1)
                                          / np.maximum(use.sum(1), 1)), np.nan)
    # The layout check takes medians of these: evenly spaced frames are enough.
    scales, shape_residual = np.full(len(thc), np.nan), np.full(len(thc), np.nan)
    some = _spaced(good, _LAYOUT_FRAMES)
    scales[some], shape_residual[some] = rigid.similarity_batch(thc[some], layout, use[some])
    num_frames = len(thc)
    frames = np.arange(num_frames)
    rotation = Rotation.from_matrix(rot[good])
    position = pos
    if not good.all():  # interpolate the pose of frames with too few ThC
        rotation = Slerp(frames[good], rotation)(np.clip(frames, frames[good][0],
                                                         frames[good][-1]))
        position = np.stack([np.interp(frames, frames[good], pos[good, i])
                             for i in range(3)], axis=1)
    return rotation, position, residual, scales, shape_residual


def _spaced(frames: np.ndarray, count: int) -> np.ndarray:
    """Indices of at most `count` evenly spaced True entries of `frames` (T,) bool."""
    index = np.flatnonzero(frames)
    return index[np.linspace(0, len(index) - 1, min(len(index), count)).astype(int)]


def _check_layout(thc: np.ndarray, layout: np.ndarray, legs: np.ndarray, residual: np.ndarray,
                  scale: float, path: str | Path) -> None:
    lo, hi = LAYOUT_SCALE_RANGE
    if not lo <= scale <= hi:
        raise RecordingError(path, f"the ThC keypoints span {scale:.3g} times the body's ThC "
                                   f"layout (expected {lo:g}-{hi:g}): is the recording in mm? "
                                   f"Convert it, or give a body of this size")
    radius = np.sqrt(np.mean(np.sum((layout[legs] - layout[legs].mean(0)) ** 2, -1)))
    median = float(np.nanmedian(residual)) / scale
    swapped = _swapped_residual(thc, layout, legs) / scale
    if swapped < SWAP_RESIDUAL_RATIO * median:
        raise RecordingError(path, f"left and right legs appear swapped: the ThC fit the "
                                   f"body's layout with a median residual of {median:.3f} mm, "
                                   f"its mirror image with {swapped:.3f} mm; relabel L<->R")
    if median > LAYOUT_RESIDUAL_FRACTION * radius:
        raise RecordingError(path, f"the ThC keypoints do not match a fly's ThC layout (median "
                                   f"rigid-fit residual {median:.3f} mm, more than "
                                   f"{LAYOUT_RESIDUAL_FRACTION:g} of the layout's "
                                   f"{radius:.3f} mm radius): check the leg labels and that "
                                   f"the rows are ThC, CTr, FTi, TiTa, Claw")


def _swapped_residual(thc: np.ndarray, layout: np.ndarray, legs: np.ndarray) -> float:
    """Median similarity residual with left and right labels exchanged (up to 200 frames)."""
    if not np.isin(_MIRROR[legs], legs).all():
        return np.inf
    frames = np.linspace(0, len(thc) - 1, min(len(thc), 200)).astype(int)
    swapped = thc[frames][:, _MIRROR]
    use = np.isfinite(swapped).all(-1)
    enough = use.sum(1) >= 3
    if not enough.any():
        return np.inf
    return float(np.median(rigid.similarity_batch(swapped[enough], layout, use[enough])[1]))


def _fit_constant(thc: np.ndarray, layout: np.ndarray, legs: np.ndarray,
                  ) -> tuple[Rotation, np.ndarray]:
    """One rigid transform fitted to the robust ThC positions of the whole recording."""
    centre = robust_center(thc[:, legs])
    return rigid.kabsch(centre, layout[legs])


def _few_legs(thc: np.ndarray, layout: np.ndarray, legs: np.ndarray, names: tuple[str, ...],
              fps: float, path: str | Path) -> ThoraxPose:
    """One or two legs: a constant transform, orientation only up to the ThC line."""
    num_frames = len(thc)
    centre = robust_center(thc[:, legs])  # (n, 3)
    deviation = np.nanmax(np.linalg.norm(thc[:, legs] - centre, axis=-1), axis=1)
    window = _window(num_frames, fps, DETECT_WINDOW_S)
    filled = np.interp(np.arange(num_frames), np.flatnonzero(np.isfinite(deviation)),
                       deviation[np.isfinite(deviation)])
    travel = float(np.max(savgol_filter(filled, window, SMOOTH_ORDER, axis=0)
                          if window else filled))
    if travel > ROOT_MOTION_MM:
        raise RecordingError(path, f"only {list(names)} have a tracked ThC, which cannot fix "
                                   f"the thorax's orientation, and they move by up to "
                                   f"{travel:.2f} mm: give the recording in the thorax frame "
                                   f"and turn the thorax estimate off (frame='thorax')")
    rotation, scale = Rotation.identity(), 1.0
    if legs.size == 2:
        recorded, body = centre[1] - centre[0], layout[legs[1]] - layout[legs[0]]
        scale = float(np.linalg.norm(recorded) / np.linalg.norm(body))
        rotation, _ = Rotation.align_vectors(recorded[None], body[None])
        lo, hi = LAYOUT_SCALE_RANGE
        if not lo <= scale <= hi:
            raise RecordingError(path, f"the ThC of {list(names)} are {scale:.3g} times as far "
                                       f"apart as the body's (expected {lo:g}-{hi:g}): is the "
                                       f"recording in mm?")
    position = centre.mean(0) - rotation.apply(layout[legs].mean(0))
    residual = np.linalg.norm(rotation.apply(layout[legs]) + position - thc[:, legs], axis=-1)
    with np.errstate(invalid="ignore"):
        rms = np.sqrt(np.nanmean(residual ** 2, axis=1))
    return ThoraxPose(rotation * Rotation.identity(num_frames), np.tile(position, (num_frames, 1)),
                      False, travel, 0.0, rms, scale, names)


# -- smoothing and the world frame ----------------------------------------------------------------


def _window(num_frames: int, fps: float, seconds: float = SMOOTH_WINDOW_S) -> int:
    """Odd Savitzky-Golay window of about `seconds`, or 0 when the clip is too short."""
    return savgol_window(num_frames, fps, seconds)  # at least 5 frames > SMOOTH_ORDER


def _smooth(rotation: Rotation, position: np.ndarray, window: int,
            ) -> tuple[Rotation, np.ndarray]:
    if not window:
        return rotation, position
    quats = rotation.as_quat()
    # One hemisphere from frame to frame, so the components are continuous before filtering.
    flips = np.cumprod(np.r_[1.0, np.sign(np.sum(quats[1:] * quats[:-1], axis=1) + 1e-12)])
    quats = savgol_filter(quats * flips[:, None], window, SMOOTH_ORDER, axis=0)
    return (Rotation.from_quat(quats),
            savgol_filter(position, window, SMOOTH_ORDER, axis=0))


def _spread(rotation: Rotation, position: np.ndarray, window: int) -> tuple[float, float]:
    """Largest travel [mm] and turn [deg] of the thorax from its median pose.

    The deviations are median-filtered over `window` frames first, so a burst of mistracking
    shorter than half the window (a few frames of a glitch) cannot decide root motion, while
    a fly's travel and turns, which last longer, pass unchanged.
    """
    turn = (rotation * rotation.mean().inv()).as_rotvec()
    turn -= np.median(turn, axis=0)
    travel = position - np.median(position, axis=0)
    if window:
        turn = median_filter(turn, size=(window, 1), mode="nearest")
        travel = median_filter(travel, size=(window, 1), mode="nearest")
    return (float(np.linalg.norm(travel, axis=1).max()),
            float(np.degrees(np.linalg.norm(turn, axis=1).max())))


def _up_axis(claws: np.ndarray, rotation: Rotation, position: np.ndarray, fps: float,
             up: np.ndarray | None, path: str | Path = "recording") -> tuple[np.ndarray, str]:
    """World up in the input frame: given, else the normal of the stance claws' plane.

    A given up along which the claws sit above the thorax would put the thorax below the
    floor (an up of the wrong sign, e.g. `--up 0 0 -1` for z-up data): refused.
    """
    thorax_up = rotation.apply([0.0, 0.0, 1.0]).mean(0)
    thorax_up /= np.linalg.norm(thorax_up)
    if up is not None:
        given = np.asarray(up, dtype=float)
        if given.shape != (3,) or not np.isfinite(given).all() or np.linalg.norm(given) == 0:
            raise ValueError(f"up must be a non-zero 3-vector, got {up!r}")
        given = given / np.linalg.norm(given)
        with np.errstate(invalid="ignore"):
            below = np.nanmedian((claws - position[:, None]) @ given)
        if below > 0:
            raise RecordingError(path, f"with up = {np.round(given, 3).tolist()} the claws sit "
                                       f"{below:.2f} mm above the thorax, so the thorax would "
                                       f"stand below the floor: check the sign of up (--up)",
                                 "up")
        return given, "given"
    normal, _ = floor_plane(claws - position[0], thorax_up, fps)
    return (thorax_up, "thorax") if normal is None else (normal, "floor")


def floor_plane(claws_mm: np.ndarray, up_guess: np.ndarray, fps: float,
                iterations: int = 3) -> tuple[np.ndarray | None, float]:
    """The plane stance claws rest on, from claw height and speed.

    Stance claws (`flyenv.motion.stance`, world frame) are slow (below
    `STANCE_SPEED_FRACTION` of the claws' 90th-percentile speed) and low (first the lower half
    of all claw heights along `up_guess`, then within `FLOOR_TOL_MM` of the fitted plane); the
    plane is their least-squares plane (SVD).

    Args:
        claws_mm: (T, L, 3) claw positions [mm], NaN where untracked.
        up_guess: (3,) unit vector roughly up; it orients the normal.
        fps: frame rate [Hz].
        iterations: refits with the stance set of the previous plane.

    Returns:
        The unit normal (3,) pointing up and the plane's offset along it [mm]; (None, nan)
        with fewer than three stance claws or a degenerate (collinear) set.
    """
    claws = np.asarray(claws_mm, dtype=float)
    slow = not_swinging(claws, fps, "world")
    normal, offset = np.asarray(up_guess, dtype=float), np.nan
    height = claws @ normal
    with np.errstate(invalid="ignore"):
        low = height <= np.nanmedian(height)
    for _ in range(iterations):
        points = claws[slow & low]
        if len(points) < 3:
            return None, np.nan
        centred = points - points.mean(0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        if singular[1] < 1e-6 * max(singular[0], 1e-12):
            return None, np.nan
        normal = vt[2] * np.sign(vt[2] @ up_guess)
        offset = float(points.mean(0) @ normal)
        low = on_plane(claws @ normal - offset, signed=False)
    return normal, offset


def _world_root(rotation: Rotation, position: np.ndarray, claws: np.ndarray, up: np.ndarray,
                fps: float, window: int) -> tuple[np.ndarray, ...]:
    """Root pose and velocities in the canonical world frame (see the module docstring)."""
    # Heights are taken from the first thorax position, not the input's origin: an offset
    # along a plane normal a little off `up` would otherwise shift the floor by the offset
    # times the tilt (85 mm for an input 5 m from its origin).
    relative = claws - position[0]
    with np.errstate(invalid="ignore"):
        heights = relative @ up
    floor = np.nanpercentile(heights, 5) if np.isfinite(heights).any() else 0.0
    normal, offset = floor_plane(relative, up, fps)
    if normal is not None and abs(normal @ up) > 0.999:
        floor = offset / (normal @ up)  # the plane along `up` below the first thorax position
    heading = rotation[0].apply([1.0, 0.0, 0.0])
    x_axis = heading - (heading @ up) * up
    if np.linalg.norm(x_axis) < 1e-6:  # thorax pointing straight up: any horizontal x
        x_axis = np.cross(up, [0.0, 1.0, 0.0] if abs(up[1]) < 0.9 else [1.0, 0.0, 0.0])
    x_axis /= np.linalg.norm(x_axis)
    world = np.stack([x_axis, np.cross(up, x_axis), up], axis=1)  # columns: axes in input
    origin = position[0] + floor * up
    pos_w = (position - origin) @ world
    rot_w = Rotation.from_matrix(world.T) * rotation
    dt = 1.0 / fps
    if window:
        lin_vel = savgol_filter(pos_w, window, SMOOTH_ORDER, deriv=1, delta=dt, axis=0)
    else:
        lin_vel = np.gradient(pos_w, dt, axis=0)
    ang_vel = angular_velocity(rot_w, dt)
    return pos_w, rot_w.as_quat(scalar_first=True), lin_vel, ang_vel


def angular_velocity(rotation: Rotation, dt: float) -> np.ndarray:
    """World-frame angular velocity (T, 3) [rad/s] of body orientations (T,) sampled every dt.

    Central differences of the relative rotations (one-sided at the ends).
    """
    num = len(rotation)
    if num < 2:
        return np.zeros((num, 3))
    step = (rotation[1:] * rotation[:-1].inv()).as_rotvec() / dt  # (T-1, 3), world frame
    out = np.empty((num, 3))
    out[0], out[-1] = step[0], step[-1]
    out[1:-1] = 0.5 * (step[1:] + step[:-1])
    return out
