"""Offscreen rendering of chosen worlds with MuJoCo's renderer, and mp4 writing.

MuJoCo picks its GL backend from `MUJOCO_GL`: EGL on a GPU machine or with Mesa's EGL on a CPU
machine, OSMesa otherwise. The camera is the model's `track` camera, which follows the thorax.
A reference pose can be drawn as a translucent blue ghost, either on the fly (its thorax at the
fly's thorax, so the legs are compared in place) or beside it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import mujoco
import numpy as np

GhostPlacement = Literal["overlay", "beside", "off"]
# Where `FlyRenderer.render` draws the reference ghost: on the fly, beside it, or not at all.
GHOST_PLACEMENTS: tuple[str, ...] = ("overlay", "beside", "off")
# A "beside" ghost stands this far to the fly's left [mm], so the two do not overlap.
GHOST_OFFSET_MM = np.array([0.0, 2.5, 0.0])
# Blue against the fly's browns. The legs are what an overlay compares; the ghost's trunk lies
# on the fly's own, so it is fainter and the fly's body shows through it.
_GHOST_LEG_RGBA = np.array([0.2, 0.55, 1.0, 0.45], dtype=np.float32)
_GHOST_TRUNK_RGBA = np.array([0.2, 0.55, 1.0, 0.15], dtype=np.float32)
# The ghost's geoms are this much thicker [mm] than the fly's: a shell around an overlaid fly
# rather than surfaces at the same depth, which would z-fight into stripes.
_GHOST_MARGIN_MM = 0.01


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
        self._thorax_id = model.body("thorax").id
        self._free = model.njnt > 0 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE

    def render(self, qpos: np.ndarray, ghost_qpos: np.ndarray | None = None,
               placement: GhostPlacement = "overlay", caption: Sequence[str] = ()) -> np.ndarray:
        """One frame, with a key to the ghost when one is drawn.

        Args:
            qpos: (nq,) the fly's state.
            ghost_qpos: (nq,) a reference pose drawn as a translucent ghost, or None.
            placement: where the ghost goes. "overlay": its thorax at the fly's thorax (the
                reference's own root position is ignored; its orientation and joint angles are
                kept), so the legs are compared in place. "beside": the same, moved
                `GHOST_OFFSET_MM` to the fly's left. "off": no ghost, as with None.
            caption: lines written in the top right corner (e.g. the time).

        Returns:
            (height, width, 3) uint8 image.

        Raises:
            ValueError: for a placement not in `GHOST_PLACEMENTS`.
        """
        if placement not in GHOST_PLACEMENTS:
            raise ValueError(f"FlyRenderer.render: placement must be one of "
                             f"{list(GHOST_PLACEMENTS)}, got {placement!r}")
        self._data.qpos[:] = qpos
        mujoco.mj_forward(self.model, self._data)
        self._renderer.update_scene(self._data, camera="track")
        ghost = ghost_qpos is not None and placement != "off"
        if ghost:
            offset_mm = GHOST_OFFSET_MM if placement == "beside" else np.zeros(3)
            self._add_ghost(np.asarray(ghost_qpos, dtype=float), offset_mm)
        image = self._renderer.render()
        key = GHOST_KEY if ghost else ()
        return annotate(image, top_left=key, top_right=caption) if key or caption else image

    def _add_ghost(self, ghost_qpos: np.ndarray, offset_mm: np.ndarray) -> None:
        self._ghost.qpos[:] = ghost_qpos
        if self._free:  # at the fly, whatever the clip's own (possibly drifted) root position
            self._ghost.qpos[:3] = self._data.qpos[:3] + offset_mm
        mujoco.mj_kinematics(self.model, self._ghost)
        scene = self._renderer.scene
        first = scene.ngeom
        mujoco.mjv_addGeoms(self.model, self._ghost, self._option, self._perturb,
                            mujoco.mjtCatBit.mjCAT_DYNAMIC, scene)
        for geom in scene.geoms[first:scene.ngeom]:
            trunk = (geom.objtype == mujoco.mjtObj.mjOBJ_GEOM
                     and self.model.geom_bodyid[geom.objid] == self._thorax_id)
            geom.rgba[:] = _GHOST_TRUNK_RGBA if trunk else _GHOST_LEG_RGBA
            geom.size[0] += _GHOST_MARGIN_MM  # the radius of a capsule or sphere
            if not self._free:  # the tethered thorax is welded in place: move the drawn geoms
                geom.pos[:] = geom.pos + offset_mm

    def close(self) -> None:
        """Frees the GL context."""
        self._renderer.close()


# The key an image with a ghost carries: which body is which.
GHOST_KEY: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("simulated fly", (179, 140, 89)),
    ("reference (blue ghost)", tuple(int(255 * v) for v in _GHOST_LEG_RGBA[:3])))


def annotate(image: np.ndarray, *, top_left: Sequence[tuple[str, tuple[int, int, int]]] = (),
             top_right: Sequence[str] = (), bottom_right: Sequence[str] = ()) -> np.ndarray:
    """Writes text on a frame: a key (swatch and label per line) and captions, on dark boxes.

    Args:
        image: (H, W, 3) uint8 frame (not changed).
        top_left: (label, RGB swatch colour) lines, e.g. `GHOST_KEY`.
        top_right: caption lines, e.g. the time.
        bottom_right: caption lines, e.g. the playback speed.

    Returns:
        (H, W, 3) uint8, the annotated copy.
    """
    from PIL import Image, ImageDraw

    height = image.shape[0]
    font = _font(max(10, height // 28))
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas, "RGBA")
    pad, line = 4, font.size + 4

    def block(lines: Sequence[str], x_right: bool, y_bottom: bool, swatch: int = 0) -> None:
        width = max(draw.textlength(text, font=font) for text in lines) + swatch
        x0 = image.shape[1] - width - 3 * pad if x_right else pad
        y0 = height - len(lines) * line - 3 * pad if y_bottom else pad
        draw.rectangle((x0, y0, x0 + width + 2 * pad, y0 + len(lines) * line + 2 * pad),
                       fill=(0, 0, 0, 140))
        for k, text in enumerate(lines):
            draw.text((x0 + pad + swatch, y0 + pad + k * line), text, font=font,
                      fill=(255, 255, 255))

    if top_left:
        block([label for label, _ in top_left], False, False, swatch=line)
        for k, (_, rgb) in enumerate(top_left):
            y = 2 * pad + k * line
            draw.rectangle((2 * pad, y + 2, 2 * pad + line - 8, y + line - 6), fill=rgb)
    if top_right:
        block(list(top_right), True, False)
    if bottom_right:
        block(list(bottom_right), True, True)
    return np.asarray(canvas)


@functools.lru_cache(maxsize=4)
def _font(size_px: int) -> object:
    from PIL import ImageFont

    return ImageFont.load_default(size=size_px)  # Pillow's bundled font, no system fonts


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
