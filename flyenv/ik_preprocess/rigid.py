"""Rigid and similarity fits of a point layout in many frames at once (batched Kabsch, Umeyama).

One batched SVD fits every frame; frames use different subsets of the points through a boolean
mask. `robust_fits` leaves out up to two mistracked points per frame (an MSAC search over the
subsets of a frame that has a point beyond a threshold). The thorax estimate
(`flyenv.ik_preprocess.thorax`) fits the body's ThC layout with these.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial.transform import Rotation

from flyenv.body import constants as c

# Candidate inlier sets of the robust fit: all six ThC, all but one, all but two (22, 6).
_SUBSETS = np.array([[i not in drop for i in range(c.NUM_LEGS)]
                     for k in range(3) for drop in itertools.combinations(range(c.NUM_LEGS), k)])


def kabsch(points: np.ndarray, layout: np.ndarray) -> tuple[Rotation, np.ndarray]:
    """Rigid transform (R, p) with points ~ R layout + p, for (n, 3) finite arrays, n >= 3."""
    rot, pos = kabsch_batch(points[None], layout, np.ones((1, len(points)), dtype=bool))
    return Rotation.from_matrix(rot[0]), pos[0]


def kabsch_batch(points: np.ndarray, layout: np.ndarray, use: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Rigid fits of many frames at once (Kabsch, one batched SVD).

    Args:
        points: (N, K, 3) [mm]; entries not in `use` may be NaN.
        layout: (K, 3) or (N, K, 3) [mm].
        use: (N, K) bool, the points each fit uses (at least 3 for a meaningful fit).

    Returns:
        R (N, 3, 3) and p (N, 3) with points ~ R layout + p.
    """
    weight = use[..., None].astype(float)
    count = np.maximum(weight.sum(1), 1.0)  # (N, 1)
    points = np.where(use[..., None], points, 0.0)
    layout = np.broadcast_to(layout, points.shape)
    centre, layout_centre = (weight * points).sum(1) / count, (weight * layout).sum(1) / count
    cov = np.einsum("nki,nkj->nij", weight * (layout - layout_centre[:, None]),
                    points - centre[:, None])
    u, _, vt = np.linalg.svd(cov)
    v, ut = vt.transpose(0, 2, 1), u.transpose(0, 2, 1)
    flip = np.ones((len(cov), 3))
    flip[:, 2] = np.where(np.linalg.det(v @ ut) < 0, -1.0, 1.0)
    rot = (v * flip[:, None, :]) @ ut
    return rot, centre - np.einsum("nij,nj->ni", rot, layout_centre)


def distances(points: np.ndarray, layout: np.ndarray, rot: np.ndarray, pos: np.ndarray,
               ) -> np.ndarray:
    """(N, K) distance of points (N, K, 3) from the fitted layout R layout + p [mm]."""
    fitted = np.einsum("nij,nkj->nki", rot, np.broadcast_to(layout, points.shape)) + pos[:, None]
    return np.linalg.norm(fitted - points, axis=-1)


def similarity_batch(points: np.ndarray, layout: np.ndarray, use: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Scale (N,) and RMS residual (N,) [mm] of similarity fits (Umeyama) of layout to points.

    The layout check uses it so that a fly larger or smaller than the body is judged by its
    shape; the pose itself is the rigid fit.
    """
    rot, _ = kabsch_batch(points, layout, use)
    weight = use.astype(float)
    count = np.maximum(weight.sum(1, keepdims=True), 1.0)
    pts = np.where(use[..., None], points, 0.0)
    lay = np.broadcast_to(layout, pts.shape)
    centred = lay - ((weight[..., None] * lay).sum(1) / count)[:, None]
    target = pts - ((weight[..., None] * pts).sum(1) / count)[:, None]
    turned = np.einsum("nij,nkj->nki", rot, centred)
    scale = (np.einsum("nk,nki,nki->n", weight, turned, target)
             / np.einsum("nk,nki,nki->n", weight, centred, centred))
    miss = np.sum((scale[:, None, None] * turned - target) ** 2, -1)
    return scale, np.sqrt((weight * miss).sum(1) / count[:, 0])


def robust_fits(thc: np.ndarray, tracked: np.ndarray, layout: np.ndarray,
                outlier_factor: float, outlier_mm: float,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame rigid fits of the 6-point layout that leave out up to two mistracked points.

    A frame whose fit to all its tracked points leaves one farther than the threshold (the
    median distance over all frames times `outlier_factor`, at least `outlier_mm`) tries every
    subset without one or two of them (at least three kept) and keeps the fit with the least
    truncated squared distance over all its points (MSAC); the points within the threshold of
    it are refitted. Frames with fewer than three tracked points get NaN.

    Args:
        thc: (T, 6, 3) points [mm], NaN where untracked.
        tracked: (T, 6) bool.
        layout: (6, 3) the rigid layout [mm].
        outlier_factor: threshold over the median distance.
        outlier_mm: smallest threshold [mm].

    Returns:
        R (T, 3, 3), p (T, 3) with thc ~ R layout + p, and (T, 6) bool the points each fit used.
    """
    use = tracked.copy()
    rot, pos = kabsch_batch(thc, layout, use)
    dist = distances(thc, layout, rot, pos)
    fit = use.sum(1) >= 3
    with np.errstate(invalid="ignore"):
        threshold = max(outlier_factor * float(np.nanmedian(np.where(use & fit[:, None], dist,
                                                                     np.nan))), outlier_mm)
        far = np.where(use, dist, 0.0).max(1) > threshold
    suspect = np.flatnonzero(fit & far & (use.sum(1) > 3))
    if suspect.size:
        masks = tracked[suspect, None] & _SUBSETS[None]  # (F, 22, 6)
        num = len(_SUBSETS)
        points = np.repeat(thc[suspect], num, axis=0)
        cand_rot, cand_pos = kabsch_batch(points, layout, masks.reshape(-1, c.NUM_LEGS))
        cand_dist = distances(points, layout, cand_rot, cand_pos).reshape(-1, num, c.NUM_LEGS)
        cost = np.where(tracked[suspect, None], np.minimum(cand_dist, threshold) ** 2,
                        0.0).sum(-1)
        cost[masks.sum(-1) < 3] = np.inf
        best = np.argmin(cost, axis=1)
        inliers = tracked[suspect] & (cand_dist[np.arange(len(suspect)), best] < threshold)
        keep = np.where((inliers.sum(1) >= 3)[:, None], inliers,
                        masks[np.arange(len(suspect)), best])
        use[suspect] = keep
        rot[suspect], pos[suspect] = kabsch_batch(thc[suspect], layout, keep)
    rot[~fit], pos[~fit] = np.nan, np.nan
    use[~fit] = False
    return rot, pos, use
