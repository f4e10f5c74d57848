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
from bodyfit_problems import Clip, reference, solve, splits

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.ik_preprocess import LmOptions
from flyenv.ik_preprocess.bodyfit import fit_body

CANDIDATES = {
    "3 1 1.5 6 (LmOptions default)": (3.0, 1.0, 1.5, 6.0),
    "10 5 5 1": (10.0, 5.0, 5.0, 1.0),
    "1 1 1 1": (1.0, 1.0, 1.0, 1.0),
}
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
    out: dict[str, Any] = {}
    for name, weights in candidates.items():
        lm = LmOptions(keypoint_weights=weights,
                       error_floor_mm=LmOptions().error_floor_mm * fit.scale)
        errors = tracked_errors(test, solve(test, lengths, lm, tilt=tilt))
        out[name] = {"to_seqikpy": ratios(errors, ref), "trade": ratios(errors, stages)}
    return out


def synthetic_clips(motion: np.ndarray) -> dict[str, Clip]:
    """Synthetic flies (`bodyfit_bench.synthetic_fly`) moving with `motion` (T, 42)."""
    from bodyfit_bench import synthetic_fly

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
        worst = {split: row[cand]["to_seqikpy"]["worst_keypoint"]["ratio"]
                 for split, row in rows.items()}
        trade = {split: row[cand]["trade"]["worst_keypoint"]["ratio"]
                 for split, row in rows.items()}
        summary[cand] = {
            "keypoint_weights": candidates[cand],
            "worst_keypoint_ratio_max": max(worst.values()),
            "worst_trade_ratio_max": max(trade.values()),
            "pooled_mean_max": max(r[cand]["to_seqikpy"]["pooled_mean"] for r in rows.values()),
            "pooled_p95_max": max(r[cand]["to_seqikpy"]["pooled_p95"] for r in rows.values()),
            "per_keypoint_max": {k: max(r[cand]["to_seqikpy"]["per_keypoint_mean"][k]
                                        for r in rows.values()) for k in c.KEYPOINTS[1:]}}
    return {"candidates": {k: list(v) for k, v in candidates.items()}, "splits": rows,
            "summary": summary}


def table_lines(result: dict[str, Any]) -> list[str]:
    """One line per split and candidate: CTr FTi TiTa Claw ratios, worst, pooled mean/p95."""
    lines = []
    for split, row in result["splits"].items():
        for cand, value in row.items():
            r = value["to_seqikpy"]
            per = " ".join(f"{v:.2f}" for v in r["per_keypoint_mean"].values())
            lines.append(f"{split:40} {cand[:8]:8} {per}  worst {r['worst_keypoint']['ratio']:.2f}"
                         f" pooled {r['pooled_mean']:.2f}/{r['pooled_p95']:.2f}"
                         f" trade-worst {value['trade']['worst_keypoint']['ratio']:.2f}")
    for cand, s in result["summary"].items():
        lines.append(f"{cand}: worst {s['worst_keypoint_ratio_max']:.3f} trade "
                     f"{s['worst_trade_ratio_max']:.3f} pooled {s['pooled_mean_max']:.3f}/"
                     f"{s['pooled_p95_max']:.3f} per {s['per_keypoint_max']}")
    return lines
