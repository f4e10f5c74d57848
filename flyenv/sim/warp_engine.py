"""The GPU engine: MuJoCo Warp, `nworld` worlds of one model in one `mujoco_warp.Data`.

The whole substep loop is captured once as a graph and `step()` only launches it, on torch's
current stream: no host synchronization, no allocation, and the launch is ordered with the torch
work around it. The masked reset is a second graph, whose work runs only when some world is
reset (a conditional node on a device-side count). Warp 1.19 captures and replays graphs on its
CPU device too, so the CPU tests run the very graphs a GPU runs (`cuda_graph=False` runs the same
calls uncaptured).

Contact and constraint buffers are sized from the model (`contact_capacity`) rather than from
MuJoCo Warp's generic defaults, and the per-world `Data.overflow` bits are cleared at the start
of every step and reported by `overflow()`: an overflowing world is flagged, never silently wrong.
MuJoCo Warp drops contacts past its shared contact pool without a bit; a kernel after every
substep compares the pool's count with its size and flags that too.

Per-world model fields: MuJoCo Warp reads every batchable model array as
`field[worldid % field.shape[0]]`, so a field becomes per-world by giving it nworld rows
(`put_model(batch_sizes=...)`) before the graphs are captured; the reset graph then writes the
reset worlds' rows in place (a masked copy from a staging buffer the caller fills, like the
state) and, where they feed MuJoCo's constants, runs `mujoco_warp.set_const` on the device.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp

from flyenv.sim import warp_kernels as kernels
from flyenv.sim.engine import Engine, model_field

# Overflow bits that mean lost contacts or constraints. Hitting the solver's iteration limit
# (ITERATIONS, LS_ITERATIONS) is not an overflow: the step is still a valid, less converged one.
_BUFFER_OVERFLOW = int(mjw.OverflowType.NEFC | mjw.OverflowType.NJMAX_NNZ
                       | mjw.OverflowType.BROADPHASE | mjw.OverflowType.NARROWPHASE
                       | mjw.OverflowType.CCD | mjw.OverflowType.NVMAX)
_warned_no_mempool: set[str] = set()
_SET_CONST_GROUPS = int(mjw.SetConstGroup.FIXED | mjw.SetConstGroup.INERT0)


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


class WarpEngine(Engine):
    """`nworld` MuJoCo Warp worlds on one device (see `flyenv.sim.engine.Engine`).

    Attributes:
        use_cuda_graph: whether `step()` and `reset()` launch captured graphs (CUDA graphs on a
            GPU, Warp's CPU graphs on the Warp CPU device).
        deterministic: whether MuJoCo Warp runs in its deterministic mode (contacts and
            constraint rows in a fixed order, float atomics in a fixed order), so that two runs
            on a GPU are bit-identical.
        nconmax: contacts allocated per world (one pool of `nconmax * nworld` for all worlds).
        njmax: constraint rows allocated per world.
    """

    name = "warp"
    reads_mask_on_host = False

    def __init__(self, model: mujoco.MjModel, nworld: int, nsubstep: int,
                 device: torch.device, *, cuda_graph: bool = True,
                 deterministic: bool = False, world_fields: Sequence[str] = ()) -> None:
        self.model = model
        self.nworld = nworld
        self.nsubstep = nsubstep
        self.device = device
        self.deterministic = bool(deterministic)
        wp.init()
        self._wp_device = wp.get_device("cpu" if device.type == "cpu" else f"cuda:{device.index}")
        self.nconmax, self.njmax = contact_capacity(model)

        data = mujoco.MjData(model)
        if model.nkey:
            mujoco.mj_resetDataKeyframe(model, data, 0)
        mujoco.mj_forward(model, data)
        # Conditional graph nodes (the solver's loop, the reset's branch) need CUDA 12.4+; on
        # older drivers every world runs every solver iteration and every reset does the work.
        self._conditional = not self._wp_device.is_cuda or wp.is_conditional_graph_supported()
        with wp.ScopedDevice(self._wp_device):
            # MuJoCo Warp never resets a diverged world on its own and refuses the flag that
            # turns C MuJoCo's automatic reset off.
            device_model = copy.copy(model)
            device_model.opt.disableflags &= ~int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)
            self.world_fields = tuple(world_fields)
            self.derived_fields = self.derived_for(self.world_fields)
            # The per-world fields (and the constants set_const derives from them) get nworld
            # rows from put_model itself; MjOption fields are not batchable there (tiled below).
            batched = [f for f in self.world_fields + self.derived_fields
                       if not f.startswith("opt.")]
            self._m = mjw.put_model(device_model, batch_sizes=dict.fromkeys(batched, nworld))
            # Overflows are reported per world through overflow(); printing from kernels would
            # only repeat it on stdout.
            self._m.opt.warn_overflow = 0
            self._m.opt.graph_conditional = self._conditional
            self._m.opt.deterministic = (mjw.DeterminismType.ALL if self.deterministic
                                         else mjw.DeterminismType.NONE)
            self._d = mjw.put_data(model, data, nworld=nworld, nconmax=self.nconmax,
                                   njmax=self.njmax)
            # Inputs of the masked reset: the env fills them, one graph (or call) consumes them.
            self._reset_mask = wp.zeros(nworld, dtype=bool)
            self._reset_count = wp.zeros(1, dtype=wp.int32)
            self._reset_qpos = wp.zeros_like(self._d.qpos)
            self._reset_qvel = wp.zeros_like(self._d.qvel)
            self._reset_ctrl = wp.zeros_like(self._d.ctrl)
            self._kept_sites = wp.zeros_like(self._d.site_xpos)
            self._kept_sensors = wp.zeros_like(self._d.sensordata)
            self._kept_overflow = wp.zeros_like(self._d.overflow)
            self._world = {name: self._per_world(name) for name in self.world_fields}
            self._world_staging = {name: wp.zeros_like(a) for name, a in self._world.items()}
        # put_data and the buffers above were written on Warp's stream; everything after runs on
        # torch's, so wait for them once here.
        wp.synchronize_device(self._wp_device)
        # The site positions as flat float rows, for the masked copies.
        self._site_rows, self._kept_site_rows = (kernels.flat(a) for a in (self._d.site_xpos,
                                                                          self._kept_sites))

        # Zero-copy views, created once.
        self.qpos = wp.to_torch(self._d.qpos)
        self.qvel = wp.to_torch(self._d.qvel)
        self.ctrl = wp.to_torch(self._d.ctrl)
        self.site_xpos = wp.to_torch(self._d.site_xpos)
        self.sensordata = wp.to_torch(self._d.sensordata)
        self.xfrc_applied = wp.to_torch(self._d.xfrc_applied)
        self._overflow = wp.to_torch(self._d.overflow)
        self._solver_niter = wp.to_torch(self._d.solver_niter)
        self._reset_inputs = [wp.to_torch(a) for a in (self._reset_mask, self._reset_qpos,
                                                        self._reset_qvel, self._reset_ctrl)]
        shapes = {name: (nworld, *model_field(model, name).shape) for name in self.world_fields}
        self._world_views = {name: wp.to_torch(a).view(shapes[name])
                             for name, a in self._world.items()}
        self._world_inputs = {name: wp.to_torch(a).view(shapes[name])
                              for name, a in self._world_staging.items()}
        self._world_rows = [(kernels.flat(self._world_staging[name]), kernels.flat(a))
                            for name, a in self._world.items()]
        self._derived_views = {name: wp.to_torch(self._per_world(name)).view(
            nworld, *model_field(model, name).shape) for name in self.derived_fields}

        self.use_cuda_graph = bool(cuda_graph) and self._graphs_possible()
        self._graph = self._reset_graph = None
        self._compile()

    def _per_world(self, name: str) -> wp.array:
        # The model's (nworld, ...) array of a field; an MjOption field's (1, ...) array is
        # tiled to (nworld, ...) and put in the option's place.
        owner, attr = (self._m.opt, name[4:]) if name.startswith("opt.") else (self._m, name)
        array = getattr(owner, attr)
        if getattr(array.dtype, "_wp_scalar_type_", array.dtype) != wp.float32:
            raise ValueError(f"per-world field {name!r}: float arrays only, got {array.dtype}")
        if array.shape[0] != self.nworld:
            array = wp.array(np.repeat(array.numpy()[:1], self.nworld, axis=0), dtype=array.dtype)
            setattr(owner, attr, array)
        return array

    def _graphs_possible(self) -> bool:
        # MuJoCo Warp allocates inside its step (solver scratch), which a CUDA graph can only
        # capture from a memory pool; without one every step would run uncaptured, with a host
        # synchronization per solver iteration. Say so once per device rather than run slowly.
        if not self._wp_device.is_cuda or wp.is_mempool_enabled(self._wp_device):
            return True
        if self._wp_device.alias not in _warned_no_mempool:
            _warned_no_mempool.add(self._wp_device.alias)
            warnings.warn(
                f"flyenv: Warp's memory pool is off on {self._wp_device.alias}, so the physics "
                f"cannot be captured as a CUDA graph and runs uncaptured: every step launches "
                f"hundreds of kernels from Python and the solver synchronizes the host at each "
                f"iteration (many times slower). Turn the pool on with "
                f"wp.set_mempool_enabled('{self._wp_device.alias}', True) before building the "
                f"env, or check that the driver supports memory pools.",
                RuntimeWarning, stacklevel=4)
        return False

    def _step_impl(self) -> None:
        m, d = self._m, self._d
        d.overflow.zero_()
        for _ in range(self.nsubstep):
            mjw.step(m, d)
            kernels.flag_contact_overflow(d.nacon, d.ncollision, d.naconmax,
                                          int(mjw.OverflowType.NARROWPHASE),
                                          int(mjw.OverflowType.BROADPHASE), d.overflow)

    def _reset_impl(self) -> None:
        # The reset work runs only when some world is in the mask (a conditional graph node on
        # a device-side count: no host read), so a step without resets costs one tiny kernel.
        kernels.count_true(self._reset_mask, self._reset_count)
        if self._conditional:
            wp.capture_if(self._reset_count, on_true=self._reset_worlds)
        else:
            self._reset_worlds()

    def _reset_worlds(self) -> None:
        # mujoco_warp.reset_data clears the masked worlds, a kernel writes their new state, one
        # forward recomputes derived fields, and the derived fields the engine exposes are put
        # back for the other worlds, so they stay exactly what their last step left.
        m, d, mask = self._m, self._d, self._reset_mask
        for staged, rows in self._world_rows:
            kernels.masked_set(mask, staged, rows)
        mjw.reset_data(m, d, reset=mask)
        kernels.masked_set(mask, self._reset_qpos, d.qpos)
        kernels.masked_set(mask, self._reset_qvel, d.qvel)
        kernels.masked_set(mask, self._reset_ctrl, d.ctrl)
        # reset_data has zeroed the reset worlds' overflow bits: keeping them all as they are
        # now leaves those at 0 and the others as their last step left them.
        wp.copy(self._kept_sites, d.site_xpos)
        wp.copy(self._kept_sensors, d.sensordata)
        wp.copy(self._kept_overflow, d.overflow)
        if self.derived_fields:
            # MuJoCo Warp's own set_const recomputes the constants derived from the new fields
            # (every world's: the others' come out as they were). FIXED: subtree masses, geom
            # bounds; INERT0: inverse weights and actuator_acc0 at qpos0. KIN0's outputs
            # (tendon/equality/camera/light references) are unused here. The state it leaves is
            # recomputed by the forward below.
            mjw.set_const(m, d, groups=_SET_CONST_GROUPS, restore=False)
        mjw.forward(m, d)
        kernels.masked_keep(mask, self._kept_site_rows, self._site_rows)
        kernels.masked_keep(mask, self._kept_sensors, d.sensordata)
        wp.copy(d.overflow, self._kept_overflow)

    def _compile(self) -> None:
        # Kernels compile on their first launch, which must not happen inside a capture: run
        # one step on a saved state, put the state back, run the reset's count and its work with
        # an all-False mask (which changes nothing), then capture both (on Warp's own stream: a
        # capture cannot use the legacy default stream torch may be on).
        saved = [t.clone() for t in self._state()]
        with self._on_torch_stream():
            mjw.step(self._m, self._d)
            for view, value in zip(self._state(), saved, strict=True):
                view.copy_(value)
            mjw.forward(self._m, self._d)
            self._d.overflow.zero_()
            kernels.flag_contact_overflow(self._d.nacon, self._d.ncollision, self._d.naconmax,
                                          0, 0, self._d.overflow)
            self._reset_impl()
            self._reset_worlds()
        if self.use_cuda_graph:
            if self._wp_device.is_cuda:
                torch.cuda.synchronize(self.device)
            self._graph = self._capture(self._step_impl)
            self._reset_graph = self._capture(self._reset_impl)
            wp.synchronize_device(self._wp_device)

    def _capture(self, function: Callable[[], None]) -> Any:
        # Python's garbage collector running inside a capture can free a stale graph's memory
        # and corrupt the one being recorded (upstream: CUDA error 901): no collection here.
        collecting = gc.isenabled()
        gc.disable()
        try:
            with wp.ScopedDevice(self._wp_device), wp.ScopedCapture(
                    device=self._wp_device) as capture:
                function()
        finally:
            if collecting:
                gc.enable()
        return capture.graph

    def _state(self) -> list[torch.Tensor]:
        d = self._d
        return [wp.to_torch(a) for a in (d.qpos, d.qvel, d.act, d.ctrl, d.time,
                                          d.qacc_warmstart, d.qfrc_applied)]

    @contextlib.contextmanager
    def _on_torch_stream(self) -> Iterator[None]:
        # Warp launches go on torch's current stream, so they are ordered with the torch work
        # around them (reading obs, writing ctrl) with no host synchronization.
        with wp.ScopedDevice(self._wp_device):
            if not self._wp_device.is_cuda:
                yield
                return
            torch_stream = wp.stream_from_torch(torch.cuda.current_stream(self.device))
            with wp.ScopedStream(torch_stream, sync_enter=False):
                yield

    def _step(self) -> None:
        # Advances every world by `nsubstep` physics steps (one graph launch).
        with self._on_torch_stream():
            if self._graph is not None:
                wp.capture_launch(self._graph)
            else:
                self._step_impl()

    def reset(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor,
              ctrl: torch.Tensor, fields: Mapping[str, torch.Tensor] | None = None) -> None:
        """Resets the worlds in `mask` without reading the mask on the host (see `Engine.reset`).

        The inputs are copied into the engine's reset buffers (torch, on torch's stream), then
        one graph launch (or the same calls uncaptured) does the rest.
        """
        self._check_fields(fields)
        for buffer, value in zip(self._reset_inputs, (mask, qpos, qvel, ctrl), strict=True):
            buffer.copy_(value)
        for name, buffer in self._world_inputs.items():
            # Without new values the graph copies the current ones back: no change.
            buffer.copy_(self._world_views[name] if fields is None else fields[name])
        with self._on_torch_stream():
            if self._reset_graph is not None:
                wp.capture_launch(self._reset_graph)
            else:
                self._reset_impl()

    def world_field(self, name: str) -> torch.Tensor:
        """(nworld, ...) float32 per-world values of a world field (see `Engine.world_field`)."""
        if name in self._derived_views:
            return self._derived_views[name]
        return self._world_views[name]

    def overflow(self) -> torch.Tensor:
        """(nworld,) bool: worlds whose contact or constraint buffers overflowed last step."""
        return (self._overflow & _BUFFER_OVERFLOW) != 0

    def overflow_bits(self) -> torch.Tensor:
        """(nworld,) int32: MuJoCo Warp's `OverflowType` bits of each world's last step.

        Unlike `overflow()`, these include the solver's iteration limits (ITERATIONS,
        LS_ITERATIONS), which leave a valid but less converged step.
        """
        return self._overflow

    def solver_iterations(self) -> torch.Tensor:
        """(nworld,) int32: constraint-solver iterations of each world's last substep."""
        return self._solver_niter
