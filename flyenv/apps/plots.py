"""Figures for people to look at: tracking of a replayed reference.

matplotlib with the Agg backend (files only, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from flyenv.body import constants as c  # noqa: E402
from flyenv.sim.tracking import TrackingResult  # noqa: E402

# The reference is drawn dashed and dark on top of the (wider, lighter) simulated curve, so
# both stay visible where they coincide, which is most of the time when tracking works.
_SIM_STYLE = dict(lw=2.2, alpha=0.6, zorder=2)
_REF_STYLE = dict(ls="--", lw=0.9, color="black", zorder=3)


def plot_tracking(results: list[TrackingResult], path: str | Path, *, leg: str = "LF") -> Path:
    """Joint tracking of one leg, RMS error per DOF and (for free replays) thorax position.

    Args:
        results: replays to show side by side (e.g. tethered and free).
        path: PNG to write.
        leg: which leg's seven joints to plot over time.

    Returns:
        The path written.

    Raises:
        ValueError: for a leg not in `LEGS`.
    """
    if leg not in c.LEGS:
        raise ValueError(f"plot_tracking: leg must be one of {list(c.LEGS)}, got {leg!r}")
    fig, axes = plt.subplots(3, len(results), figsize=(6 * len(results), 10.5), squeeze=False,
                             layout="constrained")
    for col, result in enumerate(results):
        label = "tethered" if result.tethered else "free"
        handles = _plot_joints(axes[0, col], result, leg, label)
        _plot_rms(fig, axes[1, col], result, label)
        _plot_thorax(axes[2, col], result, label)
    # One legend for the joint panels, above them: inside an axes it covered the curves.
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_joints(ax: plt.Axes, result: TrackingResult, leg: str, label: str) -> list:
    # Returns the legend handles: one colour per joint, and the reference's line style.
    legid = c.LEGS.index(leg)
    handles = []
    for j, joint in enumerate(c.JOINTS):
        dofid = legid * c.DOF_PER_LEG + j
        line, = ax.plot(result.time_s, np.degrees(result.joint_angles[:, dofid]), label=joint,
                        **_SIM_STYLE)
        ax.plot(result.time_s, np.degrees(result.target_angles[:, dofid]), **_REF_STYLE)
        handles.append(line)
    handles.append(Line2D([], [], label="reference (dashed)", **_REF_STYLE))
    ax.set(title=f"{label}: {leg} joints (coloured sim, dashed reference)", xlabel="time [s]",
           ylabel="joint angle [deg]")
    return handles


def _plot_rms(fig: plt.Figure, ax: plt.Axes, result: TrackingResult, label: str) -> None:
    rms = result.tracking_rms_deg().reshape(c.NUM_LEGS, c.DOF_PER_LEG)
    image = ax.imshow(rms, cmap="viridis", aspect="auto")
    ax.set(title=f"{label}: RMS tracking error per joint", xticks=range(c.DOF_PER_LEG),
           yticks=range(c.NUM_LEGS), yticklabels=c.LEGS)
    ax.set_xticklabels(c.JOINTS, rotation=30, fontsize=7)
    fig.colorbar(image, ax=ax, label="RMS error [deg]")


def _plot_thorax(ax: plt.Axes, result: TrackingResult, label: str) -> None:
    if result.root_pos is None:
        ax.axis("off")
        ax.text(0.5, 0.5, f"{label}: thorax fixed", ha="center", va="center",
                transform=ax.transAxes, color="grey")
        return
    ax.plot(result.time_s, result.root_pos[:, 0], label="x (sim)", color="C1", **_SIM_STYLE)
    ax.plot(result.time_s, result.root_pos[:, 2], label="z (sim)", color="C0", **_SIM_STYLE)
    if result.reference_root_pos is not None:
        ax.plot(result.time_s, result.reference_root_pos[:, 0], label="x (reference)",
                **_REF_STYLE)
    ax.set(title=f"{label}: thorax position", xlabel="time [s]", ylabel="thorax position [mm]")
    # Below the axes, where it covers no curve (constrained layout makes room for it).
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
