"""Per-world model values of the env: each world's body (its clip's) and domain randomization.

`WorldModels` holds, for every model field that differs between the clips' bodies or that a
randomized parameter changes, one value per body, (nbody, ...) on the device. At a reset it
gathers each world's body's values and applies the world's samples (torch, no host read); the
engine writes them into the reset worlds (`Engine.reset(..., fields=...)`). `Pushes` applies
random horizontal forces to the thorax between resets.

What each randomized parameter writes, and how: `flyenv.envs.randomized.PARAMETERS`; the engine
recomputes the constants MuJoCo derives from them (subtree masses, inverse weights).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import mujoco
import numpy as np
import torch

from flyenv.envs import randomized
from flyenv.envs.config import RandomizationConfig
from flyenv.sim.engine import WORLD_FIELDS, model_field

_PARAMETERS = {p.name: p for p in randomized.PARAMETERS}


def body_fields(models: Sequence[mujoco.MjModel]) -> tuple[str, ...]:
    """The per-world-capable model fields whose values differ between `models` (same sizes).

    Fields that differ but no engine holds per world (site_size: the touch sensors' zone in
    MuJoCo Warp 4.0; rendering-only and C-only constants) keep the first model's values; the
    constants derived from them (subtree masses, geom bounds, inverse weights) are the
    engine's to recompute (`flyenv.sim.engine.DERIVED_FIELDS`).
    """
    return tuple(name for name in WORLD_FIELDS if any(
        not np.array_equal(model_field(models[0], name), model_field(m, name))
        for m in models[1:]))


# Compile-time shortcuts: a frame whose flag says it shares its body's orientation (or its
# inertial frame's) is placed without its own quaternion.
_SAMEFRAME_FIELDS = ("body_sameframe", "geom_sameframe", "site_sameframe")


def shared_model(models: Sequence[mujoco.MjModel]) -> mujoco.MjModel:
    """A copy of `models[0]` for an engine whose worlds hold the others' `body_fields`.

    MuJoCo flags at compile time the frames that share their body's orientation (a planar
    tarsus's capsule, touch zone and inertia) and then never reads their quaternions, so a
    world given another body's quaternions (a tilted tarsus) would keep the first body's
    orientation. Where the bodies' flags differ they are cleared (mjSAMEFRAME_NONE: each frame
    placed from its own position and quaternion, right for every body).
    """
    model = copy.copy(models[0])
    for name in _SAMEFRAME_FIELDS:
        flags = getattr(model, name)
        for other in models[1:]:
            flags[flags != getattr(other, name)] = mujoco.mjtSameFrame.mjSAMEFRAME_NONE
    return model


class WorldModels:
    """Each world's model values: its body's, then its randomized parameters (module doc).

    Attributes:
        fields: the model fields the engine must hold per world.
        samples: per randomized parameter, (num_envs,) the value of each world's last reset
            (also "floor_heading_rad" with floor_slope_rad); reported in `info`.
    """

    def __init__(self, models: Sequence[mujoco.MjModel], config: RandomizationConfig,
                 num_envs: int, device: torch.device) -> None:
        """Stacks the bodies' values of the fields in use.

        Args:
            models: the compiled model of each body (index = `ReferenceBank.clip_body` value).
            config: the randomization (may be off).
            num_envs: number of worlds.
            device: torch device.
        """
        self.config = config
        self._parameters = [_PARAMETERS[name] for name in config.randomized]
        written = [w.field for p in self._parameters for w in p.writes]
        self.fields = tuple(dict.fromkeys(body_fields(models) + tuple(written)))
        # float64 on the CPU, so the C engine gets its models' values exactly.
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        self._base = {name: torch.tensor(np.stack([model_field(m, name) for m in models]),
                                         dtype=dtype, device=device) for name in self.fields}
        # Each parameter's range, then its companions' (drawn in this order).
        self._ranges = {p.name: getattr(config, p.name) for p in self._parameters}
        self._ranges.update({name: (low, high) for p in self._parameters
                             for name, low, high in p.companions})
        self.samples = {name: torch.ones(num_envs, dtype=dtype, device=device)
                        for name in self._ranges}
        self._num_envs, self._device, self._dtype = num_envs, device, dtype

    @property
    def active(self) -> bool:
        """Whether any field is per world (several bodies or some randomization)."""
        return bool(self.fields)

    def resample(self, mask: torch.Tensor, generator: torch.Generator) -> None:
        """Draws new samples for the worlds in `mask` (drawn for every world, kept for those).

        Args:
            mask: (num_envs,) bool.
            generator: the env's generator (so a seed gives the same samples).
        """
        n = self._num_envs
        for name, (low, high) in self._ranges.items():
            u = torch.rand(n, generator=generator, device=self._device, dtype=self._dtype)
            self.samples[name] = torch.where(mask, low + (high - low) * u, self.samples[name])

    def values(self, body: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every field's value per world, from its body and its current samples.

        Args:
            body: (num_envs,) int64 body index of each world.

        Returns:
            {field: (num_envs, *MjModel shape)}.
        """
        values = {name: base[body] for name, base in self._base.items()}
        for parameter in self._parameters:
            parameter.apply(values, self.samples)
        return values


class Pushes:
    """Random horizontal pushes on the thorax: start at random steps, last a fixed time.

    Attributes:
        force: (num_envs, 3) the force of each world's current or last push [µN].
        remaining: (num_envs,) int64 env steps left of each world's push (0: none on).
        on: (num_envs,) bool, whether a push acted during the last step.
    """

    def __init__(self, config: RandomizationConfig, num_envs: int, thorax: int,
                 control_dt_s: float, device: torch.device) -> None:
        """Sets up the push state (config.push_force_un must not be None)."""
        self._low, self._high = config.push_force_un
        self._prob = min(1.0, config.push_rate_hz * control_dt_s)
        self._steps = max(1, round(config.push_duration_s / control_dt_s))
        self._thorax, self._n, self._device, self._dt = thorax, num_envs, device, control_dt_s
        self.force = torch.zeros(num_envs, 3, device=device)
        self.remaining = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.on = torch.zeros(num_envs, dtype=torch.bool, device=device)

    def reset(self, mask: torch.Tensor) -> None:
        """Ends the pushes of the worlds in `mask` (the engine's reset zeroes the force)."""
        self.remaining = torch.where(mask, 0, self.remaining)

    def upcoming(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The push each world's next step applies (where none is on, one may still start).

        Returns:
            (num_envs, 3) the force in the world frame [µN] (zeros where none is on) and
            (num_envs,) how long it still acts [s].
        """
        on = self.remaining > 0
        return (torch.where(on[:, None], self.force, 0.0),
                self.remaining.to(torch.float32) * self._dt)

    def apply(self, generator: torch.Generator, xfrc_applied: torch.Tensor) -> None:
        """Starts pushes at random, writes the thorax forces of this step into the engine.

        Args:
            generator: the env's generator.
            xfrc_applied: (num_envs, nbody, 6) the engine's applied forces (written in place).
        """
        n, dev = self._n, self._device
        u = torch.rand(3, n, generator=generator, device=dev)
        start = (u[0] < self._prob) & (self.remaining == 0)
        magnitude = self._low + (self._high - self._low) * u[1]
        heading = 2.0 * math.pi * u[2]
        force = torch.stack([magnitude * torch.cos(heading), magnitude * torch.sin(heading),
                             torch.zeros_like(heading)], dim=1)
        self.force = torch.where(start[:, None], force, self.force)
        self.remaining = torch.where(start, self._steps, self.remaining)
        self.on = self.remaining > 0
        xfrc_applied[:, self._thorax, :3] = torch.where(self.on[:, None], self.force,
                                                        0.0).to(xfrc_applied)
        self.remaining = (self.remaining - 1).clamp(min=0)
