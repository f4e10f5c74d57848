"""Pure torch: DeepMimic-style imitation terms, each `exp(-scale * err)` in [0, 1], and their sum.

Every term takes (num_envs, ...) tensors and returns (num_envs,). Errors are means of squares
over what the clip has (a leg missing from the recording counts in none of them).
"""

from __future__ import annotations

import torch


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def reward_joint_pos(joint_pos: torch.Tensor, ref_joint_pos: torch.Tensor,
                     dof_mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Joint angles against the reference: (num_envs, 42) each [rad]."""
    return torch.exp(-scale * _masked_mean((joint_pos - ref_joint_pos) ** 2, dof_mask))


def reward_joint_vel(joint_vel: torch.Tensor, ref_joint_vel: torch.Tensor,
                     dof_mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Joint velocities against the reference: (num_envs, 42) each [rad/s]."""
    return torch.exp(-scale * _masked_mean((joint_vel - ref_joint_vel) ** 2, dof_mask))


def reward_claw_pos(claw_pos_b: torch.Tensor, ref_claw_pos_b: torch.Tensor,
                    leg_mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Claws in the thorax frame against the reference: (num_envs, 6, 3) each [mm]."""
    err = ((claw_pos_b - ref_claw_pos_b) ** 2).sum(dim=2)
    return torch.exp(-scale * _masked_mean(err, leg_mask))


def reward_upright(gravity_b: torch.Tensor, scale: float) -> torch.Tensor:
    """Staying upright: gravity in the thorax frame, (num_envs, 3), against straight down."""
    err = gravity_b[:, 0] ** 2 + gravity_b[:, 1] ** 2 + (gravity_b[:, 2] + 1.0) ** 2
    return torch.exp(-scale * err)


def reward_root_vel(lin_vel_w: torch.Tensor, ref_lin_vel_w: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """Thorax velocity in the world against the reference's: (num_envs, 3) each [mm/s]."""
    return torch.exp(-scale * ((lin_vel_w - ref_lin_vel_w) ** 2).mean(dim=1))


def combine(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """(num_envs,) weighted sum of the terms; `weights` is keyed by the same names."""
    total = torch.zeros_like(next(iter(terms.values())))
    for name, value in terms.items():
        total = total + weights[name] * value
    return total
