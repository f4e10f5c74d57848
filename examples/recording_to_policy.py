"""From a 3D pose recording to a trained imitation policy and its video, in one script.

Usage:
    python examples/recording_to_policy.py [--recording NAME|FILE] [--fps HZ] [--output DIR]
        [--device auto|cpu|cuda] [--num-envs N] [--total-timesteps N]

Example:
    python examples/recording_to_policy.py --output r2p
    python examples/recording_to_policy.py --recording df3d_walk_100 --output r2p-df3d
    python examples/recording_to_policy.py --recording my_fly.pkl --fps 100 --device cuda \\
        --num-envs 4096 --total-timesteps 50000000

Steps: the recording (without --recording: synthetic tracking keypoints of flyenv's tripod gait)
-> `flyenv.ik_preprocess.run` (IK, error plot) -> `flyenv.apps.train.train` (PPO on the vector env
imitating the IK output) -> `OUTPUT/train/policy.mp4` (the policy with its reference ghost).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from flyenv.apps.demo import resolve_recording, synthetic_recording
from flyenv.apps.options import add_dataclass_arguments
from flyenv.apps.train import PpoArgs, train
from flyenv.ik_preprocess import IkOptions
from flyenv.ik_preprocess import run as run_ik


@dataclasses.dataclass(frozen=True)
class Args:
    recording: str | None = None
    """A sample recording by name (`flyenv data` lists them, e.g. df3d_walk_100) or a file (pkl,
    npz, csv); synthetic keypoints of the tripod gait when omitted."""
    fps: float | None = None
    """Frame rate of the recording when the file does not say [Hz] (the samples' is known)."""
    output: Path = Path("recording-to-policy")
    """Folder for the reference, the IK plot, the checkpoint and the video."""
    device: str = "auto"
    """Torch device of the env and the policy."""
    num_envs: int = 32
    """Simulated flies."""
    total_timesteps: int = 20_000
    """PPO env steps over all flies."""
    video_steps: int = 200
    """Env steps of the policy video."""
    duration: float = 2.0
    """Length of the synthetic gait [s] (without --recording)."""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, Args)
    return Args(**vars(parser.parse_args()))


def main() -> None:
    args = parse_args()
    fps = args.fps
    if args.recording is None:
        recording = synthetic_recording(args.output / "keypoints_tripod.npz",
                                        duration_s=args.duration)
    else:
        recording, fps, _ = resolve_recording(args.recording, fps)
    report = run_ik([recording], args.output / "ik", IkOptions(fps=fps), plot=True,
                    overwrite=True)
    if report.failed:
        raise SystemExit(f"IK failed: {report.failed[0].message}")
    reference = args.output / "ik" / f"{Path(recording).stem}.npz"
    print(f"IK: {report.leg_frames} leg-frames, mean fit error "
          f"{report.error_mean_mm.mean() * 1e3:.1f} um -> {reference}")
    result = train(PpoArgs(device=args.device, num_envs=args.num_envs,
                           total_timesteps=args.total_timesteps, num_steps=16,
                           reference=str(reference), output=str(args.output / "train"),
                           eval_steps=50, video_steps=args.video_steps), log=print)
    print(f"policy video: {result['files']['video']}")


if __name__ == "__main__":
    main()
