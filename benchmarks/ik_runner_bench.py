"""The IK runner under load: worker scaling and peak memory against the number of files."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from ik_problems import Settings

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.ik_preprocess import runner, solver
from flyenv.motion import io as motion_io

# The memory worker runs through ik_bench.py's command line (`--memory-worker`).
IK_BENCH = Path(__file__).with_name("ik_bench.py")


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
        proc = subprocess.run([sys.executable, str(IK_BENCH), "--memory-worker", str(source),
                               str(count), str(folder)],
                              capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        shutil.rmtree(folder)
    peaks = [run["peak_rss_mb"] for run in runs]
    return {"frames_per_file": int(base.shape[0]), "n_jobs": 1, "runs": runs,
            "growth_fraction": (peaks[-1] - peaks[0]) / peaks[0]}
