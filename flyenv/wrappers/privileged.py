"""Observations with the env's privileged part appended, for an asymmetric actor-critic."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from flyenv.envs.observations import layout_size


class AppendPrivileged(gym.vector.VectorWrapper):
    """Appends `info["privileged_obs"]` to the observations: (num_envs, obs_dim + privileged_dim).

    The critic of an asymmetric actor-critic reads all of it; the policy must read only the
    first `policy_dim` columns (the fly's own senses), or it could not act outside the
    simulator. SAME_STEP's `info["final_obs"]` gets `info["final_info"]["privileged_obs"]`, so
    a time-out is bootstrapped from the privileged state it ended in. Put it inside a
    normalizer, which then scales the privileged part too.

    Args:
        env: a `FlyImitationVecEnv` (or a wrapper of one) with torch observations.

    Attributes:
        policy_dim: the wrapped env's observation size.
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self.policy_dim = int(env.single_observation_space.shape[0])
        self.privileged_dim = layout_size(env.unwrapped.privileged_layout)
        dim = self.policy_dim + self.privileged_dim
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Resets the env; the observations carry the privileged part."""
        obs, info = self.env.reset(seed=seed, options=options)
        return torch.cat([obs, info["privileged_obs"]], dim=1), info

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]:
        """Steps the env; the observations (and `final_obs`) carry the privileged part."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if "final_obs" in info:
            info["final_obs"] = torch.cat([info["final_obs"],
                                           info["final_info"]["privileged_obs"]], dim=1)
        return (torch.cat([obs, info["privileged_obs"]], dim=1), reward, terminated, truncated,
                info)
