"""What MuJoCo Warp's deterministic mode costs: one engine of each, stepped in turns.

Both engines step the same model and worlds, interleaved so that both see the same machine load;
the median step times and their ratio go to benchmarks/results/determinism_cost_<device>.json.
On the CPU, Warp runs kernels serially, so both modes give the same numbers bit for bit; on a GPU
the deterministic mode orders contacts, constraint rows and float atomics.

    python benchmarks/determinism_cost.py [--device cpu|cuda] [--num-worlds 64] [--steps 15]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flyenv.apps.machine import device_slug, environment_info
from flyenv.body.mjcf import build_model
from flyenv.sim import make_engine

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-worlds", type=int, default=64)
    parser.add_argument("--substeps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = build_model()
    engines = {mode: make_engine(model, args.num_worlds, nsubstep=args.substeps, engine="warp",
                                 device=args.device, deterministic=mode)
               for mode in (False, True)}
    device = torch.device(args.device)
    times: dict[bool, list[float]] = {False: [], True: []}
    for engine in engines.values():
        engine.step()
    for _ in range(args.steps):
        for mode, engine in engines.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            engine.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[mode].append(time.perf_counter() - start)
    median = {mode: sorted(t)[len(t) // 2] for mode, t in times.items()}
    same = bool(torch.equal(engines[False].qpos, engines[True].qpos))
    result = {"environment": environment_info(args.device), "num_worlds": args.num_worlds,
              "substeps": args.substeps, "steps": args.steps,
              "median_step_s": {"default": median[False], "deterministic": median[True]},
              "deterministic_over_default": median[True] / median[False],
              "same_state_after_the_run": same}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"determinism_cost_{device_slug(args.device)}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"deterministic / default step time: {result['deterministic_over_default']:.3f} "
          f"({args.num_worlds} worlds x {args.substeps} substeps); same state: {same}; "
          f"wrote {path}")


if __name__ == "__main__":
    main()
