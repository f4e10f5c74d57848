"""Alignment of recordings to a body, and bodies measured from recordings.

Frame convention (input and output): x anterior, y left, z up, origin in the thorax, units of
the body template (mm). Recordings already in that frame and scale (like the aligned df3d and
Anipose files SeqIKPy publishes) need no alignment, which is why it is off by default.

`align_to_body` is SeqIKPy's leg alignment: each leg's ThC is pinned to the body's ThC, the other
keypoints keep their offsets from the leg's robust ThC position (the mean of its 45% and 55%
quantiles over time), scaled so the leg's robust coxa + femur + tibia length equals the body's
(the tarsus is left out of the scale, as SeqIKPy does by default: claw tracking is the least
reliable). `body_from_recording` instead measures the body: robust ThC positions and segment
lengths, the lengths averaged over left and right so the body stays symmetric.
"""

from __future__ import annotations

import numpy as np

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig

# Segments whose summed length sets the scale of a leg (coxa, femur, tibia).
SCALE_SEGMENTS = 3


def robust_center(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean of the 45% and 55% quantiles, ignoring NaN (SeqIKPy's fixed-position estimate)."""
    return 0.5 * (np.nanquantile(values, 0.45, axis=axis)
                  + np.nanquantile(values, 0.55, axis=axis))


def segment_lengths(keypoints_mm: np.ndarray) -> np.ndarray:
    """Robust length of each segment of each leg.

    Args:
        keypoints_mm: (T, 6, 5, 3) [mm], NaN where missing.

    Returns:
        (6, 4) [mm], NaN for legs never tracked.
    """
    lengths = np.linalg.norm(np.diff(keypoints_mm, axis=2), axis=-1)  # (T, 6, 4)
    out = np.full(lengths.shape[1:], np.nan)
    tracked = np.isfinite(lengths).any(axis=0)
    out[tracked] = robust_center(lengths[:, tracked])
    return out


def align_to_body(keypoints_mm: np.ndarray, body: BodyConfig, scale: bool = True,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pin each leg's ThC to the body's and (optionally) scale the leg to the body's length.

    Args:
        keypoints_mm: (T, 6, 5, 3) [mm], NaN where missing.
        body: the body to align to.
        scale: scale each leg so its robust coxa + femur + tibia length is the body's.

    Returns:
        aligned keypoints (T, 6, 5, 3) [mm] (NaN stays NaN) and the scale per leg (6,)
        (NaN for legs absent from the recording).
    """
    keypoints_mm = np.asarray(keypoints_mm, dtype=float)
    present = np.isfinite(keypoints_mm[:, :, 0]).all(-1).any(0)
    fixed = np.full((c.NUM_LEGS, 3), np.nan)
    fixed[present] = robust_center(keypoints_mm[:, present, 0])
    factor = np.where(present, 1.0, np.nan)
    if scale:
        measured = segment_lengths(keypoints_mm)[:, :SCALE_SEGMENTS].sum(-1)
        factor = body.lengths[:, :SCALE_SEGMENTS].sum(-1) / measured
    aligned = (keypoints_mm - fixed[:, None]) * factor[:, None, None] + body.thc[:, None]
    aligned[:, :, 0] = np.where(np.isfinite(keypoints_mm[:, :, 0]), body.thc, np.nan)
    return aligned, factor


def body_from_recording(keypoints_mm: np.ndarray, base: BodyConfig, name: str = "data",
                        ) -> BodyConfig:
    """A body measured from a recording.

    ThC positions are the robust positions of the tracked ThC; segment lengths are robust
    lengths averaged over each left/right pair. A leg absent from the recording takes its
    mirror leg's numbers (y negated), or `base`'s when both are absent. Joint bounds are `base`'s.

    Args:
        keypoints_mm: (T, 6, 5, 3) [mm], NaN where missing.
        base: the body supplying bounds and numbers no leg could give.
        name: the new body's name.

    Raises:
        ValueError: if a measured length is not positive.
    """
    keypoints_mm = np.asarray(keypoints_mm, dtype=float)
    lengths = segment_lengths(keypoints_mm)
    thc = np.full((c.NUM_LEGS, 3), np.nan)
    present = np.isfinite(keypoints_mm[:, :, 0]).all(-1).any(0)
    thc[present] = robust_center(keypoints_mm[:, present, 0])
    half = c.NUM_LEGS // 2
    mirror = np.r_[half:c.NUM_LEGS, 0:half]  # LF<->RF, LM<->RM, LH<->RH
    pair = np.stack([lengths, lengths[mirror]])
    counts = np.isfinite(pair).sum(0)
    symmetric = np.where(counts > 0, np.nansum(pair, axis=0) / np.maximum(counts, 1),
                         base.lengths)
    mirrored_thc = thc[mirror] * np.array([1.0, -1.0, 1.0])
    thc = np.where(np.isfinite(thc), thc, mirrored_thc)
    thc = np.where(np.isfinite(thc), thc, base.thc)
    if (symmetric <= 0).any():
        raise ValueError(f"body_from_recording: measured segment lengths must be > 0, got "
                         f"{symmetric.round(4).tolist()}")
    return base.replace(thc_mm=thc, segment_lengths_mm=symmetric, name=name)
