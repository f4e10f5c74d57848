"""Physics settings by measurement: which step and solver keep a walking fly's physics.

For the free fly on three clips (the embedded tripod gait; the DeepFly3D walk, 1000 frames at
100 Hz, replayed through the IK with `--align`; the first 5 s of the Anipose recording, front
legs only), every setting in `SETTINGS` (Euler steps 5e-5 to 1e-3 s; implicitfast, elliptic
cones, fewer solver iterations, a looser tolerance and 10x joint armature at the coarse steps) is
compared with a fine reference step (2.5e-5 s, today's model). The policy rate stays 500 Hz: a
step `dt` runs `2 ms / dt` substeps per control step, the targets being the clip's next frame
(zero residuals), as the env does.

Per clip and setting:
- whole clip, one world, C MuJoCo (`_replay`): mean joint tracking error [deg], mean thorax
  height [mm], distance walked (net forward thorax displacement) [mm] and mean forward speed
  [mm/s], claw slip in stance (horizontal claw speed while its tarsus touch sensor reads contact,
  at consecutive 500 Hz samples; mean, and median reported) [mm/s], the claw's net slide from
  touchdown to liftoff per stance bout [mm], stance fraction (tarsus contact, all legs), peak
  contact force (largest 2 ms mean of one tarsus's touch force) [µN] and the largest single-step
  value (reported, not judged);
- random starts (`_random_starts`): 64 flies in `FlyImitationVecEnv` (mujoco engine, seeded reset,
  autoreset disabled) for 0.5 s: worlds terminated (any cause, and by cause), non-finite worlds,
  and the env's simulated seconds per wall second on this machine (noisy: a shared 2-core box).

Each metric has a tolerance against the fine reference (`TOLERANCES`, their reasons in
`TOLERANCE_REASONS`), widened to the metric's noise floor: the largest distance from the
reference that the steps no coarser than the old default (5e-5 and 1e-4 s) already show, since
a difference that a finer step also makes is not the coarse step's doing. A setting passes when
every metric on every clip is within it. The JSON (`benchmarks/results/physics_study.json`)
holds every number, the tolerances and the verdicts; the PNG the metrics against the step; the
.md the table. IK references are cached in a temporary folder (never in the repository).

Issue 22 added fidelity against the recordings: `--screen` replays the walking clips (the
tripod gait straight and turning at 1.6 rad/s, known root motion; the df3d walk, its stance
odometry) and reports forward speed and yaw rate against the clip's own (`recording_truth`),
slide at the contact in the clip's stance (`flyenv.sim.contacts.contact_slide_speed`), swing
drag and stance fraction, judged by `FIDELITY`; `--terminations` runs the random starts alone;
`--options '{"adhesion_gain_uN": 20, ...}'` puts a contact model under every setting, the fine
reference included (last round's question asked again with it). Every setting's options are
relative to the model before issue 22's feet (`SLIDING_FEET`: no adhesion, no noslip), so the
rounds keep their meaning now that adhesion and noslip are the defaults; "defaults" is today's
model.

Usage (from the repository root; about 30 minutes on the 2-core box, 40 when it is shared):

    python benchmarks/physics_study.py [--settings NAME ...] [--starts 64] [--out DIR]
    python benchmarks/physics_study.py --starts-from OLD.json  # redo the replays only
    python benchmarks/physics_study.py --from-json OLD.json    # judge and plot again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from physics_replay import RANDOM_START_STEPS, _random_starts, _replay, clips, recording_truth
from physics_settings import (
    CONTROL_DT_S,
    FIDELITY,
    FINE_DT_S,
    NOISE_FLOOR,
    REFERENCE,
    SETTINGS,
    TODAY,
    TOLERANCE_REASONS,
    TOLERANCES,
    WALKING_CLIPS,
    Setting,
    fidelity,
    judge,
)

from flyenv.apps.bench import environment_info
from flyenv.body.mjcf import SLIDING_FEET


def run_study(settings: list[Setting], num_envs: int, cache: Path,
              starts_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every setting on every clip; the fine reference is always included.

    `starts_from`: the results of an earlier run whose random starts are kept (only the
    whole-clip replays are run again).
    """
    if REFERENCE not in [s.name for s in settings]:
        settings = [SETTINGS[0], *settings]
    motions = clips(cache)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    fine_q: dict[str, np.ndarray] = {}
    for setting in settings:
        results[setting.name] = {}
        for clip, (motion, path) in motions.items():
            replay = _replay(motion, setting)
            q = replay.pop("joint_angles_rad", None)
            if setting.name == REFERENCE:
                fine_q[clip] = q
            if q is not None:
                replay["vs_fine_joint_deg"] = float(np.degrees(np.abs(q - fine_q[clip]).mean()))
            if starts_from is not None and setting.name in starts_from:
                starts = starts_from[setting.name][clip]["starts"]
            else:
                starts = _random_starts(path, setting, num_envs)
            results[setting.name][clip] = {"replay": replay, "starts": starts}
            _log(setting, clip, replay, starts)
    return {"settings": [dataclasses.asdict(s) | {"decimation": s.decimation} for s in settings],
            "results": results}


def _log(setting: Setting, clip: str, replay: dict[str, Any], starts: dict[str, Any]) -> None:
    keys = ("tracking_error_deg", "thorax_height_mm", "distance_mm", "claw_slip_mm_s",
            "stance_fraction", "peak_force_2ms_uN")
    shown = " ".join(f"{k.split('_')[0]}={replay.get(k, float('nan')):.3g}" for k in keys)
    print(f"{setting.name:<36} {clip:<14} {shown} term={starts['terminated']} "
          f"nan={starts['nonfinite']} rtf={starts['env_realtime_factor']:.2f}", flush=True)


def screen(settings: list[Setting], cache: Path, out: Path,
           clip_names: tuple[str, ...] = WALKING_CLIPS) -> dict[str, Any]:
    """Whole-clip replays only, against the recordings; JSON rewritten after every replay."""
    motions = {k: v for k, v in clips(cache).items() if k in clip_names}
    study: dict[str, Any] = {
        "truth": {clip: recording_truth(m) for clip, (m, _) in motions.items()},
        "fidelity_targets": FIDELITY, "environment": environment_info("cpu"),
        "settings": [dataclasses.asdict(s) | {"decimation": s.decimation} for s in settings],
        "results": {}}
    for setting in settings:
        study["results"][setting.name] = {}
        for clip, (motion, _) in motions.items():
            replay = _replay(motion, setting)
            replay.pop("joint_angles_rad", None)
            row = {"replay": replay, "fidelity": fidelity(replay, study["truth"][clip])}
            study["results"][setting.name][clip] = row
            _log_fidelity(setting, clip, row)
            out.write_text(json.dumps(study, indent=1, default=_json) + "\n")
    return study


def terminations(settings: list[Setting], cache: Path, out: Path, num_envs: int,
                 clip_names: tuple[str, ...]) -> dict[str, Any]:
    """Random starts only (`_random_starts`) per setting and clip; JSON rewritten as it goes."""
    motions = {k: v for k, v in clips(cache).items() if k in clip_names}
    study: dict[str, Any] = {"environment": environment_info("cpu"), "num_starts": num_envs,
                             "random_start_steps": RANDOM_START_STEPS, "results": {}}
    for setting in settings:
        study["results"][setting.name] = {}
        for clip, (_, path) in motions.items():
            starts = _random_starts(path, setting, num_envs)
            study["results"][setting.name][clip] = starts
            print(f"{setting.name:<44} {clip:<14} terminated {starts['terminated']} "
                  f"{starts['by_cause']} rtf {starts['env_realtime_factor']:.2f}", flush=True)
            out.write_text(json.dumps(study, indent=1, default=_json) + "\n")
    return study


def _log_fidelity(setting: Setting, clip: str, row: dict[str, Any]) -> None:
    r, f = row["replay"], row["fidelity"]
    if r.get("diverged"):
        print(f"{setting.name:<44} {clip:<10} diverged", flush=True)
        return
    print(f"{setting.name:<44} {clip:<10} speed {r['heading_speed_mm_s']:6.2f} "
          f"({f['speed_ratio']:.2f}x) yaw {r['yaw_rate_rad_s']:+.2f} rad/s stance slide "
          f"{r['stance_contact_slide_mm_s']:.2f} (med {r['stance_contact_slide_median_mm_s']:.2f})"
          f" drag {r['swing_drag_fraction']:.2f} @ {r['swing_drag_slide_mm_s']:.1f} claw slip "
          f"{r['claw_slip_mm_s']:.2f} stance {r['stance_fraction']:.2f} track "
          f"{r['tracking_error_deg']:.2f} rt {r['one_world_realtime_factor']:.2f} "
          f"{'PASS' if f['passes'] else f['failures']}", flush=True)


# Output -----------------------------------------------------------------------------------

def plot(study: dict[str, Any], path: Path) -> Path:
    """Each judged metric against the step (Euler lines per clip, other settings as markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [*TOLERANCES, "env_realtime_factor"]
    fig, axes = plt.subplots(2, 6, figsize=(24, 7.5))
    settings = {s["name"]: s for s in study["settings"]}
    results = study["results"]
    clip_names = list(next(iter(results.values())))
    colors = {clip: f"C{i}" for i, clip in enumerate(clip_names)}
    markers = {"implicitfast": "s", "elliptic implicitfast": "*", "elliptic": "^", "iter": "v",
               "tol": "D", "armature": "P"}
    for ax, metric in zip(axes.flat, metrics, strict=False):
        part = "replay" if metric not in ("terminated", "nonfinite", "env_realtime_factor") \
            else "starts"
        for clip in clip_names:
            euler = sorted((s["dt_s"], results[n][clip]) for n, s in settings.items()
                           if n.startswith("euler"))
            xs = [dt for dt, r in euler if metric in r[part]]
            ys = [r[part][metric] for _, r in euler if metric in r[part]]
            ax.plot(xs, ys, "-o", color=colors[clip], label=f"{clip} (Euler)")
            for name, s in settings.items():
                key = next((k for k in markers if name.startswith(k)), None)
                value = results[name][clip][part].get(metric)
                if key and value is not None:
                    ax.plot(s["dt_s"] * (1.06 if "armature" in name else 1.0), value,
                            markers[key], color=colors[clip], alpha=0.7, ms=6)
            if metric in TOLERANCES:
                ref = results[REFERENCE][clip][part][metric]
                ax.axhline(ref, color=colors[clip], lw=0.6, ls=":")
        ax.set(xscale="log", title=metric, xlabel="physics step [s]")
        ax.grid(True, alpha=0.3)
    handles = [plt.Line2D([], [], marker=m, ls="", color="k", label=k) for k, m in markers.items()]
    axes.flat[0].legend(handles=axes.flat[0].get_legend_handles_labels()[0] + handles,
                        fontsize="x-small")
    fig.suptitle(f"Free fly, 500 Hz control, against dt {FINE_DT_S:g} s (dotted)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(study: dict[str, Any]) -> str:
    """Markdown: per setting and clip, the judged metrics (fine reference first)."""
    head = ("| setting | clip | track ° | height mm | dist mm | slip mm/s | slide mm | stance | "
            "peak µN | term | NaN | env ×RT (64) | pass |")
    lines = [head, "|" + "---|" * 13]
    for name, per_clip in study["results"].items():
        verdict = study["verdicts"][name]
        for clip, row in per_clip.items():
            r, s = row["replay"], row["starts"]
            if r.get("diverged"):
                lines.append(f"| {name} | {clip} | diverged ||||||| {s['terminated']} | "
                             f"{s['nonfinite']} | {s['env_realtime_factor']:.2f} | no |")
                continue
            bad = {f.split(": ")[1] for f in verdict["failures"] if f.startswith(f"{clip}: ")}

            def cell(metric: str, fmt: str, r: dict = r, s: dict = s, bad: set = bad) -> str:
                value = (s if metric in ("terminated", "nonfinite") else r)[metric]
                return f"{value:{fmt}}" + (" ✗" if metric in bad else "")

            lines.append(
                f"| {name} | {clip} | {cell('tracking_error_deg', '.2f')} | "
                f"{cell('thorax_height_mm', '.3f')} | {cell('distance_mm', '.2f')} | "
                f"{cell('claw_slip_mm_s', '.2f')} | {cell('stance_slide_mm', '.3f')} | "
                f"{cell('stance_fraction', '.2f')} | "
                f"{cell('peak_force_2ms_uN', '.1f')} | {cell('terminated', 'd')} | "
                f"{cell('nonfinite', 'd')} | {s['env_realtime_factor']:.2f} | "
                f"{'yes' if verdict['passes'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the study and writes physics_study.json, .png and .md under --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", help="setting names (default: all)")
    parser.add_argument("--starts", type=int, default=64, help="random starts per clip")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--from-json", type=Path,
                        help="judge, tabulate and plot the results of an earlier run again")
    parser.add_argument("--starts-from", type=Path,
                        help="keep the random starts of an earlier run's JSON, redo the replays")
    parser.add_argument("--screen", type=Path,
                        help="replays only, against the recordings (issue 22), JSON to this path")
    parser.add_argument("--options", type=json.loads, default={},
                        help="ModelOptions fields (JSON) under every setting, the reference too")
    parser.add_argument("--terminations", type=Path,
                        help="random starts only (--starts per clip), JSON to this path")
    parser.add_argument("--clips", nargs="+", default=list(WALKING_CLIPS),
                        help="clips of --screen and --terminations")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "flyenv-physics-study")
    args = parser.parse_args(argv)
    chosen = [s for s in SETTINGS if args.settings is None or s.name in args.settings]
    if args.options and not (args.screen or args.terminations):
        chosen = [SETTINGS[0]] + [s for s in chosen if s.name != REFERENCE]
    # The model before issue 22's feet, then --options, under every setting, the fine
    # reference included.
    chosen = [dataclasses.replace(s, options={**SLIDING_FEET, **args.options, **s.options})
              for s in chosen]
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.screen:
        screen(chosen, args.cache, args.screen, tuple(args.clips))
        return 0
    if args.terminations:
        terminations(chosen, args.cache, args.terminations, args.starts, tuple(args.clips))
        return 0
    if args.from_json:
        study = json.loads(args.from_json.read_text())
        environment, start = study["environment"], start - study["wall_s"]
    else:
        environment = environment_info("cpu")
        previous = (json.loads(args.starts_from.read_text())["results"] if args.starts_from
                    else None)
        study = run_study(chosen, args.starts, args.cache, previous)
    study["verdicts"] = judge(study["results"])
    passing = {n: v for n, v in study["verdicts"].items() if v["passes"]}
    fastest = max(passing, key=lambda n: passing[n]["env_realtime_factor_64"], default=None)
    study.update(reference=REFERENCE, old_default=TODAY, noise_floor=NOISE_FLOOR,
                 control_dt_s=CONTROL_DT_S,
                 random_start_steps=RANDOM_START_STEPS, num_starts=args.starts,
                 tolerances={k: {"kind": v[0], "value": v[1], "why": TOLERANCE_REASONS[k]}
                             for k, v in TOLERANCES.items()},
                 fastest_passing=fastest, environment=environment,
                 wall_s=time.perf_counter() - start,
                 date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "physics_study.json").write_text(json.dumps(study, indent=1, default=_json) + "\n")
    plot(study, args.out / "physics_study.png")
    text = table(study)
    (args.out / "physics_study.md").write_text(text + "\n")
    print(text)
    print(f"fastest setting within every tolerance: {fastest}")
    return 0


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
