"""Observation normalization with running statistics on the device, saved with a checkpoint."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space


class NormalizeObservation(gym.vector.VectorWrapper):
    """Normalizes observations to zero mean and unit variance with running statistics.

    Mean and variance are float64 tensors on the env's device, updated with every batch of
    observations (Chan's parallel update; a masked reset counts only the reset worlds) unless
    `update` is False (evaluation). `state_dict()` / `load_state_dict()` carry them with a
    policy checkpoint. SAME_STEP's `info["final_obs"]` is normalized with the same statistics.

    Args:
        env: the vector env (torch observations).
        clip: normalized values are clipped to [-clip, clip].
        epsilon: added to the variance, and the initial count.
    """

    def __init__(self, env: gym.vector.VectorEnv, clip: float = 10.0,
                 epsilon: float = 1e-8) -> None:
        super().__init__(env)
        device = env.unwrapped.device
        dim = env.single_observation_space.shape[0]
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.var = torch.ones(dim, dtype=torch.float64, device=device)
        self.count = torch.full((), 1e-4, dtype=torch.float64, device=device)
        self.update = True
        self.clip, self.epsilon = float(clip), float(epsilon)
        self.single_observation_space = gym.spaces.Box(-self.clip, self.clip, (dim,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Resets the env and normalizes the first observations."""
        obs, info = self.env.reset(seed=seed, options=options)
        mask = (options or {}).get("reset_mask")
        weight = None if mask is None else mask.to(obs.device, torch.float64)
        self._update(obs, weight)
        return self.normalize(obs), info

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]:
        """Steps the env and normalizes the observations."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._update(obs)
        if "final_obs" in info:
            info["final_obs"] = self.normalize(info["final_obs"])
        return self.normalize(obs), reward, terminated, truncated, info

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """(batch, k) observations normalized with the current statistics of the first k columns.

        k is obs_dim for the env's own; fewer columns are a leading part of them (the policy's,
        of an observation with a privileged part after it).
        """
        k = obs.shape[-1]
        scaled = (obs - self.mean[:k]) / torch.sqrt(self.var[:k] + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).to(obs.dtype)

    def denormalize(self, scaled: torch.Tensor) -> torch.Tensor:
        """(batch, k) raw observations of normalized ones (the first k columns).

        `normalize`'s inverse where it did not clip (within `clip` standard deviations).
        """
        k = scaled.shape[-1]
        raw = scaled.double() * torch.sqrt(self.var[:k] + self.epsilon) + self.mean[:k]
        return raw.to(scaled.dtype)

    def _update(self, obs: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        if not self.update:
            return
        obs = obs.to(torch.float64)
        weight = torch.ones(obs.shape[0], dtype=torch.float64, device=obs.device) if (
            weight is None) else weight
        n = weight.sum()
        batch_mean = (weight[:, None] * obs).sum(0) / n.clamp_min(1.0)
        batch_var = (weight[:, None] * (obs - batch_mean) ** 2).sum(0) / n.clamp_min(1.0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n
                        + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running statistics (mean, var, count), for a checkpoint."""
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restores statistics saved by `state_dict`.

        Raises:
            ValueError: if the saved statistics are for another observation size.
        """
        if tuple(state["mean"].shape) != tuple(self.mean.shape):
            raise ValueError(f"NormalizeObservation: saved statistics have obs_dim "
                             f"{tuple(state['mean'].shape)}, this env has {tuple(self.mean.shape)}")
        for name in ("mean", "var", "count"):
            getattr(self, name).copy_(state[name])
