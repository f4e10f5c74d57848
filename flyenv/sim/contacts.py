"""Sliding at the contact: how fast a geom's surface moves over what it touches, one world.

A site on a foot (the claw) moves while the foot holds: the tarsus capsule rolls, presses in and
tilts about the contact. What a sticky foot must not do is slide, i.e. move at the contact
point along the contact plane. For each contact of a geom that the solver used (MuJoCo's
`data.contact`, `efc_address >= 0`) this takes the relative velocity of the two geoms' bodies at
the contact point (`mj_jac` at the point times `qvel`) and its part in the contact's tangent
plane (rows 2-3 of `contact.frame`). C MuJoCo, for diagnostics and benchmarks (host arrays).
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np


def contact_slide_speed(model: mujoco.MjModel, data: mujoco.MjData,
                        geom_ids: Sequence[int]) -> np.ndarray:
    """Tangential sliding speed at the active contacts of each geom, mean over its contacts.

    Positions, velocities and contacts must describe one state (after `mj_forward`, or read
    before the next `mj_step`'s integration).

    Args:
        model: the model.
        data: its data.
        geom_ids: (G,) geoms to measure.

    Returns:
        (G,) speed [length unit/s, mm/s for the fly]; NaN for a geom with no active contact.
    """
    geom_ids = [int(g) for g in geom_ids]
    index = {g: k for k, g in enumerate(geom_ids)}
    total = np.zeros(len(geom_ids))
    count = np.zeros(len(geom_ids))
    jacp = np.zeros((3, model.nv))
    for con in data.contact[:data.ncon]:
        if con.efc_address < 0:  # excluded or inactive: no force, nothing to hold
            continue
        for side, geom in enumerate(con.geom):
            if int(geom) not in index:
                continue
            other = con.geom[1 - side]
            velocity = (_point_velocity(model, data, int(geom), con.pos, jacp)
                        - _point_velocity(model, data, int(other), con.pos, jacp))
            tangent = con.frame.reshape(3, 3)[1:]
            total[index[int(geom)]] += np.linalg.norm(tangent @ velocity)
            count[index[int(geom)]] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _point_velocity(model: mujoco.MjModel, data: mujoco.MjData, geom: int, point: np.ndarray,
                    jacp: np.ndarray) -> np.ndarray:
    body = int(model.geom_bodyid[geom])
    if body == 0:  # the world does not move
        return np.zeros(3)
    mujoco.mj_jac(model, data, jacp, None, point, body)
    return jacp @ data.qvel
