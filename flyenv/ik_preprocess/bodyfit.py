"""The fly's own body, fitted to a recording together with its joint angles.

As STAC does for rodents, angle fits and body fits alternate over the whole recording:

1. Joint angles of every leg and frame for the current body (`seqik` seed, then `lm` with per
   leg-keypoint weights, plain least squares).
2. Segment lengths for those angles: forward kinematics is linear in the lengths (each keypoint
   is its ThC plus the sum of the lengths of the segments before it times their unit
   directions), so the weighted least-squares lengths are a bounded linear problem
   (`scipy.optimize.lsq_linear`), one per left/right pair so the body stays symmetric, within
   `LENGTH_BOUNDS` times the template's.

The weights aim at the pooled error (each keypoint's weight is the inverse of its current mean
error, as in iteratively reweighted least squares for a mean distance) subject to a per-keypoint
cap: a multiplier per keypoint grows while that keypoint's mean error (over the legs) is above
`KEYPOINT_CAP` times the error of SeqIKPy's fit with the template body (`seqik`), so no keypoint
gets worse than SeqIKPy's to make the others better. After the alternation, up to
`POLISH_PASSES` angle-only passes raise the multipliers of keypoints still above SeqIKPy's.

ThC positions are the robust positions of the tracked ThC in the canonical thorax frame,
averaged over each left/right pair (y mirrored) and kept within `THC_BOUND_MM` of the
template's; a leg absent from the recording takes its mirror leg's numbers, or the template's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig
from flyenv.body.kinematics import leg_forward_kinematics
from flyenv.ik_preprocess import solver as solvers
from flyenv.ik_preprocess.align import robust_center

# Fitted segment lengths stay within these multiples of the template's.
LENGTH_BOUNDS = (0.5, 1.6)
# Fitted ThC positions stay within this distance of the template's, per axis [mm].
THC_BOUND_MM = 0.5
# No keypoint's mean error may exceed this multiple of SeqIKPy's (the template seqik fit).
KEYPOINT_CAP = 0.99
ITERATIONS = 8
LM_ITERATIONS = 30
# Angle-only passes after the alternation while a keypoint is above SeqIKPy's error.
POLISH_PASSES = 4
_MIRROR = np.array([3, 4, 5, 0, 1, 2])


@dataclasses.dataclass(frozen=True)
class BodyFit:
    """A body fitted to a recording.

    Attributes:
        body: the fitted body.
        lm: (6,) settings of the `lm` solve per leg (its weights) that go with the body.
        error_mean_mm: (4,) mean fit error of CTr, FTi, TiTa, Claw over legs and frames.
        template_error_mean_mm: (4,) the same for SeqIKPy's fit (`seqik`) with the template.
        iterations: alternations run.
    """

    body: BodyConfig
    lm: tuple[solvers.LmOptions, ...]
    error_mean_mm: np.ndarray
    template_error_mean_mm: np.ndarray
    iterations: int

    def summary(self) -> dict[str, Any]:
        """JSON-able facts for the clip's metadata."""
        return {"iterations": self.iterations,
                "keypoints": list(c.KEYPOINTS[1:]),
                "error_mean_mm": self.error_mean_mm.tolist(),
                "seqik_template_error_mean_mm": self.template_error_mean_mm.tolist(),
                "keypoint_weights": {c.LEGS[i]: list(o.keypoint_weights)
                                     for i, o in enumerate(self.lm)}}


def fit_body(keypoints_mm: np.ndarray, template: BodyConfig, *, name: str = "data",
             iterations: int = ITERATIONS) -> BodyFit:
    """Fits segment lengths and ThC positions with the joint angles (see the module docstring).

    Args:
        keypoints_mm: (T, 6, 5, 3) keypoints in the canonical thorax frame [mm], NaN where
            untracked; every present leg has each keypoint tracked in some frame.
        template: the body supplying bounds, the starting lengths and numbers no leg can give.
        name: the fitted body's name.
        iterations: angle/body alternations.

    Returns:
        The fit.
    """
    keypoints = np.asarray(keypoints_mm, dtype=float)
    legs = np.flatnonzero(np.isfinite(keypoints).any(axis=(0, 2, 3)))
    filled, tracked = solvers.fill_gaps(keypoints[:, legs])
    bounds = template.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)[legs]
    seed = solvers.SEQIKPY_SEED_RAD[legs]
    mask = tracked[..., 1:].astype(float)
    lengths = template.lengths.copy()
    base = _errors(filled, mask, lengths[legs], solvers.seqik(filled, lengths[legs], bounds,
                                                              seed))
    base_mean = _keypoint_means(base, mask)
    multiplier = np.ones(4)
    weights = np.ones((legs.size, 4))
    for _ in range(iterations):
        angles = _solve(filled, mask, lengths[legs], bounds, seed, weights)
        error = _errors(filled, mask, lengths[legs], angles)
        ratio = _keypoint_means(error, mask) / base_mean
        multiplier = np.maximum(multiplier * np.clip(ratio / KEYPOINT_CAP, 0.7, 2.0) ** 3, 1.0)
        weights = multiplier / np.maximum(_leg_means(error, mask), 1e-3)
        weights /= weights.mean()
        lengths = _fit_lengths(filled, mask, angles, legs, weights, lengths, template)
    for _ in range(POLISH_PASSES + 1):  # the body is fixed now; weights until the cap holds
        angles = _solve(filled, mask, lengths[legs], bounds, seed, weights)
        error = _errors(filled, mask, lengths[legs], angles)
        ratio = _keypoint_means(error, mask) / base_mean
        if (ratio <= 1.0).all():
            break
        multiplier = np.maximum(multiplier * np.clip(ratio / KEYPOINT_CAP, 1.0, 2.0) ** 3, 1.0)
        weights = multiplier / np.maximum(_leg_means(error, mask), 1e-3)
        weights /= weights.mean()
    body = template.replace(thc_mm=_fit_thc(keypoints, template), segment_lengths_mm=lengths,
                            name=name)
    lm = [solvers.LmOptions(keypoint_weights=(1.0, 1.0, 1.0, 1.0), relative=False,
                            iterations=LM_ITERATIONS)] * c.NUM_LEGS
    for i, legid in enumerate(legs):
        lm[legid] = _lm_options(weights[i])
    return BodyFit(body, tuple(lm), _keypoint_means(error, mask), base_mean, iterations)


def _lm_options(weights: np.ndarray) -> solvers.LmOptions:
    return solvers.LmOptions(keypoint_weights=tuple(float(w) for w in weights), relative=False,
                             iterations=LM_ITERATIONS)


def _solve(filled: np.ndarray, mask: np.ndarray, lengths: np.ndarray, bounds: np.ndarray,
           seed: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T, L, 7) angles: seqik, then lm per leg with that leg's keypoint weights."""
    angles = solvers.seqik(filled, lengths, bounds, seed)
    for i in range(filled.shape[1]):
        leg = slice(i, i + 1)
        angles[:, leg] = solvers.lm(filled[:, leg], lengths[leg], bounds[leg], angles[:, leg],
                                    keypoint_mask=mask[:, leg], options=_lm_options(weights[i]))
    return angles


def _errors(filled: np.ndarray, mask: np.ndarray, lengths: np.ndarray,
            angles: np.ndarray) -> np.ndarray:
    """(T, L, 4) fit errors of CTr..Claw (0 where untracked; `mask` says which)."""
    return solvers.fit_error(filled, lengths, angles)[..., 1:] * mask


def _keypoint_means(error: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return error.sum((0, 1)) / np.maximum(mask.sum((0, 1)), 1)


def _leg_means(error: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return error.sum(0) / np.maximum(mask.sum(0), 1)


def _fit_lengths(filled: np.ndarray, mask: np.ndarray, angles: np.ndarray, legs: np.ndarray,
                 weights: np.ndarray, lengths: np.ndarray, template: BodyConfig) -> np.ndarray:
    """(6, 4) weighted least-squares lengths for fixed angles, shared by mirror legs."""
    # Unit segment directions: FK with unit lengths, differenced.
    unit = np.diff(leg_forward_kinematics(np.zeros(3), np.ones(c.NUM_SEGMENTS), angles), axis=2)
    target = filled[:, :, 1:] - filled[:, :, :1]  # (T, L, 4, 3)
    out = lengths.copy()
    for pair in range(c.NUM_LEGS // 2):
        members = [i for i, legid in enumerate(legs) if legid in (pair, pair + 3)]
        if not members:
            continue
        rows, rhs = [], []
        for i in members:
            for k in range(c.NUM_SEGMENTS):
                scale = np.sqrt(weights[i, k] * mask[:, i, k])[:, None, None]
                design = np.zeros((len(filled), 3, c.NUM_SEGMENTS))
                design[..., :k + 1] = np.moveaxis(unit[:, i, :k + 1], 1, 2)
                rows.append((scale * design).reshape(-1, c.NUM_SEGMENTS))
                rhs.append((scale[..., 0] * target[:, i, k]).reshape(-1))
        lo, hi = (f * template.lengths[pair] for f in LENGTH_BOUNDS)
        result = lsq_linear(np.concatenate(rows), np.concatenate(rhs), bounds=(lo, hi))
        out[pair] = out[pair + 3] = result.x
    return out


def _fit_thc(keypoints: np.ndarray, template: BodyConfig) -> np.ndarray:
    """(6, 3) symmetric ThC positions: robust tracked positions, mirror pairs averaged."""
    thc = np.full((c.NUM_LEGS, 3), np.nan)
    present = np.isfinite(keypoints[:, :, 0]).all(-1).any(0)
    thc[present] = robust_center(keypoints[:, present, 0])
    mirrored = thc[_MIRROR] * np.array([1.0, -1.0, 1.0])
    pair = np.stack([thc, mirrored])
    count = np.isfinite(pair).sum(0)
    mean = np.where(count > 0, np.nansum(pair, axis=0) / np.maximum(count, 1), template.thc)
    return np.clip(mean, template.thc - THC_BOUND_MM, template.thc + THC_BOUND_MM)
