"""`ReferenceMotion`: joint trajectories (and optional root and keypoint tracks) of one clip.

Angles are radians in the body's `DOF_NAMES` order, positions millimetres, quaternions
(w, x, y, z) in the world frame, times in seconds. A leg missing from the recording is listed in
`metadata["missing_legs"]` and its seven angles are NaN in every frame; NaN anywhere else is an
error, so nothing downstream can mistake a missing leg for zeros.

Limits checked on construction: `fps` within [`MIN_FPS_HZ`, `MAX_FPS_HZ`] (0.1 Hz to 1 MHz: a
clip resampled to the physics step included), `root_pos` finite and within `MAX_ROOT_POS_MM`
(10 m) of the origin.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig

# Optional per-frame arrays: name -> trailing shape (after the frame axis).
OPTIONAL_ARRAYS: dict[str, tuple[int, ...]] = {
    "joint_velocities": (c.NUM_DOFS,),
    "root_pos": (3,),
    "root_quat": (4,),
    "root_lin_vel": (3,),
    "root_ang_vel": (3,),
    "keypoints": (c.NUM_LEGS, c.NUM_KEYPOINTS, 3),
    "fk_keypoints": (c.NUM_LEGS, c.NUM_KEYPOINTS, 3),
    "ik_error": (c.NUM_LEGS, c.NUM_KEYPOINTS),
}
MIN_FPS_HZ = 0.1
MAX_FPS_HZ = 1e6
MAX_ROOT_POS_MM = 1e4
# Arrays that may hold NaN where data is missing (tracking dropouts, missing legs).
_NAN_ALLOWED = ("keypoints", "fk_keypoints", "ik_error")
_ROOT_ARRAYS = ("root_pos", "root_quat", "root_lin_vel", "root_ang_vel")


@dataclasses.dataclass(frozen=True)
class BoundViolation:
    """Frames in which one DOF leaves its joint range."""

    dof_name: str
    frames: tuple[int, ...]
    worst_rad: float
    bounds_rad: tuple[float, float]

    def __str__(self) -> str:
        lo, hi = np.degrees(self.bounds_rad)
        shown = ", ".join(map(str, self.frames[:5])) + (", ..." if len(self.frames) > 5 else "")
        return (f"{self.dof_name}: {len(self.frames)} frame(s) [{shown}] outside "
                f"[{lo:.1f}, {hi:.1f}] deg, worst {np.degrees(self.worst_rad):.2f} deg")


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceMotion:
    """One clip of reference motion.

    Attributes:
        fps: frame rate [Hz].
        joint_angles: (T, 42) joint angles [rad], columns `dof_names`.
        dof_names: the 42 DOF names; must equal the body's `DOF_NAMES`.
        joint_velocities: (T, 42) [rad/s] or None (`resample` fills it in).
        root_pos: (T, 3) thorax position in the world [mm] or None.
        root_quat: (T, 4) thorax orientation, unit quaternion (w, x, y, z), or None.
        root_lin_vel: (T, 3) thorax velocity in the world frame [mm/s] or None.
        root_ang_vel: (T, 3) thorax angular velocity in the world frame [rad/s] or None.
        keypoints: (T, 6, 5, 3) tracked keypoints in the thorax frame [mm] or None (NaN where
            tracking dropped out).
        fk_keypoints: (T, 6, 5, 3) forward kinematics of `joint_angles` [mm] or None.
        ik_error: (T, 6, 5) distance between keypoints and fk_keypoints [mm] or None.
        underdetermined: (T, 6) bool or None: True where the IK fit of a leg had too little to
            go on in that frame (a keypoint beyond the ThC untracked), so the angles the data
            could not determine were interpolated from neighbouring frames.
        metadata: JSON-able dict: source, `body` (a `BodyConfig.to_dict()`), tool versions,
            `missing_legs`, anything else.
    """

    fps: float
    joint_angles: np.ndarray
    dof_names: tuple[str, ...] = c.DOF_NAMES
    joint_velocities: np.ndarray | None = None
    root_pos: np.ndarray | None = None
    root_quat: np.ndarray | None = None
    root_lin_vel: np.ndarray | None = None
    root_ang_vel: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    fk_keypoints: np.ndarray | None = None
    ik_error: np.ndarray | None = None
    underdetermined: np.ndarray | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fps", _check_fps(self.fps))
        if tuple(self.dof_names) != c.DOF_NAMES:
            pairs = zip(self.dof_names, c.DOF_NAMES, strict=False)
            diff = [(i, a, b) for i, (a, b) in enumerate(pairs) if a != b][:3]
            raise ValueError(f"ReferenceMotion: dof_names must be the 42 names of "
                             f"flyenv.body.DOF_NAMES in order; got {len(self.dof_names)} names, "
                             f"first differences (index, got, expected): {diff}")
        object.__setattr__(self, "dof_names", c.DOF_NAMES)
        if not isinstance(self.metadata, dict):
            raise ValueError("ReferenceMotion: metadata must be a dict")
        angles = _frozen_array("joint_angles", self.joint_angles)
        if angles.ndim != 2 or angles.shape[1] != c.NUM_DOFS or angles.shape[0] < 2:
            raise ValueError(f"ReferenceMotion: joint_angles must have shape (T, 42) with "
                             f"T >= 2, got {angles.shape}")
        object.__setattr__(self, "joint_angles", angles)
        num_frames = angles.shape[0]
        for name, trailing in OPTIONAL_ARRAYS.items():
            value = getattr(self, name)
            if value is None:
                continue
            value = _frozen_array(name, value)
            if value.shape != (num_frames, *trailing):
                raise ValueError(f"ReferenceMotion: {name} must have shape "
                                 f"{(num_frames, *trailing)}, got {value.shape}")
            if name not in _NAN_ALLOWED and name != "joint_velocities" and not np.isfinite(
                    value).all():
                raise ValueError(f"ReferenceMotion: {name} has non-finite values in frames "
                                 f"{_bad_frames(value)}")
            object.__setattr__(self, name, value)
        if self.underdetermined is not None:
            object.__setattr__(self, "underdetermined",
                               _frozen_flags(self.underdetermined, num_frames))
        self._check_missing_legs()
        far = None if self.root_pos is None else np.abs(self.root_pos) > MAX_ROOT_POS_MM
        if far is not None and far.any():
            raise ValueError(f"ReferenceMotion: root_pos must stay within {MAX_ROOT_POS_MM:g} mm "
                             f"of the origin; frames {_bad_frames(far)} do not")
        if self.root_quat is not None:
            norm = np.linalg.norm(self.root_quat, axis=1)
            if np.abs(norm - 1).max() > 1e-6:
                raise ValueError(f"ReferenceMotion: root_quat must be unit quaternions; frames "
                                 f"{_bad_frames(np.abs(norm - 1) > 1e-6)} are not")

    def _check_missing_legs(self) -> None:
        missing = self.missing_legs
        unknown = [leg for leg in missing if leg not in c.LEGS]
        if unknown:
            raise ValueError(f"ReferenceMotion: metadata['missing_legs'] has unknown legs "
                             f"{unknown}; legs are {list(c.LEGS)}")
        expected_nan = np.repeat(self.leg_mask == 0, c.DOF_PER_LEG)
        for name in ("joint_angles", "joint_velocities"):
            value = getattr(self, name)
            if value is None:
                continue
            finite = np.isfinite(value)
            if (finite[:, expected_nan]).any():
                raise ValueError(f"ReferenceMotion: {name} of missing legs {list(missing)} "
                                 f"must be NaN in every frame")
            bad = ~finite[:, ~expected_nan]
            if bad.any():
                cols = np.flatnonzero(bad.any(axis=0))
                names = [c.DOF_NAMES[i] for i in np.flatnonzero(~expected_nan)[cols]][:5]
                raise ValueError(f"ReferenceMotion: {name} has non-finite values in frames "
                                 f"{_bad_frames(bad)} of DOFs {names} (a leg absent from the "
                                 f"recording must be listed in metadata['missing_legs'])")

    # Derived properties -------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return self.joint_angles.shape[0]

    @property
    def dt(self) -> float:
        """Time between frames [s]."""
        return 1.0 / self.fps

    @property
    def duration_s(self) -> float:
        """Time from the first to the last frame [s]."""
        return (self.num_frames - 1) / self.fps

    @property
    def has_root(self) -> bool:
        """Whether the clip carries root (thorax) motion."""
        return self.root_pos is not None and self.root_quat is not None

    @property
    def missing_legs(self) -> tuple[str, ...]:
        """Legs absent from the recording (their angles are NaN)."""
        return tuple(self.metadata.get("missing_legs", ()))

    @property
    def leg_mask(self) -> np.ndarray:
        """(6,) 1.0 for legs present, 0.0 for missing legs, in `LEGS` order."""
        return np.array([leg not in self.missing_legs for leg in c.LEGS], dtype=float)

    @property
    def body(self) -> BodyConfig:
        """The body the clip was made for (`metadata["body"]`), the default template if absent."""
        if "body" not in self.metadata:
            return BodyConfig.default()
        return BodyConfig.from_dict(self.metadata["body"], source="metadata['body']")

    # Checks -------------------------------------------------------------------------------

    def bound_violations(self, body: BodyConfig | None = None, tol_rad: float = 1e-6,
                         ) -> list[BoundViolation]:
        """DOFs whose angle leaves the body's joint range, with the frames where it does.

        Args:
            body: the body to check against; `self.body` when None.
            tol_rad: slack allowed beyond each bound [rad].
        """
        bounds = (self.body if body is None else body).bounds
        angles = self.joint_angles
        with np.errstate(invalid="ignore"):
            outside = (angles < bounds[:, 0] - tol_rad) | (angles > bounds[:, 1] + tol_rad)
        violations = []
        for dofid in np.flatnonzero(outside.any(axis=0)):
            frames = np.flatnonzero(outside[:, dofid])
            excess = np.maximum(bounds[dofid, 0] - angles[frames, dofid],
                                angles[frames, dofid] - bounds[dofid, 1])
            worst = angles[frames[np.argmax(excess)], dofid]
            violations.append(BoundViolation(c.DOF_NAMES[dofid], tuple(int(f) for f in frames),
                                             float(worst), tuple(bounds[dofid])))
        return violations

    def validate(self, body: BodyConfig | None = None) -> None:
        """Raises if any joint angle leaves its range.

        Shapes and finiteness are checked on construction; this checks the joint ranges.

        Raises:
            ValueError: listing each offending DOF with its frames.
        """
        violations = self.bound_violations(body)
        if violations:
            raise ValueError("ReferenceMotion: joint angles outside the joint ranges:\n  "
                             + "\n  ".join(map(str, violations)))

    def replace(self, **changes: Any) -> ReferenceMotion:
        """A copy with some fields changed (validated like a new motion)."""
        return dataclasses.replace(self, **changes)

    def frames(self, begin: int, end: int) -> ReferenceMotion:
        """The frames [begin, end) of the clip: every per-frame array sliced, metadata kept.

        Raises:
            ValueError: the slice holds fewer than two frames.
        """
        names = ("joint_angles", *OPTIONAL_ARRAYS, "underdetermined")
        return self.replace(**{name: getattr(self, name)[begin:end] for name in names
                               if getattr(self, name) is not None})


def _check_fps(value: Any) -> float:
    try:
        fps = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"ReferenceMotion: fps must be one number [Hz], got "
                         f"{type(value).__name__} ({err})") from err
    if isinstance(value, bool | np.bool_) or not MIN_FPS_HZ <= fps <= MAX_FPS_HZ:
        raise ValueError(f"ReferenceMotion: fps must be a number in [{MIN_FPS_HZ:g}, "
                         f"{MAX_FPS_HZ:g}] Hz, got {value!r}")
    return fps


def _frozen_flags(value: Any, num_frames: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != bool or array.shape != (num_frames, c.NUM_LEGS):
        raise ValueError(f"ReferenceMotion: underdetermined must be a bool array of shape "
                         f"{(num_frames, c.NUM_LEGS)}, got {array.dtype} {array.shape}")
    array = array.copy()
    array.setflags(write=False)
    return array


def _frozen_array(name: str, value: Any) -> np.ndarray:
    # An array that is already float64, read-only and owns its memory is adopted as it is: no
    # view of writable memory can change it, and large IK outputs are not copied again.
    if (isinstance(value, np.ndarray) and value.dtype == np.float64
            and not value.flags.writeable and value.flags.owndata):
        return value
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"ReferenceMotion: {name} must be numeric, got {err}") from err
    array.setflags(write=False)
    return array


def _bad_frames(bad: np.ndarray, limit: int = 5) -> list[int]:
    bad = bad if bad.dtype == bool else ~np.isfinite(bad)
    return np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[:limit].tolist()
