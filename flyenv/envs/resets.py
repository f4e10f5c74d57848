"""Resets of `FlyImitationVecEnv` (a part of the env class, in its own file).

`WorldResets` is a mixin of the env: the reset options (`reset_mask`, fixed starts), the masked
reset of the worlds (start sampling, reference state, per-world models, pushes) and the per-world
`info` of resets; `_torch_seed` turns Gymnasium seeds into torch generator seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flyenv.body import constants as c
from flyenv.envs import observations


class WorldResets:
    """The resets of `FlyImitationVecEnv` (see there)."""

    def _reset_mask(self, options: dict[str, Any] | None) -> torch.Tensor:
        options = options or {}
        unknown = sorted(set(options) - {"reset_mask", "clip", "frame"})
        if unknown:
            raise ValueError(f"reset options: unknown keys {unknown}; the options are "
                             f"'reset_mask', 'clip' and 'frame'")
        mask = options.get("reset_mask")
        if mask is None:
            return torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        try:
            mask = torch.as_tensor(mask, device=self.device)
        except (TypeError, ValueError, RuntimeError, NotImplementedError) as err:
            where = f" on {mask.device}" if isinstance(mask, torch.Tensor) else ""
            raise ValueError(f"reset_mask must be a bool tensor of shape ({self.num_envs},) on "
                             f"{self.device} (or one that can be moved there), got "
                             f"{type(mask).__name__}{where}: {type(err).__name__}") from err
        if mask.shape != (self.num_envs,) or mask.dtype != torch.bool:
            raise ValueError(f"reset_mask must be a bool tensor of shape ({self.num_envs},), "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        return mask

    def _fixed_starts(self, options: dict[str, Any] | None,
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
        options = options or {}
        if "clip" not in options and "frame" not in options:
            return None
        if "clip" not in options or "frame" not in options:
            raise ValueError("reset options: 'clip' and 'frame' go together (the start of each "
                             "world)")
        clip = torch.as_tensor(options["clip"], device=self.device)
        frame = torch.as_tensor(options["frame"], device=self.device)
        for name, value in (("clip", clip), ("frame", frame)):
            if value.shape != (self.num_envs,) or value.dtype.is_floating_point:
                raise ValueError(f"reset option {name!r} must be an int tensor of shape "
                                 f"({self.num_envs},), got {value.dtype} {tuple(value.shape)}")
        clip, frame = clip.long(), frame.long()
        if not bool(((clip >= 0) & (clip < self.ref.nclip)).all()):
            raise ValueError(f"reset option 'clip' must lie in [0, {self.ref.nclip}), got "
                             f"{clip.tolist()}")
        last = self.ref.lengths[clip] - 2
        if not bool(((frame >= 0) & (frame <= last)).all()):
            raise ValueError(f"reset option 'frame' must lie in [0, clip length - 2] "
                             f"({last.tolist()}), got {frame.tolist()}")
        return clip, frame

    def _reset_worlds(self, mask: torch.Tensor,
                      start: tuple[torch.Tensor, torch.Tensor] | None = None) -> bool:
        # Returns whether any world may have been reset. The C engine reads the mask on the host
        # anyway, so an empty one is skipped; the warp engine's reset never reads it (its graph
        # skips the work on the device), so every step does the same work on any device and
        # nothing waits on it.
        if self.engine.reads_mask_on_host and not bool(mask.any()):
            return False
        # Samples for every world whatever the mask: the random stream (and so a seeded run)
        # depends on when resets happen, not on which worlds they concern.
        ref, gen = self.ref, self._generator
        clip, frame = self.start_sampler.sample(gen, self.num_envs)
        if not self.config.random_start:
            frame = torch.zeros_like(frame)
        if start is not None:  # fixed starts asked by reset(options=...)
            clip, frame = start
        self._clip = torch.where(mask, clip, self._clip)
        self._frame = torch.where(mask, frame, self._frame)
        self._steps = torch.where(mask, 0, self._steps)
        self._set_clip_fields()
        self._autoreset = self._autoreset & ~mask
        clip, frame = self._clip, self._frame

        qpos, qvel = self._reset_qpos, self._reset_qvel
        # The start frame's fields the env's frame table holds: one row gather, as in a step.
        table = self._table
        row = table.rows.index_select(0, self._row0 + frame)
        joint_pos = table.column(row, "joint_pos")
        qpos[:, -c.NUM_DOFS:] = joint_pos
        qvel[:, -c.NUM_DOFS:] = table.column(row, "joint_vel")
        if self._free:
            quat = ref.root_quat_w[clip, frame]
            qpos[:, :3] = table.column(row, "root_pos_w")
            qpos[:, 3:7] = quat
            qvel[:, :3] = table.column(row, "root_lin_vel_w")
            qvel[:, 3:6] = observations.quat_rotate_inverse(quat, ref.root_ang_vel_w[clip, frame])
        fields = None
        if self._world_models.active:
            self._world_models.resample(mask, gen)
            fields = self._world_models.values(ref.clip_body[clip])
        if self._pushes is not None:
            self._pushes.reset(mask)
        ctrl = (torch.cat([joint_pos, table.column(row, "stance")], dim=1) if self.adhesion
                else joint_pos)
        self.engine.reset(mask, qpos, qvel, ctrl, fields)
        return True

    def _world_info(self) -> dict[str, torch.Tensor]:
        info = {f"randomization/{name}": value.to(torch.float32)
                for name, value in self._world_models.samples.items()}
        if self._pushes is not None:
            info["randomization/push"] = self._pushes.on.clone()
        if len(self.ref.bodies) > 1:
            info["body"] = self.ref.clip_body[self._clip]
        return info


def _torch_seed(seed: Any) -> int:
    """A torch generator seed for any non-negative int, as Gymnasium's seeding accepts.

    Seeds below 2**64 are used as they are; larger ones are hashed to 64 bits by numpy's
    `SeedSequence`, which Gymnasium's own seeding uses.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    if seed < 2 ** 64:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
