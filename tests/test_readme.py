"""Every code block of the README runs as written, in order, in one fresh folder.

Blocks build on each other the way a newcomer would run them (the demo writes `flyenv-demo/`,
the IK and env blocks read it). Only these changes are made, each for the suite's sake:
- `pip install ... &&` is dropped (the suite runs in the installed package) and a block that
  is only the test command (`python -m pytest`) is not run from inside the tests;
- a Python block that says "needs a GPU" runs on the CPU with 8 flies;
- the demo makes a 0.3 s gait instead of 2 s and films 30 env steps instead of 300.
The demo's artefacts are checked here too (the suite runs the demo once).
Untyped blocks (the pipeline diagram, commands for another machine) are not code to run here.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def _shell(code: str) -> str:
    lines = []
    for line in code.splitlines():
        line = re.sub(r"^pip install [^&]*&&\s*", "", line.strip())
        if not line or line.startswith("pip install") or line == "python -m pytest":
            continue
        lines.append(re.sub(r"^flyenv demo\b", "flyenv demo --duration 0.3 --video-steps 30",
                            line))
    return "\n".join(lines)


def _python(code: str) -> str:
    if "needs a GPU" in code:
        code = code.replace('device="cuda"', 'device="cpu"').replace("num_envs=4096",
                                                                     "num_envs=8")
    return code


def test_readme_blocks_run_in_order(tmp_path):
    import imageio.v2 as imageio
    import numpy as np

    from flyenv.motion import load

    blocks = _blocks()
    kinds = [kind for kind, _ in blocks]
    assert kinds.count("python") >= 4 and kinds.count("bash") >= 3
    bin_dir = Path(sys.executable).parent
    # TMPDIR too: SB3's default logger makes a folder there on every learn().
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "MUJOCO_GL": "egl"}
    if "PYTHONPATH" in os.environ:  # the flyenv under test (a checkout beside the installed one)
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    ran, stdout = 0, []
    for kind, code in blocks:
        if kind == "bash":
            script = _shell(code)
            if not script:
                continue
            command = ["bash", "-euo", "pipefail", "-c", script]
        elif kind == "python":
            command = [sys.executable, "-c", _python(code)]
        else:
            continue
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                timeout=600, env=env)
        assert result.returncode == 0, f"README block failed:\n{code}\n{result.stderr[-3000:]}"
        stdout.append(result.stdout)
        ran += 1
    assert ran >= 7
    # The demo (the first block that runs): every stage, and what it wrote.
    demo = tmp_path / "flyenv-demo"
    for stage in ("1. keypoints", "2. IK", "3. replay", "4. vector env"):
        assert stage in stdout[0]
    motion = load(demo / "reference_tripod.npz")
    assert motion.ik_error is not None and motion.num_frames == 151
    assert np.nanmean(motion.ik_error) < 0.02  # noise is 5 um
    for png in (demo / "ik_fit_tripod.png", demo / "tracking.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frames = imageio.mimread(demo / "imitation.mp4")
    assert len(frames) == 31 and frames[0].shape == (360, 480, 3)  # reset + 30 steps
    assert "imitation.mp4" in stdout[0]
    assert (tmp_path / "flyenv-demo" / "reference_tripod.npz").exists()
    assert (tmp_path / "refs" / "keypoints_tripod.npz").exists()
    assert (tmp_path / "ppo-out" / "curve.json").exists()


def test_readme_shows_each_rl_adapter_in_use():
    # The SB3 adapter worked from its docstring only; the README block above runs it.
    python = [code for kind, code in _blocks() if kind == "python"]
    sb3 = [code for code in python if "Sb3VecEnv(" in code]
    assert sb3 and "PPO(" in sb3[0] and ".learn(" in sb3[0]
    assert 'autoreset_mode="same_step"' in sb3[0]
