"""Frozen configuration of the imitation environment: physics, actions, rewards, termination."""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from gymnasium.vector import AutoresetMode

from flyenv import _registration
from flyenv.body.mjcf import ModelOptions
from flyenv.envs import randomized, rewards
from flyenv.envs.starts import AdaptiveStartsConfig
from flyenv.motion.augment import AugmentConfig
from flyenv.motion.format import ReferenceMotion
from flyenv.sim.engine import ENGINE_NAMES, EngineName

ReferenceSpec = str | os.PathLike | ReferenceMotion


def _term_names() -> tuple[str, ...]:
    # Read from rewards.TERMS when needed, so a term declared there is all a config knows.
    return tuple(term.name for term in rewards.TERMS)


# The imitation terms, in the order they are reported (declared in flyenv.envs.rewards).
REWARD_TERMS = _term_names()
# The env step the policy sees unless control_decimation says otherwise (500 Hz) [s].
DEFAULT_CONTROL_DT_S = 2e-3
# Who drives the tarsi's adhesion actuators (a model with adhesion, the default): "reference"
# sets them to the clip's stance flags of the next frame (1 in stance, 0 in swing), so the
# policy's actions stay the 42 joints'; "policy" adds six actions in [0, 1] after the 42.
ADHESION_CONTROLS = ("reference", "policy")
_AUTORESET = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP,
              "disabled": AutoresetMode.DISABLED}


def _default_weights() -> dict[str, float]:
    return {term.name: term.weight for term in rewards.TERMS}


def _default_scales() -> dict[str, float]:
    return {term.name: term.scale for term in rewards.TERMS}


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """DeepMimic-style imitation reward: `sum_k weights[k] * exp(-scales[k] * err_k)`.

    The terms, their errors (means of squares), default weights and scales and when they apply
    are declared in `flyenv.envs.rewards.TERMS`: joint_pos, joint_vel and claw_pos always,
    orientation and contact (weight 0 by default: reported, not paid) for a free fly, root_vel
    for a free fly imitating a clip with root motion. The env's `max_reward` is the sum of the
    weights of the terms in use.

    Attributes:
        weights: weight of each term, keyed by the terms' names (terms left out keep
            their default).
        scales: the `k` of each term's `exp(-k * err)`, keyed likewise.
        contact_swing_clearance_mm: the contact term leaves out a leg in swing whose reference
            claw is lower than this above the floor [mm] (0: every present leg counts). The
            stance classifier calls a claw within `flyenv.motion.stance.FLOOR_TOL_MM` (0.1) of
            the floor on it and flags it swing by its forward speed alone; such a claw may
            brush the floor in the simulated fly, whose thorax sags under its weight.
    """

    weights: dict[str, float] = dataclasses.field(default_factory=_default_weights)
    scales: dict[str, float] = dataclasses.field(default_factory=_default_scales)
    contact_swing_clearance_mm: float = 0.0

    def __post_init__(self) -> None:
        clearance = self.contact_swing_clearance_mm
        if (isinstance(clearance, bool) or not isinstance(clearance, numbers.Real)
                or not 0 <= clearance < math.inf):  # as clip_weights are checked
            raise ValueError(f"RewardConfig.contact_swing_clearance_mm must be a finite number "
                             f">= 0 [mm], got {clearance!r}")
        object.__setattr__(self, "contact_swing_clearance_mm", float(clearance))
        for field in ("weights", "scales"):
            value = dict(getattr(self, field))
            names = _term_names()
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(f"RewardConfig.{field}: unknown terms {unknown}; the terms are "
                                 f"{list(names)}")
            defaults = _default_weights() if field == "weights" else _default_scales()
            full = {**defaults, **value}
            bad = {k: v for k, v in full.items() if not (float(v) >= 0)}
            if bad:
                raise ValueError(f"RewardConfig.{field} must be >= 0, got {bad}")
            object.__setattr__(self, field, {k: float(full[k]) for k in names})


Range = tuple[float, float]


def _declared_ranges(cls: type) -> type:
    # One `Range | None` field per `randomized.PARAMETERS` entry, first and in their order, and
    # their documentation in the class's, so a parameter is declared in one place.
    cls.__annotations__ = {**{p.name: "Range | None" for p in randomized.PARAMETERS},
                           **cls.__annotations__}
    for parameter in randomized.PARAMETERS:
        setattr(cls, parameter.name, None)
    lines = [textwrap.fill(f"{p.name}: {p.doc}", 92, initial_indent=" " * 8,
                           subsequent_indent=" " * 12) for p in randomized.PARAMETERS]
    cls.__doc__ = (cls.__doc__ or "").replace("{ranges}", "\n".join(lines).strip())
    return cls


@dataclasses.dataclass(frozen=True)
@_declared_ranges
class RandomizationConfig:
    """Domain randomization, off by default: physics sampled per world at each of its resets.

    Each range is (low, high), sampled uniformly from the env's seeded generator for every world
    at every reset (the reset worlds keep theirs), and reported per world in `info` as
    `randomization/<name>`; None leaves that part of the model as it is. The ranges are declared
    in `flyenv.envs.randomized.PARAMETERS` (with the model fields each writes).

    Attributes:
        {ranges}
        push_force_un: magnitude of a random horizontal push on the thorax [µN] (the fly weighs
            about 10 µN); None: no pushes.
        push_duration_s: how long each push lasts [s].
        push_rate_hz: mean pushes per second of simulated time (a push starts at an env step
            with probability rate * control step, unless one is on).
    """

    RANGES: ClassVar[tuple[str, ...]] = tuple(p.name for p in randomized.PARAMETERS)

    push_force_un: Range | None = None
    push_duration_s: float = 0.02
    push_rate_hz: float = 2.0

    def __post_init__(self) -> None:
        domains = {p.name: (p.domain, p.domain_text) for p in randomized.PARAMETERS}
        domains["push_force_un"] = ((0.0, math.inf), "[0, inf)")
        for name, ((lowest, above), text) in domains.items():
            value = getattr(self, name)
            if value is None:
                continue
            low, high = _range(name, value)
            if low < lowest or high >= above:
                raise ValueError(f"RandomizationConfig.{name} must lie in {text}, got "
                                 f"{value!r}")
            object.__setattr__(self, name, (low, high))
        if not (self.push_duration_s > 0 and self.push_rate_hz >= 0):
            raise ValueError(f"RandomizationConfig: push_duration_s must be > 0 and push_rate_hz "
                             f">= 0, got {self.push_duration_s!r}, {self.push_rate_hz!r}")

    @property
    def randomized(self) -> tuple[str, ...]:
        """The names of the model ranges that are on (not None), in `RANGES` order."""
        return tuple(name for name in self.RANGES if getattr(self, name) is not None)


def _range(name: str, value: Any) -> Range:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"RandomizationConfig.{name} must be a (low, high) pair or None, got "
                         f"{value!r}") from err
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"RandomizationConfig.{name} must have finite low <= high, got "
                         f"{value!r}")
    return low, high


@dataclasses.dataclass(frozen=True)
class FlyImitationConfig:
    """Everything that defines a `FlyImitation-v0` environment (see `flyenv.envs` for its use).

    Attributes:
        reference: the clip(s) to imitate: a path to a `ReferenceMotion` .npz, a folder of them
            (a dataset: its `*.npz`, sorted; unreadable files left out with a warning), a
            `ReferenceMotion`, or a tuple of them; None for the embedded tripod gait (2 s). Each
            world simulates the body its clip was made for (clips of several bodies must share
            the joint bounds).
        augment: more clips made from every reference clip (`flyenv.motion.augment`): its
            mirror image and copies played at other speeds, e.g. `{"mirror": True, "speeds":
            (0.8, 1.25)}`; None (the default) adds none.
        clip_weights: how often each clip's episodes start, relative to the others, by clip name
            (file stem, `tripod_gait` for the embedded gait, `<clip>_mirrored` and
            `<clip>_speed<s>` for augmented ones); clips left out weigh 1, and a clip of weight
            w starts as often as w copies of it would, with uniform and adaptive starts alike
            (0: loaded, never started). E.g. `{"tripod_gait": 4}` keeps a clip's share of the
            starts when four clips are made from another. Names no clip has are refused when the
            env loads its clips.
        tethered: fix the thorax in space (no floor) instead of walking freely.
        physics_dt_s: physics step [s]. FlyGym's is 1e-4; see the README's Timing for what the
            default is and how it was chosen.
        model_options: other `flyenv.body.mjcf.ModelOptions` fields of the simulated model, by
            name (e.g. `{"solver_iterations": 50}`); the defaults when empty.
        control_decimation: physics steps per env step (policy rate = 1 / (dt * decimation));
            None: `DEFAULT_CONTROL_DT_S / physics_dt_s`, a 500 Hz policy whatever the step (a
            step that does not divide 2 ms then needs an explicit decimation). The resolved
            number is `substeps`.
        action_mode: "residual": actions are offsets [rad] added to the reference angles of the
            next frame; "absolute": actions are the joint targets [rad].
        adhesion_control: who commands the tarsi's adhesion (`ADHESION_CONTROLS`; the model
            has adhesion unless `model_options` sets `adhesion_gain_uN` to 0): "reference"
            (default) the clip's stance flags of the next frame, the actions staying 42;
            "policy" six more actions in [0, 1] after the 42, one per tarsus (LEGS order).
        residual_range_rad: half-width of the residual action box [rad].
        future_frames: reference frames ahead of the current one in the observation (>= 1).
        sense_load: the observation also carries the load on each tarsus (`tarsus_load`: its
            normal force over the fly's nominal weight, `total_mass_g` of the model options, so
            a fly randomized heavier senses more; `flyenv.envs.observations.observation_layout`),
            what a fly's campaniform sensilla sense; off by default (the observation of every
            earlier policy).
        random_start: reference-state initialization: each episode starts at a random frame of
            its clip; False starts every episode at frame 0 (evaluation, replay).
        adaptive_starts: sample random starts more where episodes fail, per clip and phase bin,
            with a uniform floor (`flyenv.envs.starts`); None (default): uniform starts. Off by
            default: the env's task then stays one fixed distribution (scores comparable across
            runs and policies); PPO turns it on with `--adaptive-starts`. A dict of its fields
            is accepted.
        reward: the imitation reward.
        randomization: domain randomization (friction, masses, gains, damping, slope, pushes);
            off by default. A dict of its fields is accepted.
        min_height_mm: terminate when the thorax is lower than this [mm] (free fly only).
        max_tilt_rad: terminate when the thorax tilts further than this from upright [rad].
        max_joint_error_rad: terminate when the mean absolute joint error exceeds this [rad].
        max_root_drift_mm: terminate when the thorax is further than this from the reference's
            (horizontal distance, references with root motion only) [mm].
        max_episode_steps: truncate after this many env steps (the clip's end truncates too).
        device: "auto" (CUDA when present), "cpu" or "cuda[:N]".
        engine: "auto" (MuJoCo Warp on CUDA, C MuJoCo on CPU), "warp" or "mujoco".
        autoreset_mode: "next_step" (gymnasium's default), "same_step" or "disabled".
        invalid_actions: what to do with NaN/inf actions: "zero" replaces them by 0 (the reference
            in residual mode, clipped to the joint range in absolute mode) without a host sync and
            flags the world in `info["invalid_action"]`; "raise" raises ValueError (one host
            sync per step: for debugging).
        nthread: threads of the C MuJoCo engine (0: all cores).
        render_mode: None or "rgb_array": `render()` returns one RGB frame per world in
            `render_worlds` (MuJoCo's offscreen renderer, camera tracking the thorax).
        render_worlds: the worlds `render()` draws (copied to the host; the rest never are).
        render_size: (width, height) of a frame [px].
        render_ghost: where `render()` draws the reference pose as a translucent blue fly:
            "overlay" on the simulated fly (the reference's orientation and joint angles with its
            thorax at the fly's thorax, so the legs are compared in place), "beside" it (2.5 mm
            to its left) or "off". True and False (the older bool form) mean "overlay" and "off".
        cuda_graph: capture the physics substeps and the masked reset as graphs (warp engine:
            CUDA graphs on a GPU, Warp's CPU graphs on the Warp CPU device).
        deterministic: run MuJoCo Warp in its deterministic mode (fixed contact and constraint
            order, ordered float atomics), so that two runs on a GPU with the same seed and
            actions are bit-identical; off, CUDA's float atomics make runs differ in the last
            bits. C MuJoCo is always deterministic.
    """

    reference: ReferenceSpec | tuple[ReferenceSpec, ...] | None = None
    augment: AugmentConfig | None = None
    clip_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    tethered: bool = False
    physics_dt_s: float = 1e-4
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    control_decimation: int | None = None
    action_mode: Literal["residual", "absolute"] = "residual"
    adhesion_control: Literal["reference", "policy"] = "reference"
    residual_range_rad: float = 0.5
    future_frames: int = 3
    sense_load: bool = False
    random_start: bool = True
    adaptive_starts: AdaptiveStartsConfig | None = None
    reward: RewardConfig = dataclasses.field(default_factory=RewardConfig)
    randomization: RandomizationConfig = dataclasses.field(default_factory=RandomizationConfig)
    min_height_mm: float = 0.45
    max_tilt_rad: float = 1.0
    max_joint_error_rad: float = 0.6
    max_root_drift_mm: float = 5.0
    max_episode_steps: int = _registration.MAX_EPISODE_STEPS
    device: str = "auto"
    engine: EngineName = "auto"
    autoreset_mode: Literal["next_step", "same_step", "disabled"] = "next_step"
    invalid_actions: Literal["zero", "raise"] = "zero"
    nthread: int = 0
    render_mode: Literal["rgb_array"] | None = None
    render_worlds: tuple[int, ...] = (0,)
    render_size: tuple[int, int] = (480, 360)
    render_ghost: Literal["overlay", "beside", "off"] | bool = "overlay"
    cuda_graph: bool = True
    deterministic: bool = False

    def __post_init__(self) -> None:
        for name, kind in (("reward", RewardConfig), ("randomization", RandomizationConfig),
                           ("adaptive_starts", AdaptiveStartsConfig),
                           ("augment", AugmentConfig)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                check_keys(f"FlyImitationConfig.{name}", value, kind)
                object.__setattr__(self, name, kind(**value))
        object.__setattr__(self, "model_options", dict(self.model_options))
        if not isinstance(self.clip_weights, Mapping):
            raise ValueError(f"FlyImitationConfig.clip_weights must map clip names to weights, "
                             f"got {self.clip_weights!r}")
        bad = {k: v for k, v in self.clip_weights.items()
               if isinstance(v, bool) or not isinstance(v, numbers.Real)
               or not 0 <= v < math.inf}
        if bad:
            raise ValueError(f"FlyImitationConfig.clip_weights must be finite numbers >= 0, got "
                             f"{bad}")
        object.__setattr__(self, "clip_weights", {str(k): float(v)
                                                  for k, v in self.clip_weights.items()})
        self.physics_options()  # refuses unknown or bad fields now, not at env construction
        if isinstance(self.autoreset_mode, AutoresetMode):
            modes = {mode: name for name, mode in _AUTORESET.items()}
            object.__setattr__(self, "autoreset_mode", modes[self.autoreset_mode])
        if isinstance(self.reference, list):
            object.__setattr__(self, "reference", tuple(self.reference))
        _choice("action_mode", self.action_mode, ("residual", "absolute"))
        _choice("adhesion_control", self.adhesion_control, ADHESION_CONTROLS)
        if self.adhesion_control == "policy" and not self.physics_options().adhesion:
            raise ValueError("FlyImitationConfig.adhesion_control='policy' needs a model with "
                             "adhesion, but model_options sets adhesion_gain_uN to "
                             f"{self.model_options.get('adhesion_gain_uN')!r} (> 0 expected)")
        _choice("autoreset_mode", self.autoreset_mode, tuple(_AUTORESET))
        _choice("engine", self.engine, ENGINE_NAMES)
        _choice("invalid_actions", self.invalid_actions, ("zero", "raise"))
        if not isinstance(self.sense_load, bool):
            raise ValueError(f"FlyImitationConfig.sense_load must be a bool, got "
                             f"{self.sense_load!r}")
        if isinstance(self.render_ghost, bool):
            object.__setattr__(self, "render_ghost", "overlay" if self.render_ghost else "off")
        _choice("render_ghost", self.render_ghost, ("overlay", "beside", "off"))
        for name in ("physics_dt_s", "residual_range_rad", "min_height_mm", "max_tilt_rad",
                     "max_joint_error_rad", "max_root_drift_mm"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"FlyImitationConfig.{name} must be a number > 0, got {value!r}")
        for name in ("control_decimation", "future_frames", "max_episode_steps"):
            value = getattr(self, name)
            if name == "control_decimation" and value is None:
                continue
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"FlyImitationConfig.{name} must be an int >= 1, got {value!r}")
        _ = self.substeps  # a step that does not divide 2 ms is refused here
        if self.render_mode not in (None, "rgb_array"):
            raise ValueError(f"FlyImitationConfig.render_mode must be None or 'rgb_array', got "
                             f"{self.render_mode!r}")
        object.__setattr__(self, "render_worlds", tuple(int(w) for w in self.render_worlds))
        if not self.render_worlds or min(self.render_worlds) < 0:
            raise ValueError(f"FlyImitationConfig.render_worlds must be world indices >= 0, got "
                             f"{self.render_worlds!r}")
        if not (isinstance(self.nthread, int) and self.nthread >= 0):
            raise ValueError(f"FlyImitationConfig.nthread must be an int >= 0, got "
                             f"{self.nthread!r}")

    def physics_options(self) -> ModelOptions:
        """The `ModelOptions` of the simulated model (`physics_dt_s` and `model_options`)."""
        fields = {f.name for f in dataclasses.fields(ModelOptions)} - {"timestep_s"}
        unknown = sorted(set(self.model_options) - fields)
        if unknown:
            raise ValueError(f"FlyImitationConfig.model_options: unknown fields {unknown}; the "
                             f"fields are {sorted(fields)} (the step is physics_dt_s)")
        options = ModelOptions(timestep_s=self.physics_dt_s, **self.model_options)
        if options.actuator_timeconst_s > 0:
            # The engines' resets do not set the filter's state (it would restart at 0 rad).
            raise ValueError("FlyImitationConfig.model_options: actuator_timeconst_s > 0 is not "
                             "supported by the env yet (the engines do not reset the "
                             "actuators' filter state); it is a model option for studies")
        return options

    @property
    def substeps(self) -> int:
        """Physics steps per env step: `control_decimation`, or 2 ms / `physics_dt_s` if None.

        Raises:
            ValueError: `control_decimation` is None and `physics_dt_s` does not divide
                `DEFAULT_CONTROL_DT_S`.
        """
        if self.control_decimation is not None:
            return self.control_decimation
        ratio = DEFAULT_CONTROL_DT_S / self.physics_dt_s
        if round(ratio) < 1 or abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise ValueError(f"FlyImitationConfig: physics_dt_s={self.physics_dt_s!r} does not "
                             f"divide the {DEFAULT_CONTROL_DT_S * 1e3:g} ms control step of the "
                             f"default 500 Hz policy; pass control_decimation too (policy rate "
                             f"= 1 / (physics_dt_s * control_decimation))")
        return round(ratio)

    @property
    def control_dt_s(self) -> float:
        """Time between env steps [s]."""
        return self.physics_dt_s * self.substeps

    @property
    def gym_autoreset_mode(self) -> AutoresetMode:
        """The autoreset mode as gymnasium's enum."""
        return _AUTORESET[self.autoreset_mode]

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> FlyImitationConfig:
        """The config from keyword arguments, refusing unknown keys with the valid ones listed.

        Raises:
            ValueError: for an unknown key (with the closest valid name) or a bad value.
        """
        check_keys("FlyImitation-v0 config", kwargs, cls)
        return cls(**kwargs)


def check_keys(owner: str, keys: Mapping[str, Any], config: type) -> None:
    """Refuses keys that are not fields of the dataclass `config`, naming the valid ones.

    Args:
        owner: what the keys configure, for the message (e.g. "FlyImitationConfig.reward").
        keys: the keys given (a mapping or kwargs).
        config: the dataclass whose fields are the valid keys.

    Raises:
        ValueError: for the first unknown key, with the closest valid name and all of them.
    """
    fields = [f.name for f in dataclasses.fields(config)]
    for key in keys:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{owner}: unknown key {key!r}{hint}; valid keys are {fields}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"FlyImitationConfig.{name} must be one of {list(choices)}, "
                         f"got {value!r}")
