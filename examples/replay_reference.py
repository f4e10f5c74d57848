"""Replay a reference motion in the tethered and the free fly and plot the joint tracking.

Usage:
    python examples/replay_reference.py [--reference FILE.npz] [--output DIR] [--duration S]

Example:
    python examples/replay_reference.py --output replay-out
    python examples/replay_reference.py --reference flyenv-demo/reference_tripod.npz

Without `--reference` it replays flyenv's embedded tripod gait. It writes the tracking plot and a
video of each replay (tethered.mp4, free.mp4: the vector env following the reference with zero
residual, with its ghost, 10x slowed down) and prints the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from flyenv.apps.plots import plot_tracking
from flyenv.apps.replay import replay_video
from flyenv.body import DOF_NAMES
from flyenv.motion import load, save, tripod_gait
from flyenv.sim import track_reference


@dataclasses.dataclass(frozen=True)
class Args:
    reference: Path | None = None
    """ReferenceMotion .npz to replay; the embedded tripod gait when omitted."""
    output: Path = Path("replay-out")
    """Folder for the tracking plot."""
    duration: float = 2.0
    """Length of the embedded gait [s] (ignored with --reference)."""
    leg: str = "LF"
    """Leg whose joints the plot shows over time."""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Args):
        kind = float if field.type == "float" else (str if field.type == "str" else Path)
        parser.add_argument(f"--{field.name}", type=kind, default=field.default,
                            help=field.name)
    return Args(**vars(parser.parse_args()))


def main() -> None:
    args = parse_args()
    motion = tripod_gait(duration_s=args.duration) if args.reference is None else load(
        args.reference)
    print(f"reference: {motion.metadata.get('source', args.reference)}, {motion.num_frames} "
          f"frames at {motion.fps:g} Hz, missing legs: {list(motion.missing_legs) or 'none'}")
    results = []
    for tethered in (True, False):
        result = track_reference(motion, tethered=tethered)
        rms = result.tracking_rms_deg()
        worst = int(np.nanargmax(rms))
        label = "tethered" if tethered else "free"
        print(f"{label:>8}: RMS {np.sqrt(np.nanmean(rms**2)):.2f} deg, worst "
              f"{DOF_NAMES[worst]} {rms[worst]:.2f} deg, {result.realtime_factor:.1f}x real time")
        results.append(result)
    path = plot_tracking(results, args.output / "tracking.png", leg=args.leg)
    print(f"wrote {path}")
    reference = args.reference or save(motion, args.output / "reference.npz")
    for tethered in (True, False):
        video, mean_reward, max_reward = replay_video(
            reference, args.output / f"{'tethered' if tethered else 'free'}.mp4",
            steps=int(motion.duration_s * 500), tethered=tethered)
        print(f"wrote {video} (mean imitation reward {mean_reward:.3f} of {max_reward:.2f})")


if __name__ == "__main__":
    main()
