"""`--body data` judged on data it was not measured on, against SeqIKPy with a data body.

The reference everywhere is SeqIKPy run with a data body on every frame: flyenv's `seqik`
(SeqIKPy's stages in closed form, its angles) with each leg's median segment distances measured on
the whole recording it is scored on (on held-out frames too: its body has seen the frames it is
scored on, flyenv's has not). flyenv is `--body data` as `flyenv ik` runs it: the measured body
(`flyenv.ik_preprocess.bodyfit.fit_body`: segment lengths and tarsus tilts) and the user's `lm`
settings (here the defaults: the measured body's keypoint weights, `MEASURED_BODY_WEIGHTS`),
the lm floor scaled with the fly. Ratios are flyenv's error over the
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
   (segment lengths only, the planar tarsus, lm weights 3 1 1.5 6: run before the tilt was
   measured and the measured body's weights chosen):
   per leg, Powell over the four log length ratios, the objective the pooled mean + p95 of the
   `lm` fit on even frames, with and without the constraint that no keypoint's mean error
   exceeds the measured body's; scored on odd frames.
4. The keypoint weights `--body data` solves with by default (`bodyfit_weights.py`): candidate
   rules (the template body's default 3 1 1.5 6, 10 5 5 1, proximal priority (r^3, r^2, r, 1)
   for r = 1-100) on every held-out split, both directions between the df3d recordings and
   synthetic flies 0.7-1.3x, against SeqIKPy and against the stages on the same body (the
   trade); the rule picked by minimax, the worst keypoint first, pooled second.
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

Problems and scores: `bodyfit_problems.py`; section 8: `bodyfit_limits.py`.

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
from bodyfit_limits import bench_limits
from bodyfit_problems import (
    TARGETS,
    Clip,
    data_body_lm,
    flyenv_data_body,
    load_clip,
    proximal_first,
    reference,
    scored,
    solve,
    solve_angles,
    splits,
    synthetic_fly,
    synthetic_motion,
)
from bodyfit_weights import bench_weights, weights_lines
from common import RESULTS
from scipy.optimize import minimize

from flyenv import data
from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.ik_preprocess import IkOptions, load_recording, run, solver
from flyenv.ik_preprocess.align import body_from_recording
from flyenv.ik_preprocess.bodyfit import fit_body
from flyenv.ik_preprocess.thorax import estimate_thorax_pose
from flyenv.motion import io as motion_io
from flyenv.motion.grounding import ground, odometry

DEFAULT_OUTPUT = RESULTS / "bodyfit_bench.json"

SIZES = (0.7, 0.85, 1.0, 1.15, 1.3)


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
        lm = data_body_lm(fit.scale)
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
    lm = data_body_lm(fit.scale, solver.TEMPLATE_BODY_WEIGHTS)  # as run (before the default)
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
        lm = data_body_lm(measured.scale, solver.TEMPLATE_BODY_WEIGHTS)
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


def bench_synthetic(df3d: Clip, seeds: int) -> dict[str, Any]:
    """Measured bodies of synthetic flies moving like the df3d walk."""
    template = BodyConfig.default()
    bounds = template.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    motion = synthetic_motion(df3d)
    flies = []
    for index, size in enumerate(SIZES):
        for seed in range(index * seeds, (index + 1) * seeds):  # other proportions per size
            body, exact, tracked = synthetic_fly(motion, size, seed)
            fit = fit_body(tracked, template)
            lm = data_body_lm(fit.scale)
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
    if "splits" in results.get("weights", {}):
        lines.extend(weights_lines(results["weights"]))
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
        results["weights"] = bench_weights(clips, df3d_100, synthetic_motion(clips["df3d_walk"]))
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
