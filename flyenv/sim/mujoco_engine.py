"""The CPU engine: C MuJoCo's `mujoco.batch.Batch`, many simulations of one model on threads.

`Batch.bind(field)` returns live (nsim, ...) numpy arrays; `torch.from_numpy` turns them into
tensors over the same memory, so the env reads and writes the simulations' state without copies.
State fields (qpos, qvel, ctrl) are views of the simulations' rows; derived fields (site_xpos,
sensordata) are refreshed in place by every call. All arrays are float64 (mjtNum).
Per-world model fields are the batch's expanded fields (`Batch.expand`), written at a reset;
`Batch.set_const` (mj_setConst per simulation) then recomputes the constants derived from them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import mujoco
import mujoco.batch
import numpy as np
import torch

from flyenv.sim.engine import Engine, model_field


class MujocoEngine(Engine):
    """`nworld` C MuJoCo simulations on a thread pool (see `flyenv.sim.engine.Engine`)."""

    name = "mujoco"
    reads_mask_on_host = True

    def __init__(self, model: mujoco.MjModel, nworld: int, nsubstep: int, *,
                 nthread: int = 0, world_fields: Sequence[str] = ()) -> None:
        self.model = model
        self.nworld = nworld
        self.nsubstep = nsubstep
        self.device = torch.device("cpu")
        # persistent: each simulation keeps its MjData, so warm starts carry over between calls
        # exactly as in one long mj_step loop.
        self._batch = mujoco.batch.Batch(model, nworld, nthread=nthread, persistent=True)
        self._batch.reset(keyframe=0 if model.nkey else -1)
        with warnings.catch_warnings():
            # Derived fields are read-only numpy arrays; torch warns about that, and the env
            # only reads them.
            warnings.simplefilter("ignore", UserWarning)
            self.qpos = torch.from_numpy(self._batch.bind("qpos"))
            self.qvel = torch.from_numpy(self._batch.bind("qvel"))
            self.ctrl = torch.from_numpy(self._batch.bind("ctrl"))
            self.site_xpos = torch.from_numpy(self._batch.bind("site_xpos"))
            self.sensordata = torch.from_numpy(self._batch.bind("sensordata"))
            # One count per constraint island; the fly's contacts and joints form one.
            self._solver_niter = torch.from_numpy(self._batch.bind("solver_niter"))
            self.xfrc_applied = torch.from_numpy(self._batch.bind("xfrc_applied"))
        # expand() starts every simulation at the model's value.
        self.world_fields = tuple(world_fields)
        self._world = {name: torch.from_numpy(self._batch.expand(name)).view(
            nworld, *model_field(model, name).shape) for name in self.world_fields}
        self.derived_fields = self.derived_for(self.world_fields)
        self._failed = torch.zeros(nworld, dtype=torch.bool)

    @property
    def nthread(self) -> int:
        """Threads of the batch's pool."""
        return self._batch.nthread

    def _step(self) -> None:
        self._batch.step(nstep=self.nsubstep)
        self._failed = torch.from_numpy(np.asarray(self._batch.status) != 0)

    def reset(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor,
              ctrl: torch.Tensor, fields: Mapping[str, torch.Tensor] | None = None) -> None:
        """Resets the worlds in `mask` (see `Engine.reset`)."""
        self._check_fields(fields)
        ids = torch.nonzero(mask.to("cpu"), as_tuple=True)[0]
        if len(ids) == 0:
            return
        ids_np = ids.numpy().astype(np.int32)
        self._batch.reset(ids_np, stage=mujoco.mjtStage.mjSTAGE_NONE)
        for name, value in (fields or {}).items():
            self._world[name][ids] = value[ids].to(self._world[name])
        if fields and self.derived_fields:
            self._batch.set_const(ids_np)
        self.qpos[ids] = qpos[ids].to(self.qpos)
        self.qvel[ids] = qvel[ids].to(self.qvel)
        self.ctrl[ids] = ctrl[ids].to(self.ctrl)
        self._batch.forward(ids_np)
        self._failed[ids] = False

    def world_field(self, name: str) -> torch.Tensor:
        """(nworld, ...) float64 per-world values of a world field (see `Engine.world_field`)."""
        if name in self.derived_fields:
            # Per simulation once set_const has run on any; the model's value until then.
            values = self._batch.expanded(name)
            shape = (self.nworld, *model_field(self.model, name).shape)
            if values is None:
                return torch.from_numpy(np.asarray(model_field(self.model, name))).expand(shape)
            return torch.from_numpy(values).view(shape)
        return self._world[name]

    def overflow(self) -> torch.Tensor:
        """(nworld,) bool: worlds whose last step failed (MuJoCo reported an error)."""
        return self._failed

    def solver_iterations(self) -> torch.Tensor:
        """(nworld,) int32: solver iterations of each world's last physics step (all islands)."""
        return self._solver_niter.sum(dim=1, dtype=torch.int32)

    def error(self, worldid: int) -> str:
        """MuJoCo's message for a failed world, or ''."""
        return self._batch.error(worldid)
