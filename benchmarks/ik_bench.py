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
"""

from __future__ import annotations

import os

# Single-threaded numerics: the per-leg-frame numbers are single-core numbers, and the runner's
# workers should not oversubscribe the cores. Set before numpy is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import dataclasses
import datetime
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from flyenv.apps.machine import environment_info
from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.data import DATA_DIR
from flyenv.ik_preprocess import runner, solver
from flyenv.ik_preprocess.io import load_pickle_safely, load_recording
from flyenv.motion import io as motion_io

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = DATA_DIR
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "ik_bench.json"
DEFAULT_SEQIKPY_PYTHON = "/tmp/seqvenv/bin/python"

DF3D_100 = "df3d_210902_PR_Fly1/pose3d_aligned.pkl"
DF3D_1000 = "df3d_210902_PR_Fly1/pose_result__210902_PR_Fly1_aligned.pkl"
ANIPOSE_DIR = "anipose_220525_aJO_Fly001_001"
FIT_KEYPOINTS = c.KEYPOINTS[1:]  # CTr, FTi, TiTa, Claw
# Rows of SeqIKPy's forward kinematics (9 chain links) that are ThC, CTr, FTi, TiTa, Claw.
SEQIKPY_FK_ROWS = (0, 4, 6, 7, 8)
SEQIKPY_SEGMENTS = ("Coxa", "Femur", "Tibia", "Tarsus", "Claw")
AGREEMENT_TOL_DEG = 0.01

# SeqIKPy's default NeuroMechFly configuration for the front legs (its body_config.py), which
# produced the Anipose file's leg_joint_angles.pkl. Joints in JOINTS order.
ANIPOSE_LEGS = ("LF", "RF")
ANIPOSE_LENGTHS_MM = (0.40, 0.69, 0.54, 0.63)
ANIPOSE_BOUNDS_DEG = {
    "LF": ((-50, 50), (-40, 60), (-50, 130), (-180, 0), (0, 150), (0, 170), (-150, 0)),
    "RF": ((-50, 50), (-40, 60), (-130, 50), (-180, 0), (-150, 0), (0, 170), (-150, 0)),
}
ANIPOSE_SEED_RAD = {
    "LF": (-0.45, -0.07, 0.32, -2.14, 1.25, 1.48, 0.0),
    "RF": (0.45, -0.07, -0.32, -2.14, -1.25, 1.48, 0.0),
}

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


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much work each measurement does."""

    repeats: int  # timed calls per solver (best is reported)
    tile_frames: int  # the 100-frame df3d file tiled to this many frames
    seqikpy_frames: int | None  # frames SeqIKPy solves on df3d (None: all)
    workers_frames: int  # the 1000-frame df3d file tiled to this many frames
    workers_repeats: int  # runner runs per worker count (best is reported)
    memory_counts: tuple[int, ...]  # numbers of file copies for the memory check
    chunk_frames: int = 5000


FULL = Settings(repeats=7, tile_frames=2000, seqikpy_frames=None, workers_frames=100_000,
                workers_repeats=2, memory_counts=(10, 40))
QUICK = Settings(repeats=2, tile_frames=500, seqikpy_frames=10, workers_frames=10_000,
                 workers_repeats=1, memory_counts=(3, 6))


@dataclasses.dataclass(frozen=True)
class Problem:
    """Keypoints of some legs and the body to fit them with."""

    name: str
    source: str
    legs: tuple[str, ...]
    keypoints: np.ndarray  # (T, L, 5, 3) [mm]
    lengths: np.ndarray  # (L, 4) [mm]
    bounds: np.ndarray  # (L, 7, 2) [rad]
    seed: np.ndarray  # (L, 7) [rad]

    @property
    def leg_frames(self) -> int:
        """T * L."""
        return int(self.keypoints.shape[0] * self.keypoints.shape[1])

    def tiled(self, frames: int) -> Problem:
        """The recording repeated in time to `frames` frames."""
        reps = -(-frames // self.keypoints.shape[0])
        keypoints = np.tile(self.keypoints, (reps, 1, 1, 1))[:frames]
        return dataclasses.replace(self, keypoints=np.ascontiguousarray(keypoints))


# -- data -----------------------------------------------------------------------------------------


def load_df3d(data_dir: Path) -> Problem:
    """The df3d 100-frame recording with flyenv's default body and SeqIKPy's seeds."""
    path = data_dir / DF3D_100
    recording = load_recording(path)
    if recording.legs_present != c.LEGS:
        raise ValueError(f"{path}: expected all six legs, got {recording.legs_present}")
    body = BodyConfig.default()
    return Problem("df3d", str(path), c.LEGS, np.asarray(recording.keypoints), body.lengths,
                   body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2),
                   np.asarray(solver.SEQIKPY_SEED_RAD))


def load_anipose(data_dir: Path) -> tuple[Problem, np.ndarray, np.ndarray]:
    """The Anipose front-leg recording, SeqIKPy's angles (T, 2, 7) and its FK keypoints."""
    folder = data_dir / ANIPOSE_DIR
    recording = load_recording(folder / "pose3d_aligned.pkl")
    legs = [c.LEGS.index(leg) for leg in ANIPOSE_LEGS]
    keypoints = np.ascontiguousarray(recording.keypoints[:, legs])
    problem = Problem(
        "anipose", str(folder / "pose3d_aligned.pkl"), ANIPOSE_LEGS, keypoints,
        np.array([ANIPOSE_LENGTHS_MM] * len(ANIPOSE_LEGS)),
        np.radians(np.array([ANIPOSE_BOUNDS_DEG[leg] for leg in ANIPOSE_LEGS], dtype=float)),
        np.array([ANIPOSE_SEED_RAD[leg] for leg in ANIPOSE_LEGS]))
    angles = load_pickle_safely(folder / "leg_joint_angles.pkl")
    ref_angles = np.stack([np.stack([angles[f"Angle_{leg}_{joint}"] for joint in c.JOINTS], -1)
                           for leg in ANIPOSE_LEGS], axis=1)
    fk = load_pickle_safely(folder / "forward_kinematics.pkl")
    ref_fk = np.stack([fk[f"{leg}_leg"][:, list(SEQIKPY_FK_ROWS)] for leg in ANIPOSE_LEGS], 1)
    return problem, ref_angles, ref_fk


# -- measurements ---------------------------------------------------------------------------------


def solve_seqik(problem: Problem) -> np.ndarray:
    """flyenv's closed-form SeqIKPy stages, (T, L, 7)."""
    return solver.seqik(problem.keypoints, problem.lengths, problem.bounds, problem.seed)


def solve_lm(problem: Problem, seed_angles: np.ndarray) -> np.ndarray:
    """flyenv's joint fit with default options, seeded with `seed_angles`, (T, L, 7)."""
    return solver.lm(problem.keypoints, problem.lengths, problem.bounds, seed_angles)


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


def fk_errors(keypoints: np.ndarray, fk_keypoints: np.ndarray) -> np.ndarray:
    """Distances (T, L, 4) of CTr, FTi, TiTa, Claw between tracked and chain keypoints."""
    return np.linalg.norm(fk_keypoints[:, :, 1:] - keypoints[:, :, 1:], axis=-1)


def solver_errors(problem: Problem, angles: np.ndarray) -> np.ndarray:
    """Fit errors (T, L, 4) of flyenv angles, chain rooted at the tracked ThC."""
    return solver.fit_error(problem.keypoints, problem.lengths, angles)[:, :, 1:]


def error_stats(errors: np.ndarray) -> dict[str, Any]:
    """Mean and p95 per keypoint and pooled over the four, [mm]."""
    per_keypoint = {name: {"mean": float(errors[..., k].mean()),
                           "p95": float(np.percentile(errors[..., k], 95))}
                    for k, name in enumerate(FIT_KEYPOINTS)}
    return {"per_keypoint": per_keypoint,
            "pooled": {"mean": float(errors.mean()), "p95": float(np.percentile(errors, 95))}}


def error_ratios(stats: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """stats / reference: pooled mean, pooled p95, each keypoint's mean and the worst of those."""
    per_keypoint = {name: stats["per_keypoint"][name]["mean"]
                    / reference["per_keypoint"][name]["mean"] for name in FIT_KEYPOINTS}
    worst = max(per_keypoint, key=per_keypoint.get)
    return {"pooled_mean": stats["pooled"]["mean"] / reference["pooled"]["mean"],
            "pooled_p95": stats["pooled"]["p95"] / reference["pooled"]["p95"],
            "per_keypoint_mean": per_keypoint,
            "max_keypoint_mean": {"keypoint": worst, "ratio": per_keypoint[worst]}}


def angle_agreement(angles: np.ndarray, reference: np.ndarray, legs: tuple[str, ...],
                    tol_deg: float = AGREEMENT_TOL_DEG) -> dict[str, Any]:
    """Fraction of leg-frames whose angles are within `tol_deg` of the reference (wrapped)."""
    diff = np.degrees(np.abs((angles - reference + np.pi) % (2 * np.pi) - np.pi))
    close = diff <= tol_deg
    per_joint = {joint: float(close[..., j].mean()) for j, joint in enumerate(c.JOINTS)}
    return {
        "tolerance_deg": tol_deg,
        "leg_frames": int(close.shape[0] * close.shape[1]),
        "all_joints": float(close.all(-1).mean()),
        "per_joint": per_joint,
        "per_leg": {leg: float(close[:, i].all(-1).mean()) for i, leg in enumerate(legs)},
        "worst_joint": min(per_joint, key=per_joint.get),
        "max_abs_diff_deg": {joint: float(diff[..., j].max())
                             for j, joint in enumerate(c.JOINTS)},
    }


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


# -- SeqIKPy --------------------------------------------------------------------------------------


def seqikpy_initial_angles(seed: np.ndarray, legs: tuple[str, ...]) -> dict[str, dict]:
    """SeqIKPy's per-stage initial angles (its body_config format) from (L, 7) seeds.

    Each stage's array covers the links of that stage's chain: the base link, then the joints
    (fixed ones included), then the end link. The stage-2 end link is FTi pitch: SeqIKPy's
    tutorial puts 1.4 there, the seed table 1.48; an end link's angle does not move its own
    origin (the stage's end effector), so the value does not change the solution.
    """
    out = {}
    for leg, (yaw, pitch, roll, ctr_pitch, ctr_roll, fti, tita) in zip(legs, seed, strict=True):
        out[leg] = {
            "stage_1": np.array([0.0, yaw, pitch, ctr_pitch]),
            "stage_2": np.array([0.0, yaw, pitch, roll, ctr_pitch, fti]),
            "stage_3": np.array([0.0, yaw, pitch, roll, ctr_pitch, ctr_roll, fti, tita]),
            "stage_4": np.array([0.0, yaw, pitch, roll, ctr_pitch, ctr_roll, fti, tita, 0.0]),
        }
    return out


def seqikpy_template(template: np.ndarray, legs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """SeqIKPy's template dict `{leg}_{Coxa..Claw}` from (L, 5, 3) zero-pose keypoints."""
    return {f"{leg}_{seg}": np.array(template[i, k])
            for i, leg in enumerate(legs) for k, seg in enumerate(SEQIKPY_SEGMENTS)}


def seqikpy_bounds(bounds: np.ndarray, legs: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """SeqIKPy's bounds dict `{leg}_{joint}: (lo, hi)` [rad] from (L, 7, 2)."""
    return {f"{leg}_{joint}": (float(bounds[i, j, 0]), float(bounds[i, j, 1]))
            for i, leg in enumerate(legs) for j, joint in enumerate(c.JOINTS)}


def seqikpy_worker(in_path: str, out_path: str) -> None:
    """Runs SeqIKPy serially on the problem in `in_path` (run in SeqIKPy's interpreter)."""
    from importlib.metadata import version

    from seqikpy.kinematic_chain import KinematicChainSeq
    from seqikpy.leg_inverse_kinematics import LegInvKinSeq
    from seqikpy.utils import calculate_body_size

    with np.load(in_path, allow_pickle=False) as data:
        keypoints, template = data["keypoints"], data["template"]
        bounds, seed = data["bounds"], data["seed"]
        legs = tuple(str(leg) for leg in data["legs"])
    kin_chain = KinematicChainSeq(
        bounds_dof=seqikpy_bounds(bounds, legs), legs_list=list(legs),
        body_size=calculate_body_size(seqikpy_template(template, legs), list(legs)))
    aligned = {f"{leg}_leg": np.ascontiguousarray(keypoints[:, i]) for i, leg in enumerate(legs)}
    seq_ik = LegInvKinSeq(aligned_pos=aligned, kinematic_chain_class=kin_chain,
                          initial_angles=seqikpy_initial_angles(seed, legs))
    start = time.perf_counter()
    angles, fk = seq_ik.run_ik_and_fk(n_workers=1, hide_progress_bar=True)
    seconds = time.perf_counter() - start
    np.savez(out_path, seconds=seconds, version=version("seqikpy"),
             angles=np.stack([np.stack([angles[f"Angle_{leg}_{joint}"] for joint in c.JOINTS],
                                       -1) for leg in legs], 1),
             fk=np.stack([fk[f"{leg}_leg"][:, list(SEQIKPY_FK_ROWS)] for leg in legs], 1))


def seqikpy_importable(python: str) -> bool:
    """Whether `python` exists and can import seqikpy."""
    if not Path(python).exists():
        return False
    probe = subprocess.run([python, "-c", "import seqikpy"], capture_output=True, check=False)
    return probe.returncode == 0


def run_seqikpy(problem: Problem, python: str, frames: int | None,
                workdir: Path) -> dict[str, Any]:
    """SeqIKPy on the first `frames` frames of `problem`, in a subprocess of `python`."""
    if not seqikpy_importable(python):
        return {"status": "not installed", "interpreter": python}
    keypoints = problem.keypoints[:frames]
    in_path, out_path = workdir / "seqikpy_in.npz", workdir / "seqikpy_out.npz"
    np.savez(in_path, keypoints=keypoints, legs=np.array(problem.legs),
             template=np.asarray(BodyConfig.default().zero_pose_keypoints()),
             bounds=problem.bounds, seed=problem.seed)
    proc = subprocess.run([python, __file__, "--seqikpy-worker", str(in_path), str(out_path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"status": "failed", "interpreter": python, "stderr": proc.stderr[-2000:]}
    with np.load(out_path, allow_pickle=False) as data:
        seconds, angles, fk = float(data["seconds"]), data["angles"], data["fk"]
        version = str(data["version"])
    leg_frames = keypoints.shape[0] * keypoints.shape[1]
    return {"status": "ok", "interpreter": python, "version": version,
            "frames": int(keypoints.shape[0]), "leg_frames": int(leg_frames),
            "seconds": seconds, "ms_per_leg_frame": seconds / leg_frames * 1e3,
            "angles": angles, "errors": fk_errors(keypoints, fk)}


# -- runner: workers and memory -------------------------------------------------------------------


def write_recording(path: Path, keypoints: np.ndarray, fps: float = 100.0) -> Path:
    """A recording as .npz (keypoints, leg_names, fps), the runner's input format."""
    np.savez(path, keypoints=keypoints, leg_names=np.array(c.LEGS), fps=fps)
    return path


def timed_run(paths: list[Path], out_dir: Path, n_jobs: int,
              chunk_frames: int | None) -> runner.IkReport:
    """runner.run with lm, overwriting outputs."""
    options = runner.IkOptions(fps=100, solver="lm", chunk_frames=chunk_frames)
    report = runner.run(paths, out_dir, options, n_jobs=n_jobs, backend="loky", overwrite=True)
    failed = [f"{f.path}: {f.message}" for f in report.failed]
    if failed:
        raise RuntimeError(f"runner failed: {failed}")
    return report


def jobs_only_seconds(keypoints: np.ndarray, chunk_frames: int, n_jobs: int) -> float:
    """The runner's jobs (solve_job per leg and chunk) through joblib alone, no file I/O."""
    body = BodyConfig.default()
    bounds = body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    tracked = np.ones(keypoints.shape[:3], dtype=bool)
    jobs = [runner.Job(0, leg, start, stop, lo, keypoints[lo:hi, i], tracked[lo:hi, i],
                       body.lengths[i], bounds[i], solver.SEQIKPY_SEED_RAD[i], "lm",
                       solver.LmOptions())
            for start, stop, lo, hi in runner.chunks(keypoints.shape[0], chunk_frames, 20)
            for i, leg in enumerate(c.LEGS)]
    start = time.perf_counter()
    if n_jobs == 1:
        list(map(runner.solve_job, jobs))
    else:
        parallel = joblib.Parallel(n_jobs=n_jobs, backend="loky",
                                   return_as="generator_unordered", pre_dispatch="2*n_jobs")
        list(parallel(joblib.delayed(runner.solve_job)(job) for job in jobs))
    return time.perf_counter() - start


def save_seconds(motion_path: Path, workdir: Path) -> float:
    """Time to save the runner's output again (what its main process does per file)."""
    motion = motion_io.load(motion_path)
    start = time.perf_counter()
    motion_io.save(motion, workdir / "resave.npz", overwrite=True, compress=False)
    return time.perf_counter() - start


def bench_workers(base: np.ndarray, settings: Settings, workdir: Path) -> dict[str, Any]:
    """runner.run with 1 and 2 loky workers on the 1000-frame file tiled in time."""
    frames = settings.workers_frames
    keypoints = np.tile(base, (-(-frames // base.shape[0]), 1, 1, 1))[:frames]
    path = write_recording(workdir / "tiled.npz", keypoints)
    out_dir = workdir / "out_workers"
    load_before = os.getloadavg()[0]
    start = time.perf_counter()  # starts loky's workers, reused by the runs below
    timed_run([write_recording(workdir / "warmup.npz", base)], out_dir, 2, settings.chunk_frames)
    warmup = time.perf_counter() - start
    runs: dict[int, list[float]] = {1: [], 2: []}
    leg_frames = 0
    for _ in range(settings.workers_repeats):
        for n_jobs in runs:
            report = timed_run([path], out_dir, n_jobs, settings.chunk_frames)
            runs[n_jobs].append(report.seconds)
            leg_frames = report.leg_frames
    best = {n: min(times) for n, times in runs.items()}
    jobs = {n: jobs_only_seconds(keypoints, settings.chunk_frames, n) for n in (1, 2)}
    return {
        "frames": frames, "leg_frames": leg_frames, "solver": "lm",
        "chunk_frames": settings.chunk_frames, "backend": "loky",
        "warmup_seconds_2_workers_1000_frames": warmup,
        "seconds": {str(n): runs[n] for n in runs},
        "best_seconds": {str(n): best[n] for n in best},
        "leg_frames_per_s": {str(n): leg_frames / best[n] for n in best},
        "speedup_2_vs_1": best[1] / best[2],
        "jobs_only": {"seconds": {str(n): jobs[n] for n in jobs},
                      "speedup_2_vs_1": jobs[1] / jobs[2]},
        "main_process_save_seconds": save_seconds(runner.output_path(path, out_dir), workdir),
        "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }


def memory_worker(source: str, count: int, workdir: str) -> None:
    """Prints peak RSS of runner.run over `count` copies of `source` (run in a fresh process).

    `ru_maxrss_mb` is getrusage's peak as asked for, but on Linux a child started by fork + exec
    inherits the parent's peak at the fork, so the benchmark's own large arrays show up in it.
    `peak_rss_mb` is the process's own high-water mark (VmHWM), reset after the imports through
    /proc/self/clear_refs: the peak while the batch runs.
    """
    folder = Path(workdir)
    paths = [folder / "in" / f"rec_{i:03d}.npz" for i in range(count)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
    import_peak_kb = proc_status_kb("VmHWM")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before_kb = proc_status_kb("VmRSS")
    report = timed_run(paths, folder / "out", 1, None)
    ru_maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_kb = proc_status_kb("VmHWM") if reset else ru_maxrss_kb
    print(json.dumps({"files": count, "leg_frames": report.leg_frames, "seconds": report.seconds,
                      "import_peak_rss_mb": import_peak_kb / 1024,
                      "peak_reset_after_imports": reset, "rss_before_run_mb": before_kb / 1024,
                      "peak_rss_mb": peak_kb / 1024, "ru_maxrss_mb": ru_maxrss_kb / 1024}))


def proc_status_kb(field: str) -> float:
    """A memory field of /proc/self/status, e.g. VmRSS or VmHWM [kB] (NaN off Linux)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return float(line.split()[1])
    return float("nan")


def bench_memory(base: np.ndarray, settings: Settings, workdir: Path) -> dict[str, Any]:
    """Peak RSS of runner.run (n_jobs=1) over N copies of the 1000-frame file, N per process."""
    source = write_recording(workdir / "memory_source.npz", base)
    runs = []
    for count in settings.memory_counts:
        folder = workdir / f"memory_{count}"
        proc = subprocess.run([sys.executable, __file__, "--memory-worker", str(source),
                               str(count), str(folder)],
                              capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        shutil.rmtree(folder)
    peaks = [run["peak_rss_mb"] for run in runs]
    return {"frames_per_file": int(base.shape[0]), "n_jobs": 1, "runs": runs,
            "growth_fraction": (peaks[-1] - peaks[0]) / peaks[0]}


# -- report ---------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """The machine (`flyenv.apps.machine.environment_info`, as every benchmark writes it), and
    what matters to the IK's parallel runs: the CPUs this process may use, thread settings."""
    info = environment_info("cpu")
    info.update({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus_available": len(os.sched_getaffinity(0)), "joblib": joblib.__version__,
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",
                                                        "OPENBLAS_NUM_THREADS")},
    })
    return info


def target(name: str, value: float | None, threshold: float, upper: bool = True,
           ) -> dict[str, Any]:
    """One target: value <= threshold (upper) or >= threshold."""
    ok = None if value is None else (value <= threshold if upper else value >= threshold)
    return {"name": name, "value": value, "threshold": threshold,
            "comparison": "<=" if upper else ">=", "pass": ok}


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


def jsonable(value: Any) -> Any:
    """Numpy scalars and arrays to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def print_summary(results: dict[str, Any]) -> None:
    """A readable digest of the results."""
    info = results["machine"]
    print(f"\nflyenv {info['flyenv']}  numpy {info['numpy']}  python {info['python']}  "
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
