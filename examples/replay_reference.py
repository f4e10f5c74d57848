"""Replay a reference motion in the tethered and the free fly and plot the joint tracking.

Usage:
    python examples/replay_reference.py [--reference FILE.npz] [--output DIR] [--duration S]
                                        [--leg LF]

Example:
    python examples/replay_reference.py --output replay-out
    python examples/replay_reference.py --reference flyenv-demo/reference_tripod.npz --duration 1

Without `--reference` it replays flyenv's embedded tripod gait; `--duration` replays the first
seconds of either (a cut reference is saved as reference.npz beside the outputs). It writes the
tracking plot and a video of each replay (tethered.mp4, free.mp4: the vector env following the
reference with zero residual, with its ghost, 10x slowed down) and prints the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from flyenv.apps.options import add_dataclass_arguments
from flyenv.apps.plots import plot_tracking
from flyenv.apps.replay import replay_video
from flyenv.body import DOF_NAMES
from flyenv.motion import ReferenceMotion, load, save, tripod_gait
from flyenv.sim import track_reference


@dataclasses.dataclass(frozen=True)
class Args:
    reference: Path | None = None
    """ReferenceMotion .npz to replay; the embedded tripod gait when omitted."""
    output: Path = Path("replay-out")
    """Folder for the tracking plot and the videos."""
    duration: float | None = None
    """Seconds to replay: the first S of --reference (default: all of it), or the length of the
    embedded gait (default: 2)."""
    leg: str = "LF"
    """Leg whose joints the plot shows over time."""


def first_seconds(motion: ReferenceMotion, seconds: float) -> ReferenceMotion:
    """The motion's first `seconds` (all of it when it is shorter)."""
    if not seconds > 0:
        raise SystemExit(f"--duration must be > 0 s, got {seconds}")
    return motion.frames(0, min(motion.num_frames, int(round(seconds * motion.fps)) + 1))


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, Args)
    return Args(**vars(parser.parse_args()))


def main() -> None:
    args = parse_args()
    if args.reference is None:
        motion = tripod_gait(duration_s=args.duration or 2.0)
    else:
        motion = load(args.reference)
        if args.duration is not None:
            motion = first_seconds(motion, args.duration)
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
    # The env replays a file: the embedded gait's, or the cut one's.
    cut = args.reference is None or args.duration is not None
    reference = save(motion, args.output / "reference.npz") if cut else args.reference
    for tethered in (True, False):
        video, mean_reward, max_reward = replay_video(
            reference, args.output / f"{'tethered' if tethered else 'free'}.mp4",
            steps=int(motion.duration_s * 500), tethered=tethered)
        print(f"wrote {video} (mean imitation reward {mean_reward:.3f} of {max_reward:.2f})")


if __name__ == "__main__":
    main()
