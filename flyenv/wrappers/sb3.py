"""Stable-Baselines3 adapter: a SAME_STEP torch vector env seen as an SB3 `VecEnv` (numpy)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from flyenv.wrappers.numpy_view import to_numpy


class Sb3VecEnv(VecEnv):
    """Adapts a `FlyImitationVecEnv` (or a wrapper chain over one) to Stable-Baselines3.

    Actions come in and observations, rewards and dones go out as numpy arrays (copies between
    the device and the host every step: fine for SB3, not a GPU-speed loop). The env must
    autoreset in SAME_STEP mode, as SB3 does: the observation of a finished world already starts
    its next episode, and `infos[i]` holds `terminal_observation` and `TimeLimit.truncated`.
    Every `infos[i]` carries the world's `reward/<term>` values, and `episode` ({"r", "l", "t"},
    as SB3's `Monitor`) when the chain has an `EpisodeStatistics` wrapper. The worlds share one
    env: attributes and methods are found along the wrapper chain, the same for every index;
    `seed()` seeds the next `reset()`.

    Args:
        env: the vector env, created with `autoreset_mode="same_step"`.

    Raises:
        ValueError: if the env does not autoreset in SAME_STEP mode.
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"Sb3VecEnv needs an env that autoresets in SAME_STEP mode, got "
                             f"{mode}; create it with autoreset_mode='same_step'")
        self.env = env
        self.device = torch.device(env.unwrapped.device)
        self._actions: torch.Tensor | None = None
        self._start = time.time()
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> np.ndarray:
        """Resets every world, with the seed and options set since the last reset.

        Returns:
            obs (num_envs, obs_dim) float32.
        """
        obs, info = self.env.reset(seed=self._seeds[0], options=self._options[0] or None)
        self._reset_seeds()
        self._reset_options()
        info = to_numpy(info)
        self.reset_infos = [{k: v[i] for k, v in info.items() if isinstance(v, np.ndarray)}
                            for i in range(self.num_envs)]
        return to_numpy(obs).astype(np.float32, copy=False)

    def step_async(self, actions: np.ndarray) -> None:
        """Stores (num_envs, action_dim) actions for `step_wait()`."""
        self._actions = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=self.device)

    def step_wait(self) -> VecEnvStepReturn:
        """Steps every world with the stored actions.

        Returns:
            obs (num_envs, obs_dim) float32 (the next episode's first for finished worlds),
            rewards (num_envs,) float32, dones (num_envs,) bool, and one info dict per world.
        """
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        terminated, truncated = to_numpy(terminated), to_numpy(truncated)
        dones = terminated | truncated
        terms = {k: to_numpy(v).tolist() for k, v in info.items() if k.startswith("reward/")}
        infos: list[dict[str, Any]] = [{k: v[i] for k, v in terms.items()}
                                       for i in range(self.num_envs)]
        if dones.any():
            final_obs = to_numpy(info["final_obs"]).astype(np.float32, copy=False)
            episode = to_numpy(info.get("episode")) if "_episode" in info else None
            elapsed = round(time.time() - self._start, 6)
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final_obs[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                if episode is not None:
                    infos[i]["episode"] = {"r": float(episode["return"][i]),
                                           "l": int(episode["length"][i]), "t": elapsed}
        return (to_numpy(obs).astype(np.float32, copy=False),
                to_numpy(reward).astype(np.float32, copy=False), dones, infos)

    def close(self) -> None:
        """Closes the wrapped env."""
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of the outermost env of the chain that has it, once per index.

        Raises:
            AttributeError: if no env of the chain has it.
        """
        value = getattr(self._holder(attr_name), attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Sets the attribute where `get_attr` finds it (else on the outermost env).

        Raises:
            ValueError: if `indices` are not all the worlds (they share the attribute).
        """
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError(f"set_attr: the worlds share one env, so indices must be all of "
                             f"them (None), got {indices!r}")
        try:
            env = self._holder(attr_name)
        except AttributeError:
            env = self.env
        setattr(env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Calls a method of the wrapped env once; its result, once per index."""
        result = getattr(self._holder(method_name), method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        """Whether an env of the chain is a `wrapper_class`, once per index."""
        found = any(isinstance(env, wrapper_class) for env in self._chain())
        return [found for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """The env's frames of its `render_worlds` (made with `render_mode="rgb_array"`)."""
        if self.env.render_mode != "rgb_array":
            raise NotImplementedError("make the env with render_mode='rgb_array' to get images")
        return list(self.env.render())

    def _chain(self) -> list[gym.vector.VectorEnv]:
        envs = [self.env]
        while isinstance(envs[-1], gym.vector.VectorWrapper):
            envs.append(envs[-1].env)
        return envs

    def _holder(self, name: str) -> gym.vector.VectorEnv:
        for env in self._chain():
            if hasattr(env, name):
                return env
        raise AttributeError(f"no env in the chain {[type(e).__name__ for e in self._chain()]} "
                             f"has the attribute {name!r}")
