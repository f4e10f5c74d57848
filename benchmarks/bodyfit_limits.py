"""What the leg chain allows (`bodyfit_bench --sections limits`): per-keypoint lower bounds,
the tarsus tilt's bound, other tarsus models and L1 solves, chosen on training frames and scored
on held-out ones (`bench_limits`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ik_bench
import numpy as np
from bodyfit_problems import (
    Clip,
    data_body_lm,
    proximal_first,
    reference,
    solve,
    splits,
)
from scipy.optimize import minimize

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.body.kinematics import (
    leg_forward_kinematics,
    leg_jacobian,
    rotation_matrix,
)
from flyenv.ik_preprocess import solver
from flyenv.ik_preprocess.bodyfit import fit_body, tarsus_frame

LIMIT_WEIGHTS = (1.0, 3.0, 10.0, 30.0)  # FTi, TiTa weights of the L1 solves (CTr, Claw: 1)
LIMIT_CAPS = (1.0, 1.05, 1.1)


def l1_solve(clip: Clip, lengths: np.ndarray, weights: tuple[float, ...], *,
             keep_coxa: bool, floor_mm: float, rounds: int = 6, iterations: int = 8,
             ) -> np.ndarray:
    """Fit errors (T, L, 4) of the angles minimising sum_k w_k |error_k| per leg-frame.

    Iteratively reweighted least squares (each round an `lm`-style solve with weights
    w_k / (|error_k| + floor)), seeded from `seqik`; with `keep_coxa` ThC yaw and pitch stay at
    `seqik`'s, so the CTr error is SeqIKPy's stage optimum.
    """
    legs = clip.legs
    filled, tracked = solver.fill_gaps(clip.keypoints[:, legs])
    lengths_l, bounds = lengths[legs], clip.bounds[legs]
    q = solver.seqik(filled, lengths_l, bounds, solver.SEQIKPY_SEED_RAD[legs])
    targets = filled[:, :, 1:] - filled[:, :, :1]
    base = np.asarray(weights, float) * tracked[..., 1:]
    lo, hi = bounds[..., 0], bounds[..., 1]
    free = np.ones(c.DOF_PER_LEG)
    if keep_coxa:
        free[:2] = 0.0

    def evaluate(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points, jac = leg_jacobian(np.zeros(3), lengths_l, angles)
        return points[:, :, 1:] - targets, jac[:, :, 1:] * free

    residual, jac = evaluate(q)
    for _ in range(rounds):
        w = base / (np.linalg.norm(residual, axis=-1) + floor_mm)
        cost = np.einsum("tlk,tlkd,tlkd->tl", w, residual, residual)
        damping = np.full(q.shape[:2], 1e-3)
        for _ in range(iterations):
            wjac = jac * w[..., None, None]
            jtj = np.einsum("tlkdi,tlkdj->tlij", wjac, jac)
            grad = np.einsum("tlkdi,tlkd->tli", wjac, residual)
            trial = np.clip(q + solver.damped_step(jtj, grad, damping) * free, lo, hi)
            trial_residual, trial_jac = evaluate(trial)
            trial_cost = np.einsum("tlk,tlkd,tlkd->tl", w, trial_residual, trial_residual)
            q, residual, jac, cost, damping = solver.keep_better(
                trial_cost < cost, (q, residual, jac, cost),
                (trial, trial_residual, trial_jac, trial_cost), damping)
    return solver.fit_error(filled, lengths_l, q)[..., 1:]


def stage_bounds(clip: Clip) -> np.ndarray:
    """(4,) mean CTr, FTi, TiTa, Claw errors of SeqIKPy's stages on the body that minimises each
    stage's mean error given the stages before it (`proximal_first` fitted on these frames).

    CTr: no solver and no coxa length does better (see `bench_limits`). FTi..Claw: what any
    solver attains with the earlier keypoints at these errors (the bound the next stage is
    held to once the earlier keypoints may not get worse)."""
    return solve(clip, proximal_first(clip), method="seqik").mean((0, 1))


def claw_bound_with_tilt(clip: Clip) -> float:
    """Mean Claw error with the CTr, FTi and TiTa where `stage_bounds` puts them and the best
    constant tarsus length and tilt per leg for these frames (the TiTa pitch unbounded, so a
    lower bound for every tilted body whose other keypoints are at their stage bounds).
    Nelder-Mead per leg from the measured length and the median tilt."""
    lengths = proximal_first(clip)
    legs = clip.legs
    filled, _ = solver.fill_gaps(clip.keypoints[:, legs])
    angles = solver.seqik(filled, lengths[legs], clip.bounds[legs],
                          solver.SEQIKPY_SEED_RAD[legs])
    to_claw, normal = tarsus_frame(filled, lengths[legs], angles)
    across = (to_claw * normal).sum(-1)
    in_plane = to_claw - across[..., None] * normal
    in_plane /= np.linalg.norm(in_plane, axis=-1, keepdims=True)
    total = 0.0
    for i in range(len(legs)):
        def mean_error(x: np.ndarray, i: int = i) -> float:
            length, tilt = x
            claw = length * (np.cos(tilt) * in_plane[:, i] + np.sin(tilt) * normal[:, i])
            return float(np.linalg.norm(to_claw[:, i] - claw, axis=-1).mean())
        start = np.array([np.median(np.linalg.norm(to_claw[:, i], axis=-1)),
                          np.median(np.arctan2(across[:, i], 1.0))])
        start[1] = np.median(np.arcsin(np.clip(across[:, i] / start[0], -1, 1)))
        total += minimize(mean_error, start, method="Nelder-Mead",
                          options={"xatol": 1e-7, "fatol": 1e-9}).fun
    return total / len(legs)


def lad_tarsus(train: Clip, body: BodyConfig) -> BodyConfig:
    """The body with each tracked leg's tarsus length and tilt refitted to minimise the mean
    claw error on `train` with SeqIKPy's stages (least absolute deviation, as the median is
    for one length), from the measured ones."""
    legs = train.legs
    filled, _ = solver.fill_gaps(train.keypoints[:, legs])
    lengths = body.lengths
    angles = solver.seqik(filled, lengths[legs], train.bounds[legs],
                          solver.SEQIKPY_SEED_RAD[legs])
    to_claw, normal = tarsus_frame(filled, lengths[legs], angles)
    in_plane = to_claw - (to_claw * normal).sum(-1)[..., None] * normal
    in_plane /= np.linalg.norm(in_plane, axis=-1, keepdims=True)
    lengths, tilt = lengths.copy(), body.tarsus_tilt.copy()
    for i, legid in enumerate(legs):
        length0 = lengths[legid, 3]

        def mean_error(x: np.ndarray, i: int = i, length0: float = length0) -> float:
            claw = length0 * np.exp(x[0]) * (np.cos(x[1]) * in_plane[:, i]
                                             + np.sin(x[1]) * normal[:, i])
            return float(np.linalg.norm(to_claw[:, i] - claw, axis=-1).mean() / length0)
        x = minimize(mean_error, np.array([0.0, tilt[legid]]), method="Nelder-Mead",
                     options={"xatol": 1e-8, "fatol": 1e-12}).x
        lengths[legid, 3], tilt[legid] = length0 * np.exp(x[0]), x[1]
    return body.replace(segment_lengths_mm=lengths, tarsus_tilt_rad=tilt)


TARSUS_MODELS = {"tilt": (True, False), "hinge_turned": (False, True), "both": (True, True)}


def tarsus_models(train: Clip, test: Clip) -> dict[str, float]:
    """Held-out mean Claw error over the reference's for per-leg tarsus models beyond the
    segment lengths, with the CTr, FTi and TiTa where SeqIKPy's stages put them (body
    measured on `train`): a constant tilt out of the leg plane (what `--body data` has), the
    TiTa hinge turned about the tibia's axis by a constant angle, and both; each with the
    tarsus length fitted on `train` to the least mean claw error (Nelder-Mead from three
    starts), the TiTa pitch unbounded."""
    lengths = fit_body(train.keypoints, train.template).body.lengths

    def tibia_frame_claws(clip: Clip) -> np.ndarray:
        filled, _ = solver.fill_gaps(clip.keypoints[:, clip.legs])
        angles = solver.seqik(filled, lengths[clip.legs], clip.bounds[clip.legs],
                              solver.SEQIKPY_SEED_RAD[clip.legs])
        chain = leg_forward_kinematics(filled[:, :, 0], lengths[clip.legs], angles)
        rotation = np.eye(3)
        for joint, axis in enumerate("xyzyzy"):
            rotation = rotation @ rotation_matrix(axis, angles[..., joint])
        return np.einsum("tlji,tlj->tli", rotation, filled[:, :, 4] - chain[:, :, 3])

    def claw_error(w: np.ndarray, length: float, tilt: float, turn: float) -> np.ndarray:
        cos, sin = np.cos(turn), np.sin(turn)  # the claw in the turned hinge's frame
        x, y, z = cos * w[:, 0] + sin * w[:, 1], -sin * w[:, 0] + cos * w[:, 1], w[:, 2]
        r = np.hypot(x, z)
        return np.sqrt((x - length * np.cos(tilt) * x / r) ** 2
                       + (y - length * np.sin(tilt)) ** 2
                       + (z - length * np.cos(tilt) * z / r) ** 2)

    train_w, test_w = tibia_frame_claws(train), tibia_frame_claws(test)
    reference_claw = reference(test)[..., 3].mean()

    def params(x: np.ndarray, length0: float, tilted: bool, turned: bool,
               ) -> tuple[float, float, float]:
        return length0 * np.exp(x[0]), x[1] if tilted else 0.0, x[2] if turned else 0.0

    def mean_error(x: np.ndarray, w: np.ndarray, *model: Any) -> float:
        return float(claw_error(w, *params(x, *model)).mean() / model[0])

    out = {}
    for name, (tilted, turned) in TARSUS_MODELS.items():
        errors = []
        for i, legid in enumerate(train.legs):
            model = (lengths[legid, 3], tilted, turned)
            best = min((minimize(mean_error, np.array([0.0, 0.0, start]),
                                 args=(train_w[:, i], *model), method="Nelder-Mead",
                                 options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 4000})
                        for start in (0.0, 0.3, -0.3)), key=lambda r: r.fun)
            errors.append(claw_error(test_w[:, i], *params(best.x, *model)))
        out[name] = float(np.stack(errors, 1).mean() / reference_claw)
    return out


def coplanar_bound(clip: Clip, lengths: np.ndarray) -> float:
    """Mean over leg-frames of a lower bound of FTi + TiTa + Claw errors, any segment lengths,
    with the chain's CTr where SeqIKPy's first stage puts it: the chain's CTr, FTi, TiTa and
    Claw lie in one plane (CTr roll sets it; FTi and TiTa pitch turn in it), so the three
    errors sum to at least the smallest sum of distances of the tracked FTi, TiTa, Claw to a
    plane through that CTr, which is attained by a plane through two of them."""
    legs = clip.legs
    filled, _ = solver.fill_gaps(clip.keypoints[:, legs])
    angles = solver.seqik(filled, lengths[legs], clip.bounds[legs],
                          solver.SEQIKPY_SEED_RAD[legs])
    chain = leg_forward_kinematics(filled[:, :, 0], lengths[legs], angles)
    v = filled[:, :, 2:] - chain[:, :, 1:2]  # (T, L, 3, 3): FTi, TiTa, Claw from chain CTr
    best = np.full(v.shape[:2], np.inf)
    for i in range(3):
        j, k = (m for m in range(3) if m != i)
        normal = np.cross(v[:, :, j], v[:, :, k])
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
        best = np.minimum(best, np.abs((normal * v[:, :, i]).sum(-1)))
    return float(best.mean())


def limit_candidates(train: Clip, test: Clip) -> list[dict[str, Any]]:
    """Solvers on the measured body (from `train`), each scored on `train` and on `test`
    against SeqIKPy with a data body measured on the frames scored."""
    fit = fit_body(train.keypoints, train.template)
    lengths, floor = fit.body.lengths, 0.002 * fit.scale
    refs = {"train": ik_bench.error_stats(reference(train)),
            "test": ik_bench.error_stats(reference(test))}
    rows = []

    def add(label: str, solve_on: Any) -> None:
        row: dict[str, Any] = {"solver": label}
        for part, clip in (("train", train), ("test", test)):
            row[part] = ik_bench.error_ratios(ik_bench.error_stats(solve_on(clip)), refs[part])
        rows.append(row)

    default = data_body_lm(fit.scale)
    lm = data_body_lm(fit.scale, solver.TEMPLATE_BODY_WEIGHTS)
    tilt = fit.body.tarsus_tilt
    add("lm --body data default (weights 1000 100 10 1), measured lengths and tilt",
        lambda clip: solve(clip, lengths, default, tilt=tilt))
    add("lm weights 3 1 1.5 6 (--body data before), measured lengths and tilt",
        lambda clip: solve(clip, lengths, lm, tilt=tilt))
    add("seqik, measured lengths and tilt", lambda clip: solve(clip, lengths, method="seqik",
                                                               tilt=tilt))
    proximal = dataclasses.replace(lm, keypoint_weights=(10.0, 5.0, 5.0, 1.0))
    add("lm weights 10 5 5 1, measured lengths and tilt",
        lambda clip: solve(clip, lengths, proximal, tilt=tilt))
    lad = lad_tarsus(train, fit.body)
    add("seqik, tarsus length and tilt fitted LAD on the claw",
        lambda clip: solve(clip, lad.lengths, method="seqik", tilt=lad.tarsus_tilt))
    add("lm weights 3 1 1.5 6, tarsus length and tilt fitted LAD on the claw",
        lambda clip: solve(clip, lad.lengths, lm, tilt=lad.tarsus_tilt))
    add("lm weights 3 1 1.5 6, measured lengths", lambda clip: solve(clip, lengths, lm))
    add("seqik, measured lengths", lambda clip: solve(clip, lengths, method="seqik"))
    add("L1 (1,1,1,1) keep_coxa=False",
        lambda clip: l1_solve(clip, lengths, (1, 1, 1, 1), keep_coxa=False, floor_mm=floor))
    for w_fti in LIMIT_WEIGHTS:
        for w_tita in LIMIT_WEIGHTS:
            weights = (1.0, w_fti, w_tita, 1.0)
            add(f"L1 {weights} keep_coxa=True",
                lambda clip, w=weights: l1_solve(clip, lengths, w, keep_coxa=True,
                                                 floor_mm=floor))
    return rows


def frontier(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cap on each keypoint's mean ratio: the solver chosen on training frames (lowest
    pooled mean among those within the cap there), and its held-out scores."""
    out = {}
    for cap in LIMIT_CAPS:
        within = [r for r in rows
                  if r["train"]["max_keypoint_mean"]["ratio"] <= cap + 1e-9]
        best = min(within, key=lambda r: r["train"]["pooled_mean"])
        test = best["test"]
        out[str(cap)] = {"chosen_on_train": best["solver"],
                         "train_pooled_mean": best["train"]["pooled_mean"],
                         "test": {"per_keypoint_mean": test["per_keypoint_mean"],
                                  "pooled_mean": test["pooled_mean"],
                                  "pooled_p95": test["pooled_p95"],
                                  "within_cap": test["max_keypoint_mean"]["ratio"]
                                  <= cap + 1e-9}}
    return out


def bench_limits(clips: dict[str, Clip]) -> dict[str, Any]:
    """What the leg chain allows: the per-keypoint lower bounds and the best trade-offs.

    The chain's keypoints are nested: CTr depends on ThC yaw, pitch and the coxa length only;
    given the chain's CTr, FTi on ThC roll, CTr pitch and the femur; given its FTi, TiTa on CTr
    roll, FTi pitch and the tibia; given its TiTa (and the leg plane), the Claw on TiTa pitch and
    the tarsus. SeqIKPy's stages each take the optimum for their keypoint given the chain so
    far, so on a body with its lengths: a solver whose mean CTr error is at most SeqIKPy's has
    SeqIKPy's CTr on every frame (no frame can do better), hence its FTi error is at least
    SeqIKPy's on every frame, and so on down the leg: with every keypoint's mean at or below
    SeqIKPy's, the solution is SeqIKPy's and the pooled ratio is 1. Another body can only
    loosen this by what each stage gains from its own length given the chain before it
    (`stage_bounds`, the length that minimises the stage's mean error): that gain bounds how
    far the chain may move off SeqIKPy's stage optima, and so what the distal keypoints can
    win. Measured here, with the other evidence:

    - stage_bounds_ratio: each keypoint's stage bound over SeqIKPy's (data body) mean, on all
      frames and on each held-out half (fitted there: the bound for any body).
    - tarsus_models_claw_ratio: per held-out split, the claw with other per-leg tarsus
      models (`tarsus_models`): which body freedom beyond the lengths holds on unseen frames.
    - coplanar_pooled_lower_bound_ratio: a weaker bound that holds for any lengths (see
      `coplanar_bound`), pooled mean over SeqIKPy's, with the CTr at its bound.
    - candidates: SeqIKPy, flyenv's lm and the L1 solves (per leg-frame optimum of a
      weighted sum of the four errors, the pooled mean's own objective; CTr kept at its
      optimum or not, FTi and TiTa weighted 1-30), body measured on the training frames,
      scored on training and held-out frames; frontier: per cap on every keypoint's mean
      ratio, the solver chosen on training frames and its held-out scores.
    """
    out: dict[str, Any] = {"caps": LIMIT_CAPS}
    for name in ("df3d_walk", "anipose_groom"):
        clip = clips[name]
        ref_all = reference(clip).mean((0, 1))
        fit = fit_body(clip.keypoints, clip.template)
        bounds = stage_bounds(clip)
        claw_tilted = claw_bound_with_tilt(clip)
        entry: dict[str, Any] = {
            "stage_bounds_ratio": {"all_frames": (bounds / ref_all).tolist()},
            "claw_bound_with_best_tilt_ratio": float(claw_tilted / ref_all[3]),
            "pooled_mean_bound_every_keypoint_at_most_seqikpy": {
                "planar_chain": float(bounds.sum() / ref_all.sum()),
                "tilted_tarsus": float((bounds[:3].sum() + claw_tilted) / ref_all.sum())},
            "coplanar_pooled_lower_bound_ratio": float(
                (ref_all[0] + coplanar_bound(clip, fit.body.lengths)) / ref_all.sum())}
        for split, (train, test) in splits(len(clip.keypoints)).items():
            if split == "second_half_to_first":
                continue
            held = clip.frames(test)
            entry["stage_bounds_ratio"][f"{split}_test_frames"] = (
                stage_bounds(held) / reference(held).mean((0, 1))).tolist()
            rows = limit_candidates(clip.frames(train), held)
            entry[split] = {"candidates": rows, "frontier": frontier(rows),
                            "tarsus_models_claw_ratio": tarsus_models(clip.frames(train), held)}
        out[name] = entry
    rows = limit_candidates(clips["df3d_walk"], clips["df3d_walk_100"])
    out["df3d_walk_to_df3d_walk_100"] = {
        "candidates": rows, "frontier": frontier(rows),
        "tarsus_models_claw_ratio": tarsus_models(clips["df3d_walk"], clips["df3d_walk_100"])}
    return out
