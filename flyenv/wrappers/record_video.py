"""Records videos of chosen worlds of a vector env (like gymnasium's RecordVideo)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from flyenv.sim.render import annotate, write_video


class RecordVideo(gym.vector.VectorWrapper):
    """Writes mp4s of `env.render()` (the env's `render_worlds`, side by side).

    A video starts at every step where `step_trigger(step)` is true and lasts `video_length`
    env steps; it is written to `video_folder/<name_prefix>-step<N>.mp4` when it is complete or
    when the wrapper closes. Rendering copies the rendered worlds to the host, so record
    evaluation runs rather than every training step.

    Args:
        env: a vector env created with `render_mode="rgb_array"`.
        video_folder: where the videos go (created if needed).
        step_trigger: which env steps start a video; default: only the first.
        video_length: env steps per video.
        name_prefix: file name prefix.
        fps: frames per second of the file; default real time (1 / the env's control step).
    """

    def __init__(self, env: gym.vector.VectorEnv, video_folder: str | os.PathLike,
                 step_trigger: Callable[[int], bool] | None = None, video_length: int = 200,
                 name_prefix: str = "fly", fps: float | None = None) -> None:
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(f"RecordVideo needs an env made with render_mode='rgb_array', got "
                             f"{env.render_mode!r}")
        if video_length < 1:
            raise ValueError(f"video_length must be >= 1, got {video_length}")
        self.video_folder = Path(video_folder)
        self.step_trigger = step_trigger or (lambda step: step == 0)
        self.video_length = int(video_length)
        self.name_prefix = name_prefix
        self.fps = fps or 1.0 / env.unwrapped.config.control_dt_s
        self.step_id = 0
        self.written: list[Path] = []
        self._frames: list[np.ndarray] = []
        self._start = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Resets the env; a recording in progress continues through the reset."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._capture()
        return obs, info

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]:
        """Steps the env and records a frame while a video is on."""
        out = self.env.step(actions)
        self.step_id += 1
        self._capture()
        return out

    def _capture(self) -> None:
        if not self._frames and self.step_trigger(self.step_id):
            self._start = self.step_id
        elif not self._frames:
            return
        self._frames.append(np.concatenate(self.env.render(), axis=1))
        if len(self._frames) >= self.video_length:
            self._flush()

    def _flush(self) -> None:
        if self._frames:
            path = self.video_folder / f"{self.name_prefix}-step{self._start}.mp4"
            self.written.append(write_video(self._frames, path, self.fps))
            self._frames = []

    def close(self, **kwargs: Any) -> None:
        """Writes an unfinished video, then closes the env."""
        self._flush()
        super().close(**kwargs)


def record_episode(env: gym.vector.VectorEnv, policy: Callable[[torch.Tensor], torch.Tensor],
                   path: str | os.PathLike, *, steps: int, slowdown: float = 10.0,
                   reset_options: dict[str, Any] | None = None) -> tuple[Path, list[float]]:
    """Films world 0 of a freshly reset env (seed 0) for one episode and writes the mp4.

    Args:
        env: a vector env (or wrapper chain) with `render_mode="rgb_array"`.
        policy: (num_envs, obs_dim) observations -> (num_envs, 42) actions.
        path: the mp4 to write.
        steps: env steps at most (world 0's episode end stops earlier).
        slowdown: the video plays this many times slower than real time.
        reset_options: passed to the reset (e.g. the env's fixed `clip` and `frame`).

    Returns:
        (the mp4, world 0's reward at each step filmed).
    """
    speed = [f"{slowdown:g}x slow motion" if slowdown > 1 else
             "real time" if slowdown == 1 else f"{1 / slowdown:g}x speed"]

    def frame() -> np.ndarray:
        return annotate(env.render()[0], bottom_right=speed)

    obs, _ = env.reset(seed=0, options=reset_options)
    frames, rewards = [frame()], []
    with torch.no_grad():
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            rewards.append(float(reward[0]))
            frames.append(frame())
            if bool(terminated[0] | truncated[0]):
                break
    fps = 1.0 / env.unwrapped.config.control_dt_s / slowdown
    return write_video(frames, path, fps), rewards
