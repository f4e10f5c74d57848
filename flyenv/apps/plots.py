"""Figures for people to look at: tracking of a replayed reference, a training run's curve.

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
# The training curve's two final scores: unlike in colour, line style and width.
_POLICY_STYLE = dict(color="tab:green", ls="-", lw=1.8)
_REPLAY_STYLE = dict(color="tab:orange", ls="--", lw=1.4)


def plot_tracking(results: list[TrackingResult], path: str | Path, *, leg: str = "LF") -> Path:
    """Joint tracking of one leg, RMS error per DOF and (for free replays) the thorax's path.

    One column per result (e.g. tethered and free): the leg's seven joints over time, then the
    RMS error per joint as a heatmap, every heatmap on one colour scale with one colour bar
    (the same colour is the same error in every column). Below, for the free results, the
    thorax position (x, y, z) over time and its path seen from above, each beside the
    reference's where the clip has root motion.

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
    free = [r for r in results if r.root_pos is not None]
    ncol = len(results)
    fig = plt.figure(figsize=(6 * max(ncol, 2), 7.5 + 3.8 * bool(free)), layout="constrained")
    top, bottom = (fig.subfigures(2, 1, height_ratios=[2, 1.05]) if free else (fig, None))
    axes = top.subplots(2, ncol, squeeze=False)
    labels = ["tethered" if r.tethered else "free" for r in results]
    for col, (result, label) in enumerate(zip(results, labels, strict=True)):
        handles = _plot_joints(axes[0, col], result, leg, label)
    # One legend for the joint panels, above them: inside an axes it covered the curves.
    top.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8)
    _plot_rms(top, axes[1], results, labels)
    if free:
        _plot_thorax(bottom, free)
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


def _plot_rms(fig: plt.Figure, axes: np.ndarray, results: list[TrackingResult],
              labels: list[str]) -> None:
    # One colour scale from 0 for every heatmap, so colours compare across columns.
    rms = [r.tracking_rms_deg().reshape(c.NUM_LEGS, c.DOF_PER_LEG) for r in results]
    finite = [v for v in rms if np.isfinite(v).any()]
    vmax = max((float(np.nanmax(v)) for v in finite), default=1.0) or 1.0
    for ax, values, label in zip(axes, rms, labels, strict=True):
        image = ax.imshow(values, cmap="viridis", aspect="auto", vmin=0.0, vmax=vmax)
        ax.set(title=f"{label}: RMS tracking error per joint (mean "
                     f"{np.nanmean(values):.2f} deg)", xticks=range(c.DOF_PER_LEG),
               yticks=range(c.NUM_LEGS), yticklabels=c.LEGS)
        ax.set_xticklabels(c.JOINTS, rotation=30, fontsize=7)
    fig.colorbar(image, ax=list(axes), label="RMS error [deg] (one scale)", shrink=0.9)


def _plot_thorax(fig: plt.Figure, results: list[TrackingResult]) -> None:
    # Left: x, y, z over time; right: the path from above (x forward, y left), equal axes.
    over_time, top_view = fig.subplots(1, 2, width_ratios=[1.4, 1])
    for k, axis in enumerate("xyz"):
        for result in results:
            over_time.plot(result.time_s, result.root_pos[:, k], color=f"C{k}",
                           label=f"{axis} (sim)", **_SIM_STYLE)
            if result.reference_root_pos is not None:
                over_time.plot(result.time_s, result.reference_root_pos[:, k],
                               **{**_REF_STYLE, "color": f"C{k}"}, label=f"{axis} (reference)")
    over_time.set(title="free: thorax position", xlabel="time [s]",
                  ylabel="thorax position [mm]")
    over_time.legend(fontsize=8, loc="upper left", ncol=2)
    for result in results:
        path_mm = result.root_pos
        top_view.plot(path_mm[:, 0], path_mm[:, 1], color="C3", label="sim", **_SIM_STYLE)
        top_view.plot(*path_mm[0, :2], "o", color="C3", ms=5, label="start")
        if result.reference_root_pos is not None:
            ref = result.reference_root_pos
            top_view.plot(ref[:, 0], ref[:, 1], label="reference", **_REF_STYLE)
        else:
            top_view.text(0.5, 0.03, "the clip has no root motion: no reference path",
                          ha="center", transform=top_view.transAxes, color="grey", fontsize=8)
    top_view.set_aspect("equal", adjustable="datalim")
    top_view.set(title="free: thorax path, top view", xlabel="x (forward) [mm]",
                 ylabel="y (left) [mm]")
    top_view.legend(fontsize=8, loc="upper left")


def plot_training_curve(curve: list[dict], evaluation: dict[str, float], path: str | Path,
                        ) -> Path:
    """The imitation score per iteration, and the final evaluation against the replay baseline.

    Left: the rollout's score (with exploration noise) per iteration, with the deterministic
    evaluation and the replay of the reference (zero residuals) as labelled lines. Right: those
    two alone, on an axis zoomed to their difference, with their values: they are often within
    0.01 of each other, which on the left's scale reads as one line.

    Args:
        curve: per iteration, at least `env_steps` and `score` (the rollout's reward per step
            over the env's maximum).
        evaluation: `score` (the policy's) and `replay_score`.
        path: PNG to write.

    Returns:
        The path written.
    """
    policy, replay = evaluation["score"], evaluation["replay_score"]
    fig, (ax, final) = plt.subplots(1, 2, figsize=(9, 4), width_ratios=[3, 1],
                                    layout="constrained")
    steps = [r["env_steps"] for r in curve]
    ax.plot(steps, [r["score"] for r in curve], "o-", color="C0", ms=3,
            label="rollout (with exploration)")
    ax.axhline(policy, **_POLICY_STYLE, label=f"policy, deterministic: {policy:.3f}")
    ax.axhline(replay, **_REPLAY_STYLE, label=f"replay of the reference: {replay:.3f}")
    values = [r["score"] for r in curve] + [policy, replay]
    ax.set(xlabel="env steps", ylabel="imitation score (reward / max)",
           ylim=(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.05)))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)

    for x, (value, style) in enumerate(((replay, _REPLAY_STYLE), (policy, _POLICY_STYLE))):
        final.plot([x - 0.3, x + 0.3], [value, value], lw=3, color=style["color"])
        final.annotate(f"{value:.4f}", (x, value), textcoords="offset points", xytext=(0, 6),
                       ha="center", fontsize=9, color=style["color"])
    half = max(abs(policy - replay), 0.002) * 1.6
    middle = (policy + replay) / 2
    final.set(xlim=(-0.7, 1.7), ylim=(middle - half, middle + half), xticks=[0, 1],
              title=f"final: policy {policy - replay:+.4f} vs replay", ylabel="imitation score")
    final.set_xticklabels(["replay", "policy"])
    final.title.set_fontsize(9)
    final.grid(alpha=0.3, axis="y")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
