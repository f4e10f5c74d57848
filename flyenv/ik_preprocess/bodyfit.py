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
  tarsi tilted up to 15 deg, noise and dropped keypoints: every length within 1.5%, every tilt
  within 0.3 deg).
- Scale equivariant by construction: a recording scaled by s gives a body scaled by s (medians
  and quantiles commute with scaling), so the solved angles do not change with the fly's size.
- Per leg, not left/right averaged: tracked left and right legs differ (the Anipose file's front
  coxae by 6%, the df3d middle tarsi by 12%), and a shared length raises both legs' errors (on
  the Anipose file CTr 1.2x and FTi 1.45x SeqIKPy's with a data body, against 1.04x and 1.02x).

Each leg's tarsus tilt (`BodyConfig.tarsus_tilt_rad`: the tarsus's constant angle out of the
plane the femur, tibia and tarsus turn in) is the robust centre of the claw's angle out of that
plane where SeqIKPy's stages put the coxa, femur and tibia with the measured lengths
(`tarsus_tilt_per_frame`), over the frames where all five keypoints were tracked. The planar
chain leaves the claw off that plane by a few degrees to either side, consistently per leg (the
df3d walk: +12, -7, -1, -11, +5, -9 deg; the Anipose front legs +18 and -12 deg, a spread of
2-10 deg within a leg). For given angles the tilt moves only the claw, so SeqIKPy's first
three stages are unchanged and its last is still the claw's optimum: nothing is traded, and the
claw's error with SeqIKPy's stages falls by 21-31% on frames the tilt was not measured on and
on the other df3d recording (`benchmarks/bodyfit_bench.py`; with the default `lm` the pooled
mean falls from 0.81-0.97x SeqIKPy's to 0.65-0.79x). Angles do not change with the fly's size,
so neither does the tilt. A least-absolute-deviation fit of the tarsus length and tilt to the
claw instead of the medians changes held-out errors by -1% to +2%.

What no body of this chain can do (the benchmark's `limits`): SeqIKPy's stages are each optimal
for their keypoint given the chain before it, so with every keypoint's mean error at or below
SeqIKPy's the CTr, FTi and TiTa are pinned to SeqIKPy's (a constant length gains each stage at
most 0-1.5%) and the pooled mean cannot fall below ~1.0x SeqIKPy's with a planar tarsus, or
0.78x (df3d) / 0.71x (Anipose) with the best constant tilt.

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
from flyenv.body.kinematics import leg_forward_kinematics, rotation_matrix
from flyenv.ik_preprocess import solver
from flyenv.ik_preprocess.align import robust_center

_MIRROR = np.array(c.MIRROR_LEGS)  # LF<->RF, LM<->RM, LH<->RH
# Where a segment's length comes from (BodyFit.source).
SOURCES = ("measured", "mirror", "template")


# The name a measured body carries ("data:<recording file>"), and so keeps in the outputs solved
# for it: a body loaded from one of them (`--body OUTPUT.npz`) is known to be measured.
MEASURED_PREFIX = "data:"


def is_measured(body: BodyConfig) -> bool:
    """Whether `body` was measured from a recording (`fit_body`'s name), not a template."""
    return body.name.startswith(MEASURED_PREFIX)


def size_scale(body: BodyConfig, template: BodyConfig | None = None) -> float:
    """`body`'s size relative to `template` (the default template when None).

    The median ratio of their segment lengths, as `BodyFit.scale` measures a recording's.
    """
    template = BodyConfig.default() if template is None else template
    return float(np.median(body.lengths / template.lengths))

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
        tilt_frames: (6,) frames each leg's tarsus tilt was measured over (all five keypoints
            tracked); a leg with none takes its mirror leg's, else 0.
    """

    body: BodyConfig
    frames: np.ndarray
    spread_mm: np.ndarray
    source: np.ndarray
    scale: float
    tilt_frames: np.ndarray

    def summary(self) -> dict[str, Any]:
        """JSON-able facts for the clip's metadata."""
        return {"method": "median segment distances, tarsus tilts",
                "scale_to_template": self.scale,
                "frames": {leg: self.frames[i].tolist() for i, leg in enumerate(c.LEGS)},
                "spread_mm": {leg: [None if not np.isfinite(v) else float(v)
                                    for v in self.spread_mm[i]]
                              for i, leg in enumerate(c.LEGS)},
                "source": {leg: [SOURCES[s] for s in self.source[i]]
                           for i, leg in enumerate(c.LEGS)},
                "tarsus_tilt_deg": {leg: float(np.degrees(self.body.tarsus_tilt[i]))
                                    for i, leg in enumerate(c.LEGS)},
                "tarsus_tilt_frames": {leg: int(self.tilt_frames[i])
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
    tilt, tilt_frames = _tarsus_tilt(keypoints, lengths, template)
    body = template.replace(thc_mm=_thc(keypoints, template, scale), segment_lengths_mm=lengths,
                            tarsus_tilt_rad=tilt, name=name)
    return BodyFit(body, frames, spread, source, scale, tilt_frames)


def tarsus_tilt_per_frame(keypoints_mm: np.ndarray, lengths_mm: np.ndarray,
                          bounds_rad: np.ndarray, seed_rad: np.ndarray) -> np.ndarray:
    """The claw's angle out of the leg's plane where SeqIKPy's stages put the tibia.

    Args:
        keypoints_mm: (T, L, 5, 3) [mm], finite.
        lengths_mm: (L, 4) [mm].
        bounds_rad: (L, 7, 2) [rad].
        seed_rad: (L, 7) `seqik`'s seed [rad].

    Returns:
        (T, L) [rad], in [-pi/2, pi/2]: the angle between the chain's TiTa-to-tracked-claw
        vector and the plane the TiTa pitch turns the tarsus in, positive towards +y of the
        TiTa pitch axis (`BodyConfig.tarsus_tilt_rad`'s sign). It depends on the coxa, femur
        and tibia only (the stages before the claw's).
    """
    angles = solver.seqik(keypoints_mm, lengths_mm, bounds_rad, seed_rad)
    to_claw, pitch_axis = tarsus_frame(keypoints_mm, lengths_mm, angles)
    across = (to_claw * pitch_axis).sum(-1)
    along = np.linalg.norm(to_claw - across[..., None] * pitch_axis, axis=-1)
    return np.arctan2(across, along)


def tarsus_frame(keypoints_mm: np.ndarray, lengths_mm: np.ndarray, angles_rad: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The tracked claw seen from the chain's TiTa, and the axis the TiTa pitch turns about.

    Args:
        keypoints_mm: (T, L, 5, 3) [mm], finite.
        lengths_mm: (L, 4) [mm].
        angles_rad: (T, L, 7) the chain's angles [rad] (only the first five matter).

    Returns:
        (T, L, 3) TiTa-to-tracked-claw vectors [mm] and (T, L, 3) unit TiTa pitch axes: y of
        the frame after ThC yaw, pitch, roll and CTr pitch, roll (the FTi and TiTa pitches turn
        about that same y).
    """
    chain = leg_forward_kinematics(keypoints_mm[:, :, 0], lengths_mm, angles_rad)
    rotation = np.eye(3)
    for joint, axis in enumerate("xyzyz"):
        rotation = rotation @ rotation_matrix(axis, angles_rad[..., joint])
    return keypoints_mm[:, :, 4] - chain[:, :, 3], rotation[..., :, 1]


def _tarsus_tilt(keypoints: np.ndarray, lengths: np.ndarray, template: BodyConfig,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(6,) robust tarsus tilts [rad] and (6,) frames each was measured over.

    A leg never tracked whole takes the mirror leg's (negated: the mirror turns +y to -y),
    else 0.
    """
    whole = np.isfinite(keypoints).all((-1, -2))  # (T, 6)
    frames = whole.sum(0)
    tilt = np.full(c.NUM_LEGS, np.nan)
    legs = np.flatnonzero(frames)
    if legs.size:
        # One pass over every frame of these legs (gaps filled: each keypoint was tracked at
        # least once), the robust centre over the frames tracked whole.
        filled, _ = solver.fill_gaps(keypoints[:, legs])
        bounds = template.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)[legs]
        per_frame = tarsus_tilt_per_frame(filled, lengths[legs], bounds,
                                          solver.SEQIKPY_SEED_RAD[legs])
        tilt[legs] = robust_center(np.where(whole[:, legs], per_frame, np.nan))
    tilt = np.where(np.isfinite(tilt), tilt, -tilt[_MIRROR])
    return np.where(np.isfinite(tilt), tilt, 0.0), frames


def _thc(keypoints: np.ndarray, template: BodyConfig, scale: float) -> np.ndarray:
    """(6, 3) robust ThC positions; absent legs from the mirror leg, else the scaled template."""
    thc = np.full((c.NUM_LEGS, 3), np.nan)
    present = np.isfinite(keypoints[:, :, 0]).all(-1).any(0)
    thc[present] = robust_center(keypoints[:, present, 0])
    mirrored = thc[_MIRROR] * np.array([1.0, -1.0, 1.0])
    thc = np.where(np.isfinite(thc), thc, mirrored)
    return np.where(np.isfinite(thc), thc, scale * template.thc)
