"""Which claws are in stance: the one classifier of the IK's floor and the env's grounding.

A claw is in stance where it rests on the support plane and does not swing: within
`FLOOR_TOL_MM` of the plane, and moving less than `STANCE_SPEED_FRACTION` of the claws'
90th-percentile speed. Where the claws are seen from decides what "moving" means: in the world
(or the recording's frame) a stance claw is still, so its speed counts; in the thorax frame a
stance claw slides backwards as the fly walks, so only its forward velocity (thorax x) counts.
`flyenv.ik_preprocess.thorax.floor_plane` classifies world-frame claws against one plane for the
whole recording; `flyenv.motion.grounding` thorax-frame claws against each frame's plane. Both
smooth with Savitzky-Golay windows from `savgol_window`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

# Stance claws: within this distance of the support plane [mm] ...
FLOOR_TOL_MM = 0.1
# ... and moving slower than this fraction of the claws' 90th-percentile speed.
STANCE_SPEED_FRACTION = 0.3
# The shortest Savitzky-Golay window either smooths with [frames].
MIN_WINDOW = 5


def not_swinging(claws_mm: np.ndarray, fps: float,
                 frame: Literal["world", "thorax"]) -> np.ndarray:
    """Claws slow enough for stance (module doc): (T, L) bool.

    Args:
        claws_mm: (T, L, 3) claw positions [mm]; NaN where untracked (never slow).
        fps: frame rate [Hz].
        frame: "world": the claws' speed counts; "thorax": their forward (x) velocity does.
    """
    claws = np.asarray(claws_mm, dtype=float)
    if len(claws) > 1:
        velocity = np.gradient(claws, axis=0) * fps
    else:
        velocity = np.zeros_like(claws)
    speed = np.linalg.norm(velocity, axis=-1)
    with np.errstate(invalid="ignore"):
        limit = STANCE_SPEED_FRACTION * max(float(np.nanpercentile(speed, 90)), 1e-9)
        if frame == "world":
            return speed < limit
        return ~(velocity[..., 0] > limit)


def on_plane(distance_mm: np.ndarray, *, signed: bool) -> np.ndarray:
    """Claws on the support plane: (...) bool from their distance to it (...) [mm].

    `signed`: claws below the plane count (a per-frame plane through the lowest claws);
    otherwise within `FLOOR_TOL_MM` on either side. NaN is never on it.
    """
    with np.errstate(invalid="ignore"):
        return (distance_mm if signed else np.abs(distance_mm)) < FLOOR_TOL_MM


def savgol_window(num_frames: int, fps: float, seconds: float) -> int:
    """Odd Savitzky-Golay window of about `seconds`, or 0 for a clip shorter than `MIN_WINDOW`.

    At least `MIN_WINDOW` frames, and at most the clip's (odd) length.
    """
    window = max(int(round(seconds * fps)) | 1, MIN_WINDOW)
    window = min(window, num_frames if num_frames % 2 else num_frames - 1)
    return window if window >= MIN_WINDOW else 0
