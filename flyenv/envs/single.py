"""`FlyImitation-v0` as a single `gymnasium.Env` (one fly, numpy arrays), for `gym.make`.

It runs the vector env with one world in DISABLED autoreset mode, so resets happen only when the
caller asks, as a single env's contract requires, and converts to and from numpy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from flyenv.envs.imitation import FlyImitationVecEnv


class FlyImitationEnv(gym.Env):
    """One fly imitating a reference clip; observations and actions are numpy float32 arrays.

    The keyword arguments are `FlyImitationConfig` fields; `device` defaults to "cpu" and the
    autoreset mode is always "disabled" (a single env does not reset itself).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("device", "cpu")
        kwargs["autoreset_mode"] = "disabled"
        self.vec_env = FlyImitationVecEnv(num_envs=1, **kwargs)
        self.render_mode = self.vec_env.render_mode
        self.observation_space = self.vec_env.single_observation_space
        self.action_space = self.vec_env.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts a new episode at a sampled reference frame; returns (obs, info)."""
        super().reset(seed=seed)
        obs, info = self.vec_env.reset(seed=seed, options=options)
        return _numpy(obs)[0], _unbatch(info)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One control step with a (num_actions,) action (42; 48 with adhesion_control="policy")."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got "
                             f"{action.shape}")
        tensor = torch.as_tensor(action[None], device=self.vec_env.device)
        obs, reward, terminated, truncated, info = self.vec_env.step(tensor)
        return (_numpy(obs)[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]),
                _unbatch(info))

    def render(self) -> np.ndarray | None:
        """The fly as an (H, W, 3) uint8 frame with `render_mode="rgb_array"`."""
        frames = self.vec_env.render()
        return None if frames is None else frames[0]

    def close(self) -> None:
        """Releases the simulation."""
        self.vec_env.close()


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _unbatch(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        if isinstance(value, torch.Tensor):
            value = _numpy(value)[0]
            out[key] = value.item() if value.ndim == 0 else value
        else:
            out[key] = value
    return out
