"""One interface over the two physics engines: `nworld` copies of one model, state as torch.

An `Engine` owns `nworld` simulations of a compiled `mujoco.MjModel` and exposes their state as
torch tensors that alias the engine's own memory (created once, never reallocated):

    qpos       (nworld, nq)           joint positions (free root first, then the 42 angles)
    qvel       (nworld, nv)           joint velocities
    ctrl       (nworld, nu)           actuator controls (position targets [rad]); write into it
    site_xpos  (nworld, nsite, 3)     site positions in the world [mm]
    sensordata (nworld, nsensor)      sensor outputs
    xfrc_applied (nworld, nbody, 6)   Cartesian force [µN] and torque [µN·mm] applied to each
                                      body's center of mass, in the world frame; write into it

Every world may also run on its own values of some model fields (`world_fields`, chosen at
construction among `WORLD_FIELDS`): domain randomization, or several flies' bodies in one batch.
They are written only at a reset, for the worlds of its mask, and read back by `world_field`.
Where they include a field MuJoCo's constants derive from (body masses, inertias, positions,
geom sizes), each engine recomputes the derived constants of the reset worlds with its library's
own `set_const` (C MuJoCo's `Batch.set_const`, `mujoco_warp.set_const` inside the captured reset
graph), so no caller keeps them in step by hand.

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
from collections.abc import Callable, Mapping
from typing import Literal, get_args

import mujoco
import numpy as np
import torch

EngineName = Literal["auto", "mujoco", "warp"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)

# Model fields an engine can hold per world, on both engines (float fields that C MuJoCo's batch
# can expand and MuJoCo Warp 4.0 reads as `field[worldid % field.shape[0]]`). Names as in
# `mujoco.MjModel`; MjOption fields as "opt.<name>". A caller writes them at a reset.
WORLD_FIELDS: tuple[str, ...] = (
    "body_pos", "body_ipos", "body_iquat", "body_mass", "body_inertia", "dof_damping",
    "geom_size", "geom_pos", "geom_quat", "geom_friction", "site_pos", "site_quat",
    "actuator_gainprm", "actuator_biasprm", "opt.gravity")
# The world fields that MuJoCo's constants derive from (mj_setConst / mujoco_warp.set_const):
# when a world writes one, the engine recomputes that world's `DERIVED_FIELDS` itself.
SET_CONST_INPUTS: tuple[str, ...] = ("body_pos", "body_ipos", "body_iquat", "body_mass",
                                     "body_inertia", "geom_size")
# The constants the engines then hold per world (readable by `world_field`, never written):
# subtree masses and geom bounds (mujoco_warp's SetConstGroup.FIXED) and the inverse weights
# and actuator accelerations at qpos0 (INERT0), which set the constraints' softness.
DERIVED_FIELDS: tuple[str, ...] = ("body_subtreemass", "geom_rbound", "geom_aabb",
                                   "body_invweight0", "dof_invweight0", "actuator_acc0")


def model_field(model: mujoco.MjModel, name: str) -> np.ndarray:
    """One world's value of a model field: `model.<name>`, or `model.opt.<x>` for "opt.<x>".

    Raises:
        ValueError: for a name not in `WORLD_FIELDS` (or `DERIVED_FIELDS`).
    """
    if name not in WORLD_FIELDS + DERIVED_FIELDS:
        raise ValueError(f"{name!r} cannot be a per-world model field; the fields are "
                         f"{list(WORLD_FIELDS)}")
    if name.startswith("opt."):
        return np.asarray(getattr(model.opt, name[4:]), dtype=float)
    return np.asarray(getattr(model, name))


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
        world_fields: the model fields each world holds its own values of (see `WORLD_FIELDS`);
            until a world's first reset that writes them, they are `model`'s.
        derived_fields: the constants each world then holds its own values of, recomputed by
            the engine at each reset (`DERIVED_FIELDS`, or none when no world field feeds
            them).
        step_timer: None, or a profiling hook: `step()` then calls `step_timer(run)`, and the
            timer must call `run()` once (e.g. between two CUDA events); the physics of
            `env.step` can be timed this way without touching the engine.
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
    xfrc_applied: torch.Tensor
    world_fields: tuple[str, ...] = ()
    derived_fields: tuple[str, ...] = ()
    step_timer: Callable[[Callable[[], None]], None] | None = None

    def step(self) -> None:
        """Advances every world by `nsubstep` physics steps with `ctrl` held."""
        if self.step_timer is None:
            self._step()
        else:
            self.step_timer(self._step)

    @abc.abstractmethod
    def _step(self) -> None:
        """The engine's `step()` (without the timer)."""

    @abc.abstractmethod
    def reset(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor,
              ctrl: torch.Tensor, fields: Mapping[str, torch.Tensor] | None = None) -> None:
        """Resets the worlds in `mask` to the given state; the others are not touched.

        Everything else of a reset world (time, actuator state, warm start, applied forces) goes
        back to the model's defaults, and its derived fields are recomputed (with its new model
        values, and its derived constants, `derived_fields`, with them).

        Args:
            mask: (nworld,) bool, the worlds to reset.
            qpos: (nworld, nq) new positions (rows outside the mask are ignored).
            qvel: (nworld, nv) new velocities.
            ctrl: (nworld, nu) new controls.
            fields: new values of every field in `world_fields`, (nworld, *shape of the
                MjModel field) each (rows outside the mask are ignored); None keeps them.
        """

    @abc.abstractmethod
    def world_field(self, name: str) -> torch.Tensor:
        """The per-world values of a field in `world_fields` or `derived_fields` (read only).

        Returns:
            (nworld, *shape of the MjModel field), the engine's dtype (float64 for C MuJoCo,
            float32 for MuJoCo Warp).
        """

    @staticmethod
    def derived_for(world_fields: tuple[str, ...]) -> tuple[str, ...]:
        """The constants an engine recomputes per world for these world fields."""
        return DERIVED_FIELDS if set(world_fields) & set(SET_CONST_INPUTS) else ()

    def _check_fields(self, fields: Mapping[str, torch.Tensor] | None) -> None:
        # Host-side checks of names and shapes only (no device value is read).
        if fields is None:
            return
        if set(fields) != set(self.world_fields):
            raise ValueError(f"reset fields must be exactly the engine's world fields "
                             f"{sorted(self.world_fields)}, got {sorted(fields)}")
        for name, value in fields.items():
            shape = (self.nworld, *model_field(self.model, name).shape)
            if tuple(value.shape) != shape:
                raise ValueError(f"reset field {name!r} must have shape {shape}, got "
                                 f"{tuple(value.shape)}")

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
