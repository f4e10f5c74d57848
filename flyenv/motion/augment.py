"""New clips from a clip: its mirror image, and the same motion played faster or slower.

A policy trained on one recording sees one fly's gait at one pace. The mirror image (the fly
walking the same way with left and right exchanged, as if filmed in a mirror) is a pose sequence
the body can make, with its own contacts and turns; a clip played at another speed keeps every
pose and changes the stride frequency, as flies do over their range of walking speeds. Both are
standard data augmentation for motion imitation. Each keeps a record under
`metadata["augmented"]` (a list, one entry per augmentation, in the order applied).
`AugmentConfig` says which an environment adds to every clip it loads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from flyenv.body import constants as c
from flyenv.motion.format import ReferenceMotion

# Thorax-frame or world-frame vectors under the mirror y -> -y: a position or a velocity
# negates y, an angular velocity (a pseudovector) negates x and z.
_FLIP_Y = np.array([1.0, -1.0, 1.0])
_FLIP_XZ = np.array([-1.0, 1.0, -1.0])
_LEGS = np.asarray(c.MIRROR_LEGS)


def mirror(motion: ReferenceMotion) -> ReferenceMotion:
    """The clip's mirror image across the fly's sagittal plane (thorax y -> -y).

    Each leg plays its partner's angles (`c.MIRROR_DOF`) with yaw and roll negated
    (`c.MIRROR_SIGN`), so its forward kinematics on `motion.body.mirrored()` are the original
    keypoints with y negated. Root motion is mirrored in the world's x-z plane (a left turn
    becomes a right turn); keypoints, IK errors, the underdetermined flags, `missing_legs` and
    the metadata's per-leg dicts change legs with it. Mirroring twice gives the clip back.

    Args:
        motion: the clip.

    Returns:
        The mirrored clip, its body `motion.body.mirrored()`.
    """
    sign = np.asarray(c.MIRROR_SIGN, dtype=float)
    arrays: dict[str, np.ndarray | None] = {
        "joint_angles": motion.joint_angles[:, c.MIRROR_DOF] * sign,
        "joint_velocities": _map(motion.joint_velocities,
                                 lambda v: v[:, c.MIRROR_DOF] * sign),
        "root_pos": _map(motion.root_pos, lambda p: p * _FLIP_Y),
        # The reflection S R S with S = diag(1, -1, 1): (w, x, y, z) -> (w, -x, y, -z).
        "root_quat": _map(motion.root_quat, lambda q: q * np.array([1.0, -1.0, 1.0, -1.0])),
        "root_lin_vel": _map(motion.root_lin_vel, lambda v: v * _FLIP_Y),
        "root_ang_vel": _map(motion.root_ang_vel, lambda w: w * _FLIP_XZ),
        "keypoints": _map(motion.keypoints, lambda k: k[:, _LEGS] * _FLIP_Y),
        "fk_keypoints": _map(motion.fk_keypoints, lambda k: k[:, _LEGS] * _FLIP_Y),
        "ik_error": _map(motion.ik_error, lambda e: e[:, _LEGS]),
        "underdetermined": _map(motion.underdetermined, lambda u: u[:, _LEGS]),
    }
    partner = {leg: c.LEGS[_LEGS[i]] for i, leg in enumerate(c.LEGS)}
    metadata = {key: _swap_legs(value, partner) for key, value in motion.metadata.items()}
    metadata["missing_legs"] = [partner[leg] for leg in motion.missing_legs]
    if "body" in motion.metadata:  # absent: the template, its own mirror
        metadata["body"] = motion.body.mirrored().to_dict()
    metadata["augmented"] = [*motion.metadata.get("augmented", []), {"mirror": True}]
    return motion.replace(metadata=metadata, **arrays)


def time_scale(motion: ReferenceMotion, speed: float) -> ReferenceMotion:
    """The clip played `speed` times as fast: the same frames at `speed` times the frame rate.

    Every pose and path is kept; velocities (joint, root linear and angular) scale by `speed`,
    and the clip lasts `1 / speed` as long. `flyenv.motion.resample` then brings it to the
    simulator's step like any clip.

    Args:
        motion: the clip.
        speed: playback speed, > 0 (0.8: 20% slower; 1.25: 25% faster).

    Raises:
        ValueError: `speed` is not a finite number > 0, or the new frame rate leaves the
            format's range.
    """
    speed = float(speed)
    if not (np.isfinite(speed) and speed > 0):
        raise ValueError(f"time_scale: speed must be a finite number > 0, got {speed}")
    scaled = {name: _map(getattr(motion, name), lambda v: v * speed)
              for name in ("joint_velocities", "root_lin_vel", "root_ang_vel")}
    metadata = dict(motion.metadata)
    metadata["augmented"] = [*motion.metadata.get("augmented", []), {"speed": speed}]
    return motion.replace(fps=motion.fps * speed, metadata=metadata, **scaled)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Clips an environment adds to its reference, made from each clip it loads.

    Attributes:
        mirror: add every clip's mirror image (`mirror`), named "<clip>_mirrored".
        speeds: add every clip played at each of these speeds (`time_scale`), named
            "<clip>_speed<speed>", e.g. (0.8, 1.25); each finite, > 0 and not 1.
    """

    mirror: bool = False
    speeds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.mirror, bool):
            raise ValueError(f"AugmentConfig.mirror must be true or false, got {self.mirror!r}")
        speeds = self.speeds
        if not isinstance(speeds, list | tuple) or not all(
                isinstance(s, int | float) and not isinstance(s, bool) for s in speeds):
            raise ValueError(f"AugmentConfig.speeds must be a list of numbers, got {speeds!r}")
        bad = [s for s in speeds if not (math.isfinite(s) and s > 0 and s != 1)]
        if bad or len(set(speeds)) != len(speeds):
            raise ValueError(f"AugmentConfig.speeds must be distinct finite numbers > 0 other "
                             f"than 1, got {list(speeds)}")
        object.__setattr__(self, "speeds", tuple(float(s) for s in speeds))

    def clips(self, name: str, motion: ReferenceMotion) -> list[tuple[str, ReferenceMotion]]:
        """The (name, clip) pairs this config adds for one clip, without the clip itself."""
        added = [(f"{name}_mirrored", mirror(motion))] if self.mirror else []
        return added + [(f"{name}_speed{speed:g}", time_scale(motion, speed))
                        for speed in self.speeds]


def _map(value: np.ndarray | None, fn: Callable[[np.ndarray], np.ndarray],
         ) -> np.ndarray | None:
    return None if value is None else fn(np.asarray(value))


def _swap_legs(value: Any, partner: dict[str, str]) -> Any:
    """A metadata dict keyed by leg names, with its legs exchanged; anything else unchanged."""
    if isinstance(value, dict) and value and set(value) <= set(partner):
        return {partner[leg]: value[leg] for leg in value}
    return value
