"""Adapter from a SAME_STEP `FlyImitationVecEnv` (or wrapper chain) to rsl_rl's `VecEnv`.

Needs the optional `rsl-rl-lib` and `tensordict` packages; import it explicitly::

    from flyenv.wrappers.rsl_rl import RslRlVecEnv
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode
from rsl_rl.env import VecEnv
from tensordict import TensorDict


class RslRlVecEnv(VecEnv):
    """Presents a torch-native gymnasium vector env as an rsl_rl `VecEnv`.

    rsl_rl resets nothing itself: after `step` it expects the observations of the next episode
    for the worlds that just ended, which is gymnasium's SAME_STEP autoreset. Observations come as
    `TensorDict({"policy": obs, "privileged": info["privileged_obs"]})`: the fly's senses, and
    what only the simulator knows (`FlyImitationVecEnv.privileged_layout`). With no "critic" set
    in the runner's `obs_groups`, rsl_rl's `resolve_obs_groups` gives the critic the "policy"
    group; `obs_groups={"actor": ["policy"], "critic": ["policy", "privileged"]}` makes it an
    asymmetric critic (normalize its observations: the privileged part is in µN, s and mm).
    `extras` holds `time_outs` (truncated and not terminated: PPO bootstraps those with the
    critic's value) and `log`, the mean over the worlds of every `reward/<term>` of the step
    (0-d tensors, no host sync). Everything stays on `device`.

    The wrapped env is stepped outside `torch.inference_mode` (which rsl_rl's rollout runs
    under), so that its state never becomes inference tensors and it can still be stepped or
    reset in ordinary code after `runner.learn()`.

    Args:
        env: the vector env, made with `autoreset_mode="same_step"`; its observations must be
            flat `(num_envs, obs_dim)` tensors.
        seed: seeds the first reset.

    Raises:
        ValueError: if the env does not autoreset in SAME_STEP mode, or its observations or
            actions are not flat.
    """

    def __init__(self, env: gym.vector.VectorEnv, seed: int | None = None) -> None:
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"RslRlVecEnv needs an env that autoresets in SAME_STEP mode (rsl_rl expects the "
                f"next episode's observations from step()), got {mode}: make the env with "
                f'autoreset_mode="same_step"')
        obs_shape, action_shape = env.single_observation_space.shape, env.single_action_space.shape
        if obs_shape is None or len(obs_shape) != 1 or action_shape is None or len(
                action_shape) != 1:
            raise ValueError(f"RslRlVecEnv needs flat observations and actions, got "
                             f"{obs_shape} and {action_shape}")
        self.env = env
        self.num_envs = int(env.num_envs)
        self.num_actions = int(action_shape[0])
        self.device = env.unwrapped.device
        self.cfg = env.unwrapped.config
        self.max_episode_length = int(self.cfg.max_episode_steps)
        with torch.inference_mode(False):
            obs, info = env.reset(seed=seed)
        self._obs = self._wrap(obs, info)

    @property
    def episode_length_buf(self) -> torch.Tensor:
        """(num_envs,) long: steps taken in each world's current episode (the env's counter).

        Assigning it (as `OnPolicyRunner.learn(init_at_random_ep_len=True)` does) sets the env's
        counter, so those episodes are truncated sooner.
        """
        return self.env.unwrapped._steps

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        with torch.inference_mode(False):
            steps = value.to(device=self.device, dtype=torch.long).clone()
        self.env.unwrapped._steps = steps

    def get_observations(self) -> TensorDict:
        """The current observations, `{"policy": (num_envs, obs_dim), "privileged": ...}`.

        Returns:
            The observation groups, batch size `[num_envs]`, on `device`.
        """
        return self._obs

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor,
                                                   dict[str, Any]]:
        """Steps every world; ended worlds already start their next episode.

        Args:
            actions: (num_envs, num_actions) on `device`.

        Returns:
            observations (of the next episode where one ended), rewards (num_envs,) float,
            dones (num_envs,) long (1 where the episode ended, by termination or time limit),
            extras `{"time_outs": (num_envs,) bool, "log": {"reward/<term>": 0-d tensor}}`.
        """
        with torch.inference_mode(False):
            obs, reward, terminated, truncated, info = self.env.step(actions)
        self._obs = self._wrap(obs, info)
        log = {key: value.float().mean() for key, value in info.items()
               if key.startswith("reward/")}
        extras = {"time_outs": truncated & ~terminated, "log": log}
        return self._obs, reward, (terminated | truncated).long(), extras

    def close(self) -> None:
        """Closes the wrapped env."""
        self.env.close()

    def _wrap(self, obs: torch.Tensor, info: dict[str, Any]) -> TensorDict:
        return TensorDict({"policy": obs, "privileged": info["privileged_obs"]},
                          batch_size=[self.num_envs], device=self.device)
