"""Offline inverse kinematics: 3D pose recordings to `ReferenceMotion` files.

`solve_recording(path, IkOptions(...))` returns one recording's `ReferenceMotion` or raises its
`RecordingError`; `run(paths, out_dir, IkOptions(...), n_jobs=...)`, the batch, reads
recordings (`io`, with `limits` and a restricted `unpickle`), finds the thorax pose and root
motion (`thorax`, `rigid`), takes, aligns (`align`) or measures (`bodyfit`) the body (`prepare`),
solves each leg (`solver`: `seqik`, SeqIKPy's stages in closed form, and `lm`, a joint fit
seeded from it) in parallel over files x legs x time chunks (`jobs`: plan, solve, stitch),
assembles and writes one `.npz` per recording (`runner`: the batch, reporting each file's
failure by name); `flyenv ik` is the same from the shell.
"""

from flyenv.ik_preprocess.io import Recording as Recording
from flyenv.ik_preprocess.io import load_recording as load_recording
from flyenv.ik_preprocess.limits import RecordingError as RecordingError
from flyenv.ik_preprocess.runner import IkOptions as IkOptions
from flyenv.ik_preprocess.runner import IkReport as IkReport
from flyenv.ik_preprocess.runner import run as run
from flyenv.ik_preprocess.runner import solve_recording as solve_recording
from flyenv.ik_preprocess.solver import LmOptions as LmOptions
from flyenv.ik_preprocess.unpickle import load_pickle_safely as load_pickle_safely
