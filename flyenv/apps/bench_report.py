"""The results of `flyenv bench`: the summary against the targets, a text table and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

MIN_FULL_OVER_BARE = 0.8  # target: full/bare throughput of the mujoco engine at every size
MAX_COLD_START_S = 30.0  # target: cold start on a GPU


def summarize(sweeps: dict[str, Any], starts: dict[str, Any],
              baselines: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per engine: best full-env realtime factor, its num_envs and overhead, and the targets.

    With `baselines` (sweeps at another physics step), also `speedup_over_baseline`: per size,
    full-step simulated seconds per wall second at the config's step over the baseline's.
    """
    summary: dict[str, Any] = {}
    for engine, result in sweeps.items():
        ok = [r for r in result["runs"] if r["ok"]]
        best = max(ok, key=lambda r: r["full"]["realtime_factor"], default=None)
        s = summary[engine] = {
            "physics_dt_s": result["config"]["physics_dt_s"],
            "substeps": result["config"]["control_decimation"],
            "best_full_realtime_factor": best and best["full"]["realtime_factor"],
            "best_num_envs": best and best["num_envs"],
            "overhead_at_best": best and best["overhead"],
            "env_overhead_at_best": best and best["env_overhead"]}
        if engine == "mujoco":
            s["full_over_bare"] = {str(r["num_envs"]): r["full_over_bare"] for r in ok}
            s["full_over_bare_target"] = MIN_FULL_OVER_BARE
            s["full_over_bare_met"] = bool(ok) and all(
                v >= MIN_FULL_OVER_BARE for v in s["full_over_bare"].values())
        else:
            s["fits_16384"] = next((r["ok"] for r in result["runs"] if r["num_envs"] == 16384),
                                   None)
        if baselines and engine in baselines:
            base = {r["num_envs"]: r for r in baselines[engine]["runs"] if r["ok"]}
            s["baseline_physics_dt_s"] = baselines[engine]["config"]["physics_dt_s"]
            s["baseline_substeps"] = baselines[engine]["config"]["control_decimation"]
            s["speedup_over_baseline"] = {
                str(r["num_envs"]): r["full"]["realtime_factor"]
                / base[r["num_envs"]]["full"]["realtime_factor"]
                for r in ok if r["num_envs"] in base}
        if engine in starts:
            s["cold_start_s"] = cold = starts[engine]["cold"]["start_s"]
            s["warm_start_s"] = starts[engine]["warm"]["start_s"]
            if torch.device(result["device"]).type == "cuda":
                s["cold_start_target_s"] = MAX_COLD_START_S
                s["cold_start_met"] = cold <= MAX_COLD_START_S
    return summary


def format_table(results: dict[str, Any]) -> str:
    """The sweeps as a text table, then one summary line per engine."""
    lines = [f"{'engine':<7}{'device':<8}{'dt [s]':>8}{'num_envs':>9}{'bare RTF':>10}"
             f"{'full RTF':>10}{'full sps':>11}{'full/bare':>10}{'env ovh':>9}{'MiB/world':>10}"]
    rows = [(engine, result, r) for sweeps in (results["sweeps"],
                                               results.get("baseline_sweeps", {}))
            for engine, result in sweeps.items() for r in result["runs"]]
    for engine, result, r in rows:
        dt = result["config"]["physics_dt_s"]
        head = f"{engine:<7}{result['device']:<8}{dt:>8.1e}{r['num_envs']:>9}"
        mem = "-"
        if "gpu_mem_per_world_bytes" in r:
            mem = f"{r['gpu_mem_per_world_bytes'] / 2**20:.3f}"
        lines.append(f"{head}  {r['error'][:70]}" if not r["ok"] else
                     f"{head}{r['bare']['realtime_factor']:>10.2f}"
                     f"{r['full']['realtime_factor']:>10.2f}"
                     f"{r['full']['env_steps_per_s']:>11.0f}{r['full_over_bare']:>10.2f}"
                     f"{r['env_overhead']:>9.0%}{mem:>10}")
    for engine, s in results["summary"].items():
        line = (f"{engine} (physics_dt_s {s['physics_dt_s']:g}, {s['substeps']} substeps per "
                f"env step): best full RTF (simulated s per wall s) "
                f"{s['best_full_realtime_factor'] or 0:.2f} at {s['best_num_envs']} envs, "
                f"overhead {s['overhead_at_best'] or 0:.0%} "
                f"(env's own {s['env_overhead_at_best'] or 0:.0%})")
        if "speedup_over_baseline" in s:
            ratios = ", ".join(f"{v:.2f}x at {n}" for n, v in s["speedup_over_baseline"].items())
            options = results.get("baseline_model_options") or {}
            model = "".join(f", {k}={v}" for k, v in options.items())
            line += (f"; full RTF over physics_dt_s {s['baseline_physics_dt_s']:g} "
                     f"({s['baseline_substeps']} substeps{model}): {ratios}")
        if "full_over_bare_met" in s:
            line += (f"; full/bare >= {s['full_over_bare_target']} at every size: "
                     f"{'yes' if s['full_over_bare_met'] else 'NO'}")
        if "fits_16384" in s:
            line += f"; 16384 worlds fit: {s['fits_16384']}"
        if "cold_start_s" in s:
            line += f"; start cold {s['cold_start_s']:.1f} s, warm {s['warm_start_s']:.1f} s"
        lines.append(line)
    return "\n".join(lines + [f"{e}: skipped ({why})" for e, why in results["skipped"].items()])


def plot(results: dict[str, Any], path: str | Path) -> Path:
    """Realtime factor against num_envs (log axes), bare and full per engine, as a PNG."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes: set[int] = set()
    curves = [(engine, result, "") for engine, result in results["sweeps"].items()]
    curves += [(engine, result, " [baseline]")
               for engine, result in results.get("baseline_sweeps", {}).items()]
    for engine, result, tag in curves:
        ok = [r for r in result["runs"] if r["ok"]]
        sizes.update(r["num_envs"] for r in ok)
        dt = result["config"]["physics_dt_s"]
        for label, kind, key, style in (
                ("bare physics", "bare", "realtime_factor", "--o"),
                ("full env step", "full", "realtime_factor", "-o"),
                ("physics within the full step", "full", "physics_realtime_factor", ":.")):
            ax.plot([r["num_envs"] for r in ok], [r[kind][key] for r in ok], style,
                    label=f"{engine} ({result['device']}, dt {dt:g} s{tag}): {label}",
                    alpha=0.5 if tag else 1.0)
    ax.set(xscale="log", yscale="log", xlabel="num_envs (simulated flies)",
           ylabel="realtime factor (sim s / wall s)",
           title=f"FlyImitationVecEnv throughput, {results['environment']['device']}")
    ax.set_xticks(sorted(sizes), [str(n) for n in sorted(sizes)])
    ax.set_xticks([], minor=True)
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
