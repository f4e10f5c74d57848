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
CPU engine) and `WarpEngine` (MuJoCo Warp; CUDA, or the Warp CPU device for parity tests).
"""

from __future__ import annotations

import abc
import copy
from typing import Literal

import mujoco
import numpy as np
import torch

EngineName = Literal["auto", "mujoco", "warp"]


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


def contact_capacity(model: mujoco.MjModel) -> tuple[int, int]:
    """Contacts and constraint rows one world can need at most: (nconmax, njmax).

    Counts the geom pairs that can collide (contype/conaffinity, different bodies, not parent and
    child unless the model allows it), with the most contacts each primitive pair generates
    (plane-capsule 2, plane-box 4, others 4 to be safe, sphere pairs 1), and the constraint rows
    of each contact (pyramidal cone: 2 (condim - 1), elliptic: condim) plus one row per limited
    joint and per equality.
    """
    geom = mujoco.mjtGeom
    per_pair = {frozenset({geom.mjGEOM_PLANE, geom.mjGEOM_CAPSULE}): 2,
                frozenset({geom.mjGEOM_PLANE, geom.mjGEOM_SPHERE}): 1,
                frozenset({geom.mjGEOM_SPHERE}): 1,
                frozenset({geom.mjGEOM_SPHERE, geom.mjGEOM_CAPSULE}): 1,
                frozenset({geom.mjGEOM_CAPSULE}): 2}
    elliptic = model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    nconmax = nrows = 0
    for i in range(model.ngeom):
        for j in range(i + 1, model.ngeom):
            bi, bj = model.geom_bodyid[i], model.geom_bodyid[j]
            if bi == bj or not ((model.geom_contype[i] & model.geom_conaffinity[j])
                                or (model.geom_contype[j] & model.geom_conaffinity[i])):
                continue
            pair = frozenset({int(model.geom_type[i]), int(model.geom_type[j])})
            ncon = per_pair.get(pair, 4)
            condim = int(max(model.geom_condim[i], model.geom_condim[j]))
            rows = condim if elliptic else max(1, 2 * (condim - 1))
            nconmax += ncon
            nrows += ncon * rows
    limited = int(np.count_nonzero(model.jnt_limited))
    return max(nconmax, 1), max(nrows + limited + model.neq * 6, 1)


def resolve_engine(engine: EngineName, device: str) -> tuple[str, torch.device]:
    """Picks the engine and torch device.

    `auto` means MuJoCo Warp on CUDA when there is a GPU, else C MuJoCo on the CPU.

    Raises:
        ValueError: for unknown names, or the `mujoco` engine with a CUDA device.
    """
    if engine not in ("auto", "mujoco", "warp"):
        raise ValueError(f"engine must be 'auto', 'mujoco' or 'warp', got {engine!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from err
    if torch_device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
        if torch_device.index is None:
            torch_device = torch.device("cuda", torch.cuda.current_device())
    elif torch_device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if engine == "auto":
        engine = "warp" if torch_device.type == "cuda" else "mujoco"
    if engine == "mujoco" and torch_device.type != "cpu":
        raise ValueError(f"engine 'mujoco' (C MuJoCo) runs on the CPU; device must be 'cpu', "
                         f"got {device!r} (use engine 'warp' on a GPU)")
    return engine, torch_device


def make_engine(model: mujoco.MjModel, nworld: int, *, nsubstep: int = 1,
                engine: EngineName = "auto", device: str = "auto", nthread: int = 0,
                cuda_graph: bool = True, deterministic: bool = False) -> Engine:
    """Builds an engine for `nworld` copies of `model`, all in the model's first keyframe.

    Args:
        model: the compiled model (it is copied; the caller's model is not changed).
        nworld: number of simulations (>= 1).
        nsubstep: physics steps per `step()` (the control decimation, >= 1).
        engine: "mujoco", "warp" or "auto" (see `resolve_engine`).
        device: "auto", "cpu" or "cuda[:N]"; "cpu" with engine "warp" runs MuJoCo Warp on the
            Warp CPU device (slow: for parity tests).
        nthread: threads of the C MuJoCo engine (0: all cores).
        cuda_graph: capture the substep loop and the masked reset as graphs (warp engine: CUDA
            graphs on a GPU, Warp's CPU graphs on the CPU); False runs the same calls one by one.
        deterministic: MuJoCo Warp's deterministic mode (warp engine; C MuJoCo always is).

    Returns:
        The engine.
    """
    if int(nworld) < 1 or int(nsubstep) < 1:
        raise ValueError(f"nworld and nsubstep must be >= 1, got {nworld}, {nsubstep}")
    name, torch_device = resolve_engine(engine, device)
    model = _copy_model(model)
    if name == "mujoco":
        from flyenv.sim.mujoco_engine import MujocoEngine

        return MujocoEngine(model, int(nworld), int(nsubstep), nthread=nthread)
    from flyenv.sim.warp_engine import WarpEngine

    return WarpEngine(model, int(nworld), int(nsubstep), torch_device, cuda_graph=cuda_graph,
                      deterministic=deterministic)


def _copy_model(model: mujoco.MjModel) -> mujoco.MjModel:
    # A diverged world must stay diverged (and be reported) rather than be silently put back to
    # qpos0 by mj_step's automatic reset, which MuJoCo Warp does not do anyway.
    model = copy.copy(model)
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_AUTORESET
    return model
