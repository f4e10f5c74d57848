"""The randomized model parameters, each declared once: its range, what it writes and how.

A `RandomizedParameter` carries everything about one parameter of domain randomization: its
name (the `RandomizationConfig` field and the `info["randomization/<name>"]` key, both made from
`PARAMETERS`), the values its range may take, the model fields it writes (engine world fields,
`flyenv.sim.engine.WORLD_FIELDS`) and how it writes each (set or scale a column, or a function),
as mjlab declares each randomization with the fields it needs. Adding one is one entry here.
The engine recomputes the constants MuJoCo derives from what it writes (mj_setConst).

Every write maps a field's per-world values (num_envs, *MjModel shape) and the samples
{name: (num_envs,)} to new values; nothing reads a device value on the host.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch

from flyenv.body import constants as c

Apply = Callable[[torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Write:
    """How a parameter's sample changes one model field.

    Attributes:
        field: the model field (a name of `flyenv.sim.engine.WORLD_FIELDS`).
        how: "set" (the field's entries become the sample), "scale" (are multiplied by it), or
            a function (values, sample, samples) -> new values.
        column: with "set" / "scale", the index on the field's last axis they act on (e.g. 0:
            the sliding friction of `geom_friction`); None: every entry.
    """

    field: str
    how: Literal["set", "scale"] | Apply
    column: int | None = None

    def apply(self, values: torch.Tensor, sample: torch.Tensor,
              samples: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The field's new values, (num_envs, *shape), from its current ones."""
        if callable(self.how):
            return self.how(values, sample, samples)
        target = values if self.column is None else values[..., self.column]
        factor = sample.view((-1,) + (1,) * (target.ndim - 1))
        new = factor.expand_as(target) if self.how == "set" else target * factor
        if self.column is None:
            return new.clone()
        values = values.clone()
        values[..., self.column] = new
        return values


@dataclasses.dataclass(frozen=True)
class RandomizedParameter:
    """One randomized parameter (a `RandomizationConfig` field of the same name).

    Attributes:
        name: the config field and `info` key.
        doc: what it changes, with units (the config's documentation of the field).
        writes: the model fields it changes, and how.
        domain: (lowest low, bound on high): a range (low, high) must have low >= domain[0] and
            high < domain[1].
        domain_text: the domain as the error message says it.
        companions: other samples drawn with it for each world, (name, low, high), uniform and
            reported in `info` too (e.g. the heading of a slope).
    """

    name: str
    doc: str
    writes: tuple[Write, ...]
    domain: tuple[float, float] = (1e-9, math.inf)
    domain_text: str = "(0, inf)"
    companions: tuple[tuple[str, float, float], ...] = ()

    def apply(self, values: dict[str, torch.Tensor], samples: Mapping[str, torch.Tensor],
              ) -> None:
        """Writes this parameter's samples into `values` ({field: (num_envs, ...)})."""
        for write in self.writes:
            values[write.field] = write.apply(values[write.field], samples[self.name], samples)


def _tilt_gravity(gravity: torch.Tensor, tilt: torch.Tensor,
                  samples: Mapping[str, torch.Tensor]) -> torch.Tensor:
    # Gravity (num_envs, 3) tilted by `tilt` [rad] from -z towards the sampled heading.
    g, heading = gravity.norm(dim=1), samples["floor_heading_rad"]
    return torch.stack([-g * torch.sin(tilt) * torch.cos(heading),
                        -g * torch.sin(tilt) * torch.sin(heading), -g * torch.cos(tilt)], dim=1)


def _joint_gain(column: int) -> Apply:
    # Scales `column` of the 42 joint actuators' rows (num_envs, nu, 10); the tarsi's adhesion
    # actuators after them keep their gain.
    def scale(values: torch.Tensor, sample: torch.Tensor,
              samples: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = values.clone()
        values[:, :c.NUM_DOFS, column] *= sample[:, None]
        return values
    return scale


PARAMETERS: tuple[RandomizedParameter, ...] = (
    RandomizedParameter(
        "friction", "sliding friction coefficient of every geom, floor and fly (MuJoCo takes "
        "the larger of a contact's two geoms', so this is the contacts' friction).",
        (Write("geom_friction", "set", column=0),)),
    RandomizedParameter(
        "mass_scale", "factor on every body's mass and inertia (the whole fly at once).",
        (Write("body_mass", "scale"), Write("body_inertia", "scale"))),
    RandomizedParameter(
        "actuator_gain_scale", "factor on the position actuators' kp, on the gain and on its "
        "bias term (-kp) together, so a control stays a target angle [rad] (the 42 joint "
        "actuators; the tarsi's adhesion keeps its gain).",
        (Write("actuator_gainprm", _joint_gain(0)), Write("actuator_biasprm", _joint_gain(1)))),
    RandomizedParameter(
        "joint_damping_scale", "factor on every leg joint's damping.",
        (Write("dof_damping", "scale"),)),
    RandomizedParameter(
        "floor_slope_rad", "tilt of gravity from vertical [rad] towards a uniformly random "
        "heading (`randomization/floor_heading_rad`): a fly on a slope, the floor staying "
        "level.", (Write("opt.gravity", _tilt_gravity),), domain=(0.0, math.pi / 2),
        domain_text="[0, pi/2)", companions=(("floor_heading_rad", 0.0, 2.0 * math.pi),)),
)
