"""Replay: a reference run in the env with zero residuals (its own angles as targets), filmed.

In flyenv "replay" means exactly this: the imitation env driven by the zero action, so the fly
follows the reference's angles with the env's resets, rewards and terminations. It is the
baseline a policy must beat (`flyenv.apps.train` scores it from the same starts) and what
`flyenv replay FILE` films. The one-world tracking diagnostic without the env is
`flyenv.sim.track_reference`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flyenv.envs import FlyImitationVecEnv
from flyenv.wrappers.record_video import record_episode


def replay_video(reference: Path, path: Path, *, num_envs: int = 1, steps: int = 300,
                 tethered: bool = False, slowdown: float = 10.0) -> tuple[Path, float, float]:
    """Films world 0 of the env replaying a reference (zero residual), with its ghost.

    Args:
        reference: the ReferenceMotion .npz.
        path: the mp4 to write.
        num_envs: flies simulated (only world 0 is filmed).
        steps: env steps filmed at most (the clip's end stops earlier).
        tethered: film the tethered fly instead of the free one.
        slowdown: the video plays this many times slower than real time.

    Returns:
        (the mp4, mean reward per step of world 0, the env's maximum reward per step).
    """
    env = FlyImitationVecEnv(num_envs=num_envs, reference=str(reference), device="cpu",
                             engine="mujoco", random_start=False, autoreset_mode="disabled",
                             tethered=tethered, render_mode="rgb_array", render_size=(480, 360))
    try:
        video, rewards = record_episode(env, lambda obs: env.replay_action(), path, steps=steps,
                                        slowdown=slowdown)
        return video, float(np.mean(rewards)), env.max_reward
    finally:
        env.close()
