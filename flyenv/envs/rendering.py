"""Rendering of `FlyImitationVecEnv` (a part of the env class, in its own file).

`Rendering` is a mixin of the env: `render()` draws the worlds in `render_worlds` with their
reference as a ghost, `close_extras()` frees the renderer.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from flyenv.body import constants as c
from flyenv.sim.render import FlyRenderer


class Rendering:
    """`render` and `close_extras` of `FlyImitationVecEnv` (see there)."""

    def render(self) -> tuple[np.ndarray, ...] | None:
        """(H, W, 3) uint8 frames of the worlds in `render_worlds` (with `render_mode="rgb_array"`).

        The reference pose at each world's frame is drawn as a ghost where `render_ghost` says
        ("overlay", "beside" or "off"), with a key saying which body is which. Each frame is
        stamped with the world, its time since its episode began and the clip's name and time
        (random starts begin inside the clip). Copies those worlds' state to the host (a device
        sync): for videos, not training steps.
        """
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'; nothing drawn")
            return None
        cfg = self.config
        if self._renderer is None:
            self._renderer = FlyRenderer(self.engine.model, *cfg.render_size)
        worlds = torch.tensor(cfg.render_worlds, device=self.device)
        qpos = self.engine.qpos[worlds].double().cpu().numpy()
        ghost = qpos.copy()
        clip, frame = self._clip[worlds], self._frame[worlds]
        ghost[:, -c.NUM_DOFS:] = self.ref.joint_pos[clip, frame].double().cpu().numpy()
        if self._free:
            ghost[:, 3:7] = self.ref.root_quat_w[clip, frame].double().cpu().numpy()
        dt = cfg.control_dt_s
        captions = [(f"world {w}  t = {steps * dt:.3f} s",
                     f"clip {self.ref.names[k]} at {f * dt:.3f} s")
                    for w, steps, k, f in zip(cfg.render_worlds, self._steps[worlds].tolist(),
                                              clip.tolist(), frame.tolist(), strict=True)]
        return tuple(self._renderer.render(q, g, cfg.render_ghost, caption)
                     for q, g, caption in zip(qpos, ghost, captions, strict=True))

    def close_extras(self, **kwargs: Any) -> None:
        """Frees the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
