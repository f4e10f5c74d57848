"""`FlyImitation-v0`: many flies imitating reference clips, as a `gymnasium.vector.VectorEnv`.

Actions and observations are torch tensors on the env's device; nothing in `step()` reads a
device value on the host (with `invalid_actions="zero"`), so on CUDA a step queues work and
returns. One step: check the action, set the joint targets, run the physics substeps, read the
state, compute terminations and rewards, reset the worlds that have to be, build observations.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from flyenv.body import constants as c
from flyenv.body.mjcf import build_model
from flyenv.envs import observations, rewards, terminations
from flyenv.envs.config import FlyImitationConfig
from flyenv.envs.frame_table import FrameTable
from flyenv.envs.randomization import Pushes, WorldModels, shared_model
from flyenv.envs.reference import load_references
from flyenv.envs.rendering import Rendering
from flyenv.envs.resets import WorldResets, _torch_seed
from flyenv.envs.starts import StartSampler, clip_weights
from flyenv.sim.factory import make_engine, resolve_engine
from flyenv.sim.render import FlyRenderer

_CLAW_SITES = tuple(f"{leg}_Claw" for leg in c.LEGS)
TERMINATIONS = terminations.TERMINATIONS  # re-exported: the causes' names


class FlyImitationVecEnv(WorldResets, Rendering, gym.vector.VectorEnv):
    """`num_envs` simulated flies imitating reference motion (torch tensors in and out).

    `info` carries, per world: `reward/<term>` for each imitation term in use, `termination/<cause>`
    (bool) for each cause in `TERMINATIONS`, `clip` and `frame` (the reference clip, named by
    `ref.names[clip]`, and frame now imitated), `invalid_action` (the action had NaN/inf
    entries); with clips of several bodies,
    `body` (index in `ref.bodies` of the body each world simulates); with domain randomization,
    `randomization/<name>` (each world's sample, see `RandomizationConfig`) and
    `randomization/push` (bool, pushed this step); `privileged_obs` (num_envs, privileged_dim),
    what the simulator knows and the fly does not (the push to come, the thorax's height, the
    randomized samples; parts in `privileged_layout`), for an asymmetric critic. In SAME_STEP
    mode `final_obs` and `final_info` hold the observation and info of the worlds that just
    ended (full tensors; the rows that matter are marked by `_final_obs` / `_final_info`).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, num_envs: int = 1, config: FlyImitationConfig | None = None,
                 **kwargs: Any) -> None:
        """Builds the model, the engine and the reference bank.

        Args:
            num_envs: number of flies (worlds).
            config: the configuration (default `FlyImitationConfig()`).
            **kwargs: `FlyImitationConfig` fields overriding `config`'s (as `gym.make_vec`
                passes them); unknown keys are refused.
        """
        if not (isinstance(num_envs, int | np.integer) and num_envs >= 1):
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        base = config if config is not None else FlyImitationConfig()
        fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
        self.config = cfg = FlyImitationConfig.from_kwargs(**{**fields, **kwargs})
        self.num_envs = int(num_envs)
        self.autoreset_mode = cfg.gym_autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}

        options = cfg.physics_options()
        # The model's tarsus adhesion actuators, and whether the policy drives them (six more
        # actions) or the clip's stance does (`adhesion_control`).
        self.adhesion = options.adhesion
        self.policy_adhesion = self.adhesion and cfg.adhesion_control == "policy"
        engine, self.device = resolve_engine(cfg.engine, cfg.device)
        # Each world simulates the body its clip was made for: one model per body, and the
        # fields that differ between them (and those randomized) per world in the engine.
        self.ref = load_references(
            cfg.reference, cfg.control_dt_s, self.device,
            standing_height_mm=options.standing_height_mm,
            claw_clearance_mm=options.segment_radii_mm[-1],  # the claw ends the tarsus capsule
            augment=cfg.augment)
        models = [build_model(body, tethered=cfg.tethered, options=options)
                  for body in self.ref.bodies]
        # The fly's weight [µN] (g x mm/s^2), what `sense_load` divides the tarsi's forces by:
        # every body weighs the options' total_mass_g.
        self._weight_un = float(models[0].body_mass.sum() * np.linalg.norm(models[0].opt.gravity))
        self._world_models = WorldModels(models, cfg.randomization, self.num_envs, self.device)
        self.engine = make_engine(
            shared_model(models), self.num_envs, nsubstep=cfg.substeps, engine=engine,
            device=str(self.device), nthread=cfg.nthread, cuda_graph=cfg.cuda_graph,
            deterministic=cfg.deterministic, world_fields=self._world_models.fields)
        self._setup_model_indices()
        self._setup_spaces()
        self._setup_buffers()
        self.render_mode = cfg.render_mode
        if max(cfg.render_worlds) >= self.num_envs:
            raise ValueError(f"render_worlds {cfg.render_worlds} must be below num_envs "
                             f"{self.num_envs}")
        self._renderer: FlyRenderer | None = None

    # Setup -------------------------------------------------------------------------------

    def _setup_model_indices(self) -> None:
        model, dev = self.engine.model, self.device
        self._free = not self.config.tethered
        self._claw_sites = torch.tensor([model.site(n).id for n in _CLAW_SITES], device=dev)
        self._touch = torch.tensor([model.sensor_adr[model.sensor(n).id]
                                    for n in c.TOUCH_SENSOR_NAMES], device=dev)
        thorax = model.body("thorax").id
        self._tether_pos = torch.tensor(model.body_pos[thorax], dtype=torch.float32, device=dev)
        self._identity_quat = torch.tensor([1.0, 0.0, 0.0, 0.0], device=dev)
        bounds = np.asarray(self.ref.body.bounds, dtype=np.float32)
        self._bounds = torch.tensor(bounds, device=dev)
        # A root velocity to imitate: the clips' root motion, or for clips without one the
        # stance-leg odometry estimate (flyenv.motion.grounding), when the bank has it.
        self._has_root_vel = self.ref.has_root or self.ref.root_vel_estimated
        self._terms = tuple(t for t in rewards.TERMS
                            if t.in_use(free=self._free, has_root=self._has_root_vel))
        self.terms = tuple(t.name for t in self._terms)
        reward = self.config.reward
        self.max_reward = float(sum(reward.weights[t] for t in self.terms))
        self._reward_keys = tuple(f"reward/{k}" for k in self.terms)
        self._scales = torch.tensor([reward.scales[t] for t in self.terms], device=dev)
        self._weights = torch.tensor([reward.weights[t] for t in self.terms], device=dev)
        # Every declared cause is reported; one that does not apply has an infinite limit.
        self._ends = terminations.TERMS
        self.terminations = tuple(t.name for t in self._ends)
        self._termination_keys = tuple(f"termination/{k}" for k in self.terminations)
        self._limits = torch.tensor(
            [t.limit_for(self.config, free=self._free, has_root=self.ref.has_root)
             for t in self._ends], device=dev)[:, None]
        self._voiding = torch.tensor([t.voids_reward for t in self._ends], device=dev)

    def _setup_spaces(self) -> None:
        cfg = self.config
        self.observation_layout = observations.observation_layout(cfg.future_frames,
                                                                  cfg.sense_load)
        obs_dim = observations.layout_size(self.observation_layout)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.privileged_layout = observations.privileged_layout(
            tuple(self._world_models.samples))
        if cfg.action_mode == "absolute":
            low, high = self._bounds.cpu().numpy().T
        else:
            high = np.full(c.NUM_DOFS, cfg.residual_range_rad, dtype=np.float32)
            low = -high
        if self.policy_adhesion:  # the tarsi's adhesion commands, absolute in both modes
            low = np.concatenate([low, np.zeros(c.NUM_LEGS, np.float32)])
            high = np.concatenate([high, np.ones(c.NUM_LEGS, np.float32)])
        self.num_actions = len(low)
        self.single_action_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._action_low = torch.tensor(low, dtype=torch.float32, device=self.device)
        self._action_high = torch.tensor(high, dtype=torch.float32, device=self.device)

    def _setup_buffers(self) -> None:
        n, dev = self.num_envs, self.device
        self._generator = torch.Generator(device=dev)
        self._generator.manual_seed(int(np.random.SeedSequence().generate_state(1)[0]))
        self._clip = torch.zeros(n, dtype=torch.long, device=dev)
        self._frame = torch.zeros(n, dtype=torch.long, device=dev)
        self._steps = torch.zeros(n, dtype=torch.long, device=dev)
        self._autoreset = torch.zeros(n, dtype=torch.bool, device=dev)
        self._offsets = torch.arange(1, self.config.future_frames + 1, device=dev)
        # Reset states, filled in place (every entry a reset uses is written each time).
        self._reset_qpos = torch.zeros(n, self.engine.qpos.shape[1], device=dev)
        self._reset_qvel = torch.zeros(n, self.engine.qvel.shape[1], device=dev)
        self._zero3 = torch.zeros(n, 3, device=dev)  # the tethered thorax's velocities
        self._zero = torch.zeros(n, device=dev)
        rand = self.config.randomization
        self._pushes = None if rand.push_force_un is None else Pushes(
            rand, n, self.engine.model.body("thorax").id, self.config.control_dt_s, dev)
        self._down_w = torch.tensor([0.0, 0.0, -1.0], device=dev).expand(n, 1, 3)
        # Every per-frame reference field side by side: the fields of a world's frame are one
        # row, gathered by one index_select (`frame_table.COLUMNS`).
        self._table = FrameTable(self.ref)
        cols = self._table.columns
        self._joint_pos, self._stance = cols["joint_pos"], cols["stance"]
        self.start_sampler = StartSampler(self.ref.lengths, self.config.control_dt_s,
                                          self.config.adaptive_starts, dev,
                                          clip_weights(self.config.clip_weights, self.ref.names))
        self._set_clip_fields()
        self._next_row = self._table.rows[:1].expand(n, -1)  # set by _observe before any step

    def _set_clip_fields(self) -> None:
        # What depends on each world's clip alone, gathered once per reset instead of per step.
        ref, clip = self.ref, self._clip
        self._last = ref.lengths[clip] - 1  # last frame of each world's clip
        self._row0 = clip * self._table.frames  # table row of each world's clip start
        self._dof_mask = ref.dof_mask[clip]
        self._dof_count = self._dof_mask.sum(dim=1)
        self._leg_mask = ref.leg_mask[clip]

    # Gymnasium API -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Starts new episodes at sampled reference frames (reference-state initialization).

        Args:
            seed: seeds the start-frame sampler (same seed, same clips, frames and observations).
            options: `{"reset_mask": (num_envs,) bool tensor}` resets only those worlds (the way
                to reset in DISABLED mode); the others keep their state. `{"clip": (num_envs,),
                "frame": (num_envs,)}` int tensors start the reset worlds there (fixed starts,
                for evaluation; checked on the host) instead of sampled starts.

        Returns:
            (obs (num_envs, obs_dim), info).
        """
        self._check_open()
        super().reset(seed=seed)
        if seed is not None:
            self._generator.manual_seed(_torch_seed(seed))
            self.action_space.seed(int(seed))
        mask = self._reset_mask(options)
        self._reset_worlds(mask, self._fixed_starts(options))
        state = self._read_state()
        return self._observe(state), {"clip": self._clip.clone(), "frame": self._frame.clone(),
                                      "privileged_obs": self._privileged(state),
                                      **self._world_info()}

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]:
        """Advances every fly by one control step.

        Args:
            actions: (num_envs, num_actions) float tensor on the env's device: residuals [rad]
                or joint targets [rad] (see `action_mode`), then with
                `adhesion_control="policy"` the six tarsi's adhesion commands in [0, 1] (LEGS
                order; otherwise the clip's stance drives them); clipped to the action
                space. `replay_action()` replays the reference. A numpy array (such as
                `action_space.sample()`) is copied to the device as float32 first.

        Returns:
            obs (num_envs, obs_dim) float32, reward (num_envs,) float32, terminated and
            truncated (num_envs,) bool, info.
        """
        self._check_open()
        actions, invalid = self._check_actions(actions)
        starting = self._autoreset  # replaced, never written in place
        self._write_targets(actions)
        if self._pushes is not None:
            self._pushes.apply(self._generator, self.engine.xfrc_applied)
        self.engine.step()
        # Clamped: a world that ended last step is stepped once more before its reset.
        self._frame = torch.minimum(self._frame + 1, self._last)
        self._steps = self._steps + 1  # not in place: rsl_rl steps under inference_mode

        state = self._read_state()
        # The reference at the new frame: the row `_observe` gathered as the next frame.
        row = self._next_row
        ended = self._terminations(state, row)  # (len(self.terminations), num_envs)
        terms = self._reward_terms(state, row)  # (nterm, num_envs)
        void = (ended & self._voiding[:, None]).any(dim=0)  # e.g. nonfinite: no number
        reward = torch.where(void, 0.0, self._weights @ terms)
        terminated = ended.any(dim=0)
        truncated = ((self._frame >= self._last) | (self._steps >= self.config.max_episode_steps)
                     ) & ~terminated
        self.start_sampler.record(self._clip, self._frame, ~starting, terminated)
        return self._finish_step(state, reward, terminated, truncated, ended, terms, invalid,
                                 starting)

    # Step parts ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("FlyImitationVecEnv: step() or reset() after close(); make a new "
                               "env")

    def _check_actions(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(actions, np.ndarray):  # e.g. action_space.sample(): one host->device copy
            actions = torch.from_numpy(np.ascontiguousarray(actions))
            if actions.dtype.is_floating_point:  # other dtypes are refused below
                actions = actions.to(self.device, torch.float32)
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"actions must be a torch.Tensor on {self.device} or a numpy array, "
                            f"got {type(actions).__name__}")
        if tuple(actions.shape) != (self.num_envs, self.num_actions):
            raise ValueError(f"actions must have shape ({self.num_envs}, {self.num_actions}), "
                             f"got {tuple(actions.shape)}")
        if not actions.dtype.is_floating_point:  # int, bool and complex are refused
            raise ValueError(f"actions must be a real floating point tensor (float32; other "
                             f"float dtypes are converted), got {actions.dtype}")
        if actions.device != self.device:
            raise ValueError(f"actions must be on {self.device}, got {actions.device}")
        # One rule in the dtype given: NaN/inf are invalid (zeroed), every finite value is
        # clipped, so a float64 1e300 is clipped like 1e30 rather than overflowing float32
        # to inf and being zeroed.
        invalid = ~torch.isfinite(actions).all(dim=1)
        if self.config.invalid_actions == "raise" and bool(invalid.any()):
            worlds = torch.nonzero(invalid).flatten().tolist()[:10]
            raise ValueError(f"actions have NaN/inf entries in worlds {worlds}")
        actions = torch.nan_to_num(actions, nan=0.0, posinf=0.0, neginf=0.0)
        actions = torch.clamp(actions, self._action_low.to(actions.dtype),
                              self._action_high.to(actions.dtype))
        return actions.to(torch.float32), invalid

    def _write_targets(self, actions: torch.Tensor) -> None:
        # Into the engine's (num_envs, nu) ctrl, in place (no per-step (num_envs, nu) buffer):
        # joint targets, then (a model with adhesion) the adhesion commands, the policy's or
        # the next frame's stance flags.
        ctrl = self.engine.ctrl
        joints = actions[:, :c.NUM_DOFS]
        if self.config.action_mode == "residual":
            joints = torch.clamp(self._next_row[:, self._joint_pos] + joints, self._bounds[:, 0],
                                 self._bounds[:, 1])
        ctrl[:, :c.NUM_DOFS] = joints
        if self.adhesion:
            ctrl[:, c.NUM_DOFS:] = (actions[:, c.NUM_DOFS:] if self.policy_adhesion
                                    else self._next_row[:, self._stance])

    def replay_action(self) -> torch.Tensor:
        """The action that replays the reference (the next frame's targets).

        Zero residuals (with absolute actions, the next frame's angles) and, with
        `adhesion_control="policy"`, the next frame's stance flags as the adhesion commands
        (what the env sets itself with "reference").

        Returns:
            (num_envs, num_actions) float32 on the env's device.
        """
        row = self._next_row
        joints = (row[:, self._joint_pos] if self.config.action_mode == "absolute"
                  else torch.zeros_like(row[:, self._joint_pos]))
        return torch.cat([joints, row[:, self._stance]], dim=1) if self.policy_adhesion else joints

    def _read_state(self) -> observations.FlyState:
        e, n = self.engine, self.num_envs
        qpos, qvel = e.qpos.to(torch.float32), e.qvel.to(torch.float32)
        site = e.site_xpos.index_select(1, self._claw_sites).to(torch.float32)
        if self._free:
            root_pos, root_quat = qpos[:, :3], qpos[:, 3:7]
            lin_vel, ang_vel = qvel[:, :3], qvel[:, 3:6]
        else:
            root_pos = self._tether_pos.expand(n, 3)
            root_quat = self._identity_quat.expand(n, 4)
            lin_vel = ang_vel = self._zero3
        # The claws, the thorax velocity and gravity's direction, rotated into the thorax frame
        # together.
        vec_w = torch.cat([site - root_pos[:, None], lin_vel[:, None], self._down_w], dim=1)
        vec_b = observations.quat_rotate_inverse(root_quat[:, None], vec_w)
        return observations.FlyState(
            joint_pos=qpos[:, -c.NUM_DOFS:], joint_vel=qvel[:, -c.NUM_DOFS:],
            root_pos_w=root_pos, root_quat_w=root_quat, lin_vel_w=lin_vel, ang_vel_b=ang_vel,
            claw_pos_b=vec_b[:, :c.NUM_LEGS], touch=e.sensordata.index_select(1, self._touch).to(
                torch.float32), lin_vel_b=vec_b[:, c.NUM_LEGS], gravity_b=vec_b[:, c.NUM_LEGS + 1])

    def _terminations(self, state: observations.FlyState, row: torch.Tensor) -> torch.Tensor:
        # (len(self.terminations), num_envs) bool, rows in `terminations.TERMS` order.
        inputs = terminations.TerminationInputs(
            state=state, overflow=self.engine.overflow().to(self.device),
            ref_joint_pos=row[:, self._joint_pos],
            ref_root_pos_w=self._table.column(row, "root_pos_w"),
            dof_mask=self._dof_mask, dof_count=self._dof_count)
        return terminations.ended(self._ends, inputs, self._limits)

    def _reward_terms(self, state: observations.FlyState, row: torch.Tensor) -> torch.Tensor:
        table = self._table
        inputs = rewards.RewardInputs(
            state=state, ref_joint_pos=row[:, self._joint_pos],
            ref_joint_vel=table.column(row, "joint_vel"),
            ref_claw_pos_b=table.column(row, "claw_pos_b").unflatten(1, (c.NUM_LEGS, 3)),
            root_lin_vel=(observations.heading_velocity(state.root_quat_w, state.lin_vel_w)
                          if self.ref.root_vel_estimated else state.lin_vel_w),
            ref_root_lin_vel=table.column(row, "root_lin_vel_w"),
            ref_gravity_b=table.column(row, "gravity_b"), ref_stance=row[:, self._stance],
            dof_mask=self._dof_mask,
            leg_mask=self._leg_mask, ref_claw_height=table.column(row, "claw_height"),
            contact_swing_clearance_mm=self.config.reward.contact_swing_clearance_mm)
        return rewards.values(self._terms, inputs, self._scales)

    def _finish_step(self, state: observations.FlyState, reward: torch.Tensor,
                     terminated: torch.Tensor, truncated: torch.Tensor, ended: torch.Tensor,
                     terms: torch.Tensor, invalid: torch.Tensor, starting: torch.Tensor,
                     ) -> tuple:
        mode = self.autoreset_mode
        if mode == AutoresetMode.NEXT_STEP:
            # Worlds that ended last step start over now; this step's action is ignored there.
            if self._reset_worlds(starting):
                state = self._read_state()
            going = ~starting
            reward = torch.where(starting, 0.0, reward)
            terminated, truncated = terminated & going, truncated & going
            ended, terms = ended & going, torch.where(starting, 0.0, terms)
            self._autoreset = terminated | truncated
        info = self._info(ended, terms, invalid)
        info["privileged_obs"] = self._privileged(state)
        obs = None
        if mode == AutoresetMode.SAME_STEP:
            done = terminated | truncated
            info["final_info"] = {**info, "clip": self._clip.clone(),
                                  "frame": self._frame.clone()}
            info["_final_info"] = info["_final_obs"] = done
            info["final_obs"] = obs = self._observe(state)
            if self._reset_worlds(done):
                state, obs = self._read_state(), None
                info["privileged_obs"] = self._privileged(state)
        info["clip"], info["frame"] = self._clip.clone(), self._frame.clone()
        info.update(self._world_info())
        # Observed once when no world was reset (the C engine skips an empty reset).
        obs = self._observe(state) if obs is None else obs
        return obs, reward, terminated, truncated, info

    def _info(self, ended: torch.Tensor, terms: torch.Tensor, invalid: torch.Tensor,
              ) -> dict[str, Any]:
        info: dict[str, Any] = dict(zip(self._termination_keys, ended.unbind(0), strict=True))
        info.update(zip(self._reward_keys, terms.unbind(0), strict=True))
        info["invalid_action"] = invalid
        return info

    def observation_part(self, obs: torch.Tensor, name: str) -> torch.Tensor:
        """The part `name` (e.g. "joint_vel") of observations (..., obs_dim).

        The parts and their units: `flyenv.envs.observations.observation_layout`; the env's is
        `self.observation_layout`.
        """
        if name not in self.observation_layout:
            raise ValueError(f"unknown observation part {name!r}; the parts are "
                             f"{list(self.observation_layout)}")
        return obs[..., self.observation_layout[name]]

    # Observations --------------------------------------------------------------------------

    def _privileged(self, state: observations.FlyState) -> torch.Tensor:
        # (num_envs, privileged_dim): `privileged_layout`'s parts.
        force, left = ((self._zero3, self._zero) if self._pushes is None
                       else self._pushes.upcoming())
        return observations.build_privileged(state, force, left,
                                             tuple(self._world_models.samples.values()))

    def _observe(self, state: observations.FlyState) -> torch.Tensor:
        # One gather of the next `future_frames` frames (every field): the observation takes
        # their angles, and the first is the next step's target and reference frame.
        ahead = torch.minimum(self._frame[:, None] + self._offsets, self._last[:, None])
        rows = self._table.rows.index_select(0, (self._row0[:, None] + ahead).flatten())
        rows = rows.view(self.num_envs, -1, self._table.width)
        self._next_row = rows[:, 0]
        obs = observations.build_observation(
            state, rows[..., self._joint_pos], self._dof_mask, self._frame / self._last,
            self._weight_un if self.config.sense_load else None)
        # A diverged world's observation is zeros, so no NaN (or 1e30) reaches a policy or a
        # normalizer.
        sound = (obs.abs() < observations.MJ_MAXVAL).all(dim=1, keepdim=True)
        return torch.where(sound, obs, 0.0)

