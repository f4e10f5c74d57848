"""What the benchmarks share: where results go, the machine record, targets and JSON."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from flyenv.apps.machine import environment_info

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def machine_info() -> dict[str, Any]:
    """The machine (`flyenv.apps.machine.environment_info`, as every benchmark writes it), and
    what matters to the IK's parallel runs: the CPUs this process may use, thread settings."""
    info = environment_info("cpu")
    info.update({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus_available": len(os.sched_getaffinity(0)), "joblib": joblib.__version__,
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",
                                                        "OPENBLAS_NUM_THREADS")},
    })
    return info


def target(name: str, value: float | None, threshold: float, upper: bool = True,
           ) -> dict[str, Any]:
    """One target: value <= threshold (upper) or >= threshold."""
    ok = None if value is None else (value <= threshold if upper else value >= threshold)
    return {"name": name, "value": value, "threshold": threshold,
            "comparison": "<=" if upper else ">=", "pass": ok}


def jsonable(value: Any) -> Any:
    """Numpy scalars and arrays to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
