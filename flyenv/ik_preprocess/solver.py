"""Leg inverse kinematics: keypoints (T, L, 5, 3) -> joint angles (T, L, 7).

Pure numpy functions, vectorized over frames and legs; the parallel runner splits work
between them and never the other way round.

Both solvers fit each leg relative to its own ThC keypoint (the chain's origin moves with the
tracked ThC, as in SeqIKPy), so the fit error is the distance between the tracked CTr, FTi, TiTa
and Claw and the chain's, with the chain built from the body's segment lengths.

- `seqik` reproduces SeqIKPy's four stages (ThC yaw+pitch to CTr; ThC roll + CTr pitch to FTi;
  CTr roll + FTi pitch to TiTa; TiTa pitch to Claw). Each stage points one segment of fixed
  length at a target, i.e. maximizes `target_direction · segment_direction(a, b)` over one or two
  hinge angles inside their bounds, which has a closed form: the unconstrained optimum (two
  mirror branches), else the best point on the edges of the bound box, each edge a sinusoid in one
  angle. Where both branches are inside the bounds the one nearer the seed wins (SeqIKPy starts
  from the same seed and stays on its branch).
- `lm` fits all seven angles of a leg at once to the four keypoints (weighted least squares,
  analytic Jacobian, Levenberg-Marquardt with the bounds projected), seeded from `seqik`, with an
  optional temporal smoothness term.

Near singular configurations (a target on the axis of the joint that would turn it, or on the
joint itself) leave that angle undetermined; it keeps the previous frame's value.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flyenv.body import constants as c
from flyenv.body.kinematics import leg_forward_kinematics, leg_jacobian

# Stages of `seqik`: (keypoint index of the target, joint indices (a, b) solved), where the
# segment points along R_a(a) R_b(b) (-z) in its parent's frame; a single-joint stage has a=None.
_STAGES: tuple[tuple[int, tuple[int | None, int]], ...] = (
    (1, (0, 1)),  # ThC yaw (x), ThC pitch (y) -> CTr
    (2, (2, 3)),  # ThC roll (z), CTr pitch (y) -> FTi
    (3, (4, 5)),  # CTr roll (z), FTi pitch (y) -> TiTa
    (4, (None, 6)),  # TiTa pitch (y) -> Claw
)
# A value this close to its joint bound [rad] does not anchor an interpolation.
BOUND_TOL_RAD = 1e-6
_AXIS = tuple(int(np.argmax(axis)) for axis in c.JOINT_AXES)
# SeqIKPy's initial guesses (its NeuroMechFly locomotion configuration), (6, 7) in LEGS and
# JOINTS order [rad]. Not a pose: the seed that picks between mirror solutions.
SEQIKPY_SEED_RAD = np.array([
    (-0.45, -0.07, 0.32, -2.14, 1.25, 1.48, 0.0),
    (-0.45, 0.37, 0.32, -2.14, 1.25, 1.48, 0.0),
    (-0.45, 0.07, 0.32, -2.14, 1.25, 1.48, 0.0),
    (0.45, -0.07, -0.32, -2.14, -1.25, 1.48, 0.0),
    (0.45, 0.37, -0.32, -2.14, -1.25, 1.48, 0.0),
    (0.45, 0.07, -0.32, -2.14, -1.25, 1.48, 0.0),
])
SEQIKPY_SEED_RAD.setflags(write=False)
# sin(angle between a target and a joint axis) below which the joint's angle is undetermined.
SINGULAR_SIN = 1e-6


# Keypoint weights (CTr, FTi, TiTa, Claw) of the relative `lm` objective when the user sets none.
# With the template body: no keypoint's mean error more than 10% above SeqIKPy's, the pooled
# error 0.82-0.88x (benchmarks/ik_bench.py).
TEMPLATE_BODY_WEIGHTS = (3.0, 1.0, 1.5, 6.0)
# With a body measured from the recording (`--body data`): SeqIKPy's stage order kept by a decade
# per keypoint, so the joint fit lowers a distal keypoint's error only where the keypoints before
# it lose (almost) nothing (no keypoint traded for another). The minimax choice on frames and
# recordings the body was not measured on: the worst keypoint's mean error relative to SeqIKPy's
# is lowest (flat from 10x to 30x per step), pooled error second (benchmarks/bodyfit_weights.py).
MEASURED_BODY_WEIGHTS = (1000.0, 100.0, 10.0, 1.0)


@dataclasses.dataclass(frozen=True)
class LmOptions:
    """Settings of the `lm` solver.

    The default objective is relative: each keypoint's squared error is divided by its squared
    error under the seed (`seqik`, i.e. SeqIKPy's fit) plus `error_floor_mm`^2, so the joint fit
    lowers the large distal errors without giving up much where the stage-wise fit was already
    good. Measured on the df3d and Anipose recordings (`flyenv.data`), no keypoint's mean error
    rises more than 10% over SeqIKPy's with the defaults (see benchmarks/ik_bench.py).

    Attributes:
        keypoint_weights: weights of CTr, FTi, TiTa, Claw in the squared error; None (the
            default): the default for the body solved for, `default_keypoint_weights`
            (`TEMPLATE_BODY_WEIGHTS`, or `MEASURED_BODY_WEIGHTS` with a body measured from the
            recording, `IkOptions(body="data")`); `lm` itself uses the template body's.
        relative: divide each keypoint's squared error by its seed error^2 + floor^2.
        error_floor_mm: floor of the relative weighting [mm].
        smoothness: weight of the squared angle difference between neighbouring frames
            [mm^2/rad^2]; 0 fits every frame on its own.
        iterations: Levenberg-Marquardt iterations.
        damping: initial damping, relative to the diagonal of J^T W J.
    """

    keypoint_weights: tuple[float, float, float, float] | None = None
    relative: bool = True
    error_floor_mm: float = 0.01
    smoothness: float = 0.0
    iterations: int = 8
    damping: float = 1e-3

    def __post_init__(self) -> None:
        try:
            weights = np.asarray(self.weights, dtype=float)
        except (TypeError, ValueError):
            weights = np.full(0, np.nan)
        if weights.shape != (4,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"LmOptions.keypoint_weights must be 4 finite numbers >= 0 "
                             f"(CTr, FTi, TiTa, Claw), got {self.keypoint_weights}")
        if self.keypoint_weights is not None:  # a list or array (a JSON record, numpy) as the
            # tuple of floats it means: hashable, JSON-able, equal to the same weights as a tuple
            object.__setattr__(self, "keypoint_weights", tuple(weights.tolist()))
        if not self.error_floor_mm > 0:
            raise ValueError(f"LmOptions.error_floor_mm must be > 0, got {self.error_floor_mm}")
        if not self.smoothness >= 0:
            raise ValueError(f"LmOptions.smoothness must be >= 0, got {self.smoothness}")
        if self.iterations < 0:
            raise ValueError(f"LmOptions.iterations must be >= 0, got {self.iterations}")

    @property
    def weights(self) -> tuple[float, float, float, float]:
        """The keypoint weights `lm` uses: the ones set, else the template body's default."""
        return TEMPLATE_BODY_WEIGHTS if self.keypoint_weights is None else self.keypoint_weights

    def with_default_weights(self, measured_body: bool) -> LmOptions:
        """These settings with `keypoint_weights` filled in.

        The weights set are kept, else the body's default (`default_keypoint_weights`).
        """
        if self.keypoint_weights is not None:
            return self
        weights = default_keypoint_weights(measured_body)
        return dataclasses.replace(self, keypoint_weights=weights)


def default_keypoint_weights(measured_body: bool) -> tuple[float, float, float, float]:
    """The `lm` keypoint weights (CTr, FTi, TiTa, Claw) when none are set.

    Args:
        measured_body: whether the body is measured from the recording it solves
            (`IkOptions(body="data")`) rather than a template.
    """
    return MEASURED_BODY_WEIGHTS if measured_body else TEMPLATE_BODY_WEIGHTS


def seqik(keypoints_mm: np.ndarray, lengths_mm: np.ndarray, bounds_rad: np.ndarray,
          seed_rad: np.ndarray, tarsus_tilt_rad: np.ndarray | None = None) -> np.ndarray:
    """SeqIKPy's sequential IK in closed form.

    Args:
        keypoints_mm: (T, L, 5, 3) tracked ThC, CTr, FTi, TiTa, Claw of L legs [mm]; finite
            (fill tracking gaps first, see `fill_gaps`).
        lengths_mm: (L, 4) segment lengths [mm].
        bounds_rad: (L, 7, 2) joint bounds [rad].
        seed_rad: (L, 7) initial guess [rad]: picks the branch where two mirror solutions are
            both inside the bounds, and the value of an angle undetermined from the first frame.
        tarsus_tilt_rad: (L,) the tarsi's tilts out of the leg plane (`BodyConfig`) [rad];
            None: 0. The last stage points the tilted tarsus at the claw.

    Returns:
        (T, L, 7) joint angles [rad], inside the bounds.
    """
    keypoints_mm, lengths_mm, bounds_rad, seed_rad = _check(keypoints_mm, lengths_mm,
                                                            bounds_rad, seed_rad)
    tarsus = _tarsus_direction(tarsus_tilt_rad, keypoints_mm.shape[1])
    num_frames, num_legs = keypoints_mm.shape[:2]
    # Targets relative to the ThC, components first: (4, 3, T, L).
    targets = np.moveaxis(keypoints_mm[:, :, 1:] - keypoints_mm[:, :, :1], (2, 3), (0, 1))
    lo = bounds_rad[..., 0].T[:, None, :]  # (7, 1, L)
    hi = bounds_rad[..., 1].T[:, None, :]
    seed = seed_rad.T[:, None, :]
    angles = np.empty((c.DOF_PER_LEG, num_frames, num_legs))
    for stage, (kpid, (joint_a, joint_b)) in enumerate(_STAGES):
        w = targets[stage]
        if joint_a is None:
            b, singular = _best_angle(w, tarsus, _AXIS[joint_b], lo[joint_b], hi[joint_b])
            angles[joint_b] = _keep_previous(b, singular, seed[joint_b])
        else:
            a, b = _two_joint_stage(w, joint_a, joint_b, lo, hi, seed)
            angles[joint_a], angles[joint_b] = a, b
        # Carry the remaining targets into the next segment's frame, relative to its start.
        rest = targets[stage + 1:]
        for joint in (joint_a, joint_b):
            if joint is not None:
                rest = _rotate(rest, _AXIS[joint], -angles[joint])
        rest[:, 2] += lengths_mm.T[kpid - 1][None, :]  # (1, L)
        targets[stage + 1:] = rest
    return np.moveaxis(angles, 0, -1)


def lm(keypoints_mm: np.ndarray, lengths_mm: np.ndarray, bounds_rad: np.ndarray,
       seed_rad: np.ndarray, keypoint_mask: np.ndarray | None = None,
       options: LmOptions | None = None, tarsus_tilt_rad: np.ndarray | None = None,
       ) -> np.ndarray:
    """Joint least-squares IK over the seven angles of each leg.

    Args:
        keypoints_mm: (T, L, 5, 3) tracked keypoints [mm], finite.
        lengths_mm: (L, 4) segment lengths [mm].
        bounds_rad: (L, 7, 2) joint bounds [rad].
        seed_rad: (T, L, 7) starting angles [rad] (the `seqik` solution).
        keypoint_mask: (T, L, 4) 1 where CTr, FTi, TiTa, Claw were tracked, 0 where not (their
            residual gets weight 0); None when all were.
        options: solver settings.
        tarsus_tilt_rad: (L,) the tarsi's tilts (`BodyConfig`) [rad]; None: 0.

    Returns:
        (T, L, 7) joint angles [rad], inside the bounds.
    """
    options = options or LmOptions()
    keypoints_mm = np.asarray(keypoints_mm, dtype=float)
    seed = np.asarray(seed_rad, dtype=float)
    if seed.shape != (*keypoints_mm.shape[:2], c.DOF_PER_LEG):
        raise ValueError(f"seed_rad must have shape {(*keypoints_mm.shape[:2], 7)}, "
                         f"got {seed.shape}")
    keypoints_mm, lengths_mm, bounds_rad, _ = _check(keypoints_mm, lengths_mm, bounds_rad,
                                                     seed[0])
    tilt = _tilt(tarsus_tilt_rad, keypoints_mm.shape[1])
    targets = keypoints_mm[:, :, 1:] - keypoints_mm[:, :, :1]  # (T, L, 4, 3)
    weights = np.broadcast_to(np.asarray(options.weights, dtype=float),
                              targets.shape[:3]).copy()
    if keypoint_mask is not None:
        weights *= np.asarray(keypoint_mask, dtype=float)
    lo, hi = bounds_rad[..., 0], bounds_rad[..., 1]
    thc = np.zeros(3)

    def evaluate(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points, jac = leg_jacobian(thc, lengths_mm, q, tilt)
        return points[:, :, 1:] - targets, jac[:, :, 1:]  # (T, L, 4, 3), (T, L, 4, 3, 7)

    def data_cost(residual: np.ndarray) -> np.ndarray:
        return np.einsum("tlk,tlkd,tlkd->tl", weights, residual, residual)

    q = np.clip(seed, lo, hi)
    residual, jac = evaluate(q)
    if options.relative:
        weights /= np.square(residual).sum(-1) + options.error_floor_mm ** 2
    cost = data_cost(residual)
    damping = np.full(q.shape[:2], options.damping)
    eye = np.eye(c.DOF_PER_LEG)
    smooth = options.smoothness
    for _ in range(options.iterations):
        wjac = jac * weights[..., None, None]
        # Normal equations, (T, L, 7, 7) and (T, L, 7).
        jtj = np.einsum("tlkdi,tlkdj->tlij", wjac, jac)
        grad = np.einsum("tlkdi,tlkd->tli", wjac, residual)
        if smooth > 0:
            prior, prior_weight = _neighbour_mean(q)
            prior_weight = smooth * prior_weight
            jtj = jtj + prior_weight[..., None, None] * eye
            grad = grad + prior_weight[..., None] * (q - prior)
        trial = np.clip(q + damped_step(jtj, grad, damping), lo, hi)
        trial_residual, trial_jac = evaluate(trial)
        trial_cost = data_cost(trial_residual)
        if smooth > 0:  # compare with the prior this step was taken under
            better = (trial_cost + prior_weight * np.square(trial - prior).sum(-1)
                      < cost + prior_weight * np.square(q - prior).sum(-1))
        else:
            better = trial_cost < cost
        q, residual, jac, cost, damping = keep_better(
            better, (q, residual, jac, cost), (trial, trial_residual, trial_jac, trial_cost),
            damping)
    return q


def damped_step(jtj: np.ndarray, grad: np.ndarray, damping: np.ndarray) -> np.ndarray:
    """Levenberg-Marquardt step (..., n) of normal equations `jtj` (..., n, n), `grad` (..., n).

    Marquardt's scaling: the damping (...) multiplies the diagonal of `jtj`.
    """
    diag = np.diagonal(jtj, axis1=-2, axis2=-1) + 1e-9
    system = jtj + (damping[..., None] * diag)[..., None] * np.eye(jtj.shape[-1])
    return np.linalg.solve(system, -grad[..., None])[..., 0]


def keep_better(better: np.ndarray, current: tuple[np.ndarray, ...],
                trial: tuple[np.ndarray, ...], damping: np.ndarray,
                ) -> tuple[np.ndarray, ...]:
    """One Levenberg-Marquardt acceptance: where `better` (...), the trial's arrays.

    Args:
        better: (...) bool, where the trial step lowered the cost.
        current: arrays (..., *) each (angles, residuals, Jacobians, cost).
        trial: the trial step's, in the same order.
        damping: (...) the damping: divided by 3 where the step is kept, times 4 elsewhere.

    Returns:
        The kept arrays, in `current`'s order, then the new damping.
    """
    kept = tuple(np.where(better.reshape(better.shape + (1,) * (now.ndim - better.ndim)), new,
                          now) for now, new in zip(current, trial, strict=True))
    return (*kept, np.where(better, damping / 3.0, damping * 4.0))


def fit_error(keypoints_mm: np.ndarray, lengths_mm: np.ndarray, angles_rad: np.ndarray,
              tarsus_tilt_rad: np.ndarray | None = None) -> np.ndarray:
    """Distance between tracked keypoints and the chain's, both relative to the tracked ThC.

    Args:
        keypoints_mm: (T, L, 5, 3) [mm].
        lengths_mm: (L, 4) [mm].
        angles_rad: (T, L, 7) [rad].
        tarsus_tilt_rad: (L,) [rad]; None: 0.

    Returns:
        (T, L, 5) [mm]; the ThC column is 0 (NaN where the keypoint is NaN).
    """
    keypoints_mm = np.asarray(keypoints_mm, dtype=float)
    points = leg_forward_kinematics(keypoints_mm[:, :, 0], lengths_mm, angles_rad,
                                    _tilt(tarsus_tilt_rad, keypoints_mm.shape[1]))
    return np.linalg.norm(points - keypoints_mm, axis=-1)


def fill_gaps(keypoints_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill tracking gaps (NaN keypoints) by linear interpolation in time.

    Args:
        keypoints_mm: (T, L, 5, 3) [mm], NaN where a keypoint was not tracked.

    Returns:
        filled (T, L, 5, 3) and tracked (T, L, 5) bool mask. A keypoint never tracked in the
        whole clip stays NaN (the caller decides what that means).
    """
    keypoints_mm = np.asarray(keypoints_mm, dtype=float)
    tracked = np.isfinite(keypoints_mm).all(axis=-1)
    return _interpolate_gaps(keypoints_mm, tracked), tracked


# The keypoints that fix each angle (besides the ThC, which the solvers interpolate): a joint's
# angles are fixed by the segments on both sides of it, and a roll about a segment by the next
# segment's plane. ThC yaw, pitch: the coxa; ThC roll, CTr pitch: coxa and femur; CTr roll,
# FTi pitch: femur and tibia (with the coxa they turn against); TiTa pitch: tibia and tarsus.
ANGLE_KEYPOINTS: tuple[tuple[str, ...], ...] = (
    ("CTr",), ("CTr",), ("CTr", "FTi"), ("CTr", "FTi"), ("CTr", "FTi", "TiTa"),
    ("CTr", "FTi", "TiTa"), ("FTi", "TiTa", "Claw"))


def undetermined_angles(tracked: np.ndarray) -> np.ndarray:
    """Which angles the tracked keypoints of each frame cannot determine.

    An angle is determined only when every keypoint of the chain that fixes it is tracked
    (`ANGLE_KEYPOINTS`): TiTa pitch is the angle between tibia and tarsus, so it needs the
    FTi as well as the TiTa and Claw; with the FTi lost the tibia may point anywhere the chain
    reaches the TiTa from, and the fit has nothing to go on (a free angle may end anywhere in
    its range, often on a bound: TiTa pitch with CTr and FTi lost sat on its -pi bound). Such
    angles are taken from neighbouring frames instead (`interpolate_frames`).

    Args:
        tracked: (T, L, 5) bool, ThC, CTr, FTi, TiTa, Claw tracked.

    Returns:
        (T, L, 7) bool, True for an angle that is undetermined in that frame.
    """
    tracked = np.asarray(tracked, dtype=bool)
    undetermined = np.zeros((*tracked.shape[:2], c.DOF_PER_LEG), dtype=bool)
    for joint, names in enumerate(ANGLE_KEYPOINTS):
        kpids = [c.KEYPOINTS.index(name) for name in names]
        undetermined[..., joint] = ~tracked[..., kpids].all(-1)
    return undetermined


def interpolate_frames(angles_rad: np.ndarray, bad: np.ndarray,
                       bounds_rad: np.ndarray | None = None) -> np.ndarray:
    """Replace the angles of bad frames by linear interpolation from good neighbours.

    Args:
        angles_rad: (T, L, 7).
        bad: (T, L) bool, frames of a leg to replace, or (T, L, 7) single angles to replace.
        bounds_rad: (L, 7, 2) joint ranges; when given, a good value on its bound (within
            `BOUND_TOL_RAD`) does not anchor the interpolation (it may be where a fit with
            little to go on stopped), unless the angle has no other good value. It keeps its
            own value.

    Returns:
        (T, L, 7); a leg (or angle) with no good frame is returned unchanged.
    """
    angles = np.asarray(angles_rad, dtype=float)
    bad = np.asarray(bad, dtype=bool)
    if bounds_rad is None:
        return _interpolate_gaps(angles, ~bad)
    bad = np.broadcast_to(bad if bad.ndim == angles.ndim else bad[..., None], angles.shape)
    bounds = np.asarray(bounds_rad, dtype=float)
    on_bound = ((np.abs(angles - bounds[..., 0]) < BOUND_TOL_RAD)
                | (np.abs(angles - bounds[..., 1]) < BOUND_TOL_RAD))
    anchor = ~bad & ~on_bound
    # An angle with no anchor off its bounds keeps the good values it has as anchors.
    anchor |= ~bad & ~anchor.any(axis=0, keepdims=True)
    return _interpolate_gaps(angles, anchor, replace=bad)


def _interpolate_gaps(values: np.ndarray, good: np.ndarray,
                      replace: np.ndarray | None = None) -> np.ndarray:
    """A copy of values (T, *S, *F) with frames where good (T, *S) is False interpolated in time.

    Each series of S is interpolated linearly from its own good frames; a series with no good
    frame is left as it is. With `replace` (like `good`), only those frames are replaced.
    """
    out = values.copy()
    series = out.reshape(good.shape[0], good[0].size, -1)  # a view of the copy
    good = good.reshape(good.shape[0], -1)
    replace = ~good if replace is None else np.asarray(replace).reshape(good.shape)
    frames = np.arange(good.shape[0])
    for s in np.flatnonzero(good.any(axis=0) & replace.any(axis=0)):
        keep, fill = good[:, s], replace[:, s]
        for dim in range(series.shape[2]):
            series[fill, s, dim] = np.interp(frames[fill], frames[keep], series[keep, s, dim])
    return out


# -- closed-form stages ---------------------------------------------------------------------------

_SEGMENT_DIR = np.array([0.0, 0.0, -1.0])[:, None, None]  # segments point along -z, (3, 1, 1)


def _tilt(tarsus_tilt_rad: np.ndarray | None, num_legs: int) -> np.ndarray:
    """(L,) tarsus tilts [rad], 0 for None."""
    if tarsus_tilt_rad is None:
        return np.zeros(num_legs)
    tilt = np.asarray(tarsus_tilt_rad, dtype=float)
    if tilt.shape != (num_legs,):
        raise ValueError(f"tarsus_tilt_rad must have shape ({num_legs},), got {tilt.shape}")
    return tilt


def _tarsus_direction(tarsus_tilt_rad: np.ndarray | None, num_legs: int) -> np.ndarray:
    """(3, 1, L) the tarsus's direction in its own frame: -z, tilted towards +y."""
    tilt = _tilt(tarsus_tilt_rad, num_legs)
    return np.stack([np.zeros_like(tilt), np.sin(tilt), -np.cos(tilt)])[:, None, :]


def _two_joint_stage(w: np.ndarray, joint_a: int, joint_b: int, lo: np.ndarray, hi: np.ndarray,
                     seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (a, b) maximizing w · R_a(a) R_b(b) (-z) inside the bounds, (T, L) each."""
    axis_a, axis_b = _AXIS[joint_a], _AXIS[joint_b]
    lo_a, hi_a, lo_b, hi_b = lo[joint_a], hi[joint_a], lo[joint_b], hi[joint_b]
    norm = np.linalg.norm(w, axis=0)
    unit = w / np.where(norm > 0, norm, 1.0)
    # Rotating about a leaves the a-component alone: e_a · R_b(b) e = e_a · w_hat fixes b up to
    # its mirror, alpha cos b + beta sin b = s.
    e_perp, kxe = _parts(_SEGMENT_DIR, axis_b)
    alpha, beta = e_perp[axis_a], kxe[axis_a]
    phi = np.arctan2(beta, alpha)
    spread = np.arccos(np.clip(unit[axis_a] / np.hypot(alpha, beta), -1.0, 1.0))
    candidates = []
    for sign in (1.0, -1.0):
        b = _wrap(phi + sign * spread)
        a, _ = _best_angle(unit, _rotate(_SEGMENT_DIR, axis_b, b), axis_a, -np.pi, np.pi)
        inside = (a >= lo_a) & (a <= hi_a) & (b >= lo_b) & (b <= hi_b)
        candidates.append((a, b, inside))
    # Both mirror branches are optimal; where both are feasible keep the one nearer the seed,
    # measured inside the bounds as a warm-started optimizer moves (no wrapping at +-pi).
    (a1, b1, inside1), (a2, b2, inside2) = candidates
    nearer_first = (np.abs(a1 - seed[joint_a]) + np.abs(b1 - seed[joint_b])
                    <= np.abs(a2 - seed[joint_a]) + np.abs(b2 - seed[joint_b]))
    first = inside1 & (nearer_first | ~inside2)
    best_a, best_b = np.where(first, a1, a2), np.where(first, b1, b2)
    # Otherwise the optimum lies on an edge of the bound box: fix one angle at a bound and
    # point with the other (a sinusoid in one angle, clipped to its bounds).
    edges = []
    for bound_a in (lo_a, hi_a):
        a = np.broadcast_to(bound_a, best_a.shape)
        b, _ = _best_angle(_rotate(unit, axis_a, -a), _SEGMENT_DIR, axis_b, lo_b, hi_b)
        edges.append((a, b))
    for bound_b in (lo_b, hi_b):
        b = np.broadcast_to(bound_b, best_b.shape)
        a, _ = _best_angle(unit, _rotate(_SEGMENT_DIR, axis_b, b), axis_a, lo_a, hi_a)
        edges.append((a, b))
    # Where a branch is feasible no edge can beat it.
    best_value = np.where(inside1 | inside2, np.inf, -np.inf)
    for a, b in edges:
        value = np.einsum("d...,d...->...", unit,
                          _rotate(_rotate(_SEGMENT_DIR, axis_b, b), axis_a, a))
        take = value > best_value
        best_a, best_b = np.where(take, a, best_a), np.where(take, b, best_b)
        best_value = np.where(take, value, best_value)
    # Singular: the target on the a axis (any a points there) or on the joint itself.
    _, kxd = _parts(_rotate(_SEGMENT_DIR, axis_b, best_b), axis_a)
    singular = (np.linalg.norm(kxd, axis=0) * (norm > 0) < SINGULAR_SIN) | (norm == 0)
    if singular.any():
        best_a = _keep_previous(best_a, singular, seed[joint_a])
        refit, _ = _best_angle(_rotate(unit, axis_a, -best_a), _SEGMENT_DIR, axis_b, lo_b, hi_b)
        best_b = np.where(singular & (norm > 0), refit, best_b)
        best_b = _keep_previous(best_b, norm == 0, seed[joint_b])
    return best_a, best_b


def _best_angle(w: np.ndarray, g: np.ndarray, axis: int, lo: np.ndarray, hi: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray]:
    """The angle theta in [lo, hi] maximizing w · R_axis(theta) g, and whether it is undetermined.

    w · R(theta) g = w·g_par + cos(theta) w·g_perp + sin(theta) w·(k x g) is a sinusoid in theta,
    so the constrained maximum is the unconstrained one moved to the nearer bound.
    """
    g_perp, kxg = _parts(g, axis)
    cos_part = np.einsum("d...,d...->...", w, g_perp)
    sin_part = np.einsum("d...,d...->...", w, kxg)
    theta = np.arctan2(sin_part, cos_part)
    singular = np.hypot(cos_part, sin_part) < SINGULAR_SIN * np.linalg.norm(w, axis=0)
    below, above = theta < lo, theta > hi
    to_lo = _angle_dist(theta, lo) <= _angle_dist(theta, hi)
    theta = np.where(below | above, np.where(to_lo, lo, hi), theta)
    return theta, singular | ~np.isfinite(theta)


def _parts(g: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Part of g perpendicular to principal axis k and k x g, components first."""
    i, k = (axis + 1) % 3, (axis + 2) % 3
    g_perp = np.array(g, dtype=float, copy=True)
    g_perp[axis] = 0.0
    kxg = np.zeros_like(g_perp)
    kxg[i], kxg[k] = -g[k], g[i]
    return g_perp, kxg


def _rotate(v: np.ndarray, axis: int, angle: np.ndarray) -> np.ndarray:
    """R_axis(angle) v for v (..., 3, *batch) with components on axis -1 - batch.ndim."""
    cos, sin = np.cos(angle), np.sin(angle)
    i, k = (axis + 1) % 3, (axis + 2) % 3
    comp = v.ndim - np.ndim(angle) - 1
    vi, vk = np.take(v, i, axis=comp), np.take(v, k, axis=comp)
    parts = [None, None, None]
    parts[axis] = np.broadcast_to(np.take(v, axis, axis=comp), np.broadcast_shapes(
        vi.shape, np.shape(cos)))
    parts[i] = cos * vi - sin * vk
    parts[k] = sin * vi + cos * vk
    return np.stack(parts, axis=comp)


def _keep_previous(values: np.ndarray, undetermined: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """(T, L) values with undetermined frames replaced by the last determined one (or seed)."""
    if not undetermined.any():
        return values
    frames = np.arange(values.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(undetermined, -1, frames), axis=0)
    held = np.take_along_axis(values, np.maximum(last, 0), axis=0)
    return np.where(last >= 0, held, np.broadcast_to(seed, values.shape))


def _neighbour_mean(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each frame's neighbours (T, L, 7) and the prior's weight (T, L).

    The smoothness term sum_t |q_t - q_{t-1}|^2 / 2 has the gradient 2 (q_t - mean of
    neighbours) at interior frames, 1 x at the two ends, so each Gauss-Newton step treats it
    as a prior toward the neighbours' current mean.
    """
    prior = np.empty_like(q)
    weight = np.full(q.shape[:2], 2.0)
    if q.shape[0] == 1:
        return q.copy(), np.zeros(q.shape[:2])
    prior[1:-1] = 0.5 * (q[:-2] + q[2:])
    prior[0], prior[-1] = q[1], q[-2]
    weight[0] = weight[-1] = 1.0
    return prior, weight


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _angle_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(_wrap(a - b))


def _check(keypoints_mm: np.ndarray, lengths_mm: np.ndarray, bounds_rad: np.ndarray,
           seed_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keypoints_mm = np.asarray(keypoints_mm, dtype=float)
    if keypoints_mm.ndim != 4 or keypoints_mm.shape[2:] != (c.NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints_mm must have shape (T, L, 5, 3), got {keypoints_mm.shape}")
    num_legs = keypoints_mm.shape[1]
    arrays = {"lengths_mm": (lengths_mm, (num_legs, c.NUM_SEGMENTS)),
              "bounds_rad": (bounds_rad, (num_legs, c.DOF_PER_LEG, 2)),
              "seed_rad": (seed_rad, (num_legs, c.DOF_PER_LEG))}
    out = []
    for name, (value, shape) in arrays.items():
        value = np.asarray(value, dtype=float)
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
        out.append(value)
    return keypoints_mm, *out
