"""Simulation: stepping the fly model (C MuJoCo here; MuJoCo Warp batches land in this package).

This is the only package that imports `mujoco_warp` or launches Warp kernels.
"""

from flyenv.sim.replay import ReplayResult as ReplayResult
from flyenv.sim.replay import replay as replay
