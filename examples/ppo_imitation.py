"""PPO (CleanRL style, plain torch) on the vector env: learn to imitate a reference motion.

Usage:
    python examples/ppo_imitation.py [--device auto|cpu|cuda] [--num-envs N]
        [--total-timesteps N] [--reference FILE.npz] [--output DIR] [--video-steps N] ...

Example:
    python examples/ppo_imitation.py --device cuda --num-envs 4096 --total-timesteps 200000000
    python examples/ppo_imitation.py --device cpu --num-envs 64 --total-timesteps 200000

The algorithm is `flyenv.apps.train` (one file: the agent, the rollout, GAE, the clipped update,
logging, checkpoint, evaluation, video), which `flyenv train` runs too; every field of
`flyenv.apps.train.PpoArgs` is an option here.
"""

from __future__ import annotations

import argparse

from flyenv.apps.train import add_arguments, args_from, train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    train(args_from(parser.parse_args()), log=print)
