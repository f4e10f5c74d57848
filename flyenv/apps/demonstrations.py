"""Demonstrations: states and the actions to take there, taught alongside PPO.

A file of a policy's observations (raw, as the env returns them, before any normalizer) and
actions (the residuals [rad] the policy should play there): the saves
`benchmarks/push_expert_iteration.py` finds for pushes a policy lost, say.
`flyenv train --demonstrations FILE` adds to every PPO minibatch the negative log-likelihood
of a minibatch of them under the policy (its std detached), times `--demonstration-coef`: the
behaviour-cloning term of DAPG (Rajeswaran et al. 2018) without its decay, so that PPO goes on
improving the reward everywhere while the demonstrated actions stay taught.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from flyenv.apps.exploration import action_nll

FORMAT = "flyenv.demonstrations"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class Demonstrations:
    """(m, obs_dim) raw observations `obs` and (m, act_dim) actions `act` [rad]."""

    obs: torch.Tensor
    act: torch.Tensor

    def save(self, path: str | Path) -> None:
        """Writes the file whole or not at all (a temporary file renamed over `path`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save({"format": FORMAT, "version": VERSION, "obs": self.obs.detach().cpu(),
                    "act": self.act.detach().cpu()}, partial)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path, obs_dim: int, act_dim: int,
             device: str | torch.device = "cpu") -> Demonstrations:
        """Reads and checks a file against the policy's observation and action sizes.

        Raises:
            ValueError: naming the file and the field, when it is not a demonstrations file, a
                field is missing, or its shape or values are not what the policy needs.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path}: not a flyenv demonstrations file ({err})") from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{path}: not a flyenv demonstrations file (no format "
                             f"{FORMAT!r}; write one with Demonstrations.save)")
        if state.get("version") != VERSION:
            raise ValueError(f"{path}: version {state.get('version')!r}, this flyenv reads "
                             f"version {VERSION}")
        for name, width in (("obs", obs_dim), ("act", act_dim)):
            value = state.get(name)
            if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[1] != width:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(f"{path}: field {name!r} must be a (m, {width}) tensor for "
                                 f"this policy, got {shape}")
            if not torch.isfinite(value).all():
                raise ValueError(f"{path}: field {name!r} has non-finite values")
        if len(state["obs"]) != len(state["act"]) or len(state["obs"]) == 0:
            raise ValueError(f"{path}: fields 'obs' and 'act' must have the same number of "
                             f"rows, at least one; got {len(state['obs'])} and "
                             f"{len(state['act'])}")
        return cls(state["obs"].float().to(device), state["act"].float().to(device))


def demonstration_loss(dist: torch.distributions.Normal, act: torch.Tensor) -> torch.Tensor:
    """() the mean negative log-likelihood of `act` under `dist`, up to a constant.

    Args:
        dist: (batch, act_dim) the policy at the demonstrated states; only its mean carries a
            gradient (its std is detached: teaching an action must not shrink the exploration).
        act: (batch, act_dim) the demonstrated actions.
    """
    return action_nll(dist.mean, act, dist.stddev.detach()).mean()
