"""Shared fixtures: one Warp kernel cache, the device switch, and the embedded gait."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offscreen rendering (video tests): MuJoCo reads MUJOCO_GL when it is first imported, which
# test modules may do before flyenv sets this default itself.
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

REPO = Path(__file__).resolve().parents[1]
# The real recordings shipped with the package (flyenv/data, Apache-2.0; see its README.md).
DATA = REPO / "flyenv" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kernel-cache-dir", default=os.environ.get(
        "FLYENV_KERNEL_CACHE", str(REPO / ".cache" / "warp")),
        help="Warp kernel cache shared by all test workers (default: .cache/warp)")
    parser.addoption("--cpu", action="store_true", help="run Warp tests on the CPU device")


def pytest_configure(config: pytest.Config) -> None:
    # Point Warp at one cache before any test imports it, so compiled MuJoCo Warp kernels are
    # reused across workers and runs (the first compile takes tens of seconds).
    os.environ["WARP_CACHE_PATH"] = config.getoption("--kernel-cache-dir")


@pytest.fixture(scope="session")
def warp_device(request: pytest.FixtureRequest) -> str:
    """'cuda:0' when a GPU is there (and --cpu is not given), else 'cpu'."""
    import warp as wp

    wp.config.quiet = True
    wp.config.kernel_cache_dir = request.config.getoption("--kernel-cache-dir")
    wp.init()
    if not request.config.getoption("--cpu") and wp.is_cuda_available():
        return "cuda:0"
    return "cpu"


@pytest.fixture(scope="session")
def gait():
    from flyenv.motion import tripod_gait

    return tripod_gait(duration_s=1.0)
