"""`--body data` judged on data it was not measured on, against SeqIKPy with a data body.

The reference everywhere is SeqIKPy run with a data body on every frame: flyenv's `seqik`
(SeqIKPy's stages in closed form, its angles) with each leg's median segment distances measured on
the whole recording it is scored on (on held-out frames too: its body has seen the frames it is
scored on, flyenv's has not). flyenv is `--body data` as `flyenv ik` runs it: the measured body
(`flyenv.ik_preprocess.bodyfit.fit_body`: segment lengths and tarsus tilts) and the user's `lm`
settings (defaults here), the lm floor scaled with the fly. Ratios are flyenv's error over the
reference's on the same frames: each keypoint's mean (CTr, FTi, TiTa, Claw), the pooled mean
and p95.

What it measures (one process, BLAS limited to one thread; `--quick` for a smoke run):

1. Real recordings (the df3d walk, 1000 frames, 6 legs; the Anipose grooming, 600 frames, front
   legs), in the canonical thorax frame `flyenv ik` finds: the body measured on all frames, and
   held-out splits (measured on the first half and scored on the second, the reverse, and even
   frames scored on odd ones); for comparison the measured lengths without the tarsus tilt,
   the measured body with SeqIKPy's stages (`--solver seqik`), the template body, the
   left/right-averaged measured body (the body before the alternating fit), a body fitted
   proximal segment first
   (each length the median distance from the chain's joint, as `seqik` places it with the
   lengths before, to the tracked keypoint).
2. Another recording of the same fly: the body measured on the 1000-frame df3d walk solves the
   100-frame df3d file (SeqIKPy's aligned tutorial input, another stretch of the same fly with
   each leg rescaled by SeqIKPy's alignment), and the reverse.
3. Length search on the solver's error, to decide whether a fitted body beats the measured one
   (segment lengths only, the planar tarsus: run before the tilt was measured):
   per leg, Powell over the four log length ratios, the objective the pooled mean + p95 of the
   `lm` fit on even frames, with and without the constraint that no keypoint's mean error
   exceeds the measured body's; scored on odd frames.
4. The solver's keypoint weights with the measured body (lengths and tilts): how the pooled
   error and the worst keypoint trade (the targets ask for both at once).
5. Synthetic flies: the df3d walk's joint angles on bodies 0.7-1.3x the template with +-15% per
   segment, tracked with noise (0.01 mm x size) and dropped keypoints (5% at random, a claw lost
   for 30 frames): measured lengths against the true ones, and the angles with the measured body
   against those with the true body on the same tracking (what the body contributes) and
   against the truth.
6. Scale equivariance: `flyenv.ik_preprocess.run(body="data")` on the df3d walk scaled by 0.8
   and 1.2: the angles' change (p99, max) and the bodies' ratio.
7. Speed: a `--body data` batch (8 copies of the df3d walk) with 1 and 2 workers, with the
   thorax estimate and without (`--frame thorax`): wall clock, the main process's CPU per file
   (its serial share; reading, the thorax estimate and measuring the body run in the workers
   since issue 21's item 5), the preparation's parts per file, and what shipping a prepared
   file from its worker back costs (pickled size, dumps + loads); the default path
   (`--frame estimate`) against `--frame thorax` per leg-frame on 20,000 frames, one core; the
   odometry per 1000 frames.
   Repeats are interleaved and each run records the load average before it and the share of
   both CPUs busy during it (other users' work included).
8. What the chain allows (`bench_limits`): per-keypoint lower bounds, the best trade-offs
   chosen on training frames and scored on held-out ones, the tarsus tilt's bound.

Sections (`--sections`, default all; the output's other sections are kept): accuracy (1, 2, 4,
5, 6), search (3), limits (8), speed (7), workers (7's batch alone).

Run from the repository root (results in benchmarks/results/bodyfit_bench.json):

    nice -n 10 python benchmarks/bodyfit_bench.py [--quick] [--sections accuracy limits ...]
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one BLAS/OpenMP thread, before numpy loads)

# isort: split
import argparse
import dataclasses
import json
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import frames_bench
import ik_bench
import numpy as np
from common import RESULTS
from scipy.optimize import minimize

from flyenv import data
from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.body.kinematics import (
    forward_kinematics,
    leg_forward_kinematics,
    leg_jacobian,
    rotation_matrix,
)
from flyenv.ik_preprocess import IkOptions, LmOptions, load_recording, run, solver
from flyenv.ik_preprocess.align import body_from_recording, robust_center, segment_lengths
from flyenv.ik_preprocess.bodyfit import fit_body
from flyenv.ik_preprocess.thorax import estimate_thorax_pose
from flyenv.motion import io as motion_io
from flyenv.motion.grounding import ground, odometry

DEFAULT_OUTPUT = RESULTS / "bodyfit_bench.json"

TARGETS = {"keypoint_mean_ratio": 1.0, "pooled_mean_ratio": 0.7, "pooled_p95_ratio": 0.7,
           "synthetic_length_error_pct": 3.0, "synthetic_angle_deg": 1.0,
           "scale_p99_deg": 0.5, "estimate_over_thorax": 1.2}
SIZES = (0.7, 0.85, 1.0, 1.15, 1.3)
WEIGHTS = ((3.0, 1.0, 1.5, 6.0, True), (10.0, 5.0, 5.0, 1.0, True), (10.0, 10.0, 10.0, 1.0, True),
           (10.0, 5.0, 5.0, 1.0, False), (3.0, 1.0, 1.5, 6.0, False))


@dataclasses.dataclass(frozen=True)
class Clip:
    """A recording in the canonical thorax frame, with the template it is solved against."""

    name: str
    keypoints: np.ndarray  # (T, 6, 5, 3) [mm]
    legs: list[int]
    template: BodyConfig

    @property
    def bounds(self) -> np.ndarray:
        """(6, 7, 2) [rad]."""
        return self.template.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)

    def frames(self, index: np.ndarray) -> Clip:
        """The clip on some frames."""
        return dataclasses.replace(self, keypoints=self.keypoints[index])


def load_clip(name: str, template: BodyConfig) -> Clip:
    """A shipped recording in the thorax frame `flyenv ik --frame estimate` finds."""
    recording = load_recording(data.path(name))
    pose = estimate_thorax_pose(recording.keypoints, template.thc, 100.0)
    return Clip(name, pose.to_thorax(recording.keypoints),
                [c.LEGS.index(leg) for leg in recording.legs_present], template)


def solve(clip: Clip, lengths: np.ndarray, lm: LmOptions | None = None,
          method: str = "lm", tilt: np.ndarray | None = None) -> np.ndarray:
    """Fit errors (T, L, 4) of CTr..Claw of the clip's legs for a body's (6, 4) lengths [mm]
    and (6,) tarsus tilts [rad] (None: 0)."""
    legs = clip.legs
    filled, tracked = solver.fill_gaps(clip.keypoints[:, legs])
    args = (lengths[legs], clip.bounds[legs])
    tilt = None if tilt is None else np.asarray(tilt)[legs]
    angles = solver.seqik(filled, *args, solver.SEQIKPY_SEED_RAD[legs], tarsus_tilt_rad=tilt)
    if method == "lm":
        angles = solver.lm(filled, *args, angles, keypoint_mask=tracked[..., 1:], options=lm,
                           tarsus_tilt_rad=tilt)
    return solver.fit_error(filled, lengths[legs], angles, tilt)[..., 1:]


def per_leg_lengths(clip: Clip) -> np.ndarray:
    """(6, 4) each leg's median segment distances (SeqIKPy's data body), template elsewhere."""
    measured = segment_lengths(clip.keypoints)
    return np.where(np.isfinite(measured), measured, clip.template.lengths)


def flyenv_data_body(train: Clip, test: Clip) -> np.ndarray:
    """Errors on `test` of `--body data` with the body measured on `train` (default lm)."""
    fit = fit_body(train.keypoints, train.template)
    lm = LmOptions(error_floor_mm=LmOptions().error_floor_mm * fit.scale)
    return solve(test, fit.body.lengths, lm, tilt=fit.body.tarsus_tilt)


def reference(clip: Clip) -> np.ndarray:
    """SeqIKPy with a data body measured on the clip itself."""
    return solve(clip, per_leg_lengths(clip), method="seqik")


def scored(errors: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """The errors, the reference's and their ratios, with the targets."""
    mine, theirs = ik_bench.error_stats(errors), ik_bench.error_stats(ref)
    ratios = ik_bench.error_ratios(mine, theirs)
    return {"flyenv_mm": mine, "seqikpy_data_body_mm": theirs, "ratio": ratios,
            "targets_met": {
                "every_keypoint_mean_at_most_seqikpy":
                    ratios["max_keypoint_mean"]["ratio"] <= TARGETS["keypoint_mean_ratio"],
                "pooled_mean_at_most_0.7": ratios["pooled_mean"] <= TARGETS["pooled_mean_ratio"],
                "pooled_p95_at_most_0.7": ratios["pooled_p95"] <= TARGETS["pooled_p95_ratio"]}}


def splits(num_frames: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and test frames of the held-out splits."""
    frames = np.arange(num_frames)
    half = num_frames // 2
    return {"first_half_to_second": (frames[:half], frames[half:]),
            "second_half_to_first": (frames[half:], frames[:half]),
            "even_to_odd": (frames[::2], frames[1::2])}


def bench_recordings(clips: dict[str, Clip]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, clip in clips.items():
        ref = reference(clip)
        entry = {"frames": len(clip.keypoints), "legs": [c.LEGS[i] for i in clip.legs],
                 "all_frames": scored(flyenv_data_body(clip, clip), ref),
                 "held_out": {}, "other_bodies_all_frames": {}}
        for split, (train, test) in splits(len(clip.keypoints)).items():
            entry["held_out"][split] = scored(flyenv_data_body(clip.frames(train),
                                                               clip.frames(test)), ref[test])
        # No chain of constant coxa length gets a mean CTr error below mean |d - median d|
        # (d: the tracked ThC-CTr distance), which SeqIKPy's first stage attains.
        distance = np.linalg.norm(clip.keypoints[:, clip.legs, 1] - clip.keypoints[:, clip.legs, 0],
                                  axis=-1)
        bound = np.abs(distance - np.median(distance, axis=0)).mean()
        entry["ctr_lower_bound_mm"] = {"any_solver_any_coxa_length": float(bound),
                                       "seqikpy_data_body": float(ref[..., 0].mean())}
        symmetric = body_from_recording(clip.keypoints, clip.template)
        fit = fit_body(clip.keypoints, clip.template)
        lm = LmOptions(error_floor_mm=LmOptions().error_floor_mm * fit.scale)
        entry["tarsus_tilt_deg"] = np.degrees(fit.body.tarsus_tilt[clip.legs]).tolist()
        entry["other_bodies_all_frames"] = {
            "measured_lengths_without_tilt": scored(solve(clip, fit.body.lengths, lm), ref),
            "measured_with_tilt_seqik_stages": scored(solve(clip, fit.body.lengths,
                                                            method="seqik",
                                                            tilt=fit.body.tarsus_tilt), ref),
            "template": scored(solve(clip, clip.template.lengths), ref),
            "left_right_averaged_measured": scored(solve(clip, symmetric.lengths), ref),
            "proximal_first": scored(solve(clip, proximal_first(clip)), ref)}
        out[name] = entry
    return out


def proximal_first(clip: Clip) -> np.ndarray:
    """(6, 4) lengths fitted proximal segment first (see the module docstring)."""
    lengths = fit_body(clip.keypoints, clip.template).body.lengths
    legs = clip.legs
    filled, tracked = solver.fill_gaps(clip.keypoints[:, legs])
    for segment in range(1, c.NUM_SEGMENTS):
        angles = solver.seqik(filled, lengths[legs], clip.bounds[legs],
                              solver.SEQIKPY_SEED_RAD[legs])
        chain = leg_forward_kinematics(filled[:, :, 0], lengths[legs], angles)
        distance = np.linalg.norm(filled[:, :, segment + 1] - chain[:, :, segment], axis=-1)
        lengths[legs, segment] = robust_center(np.where(tracked[:, :, segment + 1], distance,
                                                        np.nan))
    return lengths


def bench_other_recording(df3d: Clip, df3d_100: Clip) -> dict[str, Any]:
    return {"df3d_walk_to_df3d_walk_100": scored(flyenv_data_body(df3d, df3d_100),
                                                 reference(df3d_100)),
            "df3d_walk_100_to_df3d_walk": scored(flyenv_data_body(df3d_100, df3d),
                                                 reference(df3d))}


def search_lengths(clip: Clip, legid: int, capped: bool, max_evals: int,
                   ) -> tuple[np.ndarray, int]:
    """Powell over a leg's log length ratios to the measured ones (see the module docstring)."""
    leg = dataclasses.replace(clip, legs=[legid])
    fit = fit_body(clip.keypoints, clip.template)
    measured = fit.body.lengths
    lm = LmOptions(error_floor_mm=LmOptions().error_floor_mm * fit.scale)
    base = solve(leg, measured, lm)
    cap, mean0, p95_0 = base.mean((0, 1)), base.mean(), np.percentile(base, 95)
    evals = [0]

    def objective(log_ratio: np.ndarray) -> float:
        evals[0] += 1
        lengths = measured.copy()
        lengths[legid] *= np.exp(log_ratio)
        errors = solve(leg, lengths, lm)
        value = errors.mean() / mean0 + np.percentile(errors, 95) / p95_0
        if capped:
            value += 10.0 * np.maximum(errors.mean((0, 1)) / cap - 1.0, 0.0).sum()
        return float(value)

    result = minimize(objective, np.zeros(c.NUM_SEGMENTS), method="Powell",
                      options={"xtol": 1e-3, "ftol": 1e-4, "maxfev": max_evals})
    lengths = measured.copy()
    lengths[legid] *= np.exp(result.x)
    return lengths, evals[0]


def bench_length_search(clips: dict[str, Clip], max_evals: int, stride: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, clip in clips.items():
        train = clip.frames(np.arange(0, len(clip.keypoints), 2 * stride))
        test = clip.frames(np.arange(1, len(clip.keypoints), 2))
        measured = fit_body(train.keypoints, clip.template)
        lm = LmOptions(error_floor_mm=LmOptions().error_floor_mm * measured.scale)
        base = solve(test, measured.body.lengths, lm)
        entry: dict[str, Any] = {"train_frames": len(train.keypoints)}
        for capped in (True, False):
            lengths = measured.body.lengths.copy()
            evals = 0
            started = time.perf_counter()
            for legid in clip.legs:
                found, count = search_lengths(train, legid, capped, max_evals)
                lengths[legid] = found[legid]
                evals += count
            errors = solve(test, lengths, lm)
            ratio = ik_bench.error_ratios(ik_bench.error_stats(errors),
                                          ik_bench.error_stats(base))
            entry["capped" if capped else "free"] = {
                "held_out_ratio_to_measured_body": ratio,
                "length_ratio_to_measured": (lengths / measured.body.lengths)[clip.legs].tolist(),
                "evaluations": evals, "seconds": time.perf_counter() - started}
        out[name] = entry
    return out


def bench_weights(clips: dict[str, Clip]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, clip in clips.items():
        ref = reference(clip)
        body = fit_body(clip.keypoints, clip.template).body
        rows = []
        for *weights, relative in WEIGHTS:
            lm = LmOptions(keypoint_weights=tuple(weights), relative=relative,
                           iterations=8 if relative else 20)
            ratio = scored(solve(clip, body.lengths, lm, tilt=body.tarsus_tilt), ref)["ratio"]
            rows.append({"keypoint_weights": weights, "relative": relative,
                         "pooled_mean": ratio["pooled_mean"], "pooled_p95": ratio["pooled_p95"],
                         "per_keypoint_mean": ratio["per_keypoint_mean"]})
        out[name] = rows
    return out


def synthetic_fly(angles: np.ndarray, size: float, seed: int, noise_mm: float = 0.01,
                  ) -> tuple[BodyConfig, np.ndarray, np.ndarray]:
    """A fly of `size` x the template, +-15% per segment (both sides alike), tarsi tilted
    up to 15 deg (mirrored), moving with
    `angles` (T, 42): its body, exact keypoints and tracked ones (noise, drops)."""
    rng = np.random.default_rng(seed)
    template = BodyConfig.default()
    factors = rng.uniform(0.85, 1.15, c.NUM_SEGMENTS)
    tilt = np.radians(rng.uniform(-15.0, 15.0, 3))
    body = template.replace(segment_lengths_mm=size * template.lengths * factors,
                            thc_mm=size * template.thc,
                            tarsus_tilt_rad=np.concatenate([tilt, -tilt]))
    exact = forward_kinematics(body, angles)
    tracked = exact + noise_mm * size * rng.standard_normal(exact.shape)
    tracked[rng.random(exact.shape[:3]) < 0.05] = np.nan
    for legid in rng.choice(c.NUM_LEGS, 3, replace=False):
        start = int(rng.integers(0, len(angles) - 30))
        tracked[start:start + 30, legid, 4] = np.nan
    return body, exact, tracked


def solve_angles(keypoints: np.ndarray, body: BodyConfig, bounds: np.ndarray,
                 lm: LmOptions) -> tuple[np.ndarray, np.ndarray]:
    """lm angles (T, 6, 7) on a body and which the tracking determines."""
    filled, tracked = solver.fill_gaps(keypoints)
    tilt = body.tarsus_tilt
    angles = solver.seqik(filled, body.lengths, bounds, solver.SEQIKPY_SEED_RAD,
                          tarsus_tilt_rad=tilt)
    angles = solver.lm(filled, body.lengths, bounds, angles, keypoint_mask=tracked[..., 1:],
                       options=lm, tarsus_tilt_rad=tilt)
    return angles, ~solver.undetermined_angles(tracked)


def bench_synthetic(df3d: Clip, seeds: int) -> dict[str, Any]:
    """Measured bodies of synthetic flies moving like the df3d walk."""
    template = BodyConfig.default()
    bounds = template.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    measured = template.replace(segment_lengths_mm=per_leg_lengths(df3d))
    motion, _ = solve_angles(df3d.keypoints, measured, bounds, LmOptions())
    motion = motion.reshape(len(motion), c.NUM_DOFS)
    flies = []
    for index, size in enumerate(SIZES):
        for seed in range(index * seeds, (index + 1) * seeds):  # other proportions per size
            body, exact, tracked = synthetic_fly(motion, size, seed)
            fit = fit_body(tracked, template)
            lm = LmOptions(error_floor_mm=LmOptions().error_floor_mm * fit.scale)
            angles, determined = solve_angles(tracked, fit.body, bounds, lm)
            with_truth, _ = solve_angles(tracked, body, bounds, lm)
            exact_fit = fit_body(exact, template)
            exact_angles, _ = solve_angles(exact, exact_fit.body, bounds, lm)
            true = motion.reshape(angles.shape)
            body_effect = np.degrees(np.abs(angles - with_truth))[determined]
            error = np.degrees(np.abs(angles - true))[determined]
            error_truth = np.degrees(np.abs(with_truth - true))[determined]
            flies.append({
                "size": size, "seed": seed,
                "segment_factors": (body.lengths[0] / (size * template.lengths[0])).tolist(),
                "length_error_pct_max": float(100 * np.abs(fit.body.lengths / body.lengths
                                                           - 1).max()),
                "length_error_pct_max_exact_tracking": float(100 * np.abs(
                    exact_fit.body.lengths / body.lengths - 1).max()),
                "tarsus_tilt_deg": np.degrees(body.tarsus_tilt).tolist(),
                "tarsus_tilt_error_deg_max": float(np.degrees(np.abs(
                    fit.body.tarsus_tilt - body.tarsus_tilt)).max()),
                "angles_vs_true_body_same_tracking_deg": {
                    "median": float(np.median(body_effect)),
                    "p95": float(np.percentile(body_effect, 95)),
                    "p99": float(np.percentile(body_effect, 99))},
                "angles_vs_truth_deg": {"median": float(np.median(error)),
                                        "p95": float(np.percentile(error, 95))},
                "angles_vs_truth_with_true_body_deg": {
                    "median": float(np.median(error_truth)),
                    "p95": float(np.percentile(error_truth, 95))},
                "angles_vs_truth_exact_tracking_max_deg": float(np.degrees(np.abs(
                    exact_angles - true)).max())})
    worst_length = max(f["length_error_pct_max"] for f in flies)
    worst_tilt = max(f["tarsus_tilt_error_deg_max"] for f in flies)
    worst_p95 = max(f["angles_vs_true_body_same_tracking_deg"]["p95"] for f in flies)
    return {"motion": "df3d walk angles (measured body, lm)", "frames": len(motion),
            "noise_mm_per_size": 0.01, "dropped": "5% of keypoints, a claw of 3 legs for 30 frames",
            "flies": flies, "worst_length_error_pct": worst_length,
            "worst_tarsus_tilt_error_deg": worst_tilt,
            "worst_angle_p95_vs_true_body_deg": worst_p95,
            "targets_met": {"lengths_within_3pct": worst_length
                            <= TARGETS["synthetic_length_error_pct"],
                            "angles_within_1deg_p95": worst_p95
                            <= TARGETS["synthetic_angle_deg"],
                            "tarsus_tilt_within_1deg": worst_tilt
                            <= TARGETS["synthetic_angle_deg"]}}


def write_recording(path: Path, keypoints: np.ndarray) -> Path:
    np.savez(path, keypoints=keypoints, leg_names=np.array(c.LEGS), fps=100.0)
    return path


def bench_scale(workdir: Path) -> dict[str, Any]:
    keypoints = load_recording(data.path("df3d_walk")).keypoints
    motions = {}
    for scale in (1.0, 0.8, 1.2):
        path = write_recording(workdir / f"scaled_{scale}.npz", keypoints * scale)
        report = run([path], workdir / f"scaled_out_{scale}", IkOptions(body="data"))
        motions[scale] = motion_io.load(report.files[0].output)
    out: dict[str, Any] = {}
    for scale in (0.8, 1.2):
        diff = np.degrees(np.abs(motions[scale].joint_angles - motions[1.0].joint_angles))
        ratio = motions[scale].body.lengths / motions[1.0].body.lengths / scale
        out[str(scale)] = {"p99_deg": float(np.percentile(diff, 99)), "max_deg": float(diff.max()),
                           "body_ratio_over_scale_minus_1_max": float(np.abs(ratio - 1).max())}
    out["target_met"] = all(v["p99_deg"] <= TARGETS["scale_p99_deg"] for v in out.values())
    return out


# -- what the chain allows (section "limits") ----------------------------------------------------

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
    eye = np.eye(c.DOF_PER_LEG)
    for _ in range(rounds):
        w = base / (np.linalg.norm(residual, axis=-1) + floor_mm)
        cost = np.einsum("tlk,tlkd,tlkd->tl", w, residual, residual)
        damping = np.full(q.shape[:2], 1e-3)
        for _ in range(iterations):
            wjac = jac * w[..., None, None]
            jtj = np.einsum("tlkdi,tlkdj->tlij", wjac, jac)
            grad = np.einsum("tlkdi,tlkd->tli", wjac, residual)
            diag = np.diagonal(jtj, axis1=-2, axis2=-1) + 1e-9
            step = np.linalg.solve(jtj + (damping[..., None] * diag)[..., None] * eye,
                                   -grad[..., None])[..., 0]
            trial = np.clip(q + step * free, lo, hi)
            trial_residual, trial_jac = evaluate(trial)
            trial_cost = np.einsum("tlk,tlkd,tlkd->tl", w, trial_residual, trial_residual)
            better = trial_cost < cost
            q = np.where(better[..., None], trial, q)
            residual = np.where(better[..., None, None], trial_residual, residual)
            jac = np.where(better[..., None, None, None], trial_jac, jac)
            cost = np.where(better, trial_cost, cost)
            damping = np.where(better, damping / 3.0, damping * 4.0)
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
    chain = leg_forward_kinematics(filled[:, :, 0], lengths[legs], angles)
    rotation = np.eye(3)
    for joint, axis in enumerate("xyzyz"):
        rotation = rotation @ rotation_matrix(axis, angles[..., joint])
    normal = rotation[..., :, 1]
    to_claw = filled[:, :, 4] - chain[:, :, 3]
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
    chain = leg_forward_kinematics(filled[:, :, 0], lengths[legs], angles)
    rotation = np.eye(3)
    for joint, axis in enumerate("xyzyz"):
        rotation = rotation @ rotation_matrix(axis, angles[..., joint])
    normal = rotation[..., :, 1]
    to_claw = filled[:, :, 4] - chain[:, :, 3]
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

    lm = LmOptions(error_floor_mm=LmOptions().error_floor_mm * fit.scale)
    tilt = fit.body.tarsus_tilt
    add("lm default, measured lengths and tilt (--body data)",
        lambda clip: solve(clip, lengths, lm, tilt=tilt))
    add("seqik, measured lengths and tilt", lambda clip: solve(clip, lengths, method="seqik",
                                                               tilt=tilt))
    proximal = dataclasses.replace(lm, keypoint_weights=(10.0, 5.0, 5.0, 1.0))
    add("lm weights 10 5 5 1, measured lengths and tilt",
        lambda clip: solve(clip, lengths, proximal, tilt=tilt))
    lad = lad_tarsus(train, fit.body)
    add("seqik, tarsus length and tilt fitted LAD on the claw",
        lambda clip: solve(clip, lad.lengths, method="seqik", tilt=lad.tarsus_tilt))
    add("lm default, tarsus length and tilt fitted LAD on the claw",
        lambda clip: solve(clip, lad.lengths, lm, tilt=lad.tarsus_tilt))
    add("lm default, measured lengths", lambda clip: solve(clip, lengths, lm))
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


def cpu_busy() -> tuple[int, int]:
    """Busy and total jiffies of all CPUs so far (/proc/stat), to tell how loaded a run was."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def timed(call: Any) -> dict[str, float]:
    """Runs `call()` (returning seconds) and what the machine was doing meanwhile: the 1-minute
    load average before, the share of all CPUs busy during the run (this run included), and
    this process's CPU seconds (all of a serial run's work; with workers, the main process's
    serial part), which other users' load barely changes."""
    load = os.getloadavg()[0]
    busy0, total0 = cpu_busy()
    cpu0 = time.process_time()
    seconds = call()
    cpu = time.process_time() - cpu0
    busy1, total1 = cpu_busy()
    return {"seconds": seconds, "main_process_cpu_seconds": cpu, "load_1min_before": load,
            "cpus_busy_fraction": (busy1 - busy0) / max(total1 - total0, 1)}


def best_of(runs: list[dict[str, float]]) -> float:
    return min(r["seconds"] for r in runs)


def bench_workers(workdir: Path, copies: int, repeats: int) -> dict[str, Any]:
    """A `--body data` batch with 1 and 2 loky workers, each thorax frame option; repeats
    interleaved (1, 2, 1, 2, ...) so a change of load hits both alike."""
    source = load_recording(data.path("df3d_walk")).keypoints
    folder = workdir / "batch"
    folder.mkdir()
    paths = [write_recording(folder / f"walk_{i:02d}.npz", source) for i in range(copies)]
    run(paths[:2], workdir / "warmup", IkOptions(body="data"), n_jobs=2)  # start loky's workers
    out: dict[str, Any] = {"files": copies, "frames_per_file": len(source), "body": "data",
                           "backend": "loky", "repeats_interleaved": repeats}
    for frame in ("estimate", "thorax"):
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for _ in range(repeats):
            for n_jobs in runs:
                def call(n_jobs: int = n_jobs, frame: str = frame) -> float:
                    report = run(paths, workdir / f"out_{frame}_{n_jobs}",
                                 IkOptions(body="data", frame=frame), n_jobs=n_jobs,
                                 overwrite=True)
                    assert not report.failed, report.failed
                    return report.seconds
                runs[n_jobs].append(timed(call))
        best = {n: best_of(v) for n, v in runs.items()}
        # On two free cores the batch takes at least max(serial, all work / 2): the serial
        # part is the main process's CPU with workers (locks, checks, planning, stitching,
        # assembling, writing; before issue 21's item 5 also reading, the thorax estimate and
        # the body), all work the serial run's CPU.
        serial = min(r["main_process_cpu_seconds"] for r in runs[2])
        work = min(r["main_process_cpu_seconds"] for r in runs[1])
        out[f"frame_{frame}"] = {"runs": {str(n): v for n, v in runs.items()},
                                 "speedup_2_vs_1": best[1] / best[2],
                                 "seconds_per_file_1_worker": best[1] / copies,
                                 "serial_cpu_seconds_per_file": serial / copies,
                                 "cpu_seconds_per_file": work / copies,
                                 "speedup_2_vs_1_bound_two_free_cores": work / max(serial,
                                                                                    work / 2)}
    timings = {}
    for name, call in (
            ("thorax_estimate", lambda: estimate_thorax_pose(source, BodyConfig.default().thc,
                                                             100.0)),
            ("measure_body", lambda: fit_body(source, BodyConfig.default()))):
        started = time.perf_counter()
        for _ in range(3):
            call()
        timings[name] = (time.perf_counter() - started) / 3
    out["prepare_parts_seconds_per_file"] = timings
    out["prepared_shipping"] = prepared_shipping(paths[0])
    return out


def prepared_shipping(path: Path) -> dict[str, float]:
    """What a prepared file costs to send from the worker that prepared it (default frame,
    `--body data`): pickled size and pickle.dumps + loads time, against `prepare` itself."""
    from flyenv.ik_preprocess.prepare import prepare

    options = IkOptions(body="data")
    started = time.perf_counter()
    prepared = prepare(path, options)
    prepare_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(5):
        blob = pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
    return {"prepare_seconds": prepare_s, "pickled_mib": len(blob) / 2**20,
            "dumps_loads_seconds": (time.perf_counter() - started) / 5}


def bench_default_path(workdir: Path, frames: int, repeats: int) -> dict[str, Any]:
    """The default `--frame estimate` against `--frame thorax`, one worker, interleaved."""
    source = load_recording(data.path("df3d_walk")).keypoints
    keypoints = np.tile(source, (-(-frames // len(source)), 1, 1, 1))[:frames]
    path = write_recording(workdir / "long.npz", keypoints)
    out: dict[str, Any] = {"frames": frames, "n_jobs": 1, "repeats_interleaved": repeats}
    runs: dict[str, list[dict[str, float]]] = {"estimate": [], "thorax": []}
    for _ in range(repeats):
        for frame in runs:
            def call(frame: str = frame) -> float:
                return run([path], workdir / f"long_{frame}", IkOptions(frame=frame),
                           overwrite=True).seconds
            runs[frame].append(timed(call))
    for frame, values in runs.items():
        out[frame] = {"runs": values,
                      "us_per_leg_frame": best_of(values) / (frames * c.NUM_LEGS) * 1e6}
    out["estimate_over_thorax"] = (out["estimate"]["us_per_leg_frame"]
                                   / out["thorax"]["us_per_leg_frame"])
    out["estimate_over_thorax_cpu"] = (min(r["main_process_cpu_seconds"]
                                           for r in runs["estimate"])
                                       / min(r["main_process_cpu_seconds"]
                                             for r in runs["thorax"]))
    pairs = [e["seconds"] / t["seconds"] for e, t in zip(runs["estimate"], runs["thorax"],
                                                          strict=True)]
    out["estimate_over_thorax_per_pair"] = pairs
    out["target_met"] = out["estimate_over_thorax"] <= TARGETS["estimate_over_thorax"]
    claws = estimate_thorax_pose(source, BodyConfig.default().thc, 100.0).to_thorax(
        source)[:, :, c.KEYPOINTS.index("Claw")]
    started = time.perf_counter()
    grounding = ground(claws, 100.0)
    odometry(claws, 100.0, grounding.stance)
    out["grounding_and_odometry_seconds_per_1000_frames"] = ((time.perf_counter() - started)
                                                             * 1000 / len(claws))
    return out


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, entry in results.get("recordings", {}).items():
        rows = {"all": entry["all_frames"], **entry["held_out"]}
        for split, value in rows.items():
            ratio = value["ratio"]
            per = " ".join(f"{k} {v:.3f}" for k, v in ratio["per_keypoint_mean"].items())
            lines.append(f"{name:14} {split:22} {per}  pooled {ratio['pooled_mean']:.3f} "
                         f"p95 {ratio['pooled_p95']:.3f}")
    for split, value in results.get("other_recording", {}).items():
        ratio = value["ratio"]
        per = " ".join(f"{k} {v:.3f}" for k, v in ratio["per_keypoint_mean"].items())
        lines.append(f"{split:37} {per}  pooled {ratio['pooled_mean']:.3f} "
                     f"p95 {ratio['pooled_p95']:.3f}")
    if "synthetic" in results:
        synthetic = results["synthetic"]
        lines.append(f"synthetic: lengths worst {synthetic['worst_length_error_pct']:.2f}%, "
                     f"angles vs true body p95 worst "
                     f"{synthetic['worst_angle_p95_vs_true_body_deg']:.3f} deg")
    if "scale" in results:
        lines.append("scale: " + json.dumps(results["scale"]))
    if "workers" in results:
        lines.append("workers (--body data batch), 2 vs 1: " + ", ".join(
            f"--frame {frame} {results['workers'][f'frame_{frame}']['speedup_2_vs_1']:.2f}x"
            for frame in ("estimate", "thorax")))
    if "default_path" in results:
        lines.append(f"default path: estimate/thorax "
                     f"{results['default_path']['estimate_over_thorax']:.2f}x")
    return lines


SECTIONS = ("accuracy", "search", "limits", "speed", "workers")
NOTES = {
    "default_path": "The 3.3x this file once gave (commit d0d1761) timed the per-frame thorax "
                    "estimate (0.92 s per 1000 frames in the main process): that run predates "
                    "the vectorised estimate (ff78954, issue 20's branch, merged after). "
                    "thorax_bench.json's 1.10-1.19x and this file's runs since time the same "
                    "vectorised code; each run below records its load and CPU times.",
    "workers": "Each run records the 1-minute load before it and the share of both CPUs busy "
               "during it (other users' work included; 0.5 in a 1-worker run means the other "
               "core was free). Best of the interleaved repeats; the load-independent numbers "
               "are the CPU seconds: the main process's serial share per file (since issue 21's "
               "item 5 locks, checks, planning, stitching, assembling and writing; before it "
               "also reading, the thorax estimate and the body) against all the work per file. "
               "workers_before_after, where present, holds this section run alternately on the "
               "code before item 5 (preparation in the main process) and after it."}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="smoke run, numbers not to quote")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="what to measure; the output's other sections are kept")
    args = parser.parse_args(argv)
    quick = args.quick
    started = time.perf_counter()
    results: dict[str, Any] = {}
    if args.output.exists() and set(args.sections) != set(SECTIONS):
        results = json.loads(args.output.read_text())
        if "accuracy" not in results.get("machine", {}):  # written before sections existed
            results["machine"] = {"accuracy": results.get("machine", {})}
    results.update({"quick": quick, "targets_spec": TARGETS, "notes": NOTES})
    results.setdefault("machine", {})
    for section in args.sections:  # each section's own machine record (date, load)
        results["machine"][section] = ik_bench.machine_info()
    if {"accuracy", "search", "limits"} & set(args.sections):
        clips = {"df3d_walk": load_clip("df3d_walk", BodyConfig.default()),
                 "anipose_groom": load_clip("anipose_groom", frames_bench.anipose_template())}
        df3d_100 = load_clip("df3d_walk_100", BodyConfig.default())
    if "accuracy" in args.sections:
        results["recordings"] = bench_recordings(clips)
        results["other_recording"] = bench_other_recording(clips["df3d_walk"], df3d_100)
        results["synthetic"] = bench_synthetic(clips["df3d_walk"], 1 if quick else 2)
        results["weights"] = bench_weights(clips)
        with tempfile.TemporaryDirectory(prefix="bodyfit_bench_") as tmp:
            results["scale"] = bench_scale(Path(tmp))
    if "search" in args.sections:
        results["length_search"] = bench_length_search(clips, 40 if quick else 150,
                                                       8 if quick else 2)
    if "limits" in args.sections:
        results["limits"] = bench_limits({**clips, "df3d_walk_100": df3d_100})
    if {"speed", "workers"} & set(args.sections):
        section = "speed" if "speed" in args.sections else "workers"
        with tempfile.TemporaryDirectory(prefix="bodyfit_bench_") as tmp:
            workdir = Path(tmp)
            results["workers"] = bench_workers(workdir, 2 if quick else 8, 1 if quick else 4)
            if section == "speed":
                results["default_path"] = bench_default_path(workdir, 2000 if quick else 20_000,
                                                             1 if quick else 4)
        results["machine"][section]["load_avg_1min_at_end"] = os.getloadavg()[0]
    results["seconds"] = {**results.get("seconds", {}),
                          "+".join(args.sections): time.perf_counter() - started}
    results.pop("total_seconds", None)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(ik_bench.jsonable(results), indent=1) + "\n")
    print("\n".join(summary_lines(results)))
    print(f"{time.perf_counter() - started:.0f} s; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
