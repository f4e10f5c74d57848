"""Converting joint angles between flyenv/SeqIKPy and FlyGym/NeuroMechFly conventions.

Both use the same joints and axes. FlyGym names them differently (`c_thorax-rf_coxa-yaw`, ...)
and negates the yaw and roll angles of the right legs so that left and right are anatomically
symmetric; flyenv (like SeqIKPy) does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flyenv.body import constants as c

_SIGN = np.asarray(c.FLYGYM_SIGN, dtype=float)


def to_flygym(angles_rad: np.ndarray) -> np.ndarray:
    """Converts flyenv angles to FlyGym's convention.

    Args:
        angles_rad: (..., 42) in `DOF_NAMES` order [rad].

    Returns:
        (..., 42) in `FLYGYM_DOF_NAMES` order [rad].
    """
    q = np.asarray(angles_rad, dtype=float)
    if q.shape[-1:] != (c.NUM_DOFS,):
        raise ValueError(f"angles_rad must have shape (..., {c.NUM_DOFS}), got {q.shape}")
    return q * _SIGN


def from_flygym(angles_rad: np.ndarray, dof_names: Sequence[str] = c.FLYGYM_DOF_NAMES,
                ) -> np.ndarray:
    """Converts FlyGym angles to flyenv's convention.

    Args:
        angles_rad: (..., n) FlyGym joint angles [rad], columns named by `dof_names`.
        dof_names: FlyGym DOF names of the columns, in any order; must cover all 42 leg DOFs
            (other FlyGym DOFs, e.g. of the head or abdomen, are ignored).

    Returns:
        (..., 42) in flyenv's `DOF_NAMES` order [rad].

    Raises:
        ValueError: if a leg DOF is missing or the shapes do not match.
    """
    q = np.asarray(angles_rad, dtype=float)
    names = list(dof_names)
    if q.shape[-1:] != (len(names),):
        raise ValueError(f"angles_rad must have shape (..., {len(names)}) to match dof_names, "
                         f"got {q.shape}")
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in c.FLYGYM_DOF_NAMES if name not in index]
    if missing:
        raise ValueError(f"dof_names lacks FlyGym DOFs {missing}")
    order = [index[name] for name in c.FLYGYM_DOF_NAMES]
    return q[..., order] * _SIGN
