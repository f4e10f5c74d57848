"""flyenv: fly pose recordings to joint angles, and GPU-scale imitation environments.

The pipeline runs `body -> motion -> ik_preprocess -> sim -> envs -> wrappers`; this module
re-exports the public entry points of the light layers, and registers `flyenv/FlyImitation-v0`
with gymnasium once gymnasium is imported (the env itself, and torch, load on first use; see
`flyenv._registration`). The applications (`flyenv.apps`: training, benchmarks, demo) sit on
top and are never imported by the library.
"""

import os

# MuJoCo chooses its GL backend when it is first imported. On a machine without a display, make
# offscreen rendering work by default (EGL: GPU drivers or Mesa); a MUJOCO_GL the user set wins.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from flyenv import _registration
from flyenv._registration import ENV_ID as ENV_ID
from flyenv._version import __version__ as __version__  # noqa: E402
from flyenv.body import BodyConfig as BodyConfig
from flyenv.body import ModelOptions as ModelOptions
from flyenv.body import build_model as build_model
from flyenv.body import forward_kinematics as forward_kinematics
from flyenv.motion import ReferenceMotion as ReferenceMotion
from flyenv.motion import tripod_gait as tripod_gait

_registration.register_when_gymnasium_loads()
