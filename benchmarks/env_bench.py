"""Env benchmark: throughput of `FlyImitationVecEnv`, bare physics against the full env step.

For each num_envs it builds one env and times `env.engine.step()` (the physics substeps alone)
and `env.step(env.replay_action())` (physics, rewards, observations, automatic resets; the
replay, so the adhesion follows the clips' stance), and reports env steps/s,
the realtime factor (simulated seconds of all flies per wall second) of both and the overhead of
the full step; on CUDA also GPU memory per world. Cold start (env construction + first step with
an empty Warp kernel cache) and warm start (with the filled cache) are timed in fresh
interpreters. Defaults: the C MuJoCo engine on the CPU with all cores over 4..256 flies, then
MuJoCo Warp on CUDA over 256..32768 (skipped without a GPU; a size that runs out of GPU memory is
recorded as failed). This is `flyenv bench`; the code is `flyenv.apps.bench`.

Run from the repository root:

    python benchmarks/env_bench.py [--engine mujoco|warp|both] [--num-envs N ...] [--steps K]

It writes benchmarks/results/env_bench_<device>.json (machine info, per-size numbers, summary and
targets) and the plot env_bench_<device>.png next to it, and prints a table.
"""

from __future__ import annotations

import argparse

from flyenv.apps import bench as benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchmark.add_arguments(parser, out=benchmark.PROJECT_OUT)
    args = parser.parse_args(argv)
    results, json_path, png_path = benchmark.run_args(args)
    print(benchmark.format_table(results))
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
