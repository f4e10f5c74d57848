"""A numpy view of a torch vector env, for consumers that want numpy arrays."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch


class NumpyView(gym.vector.VectorWrapper):
    """Takes numpy actions and returns numpy observations, rewards, flags and info.

    Every call copies between the device and the host: use it for evaluation, debugging or
    numpy-only libraries, not in a GPU training loop.
    """

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets the env; a numpy `reset_mask` option is accepted."""
        if options and "reset_mask" in options:
            options = {**options, "reset_mask": torch.as_tensor(
                np.asarray(options["reset_mask"]), device=self.env.unwrapped.device)}
        obs, info = self.env.reset(seed=seed, options=options)
        return to_numpy(obs), to_numpy(info)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, dict[str, Any]]:
        """Steps the env with (num_envs, num_actions) numpy actions (48 with policy adhesion)."""
        tensor = torch.as_tensor(np.asarray(actions, dtype=np.float32),
                                 device=self.env.unwrapped.device)
        return tuple(to_numpy(x) for x in self.env.step(tensor))  # type: ignore[return-value]


def to_numpy(value: Any) -> Any:
    """Tensors to numpy arrays, recursively through dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {key: to_numpy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_numpy(item) for item in value)
    return value
