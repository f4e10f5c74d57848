"""Pure torch: why an episode ends, each cause declared once.

A `Termination` carries its value function, its limit (from the env's config) and when it
applies; a world ends where a cause's value exceeds its limit. The env's `info` keys
(`termination/<name>`), the limits it applies and the order it stacks them in all follow from
`TERMS`, so a cause's value and its limit cannot be paired wrongly. Adding a cause is one entry
here (and a config field if its limit is the user's to set).

Every value takes a `TerminationInputs` of (num_envs, ...) tensors and returns (num_envs,) float;
NaN compares False with any limit, so a diverged world is flagged by `nonfinite` alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import torch

from flyenv.envs.observations import FlyState

Applies = Literal["always", "free", "root_motion"]


@dataclasses.dataclass(frozen=True)
class TerminationInputs:
    """The simulated fly and the reference at the current frame, (num_envs, ...) each.

    Attributes:
        state: the simulated fly.
        overflow: (num_envs,) bool, the engine flagged the world's last step (lost contacts or
            constraints, or a failed step).
        ref_joint_pos: (num_envs, 42) reference angles [rad].
        ref_root_pos_w: (num_envs, 3) reference thorax position [mm].
        dof_mask: (num_envs, 42) 1.0 for DOFs the clip has.
        dof_count: (num_envs,) number of DOFs the clip has.
    """

    state: FlyState
    overflow: torch.Tensor
    ref_joint_pos: torch.Tensor
    ref_root_pos_w: torch.Tensor
    dof_mask: torch.Tensor
    dof_count: torch.Tensor


@dataclasses.dataclass(frozen=True)
class Termination:
    """One cause of an episode's end.

    Attributes:
        name: the key in `info["termination/<name>"]`.
        value: (TerminationInputs) -> (num_envs,) float; the world ends where it exceeds the
            limit.
        limit: (config) -> the limit, from a `FlyImitationConfig` (or any object with its
            fields).
        applies: "always"; "free" (not for a tethered fly: never ends it otherwise);
            "root_motion" (a free fly on clips with root motion).
        voids_reward: the step's reward is 0 where this cause fires (its state is no number).
        doc: what it checks, with units.
    """

    name: str
    value: Callable[[TerminationInputs], torch.Tensor]
    limit: Callable[[Any], float]
    applies: Applies
    doc: str
    voids_reward: bool = False

    def limit_for(self, config: Any, *, free: bool, has_root: bool) -> float:
        """The limit applied: `limit(config)`, or inf where the cause does not apply."""
        if self.applies == "free" and not free:
            return math.inf
        if self.applies == "root_motion" and not (free and has_root):
            return math.inf
        return float(self.limit(config))


def _nonfinite(x: TerminationInputs) -> torch.Tensor:
    return (~x.state.finite()).to(torch.float32)


def _overflow(x: TerminationInputs) -> torch.Tensor:
    return x.overflow.to(torch.float32)


def _fall(x: TerminationInputs) -> torch.Tensor:
    return -x.state.root_pos_w[:, 2]  # height < min  <=>  -height > -min


def _tilt(x: TerminationInputs) -> torch.Tensor:
    # acos(-gravity_b z) > max  <=>  gravity_b z > -cos(max)
    return x.state.gravity_b[:, 2]


def _joint_error(x: TerminationInputs) -> torch.Tensor:
    error = ((x.state.joint_pos - x.ref_joint_pos).abs() * x.dof_mask).sum(dim=1)
    return error / x.dof_count


def _drift(x: TerminationInputs) -> torch.Tensor:
    return (x.state.root_pos_w[:, :2] - x.ref_root_pos_w[:, :2]).norm(dim=1)


TERMS: tuple[Termination, ...] = (
    Termination("nonfinite", _nonfinite, lambda cfg: 0.0, "always",
                "the state has NaN/inf or values past MuJoCo's limit", voids_reward=True),
    Termination("overflow", _overflow, lambda cfg: 0.0, "always",
                "the engine flagged the step (contact or constraint buffers overflowed)"),
    Termination("fall", _fall, lambda cfg: -cfg.min_height_mm, "free",
                "the thorax is lower than min_height_mm [mm]"),
    Termination("tilt", _tilt, lambda cfg: -math.cos(cfg.max_tilt_rad), "free",
                "the thorax tilts further than max_tilt_rad from upright [rad]"),
    Termination("joint_error", _joint_error, lambda cfg: cfg.max_joint_error_rad, "always",
                "the mean absolute joint error exceeds max_joint_error_rad [rad]"),
    Termination("drift", _drift, lambda cfg: cfg.max_root_drift_mm, "root_motion",
                "the thorax is further than max_root_drift_mm from the reference's, "
                "horizontally [mm]"),
)
# The causes' names, in the order the env stacks them.
TERMINATIONS: tuple[str, ...] = tuple(t.name for t in TERMS)


def ended(terms: tuple[Termination, ...], inputs: TerminationInputs, limits: torch.Tensor,
          ) -> torch.Tensor:
    """Which causes end which worlds.

    Args:
        terms: the causes.
        inputs: the fly and its reference.
        limits: (len(terms), 1) each cause's limit (`Termination.limit_for`).

    Returns:
        (len(terms), num_envs) bool, rows in `terms` order.
    """
    return torch.stack([t.value(inputs) for t in terms]) > limits
