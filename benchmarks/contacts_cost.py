"""What issue 22's feet cost: the default model against the one before, interleaved repeats.

The default model holds the stance claws with tarsus adhesion (20 µN) and noslip (3 iterations);
before issue 22 it had neither (`SLIDING_FEET`). This times the full env step replaying the
clip (`env.step(env.replay_action())`, the embedded gait, random starts) for four models at the
same 1e-4 s step, one right after the other and the order rotated in each round, so that a
shared machine's load falls on all of them alike, by wall clock and by the process's CPU time
(which other processes' load barely touches; C MuJoCo on one thread, so that its CPU time is
the work and not the waiting of a second thread):

- defaults        adhesion 20 µN + noslip 3 (today's model)
- sliding_feet    neither (the default before issue 22)
- adhesion_only   noslip 0
- noslip_only     adhesion 0

on C MuJoCo (64 and 256 flies) and MuJoCo Warp on the Warp CPU device (a few worlds: the
graph-captured path that runs on a GPU, here only for the relative cost). The load average is
recorded before and after every measurement. Per engine and size the JSON gives each model's
realtime factor (simulated s of all flies per wall s, and per CPU s) per round, and its ratio to
`sliding_feet` per round (its speed relative to the old default; the cost is 1 / ratio), with
the median and the range over rounds, which says how noisy the box was. `flyenv bench
--baseline-model-option` gives the same comparison by wall clock with `flyenv bench`'s own
measurement.

Usage (from the repository root; ~10-15 minutes on the shared 2-core box):

    python benchmarks/contacts_cost.py [--rounds 3] [--mujoco-sizes 64 256] [--warp-sizes 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from flyenv.apps.machine import device_slug, environment_info
from flyenv.body.mjcf import SLIDING_FEET, ModelOptions
from flyenv.envs import FlyImitationVecEnv

MODELS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "sliding_feet": dict(SLIDING_FEET),
    "adhesion_only": {"noslip_iterations": 0},
    "noslip_only": {"adhesion_gain_uN": 0.0},
}
BASELINE = "sliding_feet"


def measure(engine: str, size: int, model: str, steps: int, warmup: int) -> dict[str, Any]:
    """Full env steps of one model at one size: wall and CPU time, load average around them."""
    load_before = os.getloadavg()
    env = FlyImitationVecEnv(num_envs=size, engine=engine, device="cpu", physics_dt_s=1e-4,
                             model_options=MODELS[model], nthread=1 if engine == "mujoco" else 0)
    try:
        env.reset(seed=0)
        for _ in range(warmup):
            env.step(env.replay_action())
        ends = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.replay_action())
            ends += int((terminated | truncated).sum())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        simulated = size * steps * env.config.control_dt_s
    finally:
        env.close()
    return {"engine": engine, "num_envs": size, "model": model, "steps": steps,
            "wall_s": wall, "cpu_s": cpu, "wall_realtime_factor": simulated / wall,
            "cpu_realtime_factor": simulated / cpu, "episode_ends": ends,
            "load_before": load_before, "load_after": os.getloadavg()}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per engine and size, per clock: each model's realtime factors and ratios to `BASELINE`
    per round (median and range)."""
    out: dict[str, Any] = {}
    for engine, size in sorted({(r["engine"], r["num_envs"]) for r in rows}):
        mine = [r for r in rows if r["engine"] == engine and r["num_envs"] == size]
        rounds = sorted({r["round"] for r in mine})
        entry: dict[str, Any] = {}
        for clock in ("cpu", "wall"):
            key = f"{clock}_realtime_factor"
            rtf = {m: {r["round"]: r[key] for r in mine if r["model"] == m} for m in MODELS}
            for model in MODELS:
                values = [rtf[model][k] for k in rounds if k in rtf[model]]
                ratios = [rtf[model][k] / rtf[BASELINE][k] for k in rounds
                          if k in rtf[model] and k in rtf[BASELINE]]
                entry.setdefault(model, {})[clock] = {
                    "realtime_factor": values,
                    "realtime_factor_median": statistics.median(values) if values else None,
                    "ratio_to_baseline": ratios,
                    "ratio_to_baseline_median": statistics.median(ratios) if ratios else None,
                    "ratio_to_baseline_range": [min(ratios), max(ratios)] if ratios else None}
        out[f"{engine}_{size}"] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the rounds and writes benchmarks/results/contacts_cost_<cpu>.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mujoco-sizes", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--warp-sizes", type=int, nargs="*", default=[4])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    path = args.out / f"contacts_cost_{device_slug('cpu')}.json"
    study: dict[str, Any] = {
        "what": __doc__.split("\n\n")[0], "models": MODELS, "baseline": BASELINE,
        "defaults": {k: getattr(ModelOptions(), k) for k in SLIDING_FEET},
        "physics_dt_s": 1e-4, "torch_threads": torch.get_num_threads(),
        "environment": environment_info("cpu"), "rows": []}
    jobs = [("mujoco", n) for n in args.mujoco_sizes] + [("warp", n) for n in args.warp_sizes]
    names = list(MODELS)
    for engine, size in jobs[:1] + [job for job in jobs if job[0] == "warp"][:1]:
        for model in names:  # untimed: kernels compiled and cached, first-use costs paid
            measure(engine, min(4, size), model, 1, 1)
    for k in range(args.rounds):
        for engine, size in jobs:
            order = names[k % len(names):] + names[:k % len(names)]  # rotated each round
            for model in order:
                row = measure(engine, size, model, args.steps, args.warmup)
                row["round"] = k
                study["rows"].append(row)
                print(f"round {k} {engine:<6} {size:>4} {model:<14} RTF wall "
                      f"{row['wall_realtime_factor']:.3f} cpu {row['cpu_realtime_factor']:.3f} "
                      f"load {row['load_before'][0]:.1f}->{row['load_after'][0]:.1f}",
                      flush=True)
                study["summary"] = summarize(study["rows"])
                args.out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(study, indent=1) + "\n")
    loads = [r["load_before"][0] for r in study["rows"]] + [r["load_after"][0]
                                                           for r in study["rows"]]
    study["load_1min_range"] = [min(loads), max(loads)]
    path.write_text(json.dumps(study, indent=1) + "\n")
    for key, entry in study["summary"].items():
        for clock in ("cpu", "wall"):
            print(key, clock, {m: [round(x, 3) for x in [v[clock]["ratio_to_baseline_median"],
                                                          *v[clock]["ratio_to_baseline_range"]]]
                               for m, v in entry.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
