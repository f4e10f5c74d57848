"""Per-world model values of the env: each world's body (its clip's) and domain randomization.

`WorldModels` holds, for every model field that differs between the clips' bodies or that a
randomized parameter changes, one value per body, (nbody, ...) on the device. At a reset it
gathers each world's body's values and applies the world's samples (torch, no host read); the
engine writes them into the reset worlds (`Engine.reset(..., fields=...)`). `Pushes` applies
random horizontal forces to the thorax between resets.

What each randomized parameter writes, and the derived fields it keeps consistent:
    friction             geom_friction[:, 0] of every geom (sliding; torsional and rolling kept)
    mass_scale           body_mass, body_inertia, body_subtreemass (x s, exact);
                         body_invweight0, dof_invweight0 (/ s: exact for the bodies' masses,
                         approximate for the joints, whose armature does not scale; they only
                         set the constraints' softness)
    actuator_gain_scale  actuator_gainprm[:, 0] (kp) and actuator_biasprm[:, 1] (-kp) of the
                         42 joint actuators (the tarsi's adhesion keeps its gain)
    joint_damping_scale  dof_damping
    floor_slope_rad      opt.gravity, tilted from -z towards a random heading (same magnitude)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mujoco
import numpy as np
import torch

from flyenv.body import constants as c
from flyenv.envs.config import RandomizationConfig
from flyenv.sim.engine import WORLD_FIELDS, model_field

_MASS_FIELDS = ("body_mass", "body_inertia", "body_subtreemass")
_INVWEIGHT_FIELDS = ("body_invweight0", "dof_invweight0")
_FIELDS = {"friction": ("geom_friction",), "mass_scale": _MASS_FIELDS + _INVWEIGHT_FIELDS,
           "actuator_gain_scale": ("actuator_gainprm", "actuator_biasprm"),
           "joint_damping_scale": ("dof_damping",), "floor_slope_rad": ("opt.gravity",)}


def body_fields(models: Sequence[mujoco.MjModel]) -> tuple[str, ...]:
    """The per-world-capable model fields whose values differ between `models` (same sizes).

    Fields that differ but no engine holds per world (site_size: the touch sensors' zone in
    MuJoCo Warp 4.0; rendering-only and C-only constants) keep the first model's values.
    """
    return tuple(name for name in WORLD_FIELDS if any(
        not np.array_equal(model_field(models[0], name), model_field(m, name))
        for m in models[1:]))


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
        randomized = [f for name in config.randomized for f in _FIELDS[name]]
        self.fields = tuple(dict.fromkeys(body_fields(models) + tuple(randomized)))
        # float64 on the CPU, so the C engine gets its models' values exactly.
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        self._base = {name: torch.tensor(np.stack([model_field(m, name) for m in models]),
                                         dtype=dtype, device=device) for name in self.fields}
        names = list(config.randomized)
        if config.floor_slope_rad is not None:
            names.append("floor_heading_rad")
        self.samples = {name: torch.ones(num_envs, dtype=dtype, device=device)
                        for name in names}
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
        cfg, n = self.config, self._num_envs
        for name in self.samples:
            if name == "floor_heading_rad":
                low, high = 0.0, 2.0 * math.pi
            else:
                low, high = getattr(cfg, name)
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
        s = self.samples
        if "friction" in s:
            values["geom_friction"][..., 0] = s["friction"][:, None]
        if "mass_scale" in s:
            scale = s["mass_scale"]
            for name in _MASS_FIELDS + _INVWEIGHT_FIELDS:
                factor = scale if name in _MASS_FIELDS else 1.0 / scale
                shape = (-1,) + (1,) * (values[name].ndim - 1)
                values[name] = values[name] * factor.view(shape)
        if "actuator_gain_scale" in s:
            scale = s["actuator_gain_scale"][:, None]
            values["actuator_gainprm"][:, :c.NUM_DOFS, 0] *= scale
            values["actuator_biasprm"][:, :c.NUM_DOFS, 1] *= scale
        if "joint_damping_scale" in s:
            values["dof_damping"] = values["dof_damping"] * s["joint_damping_scale"][:, None]
        if "floor_slope_rad" in s:
            tilt, heading = s["floor_slope_rad"], s["floor_heading_rad"]
            g = values["opt.gravity"].norm(dim=1)
            values["opt.gravity"] = torch.stack(
                [-g * torch.sin(tilt) * torch.cos(heading),
                 -g * torch.sin(tilt) * torch.sin(heading), -g * torch.cos(tilt)], dim=1)
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
        self._thorax, self._n, self._device = thorax, num_envs, device
        self.force = torch.zeros(num_envs, 3, device=device)
        self.remaining = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.on = torch.zeros(num_envs, dtype=torch.bool, device=device)

    def reset(self, mask: torch.Tensor) -> None:
        """Ends the pushes of the worlds in `mask` (the engine's reset zeroes the force)."""
        self.remaining = torch.where(mask, 0, self.remaining)

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
