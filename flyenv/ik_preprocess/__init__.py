"""Offline inverse kinematics: 3D pose recordings to `ReferenceMotion` files.

So far this package reads recordings (`load_recording`); the solvers and the parallel runner
are tracked in the IK issue.
"""

from flyenv.ik_preprocess.io import Recording as Recording
from flyenv.ik_preprocess.io import load_pickle_safely as load_pickle_safely
from flyenv.ik_preprocess.io import load_recording as load_recording
