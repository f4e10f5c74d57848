"""The per-recording IK figure: fit error per keypoint over time and the joint angle traces."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from flyenv.body import constants as c  # noqa: E402
from flyenv.motion.format import ReferenceMotion  # noqa: E402
from flyenv.motion.io import atomic_write  # noqa: E402


def plot_ik(motion: ReferenceMotion, path: str | Path) -> Path:
    """Writes a PNG (atomically) of an IK result.

    Top: fit error of CTr, FTi, TiTa and Claw over time (mean over the legs present, shaded to
    the worst leg), with the thorax's x-y trajectory inset when the clip has root motion.
    Below, one panel per leg present: its seven joint angles [deg].

    Args:
        motion: a ReferenceMotion with `ik_error` (as `flyenv ik` writes it).
        path: the PNG to write.
    """
    if motion.ik_error is None:
        raise ValueError("plot_ik: the motion has no ik_error (not an IK result)")
    path = Path(path)
    legs = [i for i, leg in enumerate(c.LEGS) if leg not in motion.missing_legs]
    time_s = np.arange(motion.num_frames) / motion.fps
    fig, axes = plt.subplots(1 + len(legs), 1, figsize=(10, 2.2 * (1 + len(legs))),
                             sharex=True, constrained_layout=True)
    error = motion.ik_error[:, legs, 1:]  # (T, legs, 4)
    with np.errstate(invalid="ignore"):
        for k, name in enumerate(c.KEYPOINTS[1:]):
            line, = axes[0].plot(time_s, np.nanmean(error[:, :, k], axis=1), lw=1, label=name)
            axes[0].fill_between(time_s, 0, np.nanmax(error[:, :, k], axis=1),
                                 color=line.get_color(), alpha=0.15, lw=0)
    axes[0].set_ylabel("fit error [mm]")
    axes[0].legend(ncol=4, fontsize=8, loc="upper right")
    angles = np.degrees(motion.joint_angles.reshape(-1, c.NUM_LEGS, c.DOF_PER_LEG))
    for ax, legid in zip(axes[1:], legs, strict=True):
        for j, joint in enumerate(c.JOINTS):
            ax.plot(time_s, angles[:, legid, j], lw=1, label=joint)
        ax.set_ylabel(f"{c.LEGS[legid]} [deg]")
    axes[1].legend(ncol=7, fontsize=7, loc="upper right")
    axes[-1].set_xlabel("time [s]")
    if motion.has_root:  # the thorax trajectory, in an inset of the error panel
        inset = axes[0].inset_axes((0.01, 0.05, 0.2, 0.9))
        inset.plot(motion.root_pos[:, 0], motion.root_pos[:, 1], lw=1, color="k")
        inset.plot(*motion.root_pos[0, :2], "o", ms=3, color="g")
        inset.set_aspect("equal", adjustable="datalim")
        inset.set_title("thorax x-y [mm]", fontsize=7)
        inset.tick_params(labelsize=6)
    fig.suptitle(str(motion.metadata.get("source", "IK result")), fontsize=9)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, dpi=90, format="png")
    finally:
        plt.close(fig)
    return path
