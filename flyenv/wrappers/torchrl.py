"""TorchRL adapter: `FlyImitation-v0` as a `torchrl.envs.EnvBase`, through TorchRL's `GymWrapper`.

TorchRL's gym wrapper takes a gymnasium (>= 1.1) `VectorEnv` in the SAME_STEP or DISABLED
autoreset mode and refuses NEXT_STEP. DISABLED is the mode it prefers and the one built here:
TorchRL's partial resets (the `"_reset"` mask of `step_and_maybe_reset`) become the env's
`reset(options={"reset_mask": ...})`, so `("next", "observation")` is the true last observation
of an episode without TorchRL's terminal-observation machinery. In SAME_STEP mode TorchRL adds a
`terminal_obs_reader` and a `VecGymEnvTransform` that read `info["final_obs"]` world by world in
Python (and register every info entry), which costs more per step.

Example:
    >>> env = make_torchrl_env(num_envs=4, device="cpu", engine="mujoco")
    >>> data = env.rollout(5, break_when_any_done=False)  # (4, 5) TensorDict
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from gymnasium.vector import AutoresetMode
from torchrl.data import Composite, Unbounded
from torchrl.envs import EnvBase, GymWrapper, default_info_dict_reader

from flyenv.envs import FlyImitationVecEnv


class FlyGymWrapper(GymWrapper):
    """TorchRL's `GymWrapper`, passing the partial-reset mask as a tensor on the env's device.

    In DISABLED mode `GymWrapper` hands the mask over as `reset.numpy()`, which fails for a mask
    on a CUDA device; `FlyImitationVecEnv.reset` takes the tensor as it is.
    """

    def _replace_reset(self, reset: torch.Tensor | None, kwargs: dict[str, Any],
                       ) -> dict[str, Any]:
        """Puts the `"_reset"` mask in the reset options (None: a full reset).

        Args:
            reset: TorchRL's `"_reset"` entry, (num_envs, 1) bool, or None.
            kwargs: the keyword arguments of the gym env's `reset`.

        Returns:
            The keyword arguments, with `options["reset_mask"]` in DISABLED mode.
        """
        if reset is not None and self._env.autoreset_mode == AutoresetMode.DISABLED:
            mask = reset.reshape(self.batch_size).to(torch.bool)
            kwargs.setdefault("options", {})["reset_mask"] = mask
        return kwargs


def _info_dtype(key: str) -> torch.dtype:
    if key.startswith("reward/"):
        return torch.float32
    return torch.int64 if key in ("clip", "frame") else torch.bool


def make_torchrl_env(env: FlyImitationVecEnv | None = None, /, *,
                     info_keys: Sequence[str] | None = None, **env_kwargs: Any) -> EnvBase:
    """Wraps a `FlyImitationVecEnv` in TorchRL's `GymWrapper` (batch size `(num_envs,)`).

    Observations, actions, rewards and done flags stay torch tensors on the env's device
    (`convert_actions_to_numpy=False`, `device=env.device`); `"done"`, `"terminated"` and
    `"truncated"` are `(num_envs, 1)`. In DISABLED mode the info entries in `info_keys` are read
    into the step output under the same names (`("next", "reward/joint_pos")`, ...; zeros in the
    reset output). In SAME_STEP mode TorchRL itself reads every info entry.

    Args:
        env: the env to wrap, in the DISABLED (preferred) or SAME_STEP autoreset mode (TorchRL
            refuses NEXT_STEP); None builds one from `env_kwargs` in DISABLED mode.
        info_keys: info entries to read in DISABLED mode: `reward/<term>`, `termination/<cause>`,
            `invalid_action`, `clip`, `frame`. Defaults to `reward/<term>` for the terms in use.
        **env_kwargs: `FlyImitationVecEnv` arguments (`num_envs` and config fields) when `env`
            is None.

    Returns:
        The TorchRL env: a `GymWrapper` (DISABLED) or a `TransformedEnv` over one (SAME_STEP).

    Raises:
        TypeError: for both `env` and `env_kwargs`, or an env that is not a bare
            `FlyImitationVecEnv` (gymnasium wrappers hide `autoreset_mode` from TorchRL).
        RuntimeError: (TorchRL's) for an env in NEXT_STEP mode.
    """
    if env is None:
        env = FlyImitationVecEnv(**{"autoreset_mode": "disabled", **env_kwargs})
    elif env_kwargs:
        raise TypeError(f"pass either an env or env keyword arguments, not both: "
                        f"{sorted(env_kwargs)}")
    if not isinstance(env, FlyImitationVecEnv):
        raise TypeError(f"expected a FlyImitationVecEnv (not wrapped), got {type(env).__name__}")
    torchrl_env = FlyGymWrapper(env, device=env.device, convert_actions_to_numpy=False)
    if env.autoreset_mode == AutoresetMode.DISABLED:
        keys = list(info_keys) if info_keys is not None else [f"reward/{t}" for t in env.terms]
        if keys:
            spec = Composite({k: Unbounded((env.num_envs,), device=env.device,
                                           dtype=_info_dtype(k)) for k in keys}, shape=())
            torchrl_env.set_info_dict_reader(default_info_dict_reader(keys, spec=spec))
    return torchrl_env

