"""Simulation: the fly model stepped by C MuJoCo (`mujoco.batch`) or MuJoCo Warp.

This is the only package that imports `mujoco_warp` or launches Warp kernels (and it imports them
only when a warp engine is made). `make_engine` gives an `Engine`: `nworld` simulations of one
model with zero-copy torch views of their state, masked per-world reset and overflow flags.
"""

from flyenv.sim.engine import Engine as Engine
from flyenv.sim.engine import contact_capacity as contact_capacity
from flyenv.sim.engine import make_engine as make_engine
from flyenv.sim.engine import resolve_engine as resolve_engine
from flyenv.sim.replay import ReplayResult as ReplayResult
from flyenv.sim.replay import replay as replay
