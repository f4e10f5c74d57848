"""Cost of the default thorax-pose estimate: IK per leg-frame with `frame="estimate"` (the
default) against `frame="thorax"` (no estimate), on one core.

Two 20,000-frame recordings (100 Hz) made from the 1000-frame df3d walk, tiled 20 times:
tethered (as recorded), and walking (each frame moved by a smooth rigid motion: a circle of
10 mm radius at 2 mm/s, a slow yaw, seen from a tilted camera 50 mm from the origin), so both
outcomes of the estimate (one constant transform; root motion in a world frame) are timed.
Each is solved serially (`n_jobs=1`, BLAS on one thread) with both frames, interleaved, best of
`--repeat`;
the estimate alone (`estimate_thorax_pose`) and the serial `prepare` step with each frame are
timed too (interleaved), giving what the estimate adds per leg-frame apart from the solve's
run-to-run noise on a loaded machine. Machine, load average and flyenv's
source path are recorded, so a run of an older checkout (PYTHONPATH=...) can be compared.

Run from the repository root:

    python benchmarks/thorax_bench.py [--output benchmarks/results/thorax_bench.json]
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one BLAS/OpenMP thread, before numpy loads)

# isort: split
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS
from scipy.spatial.transform import Rotation

import flyenv
from flyenv import data
from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.ik_preprocess import IkOptions, run
from flyenv.ik_preprocess.io import load_recording
from flyenv.ik_preprocess.prepare import prepare
from flyenv.ik_preprocess.thorax import estimate_thorax_pose

DEFAULT_OUTPUT = RESULTS / "thorax_bench.json"
FRAMES = 20_000
FPS = 100.0


def recordings() -> dict[str, np.ndarray]:
    """(20000, 6, 5, 3) keypoints [mm]: the df3d walk tiled, tethered and walking."""
    walk = np.asarray(load_recording(data.path("df3d_walk")).keypoints)
    tethered = np.tile(walk, (FRAMES // len(walk) + 1, 1, 1, 1))[:FRAMES]
    t = np.arange(FRAMES) / FPS
    angle = t * 2.0 / 10.0  # 2 mm/s on a 10 mm circle [rad]
    yaw = Rotation.from_euler("z", (angle + 0.1 * np.sin(0.5 * t))[:, None])
    shift = np.stack([10 * np.cos(angle), 10 * np.sin(angle), np.zeros_like(t)], axis=1)
    moved = np.einsum("tij,tlkj->tlki", yaw.as_matrix(), tethered) + shift[:, None, None]
    camera = Rotation.from_euler("xyz", [20, -30, 75], degrees=True)
    walking = camera.apply(moved.reshape(-1, 3)).reshape(moved.shape) + [30.0, -40.0, 5.0]
    return {"tethered": tethered, "walking": walking}


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench(repeat: int) -> dict[str, Any]:
    layout = BodyConfig.default().thc
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, keypoints in recordings().items():
            path = Path(tmp) / f"{name}.npz"
            np.savez(path, keypoints=keypoints, leg_names=np.array(c.LEGS), fps=np.array(FPS))
            row: dict[str, Any] = {}
            seconds, pose = _best(lambda kp=keypoints: estimate_thorax_pose(kp, layout, FPS),
                                  repeat)
            row["estimate_s"] = seconds
            row["estimate_us_per_frame"] = seconds / FRAMES * 1e6
            row["root_motion"] = bool(pose.moving)
            best = {"estimate": np.inf, "thorax": np.inf}
            for _ in range(repeat):  # interleaved, so a change of load hits both alike
                for frame in best:
                    out = Path(tmp) / f"out_{name}_{frame}"
                    seconds, report = _best(lambda f=frame, o=out, p=path: run(
                        [p], o, IkOptions(frame=f), n_jobs=1, overwrite=True), 1)
                    assert report.files[0].status == "written", report.files[0].message
                    best[frame] = min(best[frame], seconds / report.leg_frames * 1e6)
            for frame, value in best.items():
                row[f"ik_{frame}_us_per_leg_frame"] = value
            # The serial part alone (read, thorax estimate, alignment, gap filling), interleaved:
            # what the estimate adds per leg-frame without the solve's run-to-run noise.
            prep = {"estimate": np.inf, "thorax": np.inf}
            for _ in range(repeat):
                for frame in prep:
                    seconds, _ = _best(lambda f=frame, p=path: prepare(p, IkOptions(frame=f)), 1)
                    prep[frame] = min(prep[frame], seconds)
            leg_frames = FRAMES * c.NUM_LEGS
            row["prepare_estimate_us_per_leg_frame"] = prep["estimate"] / leg_frames * 1e6
            row["prepare_thorax_us_per_leg_frame"] = prep["thorax"] / leg_frames * 1e6
            added = (prep["estimate"] - prep["thorax"]) / leg_frames * 1e6
            row["estimate_adds_us_per_leg_frame"] = added
            row["thorax_plus_added_over_thorax"] = 1 + added / row["ik_thorax_us_per_leg_frame"]
            row["default_over_thorax"] = (row["ik_estimate_us_per_leg_frame"]
                                          / row["ik_thorax_us_per_leg_frame"])
            results[name] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = bench(args.repeat)
    record = {
        "label": args.label, "flyenv_source": str(Path(flyenv.__file__).parent),
        "frames": FRAMES, "fps": FPS, "legs": c.NUM_LEGS, "repeat": args.repeat,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "threads": 1,
                    "load_average_before_after": [load_before[0], os.getloadavg()[0]]},
        "results": results,
        "target": "default (frame='estimate') within 1.2x of frame='thorax' per leg-frame",
    }
    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    existing[args.label] = record
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
