"""Which keypoint weights `--body data` solves with by default (`bodyfit_bench --sections
weights`): candidate rules scored on frames and flies their body was not measured on.

Every candidate is `lm` with the measured body (`fit_body` on the training frames: lengths and
tarsus tilts) and the relative objective (each keypoint's squared error over its `seqik` error
+ floor, the floor scaled with the fly), only the keypoint weights differ. Splits: each real
recording's held-out splits (`bodyfit_problems.splits`), the two directions between the df3d
recordings of the same fly, and synthetic flies of other sizes and proportions (measured on even
frames, scored on odd ones). Ratios are to SeqIKPy with a data body measured on the frames it is
scored on (`reference`), and to SeqIKPy's stages with the same measured body on the same frames
(`trade`: what the joint fit gives or takes per keypoint, the body's share removed). The rule:
minimax, the worst keypoint's mean ratio first, the pooled mean second.
"""

from __future__ import annotations

from typing import Any

import ik_bench
import numpy as np
from bodyfit_problems import Clip, data_body_lm, reference, solve, splits, synthetic_fly

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.ik_preprocess import solver
from flyenv.ik_preprocess.bodyfit import fit_body

# Proximal priority r: (r^3, r^2, r, 1), each keypoint's relative error weighing r times the
# next distal one's (r = 1: all alike; r -> inf: SeqIKPy's stage order, i.e. `seqik`).
PRIORITIES = (1.0, 2.0, 3.0, 6.0, 10.0, 20.0, 30.0, 100.0)
CANDIDATES = {
    "3 1 1.5 6 (template default; --body data before)": solver.TEMPLATE_BODY_WEIGHTS,
    "10 5 5 1": (10.0, 5.0, 5.0, 1.0),
    **{f"proximal priority {r:g}": (r ** 3, r ** 2, r, 1.0) for r in PRIORITIES},
}
# Worst-keypoint ratios within this fraction of the lowest count as ties (pooled decides):
# far below what the body measured on other frames moves them (5-15%, `stages_to_seqikpy`).
TIE = 0.005
SYNTHETIC = ((0.77, 10), (0.7, 11), (1.3, 12))  # (size, seed): the unseen rig's size and ends


def stats(errors: np.ndarray) -> dict[str, Any]:
    """`ik_bench.error_stats` over the tracked keypoints (NaN elsewhere) of (T, L, 4) errors."""
    per = {name: {"mean": float(np.nanmean(errors[..., k])),
                  "p95": float(np.nanpercentile(errors[..., k], 95))}
           for k, name in enumerate(c.KEYPOINTS[1:])}
    pooled = errors[np.isfinite(errors)]
    return {"per_keypoint": per, "pooled": {"mean": float(pooled.mean()),
                                            "p95": float(np.percentile(pooled, 95))}}


def tracked_errors(clip: Clip, errors: np.ndarray) -> np.ndarray:
    """(T, L, 4) errors, NaN where the keypoint was not tracked (the solvers fill gaps; an
    error against a filled-in keypoint is not an error against the tracking)."""
    tracked = np.isfinite(clip.keypoints[:, clip.legs, 1:]).all(-1)
    return np.where(tracked, errors, np.nan)


def ratios(errors: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Per-keypoint mean ratios, the worst of them and the pooled mean and p95 ratios."""
    ratio = ik_bench.error_ratios(stats(errors), stats(ref))
    return {"per_keypoint_mean": ratio["per_keypoint_mean"],
            "worst_keypoint": ratio["max_keypoint_mean"],
            "pooled_mean": ratio["pooled_mean"], "pooled_p95": ratio["pooled_p95"]}


def score_split(train: Clip, test: Clip, ref: np.ndarray,
                candidates: dict[str, tuple[float, ...]]) -> dict[str, Any]:
    """Each candidate's ratios on `test` with the body measured on `train`."""
    fit = fit_body(train.keypoints, train.template)
    lengths, tilt = fit.body.lengths, fit.body.tarsus_tilt
    stages = tracked_errors(test, solve(test, lengths, method="seqik", tilt=tilt))
    ref = tracked_errors(test, ref)
    out: dict[str, Any] = {"stages_to_seqikpy": ratios(stages, ref)}
    for name, weights in candidates.items():
        lm = data_body_lm(fit.scale, weights)
        errors = tracked_errors(test, solve(test, lengths, lm, tilt=tilt))
        out[name] = {"to_seqikpy": ratios(errors, ref), "trade": ratios(errors, stages)}
    return out


def synthetic_clips(motion: np.ndarray) -> dict[str, Clip]:
    """Synthetic flies (`synthetic_fly`) moving with `motion` (T, 42)."""
    clips = {}
    for size, seed in SYNTHETIC:
        _, _, tracked = synthetic_fly(motion, size, seed)
        clips[f"synthetic_{size}x_seed{seed}"] = Clip(f"synthetic {size}", tracked,
                                                      list(range(c.NUM_LEGS)),
                                                      BodyConfig.default())
    return clips


def bench_weights(clips: dict[str, Clip], df3d_100: Clip, motion: np.ndarray,
                  candidates: dict[str, tuple[float, ...]] | None = None) -> dict[str, Any]:
    """Every candidate on every split; the minimax summary per candidate."""
    candidates = candidates or CANDIDATES
    rows: dict[str, Any] = {}
    for name, clip in {**clips, **synthetic_clips(motion)}.items():
        ref = reference(clip)
        named = splits(len(clip.keypoints))
        if name.startswith("synthetic"):
            named = {"even_to_odd": named["even_to_odd"]}
        for split, (train, test) in named.items():
            rows[f"{name} {split}"] = score_split(clip.frames(train), clip.frames(test),
                                                  ref[test], candidates)
    df3d = clips["df3d_walk"]
    rows["df3d_walk -> df3d_walk_100"] = score_split(df3d, df3d_100, reference(df3d_100),
                                                     candidates)
    rows["df3d_walk_100 -> df3d_walk"] = score_split(df3d_100, df3d, reference(df3d),
                                                     candidates)
    summary = {}
    for cand in candidates:
        scores = [row[cand]["to_seqikpy"] for row in rows.values()]
        real = [row[cand]["to_seqikpy"] for split, row in rows.items()
                if not split.startswith("synthetic")]
        summary[cand] = {
            "keypoint_weights": list(candidates[cand]),
            "worst_keypoint_ratio_max": max(r["worst_keypoint"]["ratio"] for r in scores),
            "worst_trade_ratio_max": max(row[cand]["trade"]["worst_keypoint"]["ratio"]
                                         for row in rows.values()),
            "per_keypoint_range": {k: [min(r["per_keypoint_mean"][k] for r in scores),
                                       max(r["per_keypoint_mean"][k] for r in scores)]
                                   for k in c.KEYPOINTS[1:]},
            "pooled_mean_max": max(r["pooled_mean"] for r in scores),
            "pooled_mean_range_real": [min(r["pooled_mean"] for r in real),
                                       max(r["pooled_mean"] for r in real)],
            "pooled_p95_range_real": [min(r["pooled_p95"] for r in real),
                                      max(r["pooled_p95"] for r in real)]}
    chosen, ties = select(rows, list(candidates))
    # The same rule on each group of splits alone: does the pick depend on which data it saw?
    groups = {"df3d held-out": "df3d_walk ", "anipose held-out": "anipose_groom ",
              "synthetic": "synthetic_", "other df3d recording": "->"}
    group_of = {split: "other df3d recording" if "->" in split else
                next(g for g, key in groups.items() if split.startswith(key)) for split in rows}
    per_group = {group: dict(zip(("chosen", "ties"), select(
        {k: v for k, v in rows.items() if group_of[k] == group}, list(candidates)),
        strict=True)) for group in groups}
    default = solver.default_keypoint_weights(measured_body=True)
    return {"candidates": {k: list(v) for k, v in candidates.items()},
            "rule": "minimax over every split: the lowest worst-keypoint mean ratio to SeqIKPy "
                    f"(within {TIE:.1%} count as ties), then the lowest pooled mean ratio",
            "chosen": chosen, "ties": ties, "chosen_per_group": per_group,
            "measured_body_default": list(default),
            "default_is_chosen": list(candidates[chosen]) == list(default),
            "summary": summary, "splits": rows}


def select(rows: dict[str, Any], candidates: list[str]) -> tuple[str, list[str]]:
    """The minimax pick over `rows` (split -> candidate -> scores) and its ties."""
    worst = {cand: max(row[cand]["to_seqikpy"]["worst_keypoint"]["ratio"]
                       for row in rows.values()) for cand in candidates}
    pooled = {cand: max(row[cand]["to_seqikpy"]["pooled_mean"] for row in rows.values())
              for cand in candidates}
    best = min(worst.values())
    ties = [cand for cand in candidates if worst[cand] <= best * (1 + TIE)]
    return min(ties, key=pooled.__getitem__), ties


def weights_lines(result: dict[str, Any]) -> list[str]:
    """Per candidate: worst keypoint (max over splits), per-keypoint ranges, pooled ranges."""
    lines = [f"weights: chosen {result['chosen']!r} (ties {result['ties']}); --body data "
             f"default {result['measured_body_default']} "
             f"{'agrees' if result['default_is_chosen'] else 'DIFFERS'}; per group "
             f"{ {g: v['chosen'] for g, v in result['chosen_per_group'].items()} }"]
    for cand, v in result["summary"].items():
        per = " ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in v["per_keypoint_range"].items())
        pooled, p95 = v["pooled_mean_range_real"], v["pooled_p95_range_real"]
        lines.append(f"  {cand[:26]:26} worst {v['worst_keypoint_ratio_max']:.3f} trade "
                     f"{v['worst_trade_ratio_max']:.3f} | {per} | real pooled "
                     f"{pooled[0]:.2f}-{pooled[1]:.2f} p95 {p95[0]:.2f}-{p95[1]:.2f}")
    return lines
