import json
import runpy
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import flyenv  # noqa: F401  (registers FlyImitation-v0)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run_example(name: str, args: list[str], monkeypatch, capsys) -> str:
    """Runs examples/<name> as a script with `args`, in this process; returns its stdout.

    In-process rather than a subprocess: the examples' imports (torch, mujoco) are already
    loaded here, which saves their start-up in every test.
    """
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_replay_reference_example_runs(tmp_path, monkeypatch, capsys):
    out = _run_example("replay_reference.py", ["--output", str(tmp_path), "--duration", "0.05",
                                               "--leg", "RM"], monkeypatch, capsys)
    assert "tethered: RMS" in out and "free: RMS" in out
    assert (tmp_path / "tracking.png").stat().st_size > 10_000
    assert (tmp_path / "tethered.mp4").stat().st_size > 1_000
    assert (tmp_path / "free.mp4").stat().st_size > 1_000


def test_ppo_imitation_example_runs(tmp_path, monkeypatch, capsys):
    out = _run_example("ppo_imitation.py", [
        "--device", "cpu", "--num-envs", "4", "--num-steps", "8", "--total-timesteps", "64",
        "--update-epochs", "1", "--eval-steps", "3", "--video-steps", "4",
        "--output", str(tmp_path)], monkeypatch, capsys)
    assert "iter 2/2" in out and "evaluation: imitation score" in out
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert len(curve["curve"]) == 2 and 0 < curve["evaluation"]["score"] <= 1
    assert (tmp_path / "curve.png").stat().st_size > 5_000
    assert (tmp_path / "policy.mp4").stat().st_size > 1_000
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(checkpoint["obs_norm"]) == {"mean", "var", "count"}


def test_flyenv_train_cli(tmp_path):
    from flyenv.cli import main

    # A wall-time limit below one iteration's time stops after the first of 3 iterations.
    assert main(["train", "--device", "cpu", "--num-envs", "2", "--num-steps", "4",
                 "--total-timesteps", "24", "--update-epochs", "1", "--eval-steps", "2",
                 "--time-limit-s", "1e-6", "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "curve.json").read_text())
    assert [r["iteration"] for r in result["curve"]] == [1]
    evaluation = result["evaluation"]
    assert evaluation["score"] > 0
    # The replay baseline is the zero-residual rollout from the same seeded starts.
    env = gym.make_vec("flyenv/FlyImitation-v0", num_envs=2, device="cpu",
                       autoreset_mode="same_step")
    env.reset(seed=12345)
    rewards = [env.step(torch.zeros(2, 42))[1].mean() for _ in range(2)]
    env.close()
    assert evaluation["replay_score"] == pytest.approx(float(sum(rewards)) / 2 / env.max_reward,
                                                       rel=1e-5)


def test_recording_to_policy_example_runs(tmp_path, monkeypatch, capsys):
    out = _run_example("recording_to_policy.py", [
        "--output", str(tmp_path), "--device", "cpu", "--num-envs", "2",
        "--total-timesteps", "32", "--video-steps", "5", "--duration", "0.4"],
        monkeypatch, capsys)
    assert "IK:" in out and "policy video" in out
    assert (tmp_path / "ik" / "keypoints_tripod.png").exists()
    assert (tmp_path / "train" / "policy.mp4").stat().st_size > 1_000


def test_train_keeps_checkpoint_and_curve_when_the_video_fails(tmp_path, monkeypatch):
    # Rendering needs EGL/OSMesa, which a training machine may lack: the run's results come
    # first, and a failed video is a warning.
    import flyenv.apps.train as train_module

    def no_gl(*args, **kwargs):
        raise RuntimeError("no OpenGL context")

    monkeypatch.setattr(train_module, "policy_video", no_gl)
    lines = []
    args = train_module.PpoArgs(device="cpu", num_envs=2, num_steps=4, total_timesteps=8,
                                update_epochs=1, eval_steps=2, video_steps=3,
                                output=str(tmp_path))
    with pytest.warns(RuntimeWarning, match="no OpenGL context"):
        result = train_module.train(args, log=lines.append)
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert saved["video_error"] == result["video_error"] and "video" not in saved["files"]
    assert len(saved["curve"]) == 1 and (tmp_path / "checkpoint.pt").exists()
    assert (tmp_path / "curve.png").exists()
    assert any(line.startswith("warning: policy video not written") for line in lines)
