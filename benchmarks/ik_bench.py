"""IK benchmark: speed and fit error of flyenv's IK solvers, against SeqIKPy.

What it measures (single core unless stated; BLAS/OpenMP are limited to one thread):

1. Per dataset (the df3d 100-frame recording with flyenv's default body and SeqIKPy's seeds; the
   Anipose 6000-frame front-leg recording with SeqIKPy's default NeuroMechFly body): µs per
   leg-frame of `seqik`, of `lm` alone (seeded with `seqik`) and of `seqik` + `lm`, best of
   several calls on the whole file (the 100-frame file also tiled in time for a stable number);
   the forward-kinematics error per keypoint (CTr, FTi, TiTa, Claw: mean, p95) and pooled, and
   its ratios to SeqIKPy's; the fraction of leg-frames where `seqik` reproduces SeqIKPy's angles
   within 0.01 deg.
2. SeqIKPy itself on the df3d file, serial, in its own interpreter (`--seqikpy-python`, run as a
   subprocess; recorded as "not installed" when that interpreter cannot import seqikpy), with
   the configuration of its parallel-processing tutorial (= flyenv's default body). Its Anipose
   numbers come from the outputs shipped with the data (forward_kinematics.pkl,
   leg_joint_angles.pkl).
3. Worker scaling of `flyenv.ik_preprocess.runner.run` (lm, 5000-frame chunks, loky) with 1 and 2
   workers on the 1000-frame df3d recording tiled to 100,000 frames; plus the same jobs through
   joblib without the runner's file handling, and the time the runner's main process spends
   saving the output, which does not run in parallel.
4. Peak RSS of `runner.run` over 10 and 40 copies of the 1000-frame recording (a fresh process
   each): it should not grow with the number of files.

The data are read from the samples shipped in flyenv/data (`--data-dir` for another folder of
the same layout, e.g. SeqIKPy's full 6000-frame Anipose recording); temporary inputs and
outputs go to a temporary directory. Results are written as JSON (with machine info and the
targets, each with a pass/fail flag) and summarized on stdout.

Run from the repository root:

    python benchmarks/ik_bench.py [--quick] [--output benchmarks/results/ik_bench.json]

`--quick` is a smoke run (fewer repeats, smaller tiling, SeqIKPy on 10 frames): seconds, not
minutes, and its numbers are not the ones to quote.

The parts: `ik_problems` (recordings, bodies, error measures), `ik_seqikpy` (SeqIKPy in its own
interpreter), `ik_runner_bench` (workers and memory), `common` (machine record, JSON).
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one BLAS/OpenMP thread, before numpy loads)

# isort: split
import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, jsonable, machine_info, target
from ik_problems import (
    ANIPOSE_BOUNDS_DEG,
    ANIPOSE_DIR,
    ANIPOSE_LEGS,
    ANIPOSE_LENGTHS_MM,
    DF3D_100,
    DF3D_1000,
    FULL,
    QUICK,
    Problem,
    Settings,
    angle_agreement,
    error_ratios,
    error_stats,
    fk_errors,
    load_anipose,
    load_df3d,
    solve_lm,
    solve_seqik,
    solver_errors,
)
from ik_runner_bench import bench_memory, bench_workers, memory_worker
from ik_seqikpy import run_seqikpy, seqikpy_worker

from flyenv.data import DATA_DIR
from flyenv.ik_preprocess.io import load_recording

# Used by the benchmarks that build on this one (frames_bench, bodyfit_bench).
__all__ = ["ANIPOSE_BOUNDS_DEG", "ANIPOSE_DIR", "ANIPOSE_LEGS", "ANIPOSE_LENGTHS_MM", "DF3D_100",
           "DF3D_1000", "error_ratios", "error_stats", "fk_errors", "jsonable", "load_anipose",
           "load_df3d", "machine_info", "solve_seqik", "solver_errors"]

DEFAULT_DATA_DIR = DATA_DIR
DEFAULT_OUTPUT = RESULTS / "ik_bench.json"
DEFAULT_SEQIKPY_PYTHON = "/tmp/seqvenv/bin/python"

# What the issue quotes for SeqIKPy on the df3d 100-frame file (serial, this machine).
SEQIKPY_QUOTED_DF3D = {"ms_per_leg_frame": 62.3, "pooled_mean_mm": 0.0577,
                       "pooled_p95_mm": 0.2099}

TARGETS = {
    "lm_us_per_leg_frame": 50.0,
    "seqik_us_per_leg_frame": 5.0,
    "lm_pooled_mean_ratio": 0.8,
    "lm_pooled_p95_ratio": 0.8,
    "lm_keypoint_mean_ratio": 1.1,
    "two_worker_speedup": 1.7,
    "memory_growth_fraction": 0.1,
}


# -- measurements ---------------------------------------------------------------------------------


def best_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Best wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def time_solvers(problem: Problem, repeats: int) -> dict[str, float]:
    """µs per leg-frame of seqik, lm alone and seqik + lm on the whole problem."""
    seed_angles = solve_seqik(problem)
    calls = {
        "seqik": lambda: solve_seqik(problem),
        "lm": lambda: solve_lm(problem, seed_angles),
        "seqik_plus_lm": lambda: solve_lm(problem, solve_seqik(problem)),
    }
    return {name: best_seconds(call, repeats) / problem.leg_frames * 1e6
            for name, call in calls.items()}


def bench_dataset(problem: Problem, settings: Settings, ref_errors: np.ndarray | None,
                  ref_angles: np.ndarray | None, reference: str) -> dict[str, Any]:
    """Timing, errors and SeqIKPy comparison for one problem.

    `ref_errors` (T', L, 4) and `ref_angles` (T', L, 7) cover the first T' frames (SeqIKPy may
    have solved only those); the ratios and the agreement use the same frames.
    """
    angles = {"seqik": solve_seqik(problem)}
    angles["lm"] = solve_lm(problem, angles["seqik"])
    errors = {name: solver_errors(problem, q) for name, q in angles.items()}
    out: dict[str, Any] = {
        "source": problem.source, "legs": list(problem.legs),
        "frames": int(problem.keypoints.shape[0]), "leg_frames": problem.leg_frames,
        "us_per_leg_frame": {"file": time_solvers(problem, settings.repeats)},
        "error_mm": {name: error_stats(e) for name, e in errors.items()},
    }
    if problem.keypoints.shape[0] < settings.tile_frames:
        tiled = problem.tiled(settings.tile_frames)
        out["us_per_leg_frame"][f"tiled_{settings.tile_frames}"] = time_solvers(
            tiled, settings.repeats)
    if ref_errors is not None:
        frames = ref_errors.shape[0]
        ref_stats = error_stats(ref_errors)
        out["seqikpy"] = {"reference": reference, "frames": int(frames), "error_mm": ref_stats}
        out["ratio_to_seqikpy"] = {name: error_ratios(error_stats(e[:frames]), ref_stats)
                                   for name, e in errors.items()}
    if ref_angles is not None:
        frames = ref_angles.shape[0]
        out["seqik_agreement_with_seqikpy"] = angle_agreement(angles["seqik"][:frames],
                                                              ref_angles, problem.legs)
    return out


# -- report ---------------------------------------------------------------------------------------


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, per dataset where they apply."""
    out = []
    for name, data in results["datasets"].items():
        timing = data["us_per_leg_frame"]
        largest = timing[max(timing, key=lambda k: 0 if k == "file" else int(k.split("_")[1]))]
        out.append(target(f"{name}: lm (seqik + lm) us/leg-frame",
                          largest["seqik_plus_lm"], TARGETS["lm_us_per_leg_frame"]))
        out.append(target(f"{name}: seqik us/leg-frame", largest["seqik"],
                          TARGETS["seqik_us_per_leg_frame"]))
        ratios = data.get("ratio_to_seqikpy", {}).get("lm")
        out.append(target(f"{name}: lm pooled mean / SeqIKPy",
                          ratios and ratios["pooled_mean"], TARGETS["lm_pooled_mean_ratio"]))
        out.append(target(f"{name}: lm pooled p95 / SeqIKPy",
                          ratios and ratios["pooled_p95"], TARGETS["lm_pooled_p95_ratio"]))
        out.append(target(f"{name}: lm worst keypoint mean / SeqIKPy",
                          ratios and ratios["max_keypoint_mean"]["ratio"],
                          TARGETS["lm_keypoint_mean_ratio"]))
    out.append(target("runner: 2 workers speedup", results["workers"]["speedup_2_vs_1"],
                      TARGETS["two_worker_speedup"], upper=False))
    out.append(target("runner: peak RSS growth, most vs fewest files",
                      results["memory"]["growth_fraction"], TARGETS["memory_growth_fraction"]))
    return out


def print_summary(results: dict[str, Any]) -> None:
    """A readable digest of the results."""
    info = results["machine"]
    packages = info["packages"]
    print(f"\nflyenv {packages['flyenv']}  numpy {packages['numpy']}  python {info['python']}  "
          f"{info['cpu']} x{info['cpu_count']}  {info['date']}")
    seq = results["seqikpy_df3d"]
    if seq["status"] == "ok":
        print(f"SeqIKPy {seq['version']} on df3d ({seq['frames']} frames, serial): "
              f"{seq['ms_per_leg_frame']:.1f} ms/leg-frame")
    else:
        print(f"SeqIKPy on df3d: {seq['status']}")
    print(f"\n{'dataset':8} {'solver':6} {'us/lf file':>10} {'us/lf tiled':>11} "
          f"{'mean mm':>8} {'p95 mm':>7} {'x mean':>7} {'x p95':>6}  worst keypoint x mean")
    for name, data in results["datasets"].items():
        print_dataset(name, data)
    workers = results["workers"]
    print(f"\nrunner lm, {workers['frames']} frames: 1 worker {workers['best_seconds']['1']:.1f} s,"
          f" 2 workers {workers['best_seconds']['2']:.1f} s -> {workers['speedup_2_vs_1']:.2f}x "
          f"(jobs alone {workers['jobs_only']['speedup_2_vs_1']:.2f}x; main-process save "
          f"{workers['main_process_save_seconds']:.1f} s)")
    for run in results["memory"]["runs"]:
        print(f"memory: {run['files']:3d} files  peak RSS while running "
              f"{run['peak_rss_mb']:.0f} MB (RSS before the run {run['rss_before_run_mb']:.0f} MB,"
              f" import peak {run['import_peak_rss_mb']:.0f} MB)")
    print("\ntargets:")
    for item in results["targets"]:
        value = "n/a" if item["value"] is None else f"{item['value']:.3f}"
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[item["pass"]]
        print(f"  {verdict:4}  {item['name']}: {value} {item['comparison']} "
              f"{item['threshold']}")


def print_dataset(name: str, data: dict[str, Any]) -> None:
    """Rows of the summary table for one dataset."""
    timing = data["us_per_leg_frame"]
    tiled = next((v for k, v in timing.items() if k != "file"), None)
    rows = [("seqikpy", None, None, data.get("seqikpy", {}).get("error_mm"), None)]
    for solver_name, key in (("seqik", "seqik"), ("lm", "seqik_plus_lm")):
        rows.append((solver_name, timing["file"][key], tiled and tiled[key],
                     data["error_mm"][solver_name],
                     data.get("ratio_to_seqikpy", {}).get(solver_name)))
    for solver_name, file_us, tiled_us, stats, ratios in rows:
        if stats is None:
            continue
        cells = [f"{file_us:10.1f}" if file_us else f"{'':10}",
                 f"{tiled_us:11.1f}" if tiled_us else f"{'':11}",
                 f"{stats['pooled']['mean']:8.4f}", f"{stats['pooled']['p95']:7.4f}"]
        if ratios:
            worst = ratios["max_keypoint_mean"]
            cells += [f"{ratios['pooled_mean']:7.3f}", f"{ratios['pooled_p95']:6.3f}",
                      f" {worst['keypoint']} {worst['ratio']:.3f}"]
        print(f"{name:8} {solver_name:6} " + " ".join(cells))
    agreement = data.get("seqik_agreement_with_seqikpy")
    if agreement:
        print(f"{'':8} seqik == SeqIKPy within {agreement['tolerance_deg']} deg: "
              f"{agreement['all_joints']:.4f} of leg-frames (worst joint "
              f"{agreement['worst_joint']} {agreement['per_joint'][agreement['worst_joint']]:.4f})")


# -- main -----------------------------------------------------------------------------------------


def run_all(settings: Settings, data_dir: Path, seqikpy_python: str,
            workdir: Path) -> dict[str, Any]:
    """Every measurement, as one JSON-able dict."""
    results: dict[str, Any] = {"machine": machine_info(), "settings": dataclasses.asdict(settings),
                               "targets_spec": TARGETS}
    df3d = load_df3d(data_dir)
    print("SeqIKPy on df3d ...", flush=True)
    seq = run_seqikpy(df3d, seqikpy_python, settings.seqikpy_frames, workdir)
    ref_errors, ref_angles = seq.pop("errors", None), seq.pop("angles", None)
    seq["quoted_in_issue"] = SEQIKPY_QUOTED_DF3D
    results["seqikpy_df3d"] = seq
    reference = f"SeqIKPy {seq.get('version')} run here, serial"
    if ref_errors is None:  # closest stand-in: flyenv's seqik matches SeqIKPy on Anipose
        ref_errors = solver_errors(df3d, solve_seqik(df3d))
        reference = f"flyenv seqik (SeqIKPy {seq['status']})"
    print("solvers on df3d and Anipose ...", flush=True)
    anipose, anipose_angles, anipose_fk = load_anipose(data_dir)
    results["datasets"] = {
        "df3d": bench_dataset(df3d, settings, ref_errors, ref_angles, reference),
        "anipose": bench_dataset(anipose, settings, fk_errors(anipose.keypoints, anipose_fk),
                                 anipose_angles, "SeqIKPy output shipped with the data"),
    }
    base = np.asarray(load_recording(data_dir / DF3D_1000).keypoints)
    print("runner with 1 and 2 workers ...", flush=True)
    results["workers"] = bench_workers(base, settings, workdir)
    print("runner memory vs number of files ...", flush=True)
    results["memory"] = bench_memory(base, settings, workdir)
    results["targets"] = evaluate_targets(results)
    results["all_targets_pass"] = all(t["pass"] for t in results["targets"])
    results["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="JSON results (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fewer repeats, smaller tiling, SeqIKPy on 10 frames")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the shared recordings (default: %(default)s)")
    parser.add_argument("--seqikpy-python", default=DEFAULT_SEQIKPY_PYTHON,
                        help="an interpreter that can import seqikpy (default: %(default)s)")
    parser.add_argument("--seqikpy-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seqikpy_worker:
        seqikpy_worker(*args.seqikpy_worker)
        return 0
    if args.memory_worker:
        source, count, workdir = args.memory_worker
        memory_worker(source, int(count), workdir)
        return 0
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ik_bench_") as workdir:
        results = run_all(settings, args.data_dir, args.seqikpy_python, Path(workdir))
    results["quick"] = args.quick
    results["total_seconds"] = time.perf_counter() - started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(jsonable(results), indent=2) + "\n")
    print_summary(results)
    print(f"\n{results['total_seconds']:.0f} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
