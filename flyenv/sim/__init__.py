"""Simulation: the fly model stepped by C MuJoCo (`mujoco.batch`) or MuJoCo Warp.

This is the only package that imports `mujoco_warp` or launches Warp kernels (and it imports them
only when a warp engine is made). `make_engine` gives an `Engine`: `nworld` simulations of one
model with zero-copy torch views of their state, masked per-world reset and overflow flags.
`track_reference` drives one fly with a reference's angles (the tracking diagnostic).

    engine.py          the Engine interface (no engine code)
    factory.py         resolve_engine / make_engine
    mujoco_engine.py   C MuJoCo, mujoco.batch (CPU)
    warp_engine.py     MuJoCo Warp (CUDA, or the Warp CPU device), its buffer sizes
    warp_kernels.py    the Warp kernels of the warp engine's graphs
    tracking.py        one world, C MuJoCo, reference angles as targets
    render.py          offscreen frames of chosen worlds
"""

from flyenv.sim.engine import ENGINE_NAMES as ENGINE_NAMES
from flyenv.sim.engine import Engine as Engine
from flyenv.sim.factory import make_engine as make_engine
from flyenv.sim.factory import resolve_engine as resolve_engine
from flyenv.sim.tracking import TrackingResult as TrackingResult
from flyenv.sim.tracking import track_reference as track_reference
