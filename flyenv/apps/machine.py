"""The machine and software a benchmark ran on, written the same way by every benchmark."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("flyenv", "mujoco", "mujoco_warp", "warp-lang", "torch", "gymnasium", "numpy",
            "scipy")


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    models = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model n")]
    return models[0] if models else platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info(device: str) -> dict[str, Any]:
    """The machine and software a benchmark ran on.

    Returns:
        `device` (GPU name on CUDA, else the CPU model), `cpu`, `cpu_count`, `load_avg` (1, 5,
        15 min), `packages` (None: not installed), `git_commit` and `git_dirty` (None outside a
        git checkout), `python`, `platform`.
    """
    import torch  # here, so that CPU-only benchmarks (IK) load torch only when they ask

    dev, commit = torch.device(device), _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain") if commit else None
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_model(),
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "packages": {name: _version(name) for name in PACKAGES},
            "git_commit": commit.strip() if commit else None,
            "git_dirty": None if status is None else bool(status.strip()),
            "python": platform.python_version(), "platform": platform.platform()}


def device_slug(device: str) -> str:
    """A file-name part for results of `device`: `cuda-nvidia-h200`, `cpu-amd-epyc-...`."""
    if not device.startswith("cuda"):
        return "cpu-" + re.sub(r"[^a-z0-9]+", "-", _cpu_model().lower()).strip("-")
    import torch

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
