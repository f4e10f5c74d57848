"""Torch-native episode statistics for a vector env, in every autoreset mode, with no host sync."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode


class EpisodeStatistics(gym.vector.VectorWrapper):
    """Per-world episode return, length, summed reward terms and termination cause, on the device.

    When worlds finish an episode, `info["episode"]` holds, for every world (rows that matter
    marked by `info["_episode"]`): `return`, `length`, `reward/<term>` (the sum of each reported
    term over the episode) and `termination/<cause>` (why it ended). Totals of the finished
    episodes accumulate on the device; `pop()` turns them into means (one host sync: call it once
    per logging interval). In NEXT_STEP mode the step that resets a world (reward 0, action
    ignored) belongs to no episode.
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self._mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self._device = env.unwrapped.device
        self._return, self._length = self._zeros(), self._zeros(torch.long)
        self._terms: dict[str, torch.Tensor] = {}
        self._fresh = self._zeros(torch.bool)  # NEXT_STEP: worlds this step resets
        self._totals: dict[str, torch.Tensor] = {}
        self._count = torch.zeros((), device=self._device)

    def _zeros(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(self.num_envs, dtype=dtype, device=self._device)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Resets the env; the statistics of the reset worlds start over."""
        obs, info = self.env.reset(seed=seed, options=options)
        mask = (options or {}).get("reset_mask")
        mask = ~self._zeros(torch.bool) if mask is None else mask.to(self._device)
        self._clear(mask)
        self._fresh = self._fresh & ~mask
        return obs, info

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]:
        """Steps the env and adds `info["episode"]` / `info["_episode"]`."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        next_step = self._mode == AutoresetMode.NEXT_STEP
        counted = ~self._fresh if next_step else ~self._zeros(torch.bool)
        self._return += torch.where(counted, reward, 0.0)
        self._length += counted.long()
        for key, value in info.items():
            if key.startswith("reward/"):
                term = self._terms.setdefault(key, self._zeros())
                term += torch.where(counted, value, 0.0)
        done = terminated | truncated
        episode = {"return": self._return.clone(), "length": self._length.clone(),
                   **{k: v.clone() for k, v in self._terms.items()},
                   **{k: v & done for k, v in info.items() if k.startswith("termination/")}}
        info["episode"], info["_episode"] = episode, done
        self._accumulate(episode, done)
        self._clear(done)
        self._fresh = done
        return obs, reward, terminated, truncated, info

    def _clear(self, mask: torch.Tensor) -> None:
        self._return.masked_fill_(mask, 0.0)
        self._length.masked_fill_(mask, 0)
        for term in self._terms.values():
            term.masked_fill_(mask, 0.0)

    def _accumulate(self, episode: dict[str, torch.Tensor], done: torch.Tensor) -> None:
        self._count += done.sum()
        for key, value in episode.items():
            total = self._totals.setdefault(key, torch.zeros((), device=done.device))
            total += torch.where(done, value.float(), 0.0).sum()

    def pop(self) -> dict[str, float]:
        """Means over the episodes finished since the last call, and their number; then clears.

        Returns:
            {"episodes": count, "return": mean, "length": mean, "reward/<term>": mean sum,
            "termination/<cause>": fraction of episodes}, empty when none finished.
        """
        count = float(self._count)
        means = {key: float(total) / count for key, total in self._totals.items()} if count else {}
        self._count.zero_()
        for total in self._totals.values():
            total.zero_()
        return {"episodes": count, **means} if count else {}
