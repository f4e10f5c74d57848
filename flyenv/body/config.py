"""`BodyConfig`: the single description of the fly's kinematic tree.

The IK chain (`flyenv.body.kinematics`) and the MuJoCo model (`flyenv.body.mjcf`) are both built
from one `BodyConfig`, and a `ReferenceMotion` stores the config it was solved for as JSON, so
the simulator rebuilds exactly the body whose joint angles it replays.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flyenv.body import constants as c

# 2: tarsus_tilt_rad (version 1 has none: every tilt 0).
BODY_SCHEMA_VERSION = 2

Vec3 = tuple[float, float, float]


def _as_tuple(array: np.ndarray) -> tuple:
    # Nested tuples of Python floats: hashable, frozen, and JSON-friendly.
    return tuple(_as_tuple(a) for a in array) if array.ndim > 1 else tuple(float(x) for x in array)


@dataclasses.dataclass(frozen=True)
class BodyConfig:
    """Kinematic description of the fly: where each leg attaches, its segment lengths, its bounds.

    The zero pose has every segment pointing along -z from its proximal keypoint; per leg the
    chain is `Rx(ThC_yaw) Ry(ThC_pitch) Rz(ThC_roll) T(0,0,-L_coxa) Ry(CTr_pitch) Rz(CTr_roll)
    T(0,0,-L_femur) Ry(FTi_pitch) T(0,0,-L_tibia) Ry(TiTa_pitch) T(0,L_tarsus sin(tilt),
    -L_tarsus cos(tilt))` (SeqIKPy's convention, whose tarsus has no tilt).

    Attributes:
        thc_mm: ThC position of each leg in the thorax frame, (6, 3) [mm], legs in `LEGS` order.
        segment_lengths_mm: coxa, femur, tibia, tarsus length of each leg, (6, 4) [mm].
        joint_bounds_rad: lower and upper bound of each DOF, (42, 2) [rad], `DOF_NAMES` order.
        name: a label recorded with motions (e.g. "neuromechfly_template" or "data:<file>").
        tarsus_tilt_rad: each leg's tarsus angle out of the plane the femur, tibia and tarsus
            turn in (towards +y of the TiTa pitch axis), (6,) [rad], |tilt| < pi/2. The
            template's is 0 (the chain is planar from the CTr on); a tracked fly's claws sit a
            few degrees off that plane, consistently per leg (`--body data` measures it).
    """

    thc_mm: tuple[Vec3, ...] = c.TEMPLATE_THC_MM
    segment_lengths_mm: tuple[tuple[float, float, float, float], ...] = dataclasses.field(
        default_factory=lambda: _as_tuple(_lengths_from_keypoints(
            np.asarray(c.TEMPLATE_KEYPOINTS_MM)))
    )
    joint_bounds_rad: tuple[tuple[float, float], ...] = c.JOINT_BOUNDS_RAD
    name: str = "neuromechfly_template"
    tarsus_tilt_rad: tuple[float, ...] = (0.0,) * c.NUM_LEGS

    def __post_init__(self) -> None:
        thc = np.asarray(self.thc_mm, dtype=float)
        lengths = np.asarray(self.segment_lengths_mm, dtype=float)
        bounds = np.asarray(self.joint_bounds_rad, dtype=float)
        tilt = np.asarray(self.tarsus_tilt_rad, dtype=float)
        _check(tilt.shape == (c.NUM_LEGS,),
               f"tarsus_tilt_rad must have shape (6,), got {tilt.shape}")
        _check(bool(np.isfinite(tilt).all()) and bool((np.abs(tilt) < np.pi / 2).all()),
               f"tarsus_tilt_rad must be finite and within (-pi/2, pi/2), got {tilt.tolist()}")
        _check(thc.shape == (c.NUM_LEGS, 3), f"thc_mm must have shape (6, 3), got {thc.shape}")
        _check(lengths.shape == (c.NUM_LEGS, c.NUM_SEGMENTS),
               f"segment_lengths_mm must have shape (6, 4), got {lengths.shape}")
        _check(bounds.shape == (c.NUM_DOFS, 2),
               f"joint_bounds_rad must have shape (42, 2), got {bounds.shape}")
        for field, value in (("thc_mm", thc), ("segment_lengths_mm", lengths),
                             ("joint_bounds_rad", bounds)):
            _check(bool(np.isfinite(value).all()), f"{field} must be finite")
        bad = np.argwhere(lengths <= 0)
        _check(bad.size == 0, "segment_lengths_mm must be > 0; not so for "
               + ", ".join(f"{c.LEGS[i]}_{c.SEGMENTS[j]}" for i, j in bad))
        bad_dofs = [c.DOF_NAMES[i] for i in np.flatnonzero(bounds[:, 0] > bounds[:, 1])]
        _check(not bad_dofs, f"joint_bounds_rad must have lower <= upper; not so for {bad_dofs}")
        # Normalise to nested float tuples so equal bodies compare and hash equal.
        object.__setattr__(self, "thc_mm", _as_tuple(thc))
        object.__setattr__(self, "segment_lengths_mm", _as_tuple(lengths))
        object.__setattr__(self, "joint_bounds_rad", _as_tuple(bounds))
        object.__setattr__(self, "tarsus_tilt_rad", _as_tuple(tilt))

    # Array views -------------------------------------------------------------------------

    @property
    def thc(self) -> np.ndarray:
        """ThC positions, (6, 3) [mm]."""
        return np.asarray(self.thc_mm, dtype=float)

    @property
    def lengths(self) -> np.ndarray:
        """Segment lengths, (6, 4) [mm]."""
        return np.asarray(self.segment_lengths_mm, dtype=float)

    @property
    def tarsus_tilt(self) -> np.ndarray:
        """Tarsus tilts, (6,) [rad]."""
        return np.asarray(self.tarsus_tilt_rad, dtype=float)

    @property
    def bounds(self) -> np.ndarray:
        """Joint bounds, (42, 2) [rad]."""
        return np.asarray(self.joint_bounds_rad, dtype=float)

    def zero_pose_keypoints(self) -> np.ndarray:
        """Keypoints with all joint angles zero, (6, 5, 3) [mm]: the body's template."""
        depth = np.concatenate([np.zeros((c.NUM_LEGS, 1)), np.cumsum(self.lengths, axis=1)], 1)
        keypoints = np.repeat(self.thc[:, None, :], c.NUM_KEYPOINTS, axis=1)
        keypoints[..., 2] -= depth
        tarsus, tilt = self.lengths[:, -1], self.tarsus_tilt
        keypoints[:, -1, 1] += tarsus * np.sin(tilt)
        keypoints[:, -1, 2] += tarsus * (1.0 - np.cos(tilt))
        return keypoints

    # Constructors ------------------------------------------------------------------------

    @classmethod
    def default(cls) -> BodyConfig:
        """The NeuroMechFly locomotion template used by SeqIKPy."""
        return cls()

    @classmethod
    def from_keypoints(cls, keypoints_mm: np.ndarray | Sequence, *, name: str = "custom",
                       joint_bounds_rad: np.ndarray | None = None) -> BodyConfig:
        """Builds a body from per-leg keypoints (e.g. a template or a recording's mean pose).

        Args:
            keypoints_mm: (6, 5, 3) ThC, CTr, FTi, TiTa, Claw of each leg [mm]. Only the ThC row
                and the distances between consecutive rows are used.
            name: label recorded with motions solved for this body.
            joint_bounds_rad: (42, 2) bounds; the default template's when omitted.

        Returns:
            The body config.
        """
        kp = np.asarray(keypoints_mm, dtype=float)
        _check(kp.shape == (c.NUM_LEGS, c.NUM_KEYPOINTS, 3),
               f"keypoints_mm must have shape (6, 5, 3), got {kp.shape}")
        bounds = c.JOINT_BOUNDS_RAD if joint_bounds_rad is None else joint_bounds_rad
        return cls(thc_mm=_as_tuple(kp[:, 0]), segment_lengths_mm=_as_tuple(
            _lengths_from_keypoints(kp)), joint_bounds_rad=_as_tuple(np.asarray(bounds)),
            name=name)

    def replace(self, **changes: Any) -> BodyConfig:
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    def mirrored(self) -> BodyConfig:
        """The body's mirror image across the sagittal plane (thorax y -> -y).

        Each leg takes its partner's ThC (y negated), lengths, tarsus tilt (negated) and joint
        ranges (negated and swapped for yaw and roll, `MIRROR_SIGN`), so the mirror of a pose
        of this body is a pose of the mirrored body. A left-right symmetric body (the template)
        is its own mirror and comes back unchanged, name included; any other is named
        "<name>:mirrored" (and the mirror of that is the original again).
        """
        legs, dofs = np.asarray(c.MIRROR_LEGS), np.asarray(c.MIRROR_DOF)
        sign = np.asarray(c.MIRROR_SIGN, dtype=float)[:, None]
        bounds = np.sort(self.bounds[dofs] * sign, axis=1)
        mirror = self.replace(thc_mm=_as_tuple(self.thc[legs] * (1.0, -1.0, 1.0)),
                              segment_lengths_mm=_as_tuple(self.lengths[legs]),
                              joint_bounds_rad=_as_tuple(bounds),
                              tarsus_tilt_rad=_as_tuple(-self.tarsus_tilt[legs]))
        if mirror == self:
            return self
        name = self.name.removesuffix(":mirrored")
        return mirror.replace(name=name if name != self.name else f"{name}:mirrored")

    # Serialization ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, with a schema version and the names the arrays are ordered by."""
        return {
            "schema_version": BODY_SCHEMA_VERSION,
            "name": self.name,
            "legs": list(c.LEGS),
            "segments": list(c.SEGMENTS),
            "dof_names": list(c.DOF_NAMES),
            "thc_mm": [list(v) for v in self.thc_mm],
            "segment_lengths_mm": [list(v) for v in self.segment_lengths_mm],
            "joint_bounds_rad": [list(v) for v in self.joint_bounds_rad],
            "tarsus_tilt_rad": list(self.tarsus_tilt_rad),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "body config") -> BodyConfig:
        """Inverse of `to_dict`.

        Args:
            data: the dict, e.g. parsed from JSON.
            source: what to name in error messages (a file name, say).

        Raises:
            ValueError: on a newer schema, unknown or missing keys, or names in another order.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int) or version > BODY_SCHEMA_VERSION or version < 1:
            raise ValueError(f"{source}: schema_version must be an integer in "
                             f"[1, {BODY_SCHEMA_VERSION}], got {version!r}")
        known = set(cls().to_dict())
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; expected {sorted(known)}")
        for key, expected in (("legs", c.LEGS), ("segments", c.SEGMENTS),
                              ("dof_names", c.DOF_NAMES)):
            if key in data and (not isinstance(data[key], list | tuple)
                                or tuple(data[key]) != expected):
                raise ValueError(f"{source}: {key} must be {list(expected)}, got {data[key]}")
        required = ("thc_mm", "segment_lengths_mm", "joint_bounds_rad",
                    *(("tarsus_tilt_rad",) if version >= 2 else ()))
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{source}: missing keys {missing}")
        arrays = {}
        for key in ("thc_mm", "segment_lengths_mm", "joint_bounds_rad", "tarsus_tilt_rad"):
            if key not in data:  # tarsus_tilt_rad of schema version 1: every tilt 0
                continue
            try:
                arrays[key] = _as_tuple(np.asarray(data[key], dtype=float))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{source}: {key} must be a numeric array ({err})") from err
        try:
            return cls(**arrays, name=str(data.get("name", "custom")))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err

    def to_json(self) -> str:
        """JSON text of `to_dict()`."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, *, source: str = "body config") -> BodyConfig:
        """Inverse of `to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not valid JSON ({err})") from err
        return cls.from_dict(data, source=source)


def _lengths_from_keypoints(keypoints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.diff(keypoints, axis=-2), axis=-1)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"BodyConfig: {message}")
