"""Peak memory of `load_recording` (and of loading a reference bank) on hostile inputs.

Each input is written to a temporary folder and loaded in this process under `tracemalloc`;
the peak, the file's size and the outcome (loaded, or the error's first words) are recorded,
with the worst peak over all inputs. The inputs are the ones issue 20 reproduced (a 319-byte
pickle of shared nested lists, large CSVs, a CSV over the row limit, an endless line, a 0.1 Hz
reference) and their neighbours (deeper and wider shared trees, shared arrays under many keys,
shared strings, copied subtrees).

Run from the repository root:

    python benchmarks/bad_input_memory.py [--output benchmarks/results/bad_input_memory.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flyenv.body import constants as c
from flyenv.envs.reference import load_references
from flyenv.ik_preprocess import io_csv, load_recording, recording
from flyenv.motion import io as motion_io
from flyenv.motion import tripod_gait

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "bad_input_memory.json"


def _shared(levels: int, fanout: int, leaf: Any) -> Any:
    node = leaf
    for _ in range(levels):
        node = [node] * fanout
    return node


def _pickles() -> dict[str, bytes]:
    leg = np.zeros((100, 5, 3))
    return {
        "shared lists 10x10 (319 B in the issue)": pickle.dumps(
            {"RF_leg": _shared(10, 10, [1.0, 2.0, 3.0])}, protocol=2),
        "shared lists 30x2": pickle.dumps({"RF_leg": _shared(30, 2, 1.0)}, protocol=4),
        "shared lists 5x1000": pickle.dumps({"RF_leg": _shared(5, 1000, 1.0)}, protocol=4),
        "shared array under 100k keys": pickle.dumps(
            {"RF_leg": leg, **{f"k{i}": leg for i in range(100_000)}}, protocol=4),
        "shared 1 KB string x 1e5": pickle.dumps({"RF_leg": ["x" * 1024] * 100_000},
                                                 protocol=4),
        "shared array in a 1e5 list": pickle.dumps({"RF_leg": [leg] * 100_000}, protocol=4),
        "list-multiplied tree 8^5 (within budget)": pickle.dumps(
            {"RF_leg": _shared(4, 8, [1.0] * 8)}, protocol=0),
    }


def _csv(path: Path, frames: int, legs: tuple[str, ...] = c.LEGS) -> None:
    header = ["time"] + io_csv.csv_columns(legs)
    block = np.random.default_rng(0).uniform(-2, 2, (1000, len(header) - 1))
    with path.open("w") as f:
        f.write(",".join(header) + "\n")
        for start in range(0, frames, 1000):
            n = min(1000, frames - start)
            times = (np.arange(start, start + n) / 100.0)[:, None]
            np.savetxt(f, np.hstack([times, block[:n]]), fmt="%.4f", delimiter=",")


def _measure(fn: Callable[[], Any]) -> tuple[int, str]:
    tracemalloc.start()
    try:
        fn()
        outcome = "loaded"
    except (ValueError, FileNotFoundError) as err:
        outcome = str(err).split(": ", 1)[-1][:100]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--csv-frames", type=int, default=100_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs: dict[str, tuple[Path, Callable[[Path], Any]]] = {}
        for i, (name, data) in enumerate(_pickles().items()):
            path = folder / f"p{i}.pkl"
            path.write_bytes(data)
            inputs[f"pickle: {name}"] = (path, load_recording)
        path = folder / "big.csv"
        _csv(path, args.csv_frames)
        inputs[f"csv: {args.csv_frames} rows x 91 columns"] = (path, load_recording)
        path = folder / "long.csv"
        _csv(path, 5001)
        inputs["csv: over the row limit (limit set to 5000)"] = (path, "limit")
        path = folder / "line.csv"
        path.write_text("RF_ThC_x\n" + "1," * 20_000_000)
        inputs["csv: one 40 MB line"] = (path, load_recording)
        path = folder / "slow.npz"
        motion_io.save(dataclasses.replace(tripod_gait(duration_s=1.0), fps=0.1), path)
        inputs["reference: fps 0.1, 501 frames, at 500 Hz"] = (path, lambda p: load_references(
            p, 0.002, torch.device("cpu"), standing_height_mm=1.0, claw_clearance_mm=0.03))
        for name, (path, loader) in inputs.items():
            if loader == "limit":
                limit = io_csv.MAX_FRAMES  # the CSV reader's and the shared check's
                io_csv.MAX_FRAMES = recording.MAX_FRAMES = 5000
                try:
                    peak, outcome = _measure(lambda p=path: load_recording(p))
                finally:
                    io_csv.MAX_FRAMES = recording.MAX_FRAMES = limit
            else:
                peak, outcome = _measure(lambda p=path, f=loader: f(p))
            size = path.stat().st_size
            rows.append({"input": name, "bytes": size, "peak_bytes": peak,
                         "peak_over_size": peak / size, "outcome": outcome})
            print(f"{name:<48} {size:>11} B  peak {peak / 1e6:8.2f} MB  {outcome[:60]}")
    worst = max(rows, key=lambda r: r["peak_bytes"])
    record = {"inputs": rows, "worst": worst,
              "note": "tracemalloc peak of numpy and Python allocations while loading"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
