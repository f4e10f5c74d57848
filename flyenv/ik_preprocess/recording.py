"""A 3D pose recording, `Recording`, and the checks every reader's arrays pass through."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.body import constants as c
from flyenv.ik_preprocess.limits import MAX_COORD_MM, MAX_FRAMES, RecordingError

MIN_FRAMES = 2
# Longest field or leg name quoted in an error.
_MAX_NAME_CHARS = 64


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """Keypoints of one recording.

    Attributes:
        path: the file it came from.
        keypoints: (T, 6, 5, 3) [mm]; NaN for missing legs and dropped keypoints.
        fps: frame rate [Hz] if the file says, else None.
        extra: other tracks found in the file (head, thorax, ...), by name.
    """

    path: Path
    keypoints: np.ndarray
    fps: float | None = None
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        """T."""
        return self.keypoints.shape[0]

    @property
    def legs_present(self) -> tuple[str, ...]:
        """Legs with at least one tracked keypoint, in `LEGS` order."""
        return tuple(leg for leg, ok in zip(c.LEGS, self._tracked(), strict=True) if ok)

    @property
    def missing_legs(self) -> tuple[str, ...]:
        """Legs absent from the recording."""
        return tuple(leg for leg, ok in zip(c.LEGS, self._tracked(), strict=True) if not ok)

    def _tracked(self) -> np.ndarray:
        return np.isfinite(self.keypoints).any(axis=(0, 2, 3))


def _numeric(path: Path, field: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise RecordingError(path, f"field '{field}' must be a numeric array ({err})",
                             field) from err
    if array.dtype.kind not in "fiu":
        raise RecordingError(path, f"field '{field}' must be numeric (real integers or floats), "
                                   f"got dtype {array.dtype}", field)
    return array.astype(np.float64, copy=False)


def _assemble(path: Path, legs: dict[str, Any], fps: float | None,
              extra: dict[str, np.ndarray]) -> Recording:
    if not legs:
        raise RecordingError(path, f"no leg found; expected fields named "
                                   f"{[f'{leg}_leg' for leg in c.LEGS]} (any subset)")
    arrays = {leg: _numeric(path, f"{leg}_leg", value) for leg, value in legs.items()}
    for leg, array in arrays.items():
        if array.ndim != 3 or array.shape[1:] != (c.NUM_KEYPOINTS, 3):
            raise RecordingError(path, f"field '{leg}_leg' must have shape (T, 5, 3) (keypoints "
                                       f"{list(c.KEYPOINTS)} in x, y, z), got {array.shape}",
                                 f"{leg}_leg")
    lengths = {leg: array.shape[0] for leg, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise RecordingError(path, f"legs have different numbers of frames: {lengths}")
    num_frames = next(iter(lengths.values()))
    if not MIN_FRAMES <= num_frames <= MAX_FRAMES:
        raise RecordingError(path, f"too few frames ({num_frames}); at least {MIN_FRAMES} needed"
                             if num_frames < MIN_FRAMES else
                             f"too many frames ({num_frames}); at most {MAX_FRAMES}")
    keypoints = np.full((num_frames, c.NUM_LEGS, c.NUM_KEYPOINTS, 3), np.nan)
    for leg, array in arrays.items():
        if np.isinf(array).any():
            raise RecordingError(path, f"field '{leg}_leg' has infinite values; use NaN for "
                                       f"missing keypoints", f"{leg}_leg")
        with np.errstate(invalid="ignore"):
            beyond = np.abs(array) > MAX_COORD_MM
        if beyond.any():
            largest = np.nanmax(np.abs(array))
            raise RecordingError(path, f"field '{leg}_leg' has coordinates beyond "
                                       f"{MAX_COORD_MM:g} mm (largest {largest:.3g}); keypoints "
                                       f"are mm from the thorax", f"{leg}_leg")
        keypoints[:, c.LEGS.index(leg)] = array
    if not np.isfinite(keypoints).any():
        raise RecordingError(path, f"no keypoint of any leg ({', '.join(arrays)}) is tracked "
                                   f"in any frame: every value is NaN", "keypoints")
    keypoints.setflags(write=False)
    return Recording(path=path, keypoints=keypoints, fps=fps, extra=extra)
