"""Data-parallel PPO: N torchrun ranks against one process with the same total batch.

Runs `flyenv train` once per rank count (e.g. 1 rank x 32 flies, 2 ranks x 16 flies), the same
seed, total steps and settings, each through `python -m torch.distributed.run` (Gloo on the CPU,
NCCL with `--device cuda`), and writes the learning curves and the throughput (env steps per
second over all ranks, from the last iteration's wall time) to
benchmarks/results/ranks_<device>.json and .png.

    python benchmarks/ranks_bench.py [--ranks 1 2] [--total-envs 32] [--total-timesteps 20000]
        [--device cpu] [-- extra flyenv train options]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from flyenv.apps.machine import device_slug, environment_info

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--total-envs", type=int, default=32)
    parser.add_argument("--total-timesteps", type=int, default=20_000)
    parser.add_argument("--num-steps", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("extra", nargs="*", help="more flyenv train options (after --)")
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in args.ranks:
            if args.total_envs % ranks:
                raise ValueError(f"--total-envs {args.total_envs} does not split over {ranks} "
                                 f"ranks")
            output = Path(tmp) / f"ranks{ranks}"
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                       str(ranks), "-m", "flyenv", "train", "--device", args.device,
                       "--num-envs", str(args.total_envs // ranks), "--num-steps",
                       str(args.num_steps), "--total-timesteps", str(args.total_timesteps),
                       "--eval-steps", "100", "--output", str(output), *args.extra]
            # One thread per rank for torch; C MuJoCo's threads split the cores between ranks.
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            subprocess.run(command, check=True, env=env)
            result = json.loads((output / "curve.json").read_text())
            curve = result["curve"]
            runs[str(ranks)] = {
                "num_envs_per_rank": args.total_envs // ranks, "world_size": ranks,
                "steps_per_s": curve[-1]["env_steps"] / curve[-1]["wall_s"],
                "curve": [{k: r[k] for k in ("env_steps", "wall_s", "score", "action_std")}
                          for r in curve],
                "evaluation": result["evaluation"]}
            print(f"{ranks} rank(s): {runs[str(ranks)]['steps_per_s']:.0f} steps/s, final "
                  f"score {curve[-1]['score']:.3f}, evaluation "
                  f"{result['evaluation']['score']:.3f}")
    slug = device_slug(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": environment_info(args.device), "total_envs": args.total_envs,
              "total_timesteps": args.total_timesteps, "extra": args.extra, "runs": runs}
    (args.out / f"ranks_{slug}.json").write_text(json.dumps(record, indent=1))
    _plot(runs, args.out / f"ranks_{slug}.png", args.total_envs)


def _plot(runs: dict, path: Path, total_envs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for ranks, run in runs.items():
        ax.plot([r["env_steps"] for r in run["curve"]], [r["score"] for r in run["curve"]],
                label=f"{ranks} rank(s) x {run['num_envs_per_rank']} flies "
                      f"({run['steps_per_s']:.0f} steps/s)")
    ax.set(xlabel="env steps (all ranks)", ylabel="rollout score (reward / max)",
           title=f"Data-parallel PPO, {total_envs} flies in all")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
