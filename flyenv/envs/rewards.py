"""Pure torch: the DeepMimic-style imitation terms, each declared once, and their sum.

A term is `weight * exp(-scale * err)` with `err` a mean of squares over what the clip has (a leg
missing from the recording counts in none of them). Each `RewardTerm` in `TERMS` carries its
error function, its default weight and scale, and when it applies; the config, the env, the
`info` keys and `max_reward` all follow from `TERMS`. Adding a term is one entry here (and its
test).

Every error takes a `RewardInputs` of (num_envs, ...) tensors and returns (num_envs,).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import torch

from flyenv.envs.observations import FlyState

Applies = Literal["always", "free", "root_motion"]


@dataclasses.dataclass(frozen=True)
class RewardInputs:
    """The simulated fly and the reference at the current frame, (num_envs, ...) each.

    Attributes:
        state: the simulated fly.
        ref_joint_pos: (num_envs, 42) reference angles [rad].
        ref_joint_vel: (num_envs, 42) reference angular velocities [rad/s].
        ref_claw_pos_b: (num_envs, 6, 3) reference claws in the thorax frame [mm].
        root_lin_vel: (num_envs, 3) the simulated thorax's velocity in the frame of
            `ref_root_lin_vel` [mm/s].
        ref_root_lin_vel: (num_envs, 3) reference thorax velocity [mm/s]: in the world for clips
            with root motion, in the thorax's heading frame for the odometry estimate of clips
            without (the simulated fly's heading then drifts from the reference's, so the
            comparison is in each fly's own heading frame).
        ref_gravity_b: (num_envs, 3) gravity's unit direction in the reference's thorax frame.
        ref_stance: (num_envs, 6) 1.0 where the reference's claw is in stance, 0.0 in swing.
        dof_mask: (num_envs, 42) 1.0 for DOFs the clip has.
        leg_mask: (num_envs, 6) 1.0 for legs the clip has.
        ref_claw_height: (num_envs, 6) the reference claws' height above the floor [mm]; None
            where nothing reads it.
        contact_swing_clearance_mm: `RewardConfig.contact_swing_clearance_mm` (0: the contact
            term counts every present leg).
    """

    state: FlyState
    ref_joint_pos: torch.Tensor
    ref_joint_vel: torch.Tensor
    ref_claw_pos_b: torch.Tensor
    root_lin_vel: torch.Tensor
    ref_root_lin_vel: torch.Tensor
    ref_gravity_b: torch.Tensor
    ref_stance: torch.Tensor
    dof_mask: torch.Tensor
    leg_mask: torch.Tensor
    ref_claw_height: torch.Tensor | None = None
    contact_swing_clearance_mm: float = 0.0


@dataclasses.dataclass(frozen=True)
class RewardTerm:
    """One imitation term.

    Attributes:
        name: the key in `RewardConfig.weights` / `scales` and in `info["reward/<name>"]`.
        error: (RewardInputs) -> (num_envs,) mean-square error.
        weight: default weight.
        scale: default `k` of `exp(-k * err)`, in 1 / (unit of err).
        applies: "always"; "free" (not for a tethered fly); "root_motion" (a free fly and clips
            with a root velocity: their root motion, or the odometry estimate of clips without).
        doc: what it compares, with units.
    """

    name: str
    error: Callable[[RewardInputs], torch.Tensor]
    weight: float
    scale: float
    applies: Applies
    doc: str

    def in_use(self, *, free: bool, has_root: bool) -> bool:
        """Whether the term applies to a free (or tethered) fly on clips with(out) a root velocity.

        `has_root` is true for clips with root motion or its odometry estimate.
        """
        if self.applies == "free":
            return free
        if self.applies == "root_motion":
            return free and has_root
        return True


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def _joint_pos(x: RewardInputs) -> torch.Tensor:
    return _masked_mean((x.state.joint_pos - x.ref_joint_pos) ** 2, x.dof_mask)


def _joint_vel(x: RewardInputs) -> torch.Tensor:
    return _masked_mean((x.state.joint_vel - x.ref_joint_vel) ** 2, x.dof_mask)


def _claw_pos(x: RewardInputs) -> torch.Tensor:
    return _masked_mean(((x.state.claw_pos_b - x.ref_claw_pos_b) ** 2).sum(dim=2), x.leg_mask)


def _orientation(x: RewardInputs) -> torch.Tensor:
    return ((x.state.gravity_b - x.ref_gravity_b) ** 2).sum(dim=1)


def _root_vel(x: RewardInputs) -> torch.Tensor:
    return ((x.root_lin_vel - x.ref_root_lin_vel) ** 2).mean(dim=1)


def _contact(x: RewardInputs) -> torch.Tensor:
    touching = x.state.touching().to(x.ref_stance.dtype)
    counted = x.leg_mask
    if x.contact_swing_clearance_mm > 0:  # a swing claw the clip carries this low may touch
        low_swing = (x.ref_stance < 0.5) & (x.ref_claw_height < x.contact_swing_clearance_mm)
        counted = counted * (~low_swing).to(counted.dtype)
    return _masked_mean((touching - x.ref_stance) ** 2, counted)


# The scales put each term's zero-residual replay of a real walk in the exponential's sensitive
# range (k * err of order 1; `exp(-k * err)` changes fastest in err's relative terms at
# k * err = 1). joint_pos's 2000 / rad^2 gives about exp(-0.5) at the df3d walk's replay error
# (2.5e-4 rad^2 mean square, 0.56 deg mean absolute); at the 40 used before, 0.5 deg more error
# cost 0.5% of the term, so a policy could trade joint accuracy for claw position for free.
# contact's 10 gives the df3d walk's replay a mean term of 0.64 (a step with one leg of six
# off its stance flags pays exp(-10 / 6) = 0.19). Its weight is 0: always reported, paid only when
# asked for. On the df3d walk, paying 0.3 of it made the policy stand on more feet and survive
# more pushes, but cost joint accuracy, and the survival did not carry over to the held-out part
# (README, "Datasets of clips").
TERMS: tuple[RewardTerm, ...] = (
    RewardTerm("joint_pos", _joint_pos, 0.5, 2000.0, "always",
               "joint angles against the reference's, over the present DOFs [rad^2]"),
    RewardTerm("joint_vel", _joint_vel, 0.1, 0.005, "always",
               "joint velocities against the reference's [(rad/s)^2]"),
    RewardTerm("claw_pos", _claw_pos, 0.2, 50.0, "always",
               "claws in the thorax frame against the reference's, present legs [mm^2]"),
    RewardTerm("orientation", _orientation, 0.1, 10.0, "free",
               "gravity's direction in the thorax frame against the reference's (pitch and "
               "roll: a walk recorded nose-up is imitated nose-up) [unitless]"),
    RewardTerm("root_vel", _root_vel, 0.1, 0.05, "root_motion",
               "thorax velocity against the reference's (in the world, or in the heading frame "
               "for odometry estimates) [(mm/s)^2]"),
    RewardTerm("contact", _contact, 0.0, 10.0, "free",
               "the tarsi touching the floor (`FlyState.touching`) against the "
               "reference's stance flags: the share of present legs that differ (with "
               "`contact_swing_clearance_mm`, of those not in swing below it) [unitless]"),
)


def values(terms: tuple[RewardTerm, ...], inputs: RewardInputs, scales: torch.Tensor,
           ) -> torch.Tensor:
    """`exp(-scale * err)` of every term at once, (nterm, num_envs) in [0, 1]; NaN is 0.

    Args:
        terms: the terms, in the order of the rows.
        inputs: the fly and the reference.
        scales: (nterm,) float32, each term's `k`, in the same order.
    """
    errors = torch.stack([t.error(inputs) for t in terms])
    return torch.nan_to_num(torch.exp(-scales[:, None] * errors), nan=0.0)
