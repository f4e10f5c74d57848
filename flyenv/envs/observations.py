"""Pure torch: the fly's state in body terms, and the observation built from it.

Every function takes and returns (num_envs, ...) float32 tensors. Quaternions are (w, x, y, z).
"""

from __future__ import annotations

import dataclasses

import torch

# Touch force above which a tarsus counts as in contact [µN] (the fly weighs about 10 µN).
CONTACT_THRESHOLD = 0.05


@dataclasses.dataclass(frozen=True)
class FlyState:
    """The simulated fly, read from the engine once per step.

    Attributes:
        joint_pos: (num_envs, 42) [rad].
        joint_vel: (num_envs, 42) [rad/s].
        root_pos_w: (num_envs, 3) thorax position [mm].
        root_quat_w: (num_envs, 4) thorax orientation.
        lin_vel_w: (num_envs, 3) thorax velocity in the world frame [mm/s].
        ang_vel_b: (num_envs, 3) thorax angular velocity in the thorax frame [rad/s].
        claw_pos_b: (num_envs, 6, 3) claws in the thorax frame [mm].
        touch: (num_envs, 6) normal contact force on each tarsus [µN].
        gravity_b: (num_envs, 3) unit gravity direction in the thorax frame ((0, 0, -1)
            upright).
        lin_vel_b: (num_envs, 3) thorax velocity in the thorax frame [mm/s].
    """

    joint_pos: torch.Tensor
    joint_vel: torch.Tensor
    root_pos_w: torch.Tensor
    root_quat_w: torch.Tensor
    lin_vel_w: torch.Tensor
    ang_vel_b: torch.Tensor
    claw_pos_b: torch.Tensor
    touch: torch.Tensor
    gravity_b: torch.Tensor
    lin_vel_b: torch.Tensor

    def touching(self) -> torch.Tensor:
        """(num_envs, 6) bool: each tarsus touches something (touch above CONTACT_THRESHOLD)."""
        return self.touch > CONTACT_THRESHOLD

    def finite(self) -> torch.Tensor:
        """(num_envs,) bool: the world's state is sound.

        Every value must be finite and below MuJoCo's `mjMAXVAL` (1e10), past which MuJoCo
        itself calls a simulation unstable (and warns without failing it).
        """
        parts = (self.joint_pos, self.joint_vel, self.root_pos_w, self.root_quat_w,
                 self.lin_vel_w, self.ang_vel_b)
        return (torch.cat(parts, dim=1).abs() < MJ_MAXVAL).all(dim=1)


MJ_MAXVAL = 1e10  # MuJoCo's bound for "NaN, Inf or huge value" (mj_checkPos / mj_checkVel)


def quat_rotate(quat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """Rotates (..., 3) vectors by (..., 4) unit quaternions."""
    w, xyz = quat[..., :1], quat[..., 1:]
    t = 2.0 * torch.cross(xyz, vec, dim=-1)
    return vec + w * t + torch.cross(xyz, t, dim=-1)


def quat_rotate_inverse(quat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """Rotates (..., 3) vectors by the inverse of (..., 4) unit quaternions (world to body)."""
    conj = torch.cat([quat[..., :1], -quat[..., 1:]], dim=-1)
    return quat_rotate(conj, vec)


def rotate_yaw(vec: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors turned by (...) angles [rad] about z."""
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    x, y, z = vec.unbind(-1)
    return torch.stack([cos * x - sin * y, sin * x + cos * y, z], dim=-1)


def heading_velocity(quat: torch.Tensor, vel_w: torch.Tensor) -> torch.Tensor:
    """(..., 3) world velocities in the heading frame of (..., 4) thorax orientations (w, x, y, z).

    The heading frame turns with the thorax's yaw only (its x axis is the thorax's projected on
    the floor), the frame of the stance-leg odometry (`flyenv.motion.grounding.odometry`).
    """
    w, x, y, z = quat.unbind(-1)
    yaw = torch.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return rotate_yaw(vel_w, -yaw)


def observation_layout(future_frames: int, sense_load: bool = False) -> dict[str, slice]:
    """Where each part of the observation sits: {name: slice}, in order.

    Parts: `joint_pos` (42) [rad], `joint_vel` (42) [rad/s], `gravity_b` (3, gravity direction in
    the thorax frame), `lin_vel_b` (3) thorax velocity in the thorax frame [mm/s], `ang_vel_b` (3)
    thorax angular velocity [rad/s], `contact` (6) tarsus contact flags, with `sense_load`
    `tarsus_load` (6) the normal force on each tarsus over the body's weight (a fly's
    campaniform sensilla sense load; the adhesion pressing a stance tarsus to the floor counts
    too, so standing they add up to several weights), `future_joint_pos`
    (K x 42) the next K reference frames minus the current angles [rad] (0 for legs missing from
    the clip), `phase` (1) the clip's phase in [0, 1].
    """
    load = {"tarsus_load": 6} if sense_load else {}
    return _slices({"joint_pos": 42, "joint_vel": 42, "gravity_b": 3, "lin_vel_b": 3,
                    "ang_vel_b": 3, "contact": 6, **load, "future_joint_pos": 42 * future_frames,
                    "phase": 1})


def observation_dim(future_frames: int, sense_load: bool = False) -> int:
    """Length of the observation vector for `future_frames` reference frames."""
    return layout_size(observation_layout(future_frames, sense_load))


def layout_size(layout: dict[str, slice]) -> int:
    """Length of the vector a layout (`observation_layout`, `privileged_layout`) describes."""
    return next(reversed(layout.values())).stop


def _slices(sizes: dict[str, int]) -> dict[str, slice]:
    # The parts side by side, in the order given: {name: slice}.
    layout, start = {}, 0
    for name, size in sizes.items():
        layout[name] = slice(start, start + size)
        start += size
    return layout


def build_observation(state: FlyState, future_joint_pos: torch.Tensor, dof_mask: torch.Tensor,
                      phase: torch.Tensor, weight_un: float | None = None) -> torch.Tensor:
    """The policy's observation, its parts in `observation_layout` order.

    Args:
        state: the fly.
        future_joint_pos: (num_envs, K, 42) reference angles of the next K frames [rad].
        dof_mask: (num_envs, 42) 1.0 for DOFs the clip has.
        phase: (num_envs,) current frame / last frame of the clip.
        weight_un: the fly's weight [µN]; given, the observation senses load (`tarsus_load`,
            `observation_layout(K, sense_load=True)`).

    Returns:
        (num_envs, obs_dim) float32.
    """
    ahead = (future_joint_pos - state.joint_pos[:, None]) * dof_mask[:, None]
    parts = {"joint_pos": state.joint_pos, "joint_vel": state.joint_vel,
             "gravity_b": state.gravity_b, "lin_vel_b": state.lin_vel_b,
             "ang_vel_b": state.ang_vel_b, "contact": state.touching().float(),
             "future_joint_pos": ahead.flatten(1), "phase": phase[:, None]}
    if weight_un is not None:
        parts["tarsus_load"] = state.touch / weight_un
    layout = observation_layout(future_joint_pos.shape[1], sense_load=weight_un is not None)
    return torch.cat([parts[name] for name in layout], dim=1)


def privileged_layout(randomized: tuple[str, ...]) -> dict[str, slice]:
    """Where each part of the privileged observation sits: {name: slice}, in order.

    What a simulator knows and a fly's senses do not, for an asymmetric critic (the policy never
    reads it): `push_force_h` (2) the push that will act on the thorax next step, in the heading
    frame (x forward, y left) [µN], 0 when none is on; `push_left_s` (1) how long it still acts
    [s]; `thorax_height_mm` (1) the thorax's height [mm]; then one entry per name of
    `randomized` (`RandomizationConfig.randomized` and companions, the env's
    `info["randomization/<name>"]`): each world's sample.
    """
    return _slices({"push_force_h": 2, "push_left_s": 1, "thorax_height_mm": 1,
                    **{f"randomization/{name}": 1 for name in randomized}})


def build_privileged(state: FlyState, push_force_w: torch.Tensor, push_left_s: torch.Tensor,
                     samples: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The privileged observation, its parts in `privileged_layout` order.

    Args:
        state: the fly.
        push_force_w: (num_envs, 3) the push of the next step in the world frame [µN] (zeros
            where none is on).
        push_left_s: (num_envs,) how long it still acts [s].
        samples: each randomized sample, (num_envs,), in `privileged_layout` order.

    Returns:
        (num_envs, privileged_dim) float32; a diverged world's row is zeros.
    """
    force_h = heading_velocity(state.root_quat_w, push_force_w)[:, :2]
    parts = [force_h, push_left_s[:, None], state.root_pos_w[:, 2:],
             *(s.to(torch.float32)[:, None] for s in samples)]
    out = torch.cat(parts, dim=1)
    sound = (out.abs() < MJ_MAXVAL).all(dim=1, keepdim=True)
    return torch.where(sound, out, 0.0)
