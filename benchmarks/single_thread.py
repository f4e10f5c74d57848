"""Single-threaded numerics for a benchmark's process: import before numpy.

The per-leg-frame numbers of the IK benchmarks are single-core numbers, and the runner's workers
should not oversubscribe the cores. Importing this module (first, before numpy) sets the BLAS /
OpenMP thread counts to 1 unless the environment already sets them.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
