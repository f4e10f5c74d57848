"""Figures for people to look at: tracking of a replayed reference.

matplotlib with the Agg backend (files only, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from flyenv.body import constants as c  # noqa: E402
from flyenv.sim.tracking import TrackingResult  # noqa: E402


def plot_tracking(results: list[TrackingResult], path: str | Path, *, leg: str = "LF") -> Path:
    """Joint tracking of one leg, RMS error per DOF and (for free replays) thorax height.

    Args:
        results: replays to show side by side (e.g. tethered and free).
        path: PNG to write.
        leg: which leg's seven joints to plot over time.

    Returns:
        The path written.
    """
    if leg not in c.LEGS:
        raise ValueError(f"plot_replay: leg must be one of {list(c.LEGS)}, got {leg!r}")
    legid = c.LEGS.index(leg)
    fig, axes = plt.subplots(3, len(results), figsize=(6 * len(results), 10), squeeze=False)
    for col, result in enumerate(results):
        label = "tethered" if result.tethered else "free"
        ax = axes[0, col]
        for j, joint in enumerate(c.JOINTS):
            dofid = legid * c.DOF_PER_LEG + j
            line, = ax.plot(result.time_s, np.degrees(result.joint_angles[:, dofid]), lw=1.2,
                            label=joint)
            ax.plot(result.time_s, np.degrees(result.target_angles[:, dofid]), "--", lw=0.8,
                    color=line.get_color())
        ax.set(title=f"{label}: {leg} joints (solid sim, dashed reference)", xlabel="time [s]",
               ylabel="angle [deg]")
        ax.legend(fontsize=7, ncol=2)
        rms = result.tracking_rms_deg().reshape(c.NUM_LEGS, c.DOF_PER_LEG)
        ax = axes[1, col]
        image = ax.imshow(rms, cmap="viridis", aspect="auto")
        ax.set(title=f"{label}: RMS tracking error [deg]", xticks=range(c.DOF_PER_LEG),
               yticks=range(c.NUM_LEGS), yticklabels=c.LEGS)
        ax.set_xticklabels(c.JOINTS, rotation=30, fontsize=7)
        fig.colorbar(image, ax=ax)
        ax = axes[2, col]
        if result.root_pos is None:
            ax.axis("off")
            continue
        ax.plot(result.time_s, result.root_pos[:, 2], label="thorax z (sim)")
        ax.plot(result.time_s, result.root_pos[:, 0], label="thorax x (sim)")
        if result.reference_root_pos is not None:
            ax.plot(result.time_s, result.reference_root_pos[:, 0], "--", label="thorax x (ref)")
        ax.set(title=f"{label}: thorax position", xlabel="time [s]", ylabel="[mm]")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
