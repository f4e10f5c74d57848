"""Going on from a policy whose observation lacks parts this run's has (a new sense).

A checkpoint's agent and normalizer are laid out in its observation's parts
(`flyenv.envs.observations.observation_layout`). `widen_inputs` lays them out in a layout that
holds every one of those parts and more: the old columns move to where their parts now sit, and
the new columns get zero first-layer weights (in the policy and the critic) and the identity
normalization (mean 0, variance 1). The widened policy acts and values exactly as the old one
did whatever the new parts read, and training finds the new inputs' use from there (Net2Net's
function-preserving surgery, Chen et al. 2016, applied to inputs). The normalizer's count is
shared by all columns, so a new column's statistics move as slowly as the old ones': a sense
meant to go on this way should come scaled to order 1 (`tarsus_load` is a share of the body's
weight).
"""

from __future__ import annotations

from typing import Any

import torch

from flyenv.envs import observations

# The first layer of each network in `flyenv.apps.train.Agent`'s state dict: (hidden, inputs).
FIRST_LAYERS = ("actor.0.weight", "critic.0.weight")


def column_map(old: dict[str, slice], new: dict[str, slice]) -> torch.Tensor:
    """(old_dim,) int64: the column of the new layout each column of the old one moves to.

    Raises:
        ValueError: naming the part, when a part of the old layout is missing from the new one
            or has another size there.
    """
    columns = []
    for name, part in old.items():
        if name not in new:
            raise ValueError(f"the observation part {name!r} of the checkpoint's policy is not "
                             f"in this run's observation ({list(new)})")
        moved = new[name]
        if moved.stop - moved.start != part.stop - part.start:
            raise ValueError(f"the observation part {name!r} has {part.stop - part.start} "
                             f"columns in the checkpoint's policy, {moved.stop - moved.start} in "
                             f"this run's")
        columns.append(torch.arange(moved.start, moved.stop))
    return torch.cat(columns)


def widen_inputs(weights: dict[str, torch.Tensor], obs_norm: dict[str, torch.Tensor],
                 old: dict[str, slice], new: dict[str, slice],
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An agent's state dict and its normalizer's `state_dict()` laid out in a wider layout.

    Args:
        weights: `Agent.state_dict()` of a policy observing `old` (its critic may read a
            privileged part after the observation: those columns keep their order after it).
        obs_norm: its normalizer's statistics, (old_dim [+ privileged_dim],) mean and var.
        old: the policy's observation layout.
        new: this run's, holding every part of `old` (same sizes) and more.

    Returns:
        (weights, obs_norm) for the `new` layout; every other tensor is passed on as it is.

    Raises:
        ValueError: as `column_map`.
    """
    old_dim, new_dim = max(s.stop for s in old.values()), max(s.stop for s in new.values())
    moved = column_map(old, new)

    def spread(columns: torch.Tensor, fill: float) -> torch.Tensor:
        # (..., old_dim + extra) -> (..., new_dim + extra): the observation's columns moved,
        # the `extra` (privileged) ones after them in order, the new ones `fill`.
        extra = columns.shape[-1] - old_dim
        to = torch.cat([moved, new_dim + torch.arange(extra)]).to(columns.device)
        wide = columns.new_full((*columns.shape[:-1], new_dim + extra), fill)
        wide[..., to] = columns
        return wide

    out = dict(weights) | {key: spread(weights[key], 0.0) for key in FIRST_LAYERS}
    return out, {**obs_norm, "mean": spread(obs_norm["mean"], 0.0),
                 "var": spread(obs_norm["var"], 1.0)}


def sensing_load(state: dict[str, Any], future_frames: int) -> dict[str, Any]:
    """A `flyenv train` checkpoint (the dict it holds) widened to sense the tarsi's load.

    Its agent and normalizer are laid out for `observation_layout(future_frames,
    sense_load=True)` (`widen_inputs`) and its args say `sense_load`; a checkpoint that already
    senses load comes back as it is. The policy acts and values as before.

    Raises:
        ValueError: as `column_map`.
    """
    args = state.get("args", {})
    if args.get("sense_load", False):
        return state
    old = observations.observation_layout(future_frames)
    new = observations.observation_layout(future_frames, sense_load=True)
    agent, obs_norm = widen_inputs(state["agent"], state["obs_norm"], old, new)
    return {**state, "agent": agent, "obs_norm": obs_norm,
            "args": {**args, "sense_load": True}}
