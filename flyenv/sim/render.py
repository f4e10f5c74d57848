"""Offscreen rendering of chosen worlds with MuJoCo's renderer, and mp4 writing.

MuJoCo picks its GL backend from `MUJOCO_GL`: EGL on a GPU machine or with Mesa's EGL on a CPU
machine, OSMesa otherwise. The camera is the model's `track` camera, which follows the thorax.
A reference pose can be drawn as a translucent ghost beside the fly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

# The ghost stands this far to the fly's left [mm], so the two do not overlap.
GHOST_OFFSET_MM = np.array([0.0, 2.5, 0.0])
_GHOST_RGBA = np.array([0.3, 0.6, 1.0, 0.35], dtype=np.float32)


class FlyRenderer:
    """Renders fly states (qpos rows) to RGB images.

    Args:
        model: the fly's model (free or tethered).
        width: image width [px].
        height: image height [px].
    """

    def __init__(self, model: mujoco.MjModel, width: int = 480, height: int = 360) -> None:
        self.model = model
        self._data = mujoco.MjData(model)
        self._ghost = mujoco.MjData(model)
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        self._option = mujoco.MjvOption()
        self._perturb = mujoco.MjvPerturb()

    def render(self, qpos: np.ndarray, ghost_qpos: np.ndarray | None = None) -> np.ndarray:
        """One frame.

        Args:
            qpos: (nq,) the fly's state.
            ghost_qpos: (nq,) a reference pose drawn translucent beside the fly, or None.

        Returns:
            (height, width, 3) uint8 image.
        """
        self._data.qpos[:] = qpos
        mujoco.mj_forward(self.model, self._data)
        self._renderer.update_scene(self._data, camera="track")
        if ghost_qpos is not None:
            self._add_ghost(np.asarray(ghost_qpos, dtype=float))
        return self._renderer.render()

    def _add_ghost(self, ghost_qpos: np.ndarray) -> None:
        self._ghost.qpos[:] = ghost_qpos
        free = self.model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
        if free:  # beside the fly, whatever the clip's own root position
            self._ghost.qpos[:3] = self._data.qpos[:3] + GHOST_OFFSET_MM
        mujoco.mj_kinematics(self.model, self._ghost)
        scene = self._renderer.scene
        first = scene.ngeom
        mujoco.mjv_addGeoms(self.model, self._ghost, self._option, self._perturb,
                            mujoco.mjtCatBit.mjCAT_DYNAMIC, scene)
        for geom in scene.geoms[first:scene.ngeom]:
            geom.rgba[:] = _GHOST_RGBA
            if not free:
                geom.pos[:] = geom.pos + GHOST_OFFSET_MM

    def close(self) -> None:
        """Frees the GL context."""
        self._renderer.close()


def write_video(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float) -> Path:
    """Writes (H, W, 3) uint8 frames as an H.264 mp4 (imageio-ffmpeg's bundled ffmpeg).

    Returns:
        The path written.
    """
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7,
                            macro_block_size=8) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame))
    return path
