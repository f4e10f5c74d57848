"""How many constraint-solver iterations does the fly need? Sets the solver's iteration limits.

MuJoCo Warp's Newton solver loops until the slowest world of the batch converges, up to
`solver_iterations` (MuJoCo's default 100), each iteration with a line search of up to
`linesearch_iterations` (default 50). This runs the free fly on MuJoCo Warp (the Warp CPU device
unless --device cuda) through the env, from random reference states, in scenarios from plain
replay to random flailing, and records after every env step each world's iterations of its last
physics step (an unbiased sample of the substeps) and the batch's maximum (what the whole batch
pays), plus how often the limits are hit, for the default limits and for candidates.

    python benchmarks/solver_iterations.py [--device cpu|cuda] [--num-envs 32] [--steps 150]

writes benchmarks/results/solver_iterations_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from flyenv.envs import FlyImitationVecEnv

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = {
    # name: (action mode, residual noise std [rad]); absolute = uniform targets in the bounds
    "replay": ("residual", 0.0),
    "ppo_exploration_0.025rad": ("residual", 0.025),
    "noisy_0.1rad": ("residual", 0.1),
    "noisy_0.5rad_max": ("residual", 0.5),
    "random_targets": ("absolute", None),
}


def run_scenario(name: str, limits: dict[str, int], args: argparse.Namespace) -> dict:
    mode, noise = SCENARIOS[name]
    env = FlyImitationVecEnv(num_envs=args.num_envs, engine="warp", device=args.device,
                             action_mode=mode, autoreset_mode="disabled",
                             model_options=limits)
    engine = env.engine
    gen = torch.Generator(device=env.device).manual_seed(0)
    env.reset(seed=0)
    low, high = (torch.as_tensor(b, device=env.device) for b in (env.single_action_space.low,
                                                                  env.single_action_space.high))
    per_world, per_step, hit_iter, hit_ls, ended, reward_sum = [], [], 0, 0, 0, 0.0
    start = time.perf_counter()
    for _ in range(args.steps):
        shape = (env.num_envs, 42)
        if noise is None:
            actions = low + (high - low) * torch.rand(shape, generator=gen, device=env.device)
        else:
            actions = noise * torch.randn(shape, generator=gen, device=env.device)
        _, reward, terminated, truncated, _ = env.step(actions)
        reward_sum += float(reward.mean()) / env.max_reward
        # Read before the reset of the ended worlds (its forward runs the solver again).
        niter = engine.solver_iterations().cpu().numpy().copy()
        bits = engine.overflow_bits().cpu().numpy().copy()
        per_world.append(niter)
        per_step.append(int(niter.max()))
        hit_iter += int(((bits & (1 << 9)) != 0).sum())
        hit_ls += int(((bits & (1 << 10)) != 0).sum())
        done = terminated | truncated
        ended += int(done.sum())
        env.reset(options={"reset_mask": done})
    wall = time.perf_counter() - start
    env.close()
    niter = np.concatenate(per_world)
    batch = np.asarray(per_step)
    return {
        "scenario": name, "limits": limits, "samples": int(niter.size), "episodes_ended": ended,
        "world_iterations": {"mean": float(niter.mean()), "p50": float(np.percentile(niter, 50)),
                             "p99": float(np.percentile(niter, 99)),
                             "p99.9": float(np.percentile(niter, 99.9)),
                             "max": int(niter.max()),
                             "histogram": np.bincount(niter).tolist()},
        "batch_max_iterations": {"mean": float(batch.mean()), "max": int(batch.max())},
        "worlds_at_iteration_limit": hit_iter, "worlds_at_linesearch_limit": hit_ls,
        "mean_reward_over_max": reward_sum / args.steps, "wall_s": wall,
        "env_steps_per_s": args.steps * args.num_envs / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--candidates", default="100/50,30/10,20/8",
                        help="solver/linesearch iteration limits to compare")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    results = []
    for candidate in args.candidates.split(","):
        iterations, linesearch = (int(v) for v in candidate.split("/"))
        limits = {"solver_iterations": iterations, "linesearch_iterations": linesearch}
        for name in SCENARIOS:
            result = run_scenario(name, limits, args)
            results.append(result)
            w = result["world_iterations"]
            print(f"{candidate:>7} {name:>26}: world mean {w['mean']:.2f} p99 {w['p99']:.0f} "
                  f"max {w['max']}, batch max mean {result['batch_max_iterations']['mean']:.2f}"
                  f" max {result['batch_max_iterations']['max']}, at limit "
                  f"{result['worlds_at_iteration_limit']} / ls "
                  f"{result['worlds_at_linesearch_limit']} of {result['samples']}, reward "
                  f"{result['mean_reward_over_max']:.3f}, "
                  f"{result['env_steps_per_s']:.0f} env steps/s", flush=True)
    device = torch.device(args.device)
    name = ("cuda-" + torch.cuda.get_device_name(device).lower().replace(" ", "-")
            if device.type == "cuda" else "cpu-" + platform.machine())
    out = Path(args.output) if args.output else RESULTS / f"solver_iterations_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": name, "num_envs": args.num_envs, "steps": args.steps,
                               "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
