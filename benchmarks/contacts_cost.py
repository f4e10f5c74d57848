"""What issue 22's feet cost: the default model against the one before, interleaved repeats.

The default model holds the stance claws with tarsus adhesion (20 µN) and noslip (3 iterations);
before issue 22 it had neither (`SLIDING_FEET`). This times, with `flyenv bench`'s own
measurement (`flyenv.apps.bench.sweep`: bare physics and the full env step replaying the clip),
four models at the same 1e-4 s step, one right after the other and the order rotated in each
round, so that a shared machine's load falls on all of them alike:

- defaults        adhesion 20 µN + noslip 3 (today's model)
- sliding_feet    neither (the default before issue 22)
- adhesion_only   noslip 0
- noslip_only     adhesion 0

on C MuJoCo (64 and 256 flies) and MuJoCo Warp on the Warp CPU device (a few worlds: the
graph-captured path that runs on a GPU, here only for the relative cost). The load average is
recorded before and after every measurement. Per engine and size the JSON gives each model's
full-step realtime factor per round, and each model's ratio to `sliding_feet` per round (its
speed relative to the old default; the cost is 1 / ratio), with the median and the range over
rounds, which says how noisy the box was.

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

from flyenv.apps.bench import environment_info, sweep
from flyenv.apps.machine import device_slug
from flyenv.body.mjcf import SLIDING_FEET, ModelOptions

MODELS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "sliding_feet": dict(SLIDING_FEET),
    "adhesion_only": {"noslip_iterations": 0},
    "noslip_only": {"adhesion_gain_uN": 0.0},
}
BASELINE = "sliding_feet"


def measure(engine: str, size: int, model: str, steps: int, warmup: int,
            min_time_s: float) -> dict[str, Any]:
    """One `sweep` of one model at one size, with the load average around it."""
    load_before = os.getloadavg()
    start = time.perf_counter()
    result = sweep(engine, "cpu", [size], steps, warmup, min_time_s=min_time_s,
                   physics_dt_s=1e-4, model_options=MODELS[model])
    (run,) = result["runs"]
    return {"engine": engine, "num_envs": size, "model": model, "ok": run["ok"],
            "full_realtime_factor": run["full"]["realtime_factor"] if run["ok"] else None,
            "bare_realtime_factor": run["bare"]["realtime_factor"] if run["ok"] else None,
            "physics_realtime_factor": (run["full"].get("physics_realtime_factor")
                                        if run["ok"] else None),
            "episode_ends_per_step": (run["full"]["episode_ends_per_step"] if run["ok"]
                                      else None),
            "steps": run["full"]["steps"] if run["ok"] else None,
            "wall_s": time.perf_counter() - start,
            "load_before": load_before, "load_after": os.getloadavg(),
            "error": run.get("error")}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per engine and size: each model's realtime factors and ratios to `BASELINE` per round."""
    out: dict[str, Any] = {}
    for engine, size in sorted({(r["engine"], r["num_envs"]) for r in rows}):
        mine = [r for r in rows if r["engine"] == engine and r["num_envs"] == size and r["ok"]]
        rounds = sorted({r["round"] for r in mine})
        rtf = {m: {r["round"]: r["full_realtime_factor"] for r in mine if r["model"] == m}
               for m in MODELS}
        entry: dict[str, Any] = {}
        for model in MODELS:
            values = [rtf[model][k] for k in rounds if k in rtf[model]]
            ratios = [rtf[model][k] / rtf[BASELINE][k] for k in rounds
                      if k in rtf[model] and k in rtf[BASELINE]]
            entry[model] = {
                "full_realtime_factor": values,
                "full_realtime_factor_median": statistics.median(values) if values else None,
                f"ratio_to_{BASELINE}": ratios,
                f"ratio_to_{BASELINE}_median": statistics.median(ratios) if ratios else None,
                f"ratio_to_{BASELINE}_range": [min(ratios), max(ratios)] if ratios else None}
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
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    path = args.out / f"contacts_cost_{device_slug('cpu')}.json"
    study: dict[str, Any] = {
        "what": __doc__.split("\n\n")[0], "models": MODELS, "baseline": BASELINE,
        "defaults": {k: getattr(ModelOptions(), k) for k in SLIDING_FEET},
        "physics_dt_s": 1e-4, "environment": environment_info("cpu"), "rows": []}
    jobs = [("mujoco", n) for n in args.mujoco_sizes] + [("warp", n) for n in args.warp_sizes]
    names = list(MODELS)
    for k in range(args.rounds):
        for engine, size in jobs:
            order = names[k % len(names):] + names[:k % len(names)]  # rotated each round
            for model in order:
                row = measure(engine, size, model, args.steps, args.warmup, args.min_time)
                row["round"] = k
                study["rows"].append(row)
                print(f"round {k} {engine:<6} {size:>4} {model:<14} full RTF "
                      f"{row['full_realtime_factor'] or float('nan'):.3f} load "
                      f"{row['load_before'][0]:.1f}->{row['load_after'][0]:.1f}", flush=True)
                study["summary"] = summarize(study["rows"])
                args.out.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(study, indent=1) + "\n")
    loads = [r["load_before"][0] for r in study["rows"]] + [r["load_after"][0]
                                                           for r in study["rows"]]
    study["load_1min_range"] = [min(loads), max(loads)]
    path.write_text(json.dumps(study, indent=1) + "\n")
    for key, entry in study["summary"].items():
        print(key, {m: round(v[f"ratio_to_{BASELINE}_median"] or float("nan"), 3)
                    for m, v in entry.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
