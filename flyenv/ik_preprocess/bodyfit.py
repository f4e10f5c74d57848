"""The fly's own body, measured from a recording (`--body data`).

Each leg's segment lengths are the robust medians (`align.robust_center`: the mean of the 45%
and 55% quantiles) of the distances between the segment's two keypoints over the frames where
both were tracked. For one segment and SeqIKPy's stage that points it at its keypoint, the median
is the length that minimises the mean distance to that keypoint (the least-absolute-deviation
fit of a constant length to the per-frame distances), and it is what no keypoint's error can be
traded against:

- Nothing is traded. The body is a function of each segment's own distances alone, so no
  keypoint's accuracy is bought with another's. `benchmarks/bodyfit_bench.py` searched segment
  lengths on the solver's error instead (per leg, Powell, the pooled mean and p95 of the `lm`
  fit on even frames as the objective, scored on odd frames): held to "no keypoint's mean error
  above the measured body's", it gains under 0.5%; left free, it buys the claw (0.6-0.75x) with
  TiTa 2x (df3d) and FTi 7.7x (Anipose) the measured body's errors, the trade an unseen recording
  exposed in the alternating angle/length fit this replaces. Fitting proximal segments first
  (each length from the chain's joint rather than the tracked one) changes the errors by <1.5%.
- Identifiable. Every length is measured on its own, so lengths the angles cannot tell apart
  (tibia vs tarsus) cannot drift; noise and dropped keypoints only thin the frames a median is
  taken over (the benchmark's synthetic flies, 0.7-1.3x the template with +-15% per segment,
  noise and dropped keypoints: every length within 1%).
- Scale equivariant by construction: a recording scaled by s gives a body scaled by s (medians
  and quantiles commute with scaling), so the solved angles do not change with the fly's size.
- Per leg, not left/right averaged: tracked left and right legs differ (the Anipose file's front
  coxae by 6%, the df3d middle tarsi by 12%), and a shared length raises both legs' errors (on
  the Anipose file CTr 1.2x and FTi 1.45x SeqIKPy's with a data body, against 1.04x and 1.02x).

A segment never tracked with both its keypoints in one frame takes the mirror leg's length, else
the template's scaled by the recording's size (the median ratio of the measured lengths to the
template's). ThC positions are the robust positions of the tracked ThC in the canonical thorax
frame; a leg absent from the recording takes its mirror leg's (y negated), else the template's
scaled the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig
from flyenv.ik_preprocess.align import robust_center

_MIRROR = np.array([3, 4, 5, 0, 1, 2])  # LF<->RF, LM<->RM, LH<->RH
# Where a segment's length comes from (BodyFit.source).
SOURCES = ("measured", "mirror", "template")


@dataclasses.dataclass(frozen=True)
class BodyFit:
    """A body measured from a recording.

    Attributes:
        body: the body (the template's joint bounds).
        frames: (6, 4) frames each segment's length was measured over (both keypoints tracked).
        spread_mm: (6, 4) half the interquartile range of each segment's per-frame distance
            [mm]: how much the tracked segment stretches (tracking noise, mislabels); NaN where
            not measured.
        source: (6, 4) index into SOURCES: measured, the mirror leg's, or the scaled template's.
        scale: the recording's size relative to the template (median measured/template length).
    """

    body: BodyConfig
    frames: np.ndarray
    spread_mm: np.ndarray
    source: np.ndarray
    scale: float

    def summary(self) -> dict[str, Any]:
        """JSON-able facts for the clip's metadata."""
        return {"method": "median segment distances per leg",
                "scale_to_template": self.scale,
                "frames": {leg: self.frames[i].tolist() for i, leg in enumerate(c.LEGS)},
                "spread_mm": {leg: [None if not np.isfinite(v) else float(v)
                                    for v in self.spread_mm[i]]
                              for i, leg in enumerate(c.LEGS)},
                "source": {leg: [SOURCES[s] for s in self.source[i]]
                           for i, leg in enumerate(c.LEGS)}}


def fit_body(keypoints_mm: np.ndarray, template: BodyConfig, *, name: str = "data") -> BodyFit:
    """Measures segment lengths and ThC positions (see the module docstring).

    Args:
        keypoints_mm: (T, 6, 5, 3) keypoints in the canonical thorax frame [mm], NaN where
            untracked.
        template: the body supplying joint bounds and the numbers no leg can give.
        name: the body's name.

    Returns:
        The measured body.

    Raises:
        ValueError: if the recording has no segment tracked with both its keypoints.
    """
    keypoints = np.asarray(keypoints_mm, dtype=float)
    distances = np.linalg.norm(np.diff(keypoints, axis=2), axis=-1)  # (T, 6, 4), NaN if either
    seen = np.isfinite(distances)
    frames = seen.sum(0)
    measured = frames > 0
    if not measured.any():
        raise ValueError("fit_body: no segment has both its keypoints tracked in any frame")
    lengths = np.full((c.NUM_LEGS, c.NUM_SEGMENTS), np.nan)
    spread = np.full_like(lengths, np.nan)
    lengths[measured] = robust_center(distances[:, measured])
    quartiles = np.nanquantile(distances[:, measured], [0.25, 0.75], axis=0)
    spread[measured] = 0.5 * (quartiles[1] - quartiles[0])
    scale = float(np.median(lengths[measured] / template.lengths[measured]))
    source = np.where(measured, 0, np.where(measured[_MIRROR], 1, 2))
    lengths = np.where(source == 1, lengths[_MIRROR], lengths)
    lengths = np.where(source == 2, scale * template.lengths, lengths)
    body = template.replace(thc_mm=_thc(keypoints, template, scale), segment_lengths_mm=lengths,
                            name=name)
    return BodyFit(body, frames, spread, source, scale)


def _thc(keypoints: np.ndarray, template: BodyConfig, scale: float) -> np.ndarray:
    """(6, 3) robust ThC positions; absent legs from the mirror leg, else the scaled template."""
    thc = np.full((c.NUM_LEGS, 3), np.nan)
    present = np.isfinite(keypoints[:, :, 0]).all(-1).any(0)
    thc[present] = robust_center(keypoints[:, present, 0])
    mirrored = thc[_MIRROR] * np.array([1.0, -1.0, 1.0])
    thc = np.where(np.isfinite(thc), thc, mirrored)
    return np.where(np.isfinite(thc), thc, scale * template.thc)
