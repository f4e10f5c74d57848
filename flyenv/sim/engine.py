"""One interface over the two physics engines: `nworld` copies of one model, state as torch.

An `Engine` owns `nworld` simulations of a compiled `mujoco.MjModel` and exposes their state as
torch tensors that alias the engine's own memory (created once, never reallocated):

    qpos       (nworld, nq)           joint positions (free root first, then the 42 angles)
    qvel       (nworld, nv)           joint velocities
    ctrl       (nworld, nu)           actuator controls (position targets [rad]); write into it
    site_xpos  (nworld, nsite, 3)     site positions in the world [mm]
    sensordata (nworld, nsensor)      sensor outputs

`step()` advances every world by `nsubstep` physics steps with `ctrl` held; `reset(mask, ...)`
puts only the worlds in a boolean mask into a given state; `overflow()` flags the worlds whose
last step cannot be trusted; `solver_iterations()` tells how hard the constraint solver worked.
Derived fields (`site_xpos`, `sensordata`) describe the state before the last substep, as after
`mj_step`; after `reset` they describe the reset state.

Two engines implement it: `MujocoEngine` (C MuJoCo's `mujoco.batch.Batch` on a thread pool, the
CPU engine) and `WarpEngine` (MuJoCo Warp; CUDA, or the Warp CPU device for parity tests);
`flyenv.sim.factory.make_engine` picks and builds one.
"""

from __future__ import annotations

import abc
from typing import Literal, get_args

import mujoco
import torch

EngineName = Literal["auto", "mujoco", "warp"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)


class Engine(abc.ABC):
    """`nworld` simulations of one model with torch views of their state (see the module doc).

    Attributes:
        name: "mujoco" or "warp".
        model: the host model the engine simulates (automatic reset on divergence disabled, so a
            diverged world keeps its non-finite state until the caller resets it).
        nworld: number of simulations.
        nsubstep: physics steps per `step()` call.
        device: torch device of the state tensors.
        reads_mask_on_host: whether `reset` reads its mask on the host anyway (the C engine);
            then a caller may skip an empty reset, which elsewhere would cost a sync.
    """

    name: str
    reads_mask_on_host: bool
    model: mujoco.MjModel
    nworld: int
    nsubstep: int
    device: torch.device
    qpos: torch.Tensor
    qvel: torch.Tensor
    ctrl: torch.Tensor
    site_xpos: torch.Tensor
    sensordata: torch.Tensor

    @abc.abstractmethod
    def step(self) -> None:
        """Advances every world by `nsubstep` physics steps with `ctrl` held."""

    @abc.abstractmethod
    def reset(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor,
              ctrl: torch.Tensor) -> None:
        """Resets the worlds in `mask` to the given state; the others are not touched.

        Everything else of a reset world (time, actuator state, warm start, applied forces) goes
        back to the model's defaults, and its derived fields are recomputed.

        Args:
            mask: (nworld,) bool, the worlds to reset.
            qpos: (nworld, nq) new positions (rows outside the mask are ignored).
            qvel: (nworld, nv) new velocities.
            ctrl: (nworld, nu) new controls.
        """

    @abc.abstractmethod
    def overflow(self) -> torch.Tensor:
        """Worlds whose last `step()` overflowed a contact or constraint buffer, or failed.

        Returns:
            (nworld,) bool; the state of a flagged world is not trustworthy.
        """

    @abc.abstractmethod
    def solver_iterations(self) -> torch.Tensor:
        """Constraint-solver iterations of each world's last physics step.

        Returns:
            (nworld,) int32 (a view: read it before the next step).
        """
