"""Picks an engine and device, and builds it: the one place that knows every engine class."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import mujoco
import torch

from flyenv.sim.engine import ENGINE_NAMES, WORLD_FIELDS, Engine, EngineName, model_field


def resolve_engine(engine: EngineName, device: str) -> tuple[str, torch.device]:
    """Picks the engine and torch device.

    `auto` means MuJoCo Warp on CUDA when there is a GPU, else C MuJoCo on the CPU.

    Raises:
        ValueError: for unknown names, or the `mujoco` engine with a CUDA device.
    """
    if engine not in ENGINE_NAMES:
        raise ValueError(f"engine must be one of {list(ENGINE_NAMES)}, got {engine!r}")
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
                cuda_graph: bool = True, deterministic: bool = False,
                world_fields: Sequence[str] = ()) -> Engine:
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
        world_fields: model fields each world holds its own values of, written at its resets
            (names from `flyenv.sim.engine.WORLD_FIELDS`); they start at the model's values.

    Returns:
        The engine.
    """
    if int(nworld) < 1 or int(nsubstep) < 1:
        raise ValueError(f"nworld and nsubstep must be >= 1, got {nworld}, {nsubstep}")
    name, torch_device = resolve_engine(engine, device)
    model = _copy_model(model)
    world_fields = tuple(dict.fromkeys(world_fields))
    for field in world_fields:
        if field not in WORLD_FIELDS:
            model_field(model, field)  # refuses unknown names
            raise ValueError(f"{field!r} is derived by the engine (mj_setConst) from the world "
                             f"fields; write those instead: {list(WORLD_FIELDS)}")
    if name == "mujoco":
        from flyenv.sim.mujoco_engine import MujocoEngine

        return MujocoEngine(model, int(nworld), int(nsubstep), nthread=nthread,
                            world_fields=world_fields)
    from flyenv.sim.warp_engine import WarpEngine

    return WarpEngine(model, int(nworld), int(nsubstep), torch_device, cuda_graph=cuda_graph,
                      deterministic=deterministic, world_fields=world_fields)


def _copy_model(model: mujoco.MjModel) -> mujoco.MjModel:
    # A diverged world must stay diverged (and be reported) rather than be silently put back to
    # qpos0 by mj_step's automatic reset, which MuJoCo Warp does not do anyway.
    model = copy.copy(model)
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_AUTORESET
    return model
