"""Throughput of `FlyImitationVecEnv`: bare physics against the full env step, and start times.

`sweep` times `engine.step()` (physics only) and `env.step(zeros)` (physics, rewards,
observations, resets) per number of worlds; `start_times` times construction plus the first step
in fresh interpreters; `run` does both per engine and writes JSON and PNG (`flyenv bench` and
`benchmarks/env_bench.py` call it). The realtime factor is simulated seconds (of all flies
together) per wall second at the config's physics step; `run` can time a baseline physics step
(e.g. FlyGym's 1e-4 s) size by size beside the defaults.
"""

from __future__ import annotations

import argparse
import ast
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from flyenv.apps.machine import device_slug, environment_info
from flyenv.envs import FlyImitationConfig, FlyImitationVecEnv

DEFAULT_DEVICE = {"mujoco": "cpu", "warp": "cuda"}
# Where `flyenv bench` writes unless told: a folder of the user's in the working directory,
# never the repository's committed benchmarks/results (benchmarks/env_bench.py writes there).
USER_OUT = Path("flyenv-bench")
PROJECT_OUT = Path("benchmarks/results")
DEFAULT_NUM_ENVS = {"mujoco": [4, 8, 16, 32, 64, 128, 256],
                    "warp": [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]}
MIN_FULL_OVER_BARE = 0.8  # target: full/bare throughput of the mujoco engine at every size
MAX_COLD_START_S = 30.0  # target: cold start on a GPU
_START = """import json, time, torch
t0 = time.perf_counter()
from flyenv.envs import FlyImitationVecEnv
t1 = time.perf_counter()
env = FlyImitationVecEnv(num_envs={n}, engine={engine!r}, device={device!r})
env.reset(seed=0)
env.step(torch.zeros(env.num_envs, env.num_actions, device=env.device))
torch.cuda.synchronize(env.device) if env.device.type == "cuda" else None
print("FLYENV_BENCH", json.dumps({{"import_s": t1 - t0, "start_s": time.perf_counter() - t1}}))
"""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _timed(fn: Any, device: torch.device, steps: int, min_time_s: float,
           before: Any = None) -> dict[str, Any]:
    """{"steps", "wall_s"} of `steps` calls of `fn`, redone once with more if under min_time_s.

    `before` (if given) is called before each attempt.
    """
    while True:
        if before is not None:
            before()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        wall = time.perf_counter() - start
        if wall >= min_time_s:
            return {"steps": steps, "wall_s": wall}
        steps, min_time_s = math.ceil(steps * 1.1 * min_time_s / max(wall, 1e-6)), 0.0


class _PhysicsClock:
    """Wall time spent in `engine.step()` while `env.step` runs (CUDA events on a GPU).

    It is the engine's `step_timer` (its public profiling hook) between `start()` and `stop()`.
    """

    def __init__(self, engine: Any) -> None:
        self.engine, self.marks = engine, []
        self.cuda = engine.device.type == "cuda"

    def __call__(self, run: Any) -> None:
        if self.cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            run()
            end.record()
            self.marks.append((begin, end))
        else:
            start = time.perf_counter()
            run()
            self.marks.append(time.perf_counter() - start)

    def start(self) -> None:
        self.marks = []
        self.engine.step_timer = self

    def stop(self) -> float:
        self.engine.step_timer = None
        if self.cuda:
            torch.cuda.synchronize(self.engine.device)
            return sum(b.elapsed_time(e) for b, e in self.marks) / 1e3
        return sum(self.marks)


def _measure(num_envs: int, steps: int, warmup: int, min_time_s: float,
             kwargs: dict[str, Any]) -> dict[str, Any]:
    device = torch.device(kwargs["device"])
    free_before = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    env = FlyImitationVecEnv(num_envs=num_envs, **kwargs)
    row: dict[str, Any] = {"num_envs": num_envs, "ok": True}
    try:
        zeros = torch.zeros(num_envs, env.num_actions, device=env.device)
        _, info = env.reset(seed=0)
        env.step(zeros)
        _sync(device)
        if device.type == "cuda":  # the driver's count: Warp allocates outside torch
            used = free_before - torch.cuda.mem_get_info(device)[0]
            row.update(gpu_mem_total_bytes=used, gpu_mem_per_world_bytes=used / num_envs)
        if env.engine.name == "mujoco":
            row["nthread"] = env.engine.nthread
        # Bare physics follows the reference like the env does (a fly holding still costs the
        # solver less than a walking one): targets of the next frames, cycled.
        clip, frame = info["clip"], info["frame"]  # each world's start
        last = env.ref.lengths[clip][:, None] - 1
        ahead = torch.minimum(frame[:, None] + torch.arange(1, 51, device=device), last)
        targets = env.ref.joint_pos[clip[:, None], ahead]
        if env.adhesion:  # the clips' stance flags as the adhesion commands
            targets = torch.cat([targets, env.ref.stance[clip[:, None], ahead]], dim=2)
        targets = targets.transpose(0, 1).contiguous()
        tick = [0]

        def bare() -> None:
            env.engine.ctrl.copy_(targets[tick[0] % len(targets)])
            env.engine.step()
            tick[0] += 1

        for _ in range(warmup):
            bare()
        row["bare"] = _timed(bare, device, steps, min_time_s)
        env.reset(seed=0)  # the bare steps left the flies off their clips
        ends = [torch.zeros((), dtype=torch.long, device=device)]
        physics = _PhysicsClock(env.engine)

        def full() -> None:
            # The replay: zero residuals (the adhesion follows the clips' stance).
            _, _, terminated, truncated, _ = env.step(env.replay_action())
            ends[0] = ends[0] + (terminated | truncated).sum()

        for _ in range(warmup):
            full()
        ends[0].zero_()
        row["full"] = _timed(full, device, steps, min_time_s, before=physics.start)
        row["full"]["physics_wall_s"] = physics.stop()
        row["full"]["episode_ends_per_step"] = int(ends[0]) / row["full"]["steps"]
    finally:
        env.close()
    for r in (row["bare"], row["full"]):
        r["env_steps_per_s"] = num_envs * r["steps"] / r["wall_s"]
        r["realtime_factor"] = r["env_steps_per_s"] * env.config.control_dt_s
    row["full_over_bare"] = row["full"]["env_steps_per_s"] / row["bare"]["env_steps_per_s"]
    row["overhead"] = 1.0 / row["full_over_bare"] - 1.0  # full wall / bare wall - 1, per step
    # the env's own work against the physics it ran (a moving fly costs more than a still one)
    row["env_overhead"] = row["full"]["wall_s"] / row["full"]["physics_wall_s"] - 1.0
    row["full"]["physics_realtime_factor"] = (row["full"]["realtime_factor"]
                                              * (1.0 + row["env_overhead"]))
    return row


def sweep(engine: str, device: str, num_envs: list[int], steps: int, warmup: int, *,
          min_time_s: float = 0.0, skip_oom: bool = True, **env_kwargs: Any) -> dict[str, Any]:
    """Times bare physics and the full env step for each number of worlds.

    Args:
        engine: "mujoco" or "warp".
        device: "cpu" or "cuda[:N]".
        num_envs: the sizes, each in its own env (freed before the next).
        steps: timed calls per measurement.
        warmup: untimed calls before each measurement.
        min_time_s: a measurement shorter than this is redone once with enough more steps.
        skip_oom: record a size that runs out of memory as failed (and the larger ones as
            skipped) instead of raising.
        **env_kwargs: other `FlyImitationConfig` fields (control_decimation, nthread, ...).

    Returns:
        {"engine", "device", "steps", "warmup", "config", "runs"}; a run: `num_envs`, `ok`,
        `bare` and `full` ({"steps", "wall_s", "env_steps_per_s", "realtime_factor"}, full also
        `physics_wall_s`, its time in `engine.step()`, `physics_realtime_factor` of that time,
        and `episode_ends_per_step`),
        `full_over_bare` (throughput ratio), `overhead` (full wall / bare wall - 1),
        `env_overhead` (full wall / its physics wall - 1: the env's own work), on CUDA
        `gpu_mem_total_bytes` and `gpu_mem_per_world_bytes`; a failed run has `ok` False and
        `error`.
    """
    kwargs = {"engine": engine, "device": device, **env_kwargs}
    config, dev = FlyImitationConfig(**kwargs), torch.device(device)
    if dev.type == "cuda":  # context and kernel modules first, so that no size pays for them
        FlyImitationVecEnv(num_envs=1, **kwargs).close()
        _free(dev)
    runs: list[dict[str, Any]] = []
    for n in num_envs:
        if runs and "out of memory" in runs[-1].get("error", ""):
            row = {"num_envs": n, "ok": False, "error": "skipped: a smaller size ran out of memory"}
        else:
            try:
                row = _measure(n, steps, warmup, min_time_s, kwargs)
            except (RuntimeError, MemoryError) as err:
                message = str(err).lower()
                if not (skip_oom and ("out of memory" in message or "failed to allocate" in
                                      message or isinstance(err, torch.cuda.OutOfMemoryError))):
                    raise
                row = {"num_envs": n, "ok": False, "error": f"out of memory: {err}"[:300]}
        runs.append(row)
        _free(dev)  # here, once the env and any traceback holding it are gone
    return {"engine": engine, "device": device, "steps": steps, "warmup": warmup,
            "config": {"control_decimation": config.substeps,
                       "physics_dt_s": config.physics_dt_s,
                       "control_dt_s": config.control_dt_s, "nthread": config.nthread,
                       "model_options": dict(config.model_options),
                       "torch_threads": torch.get_num_threads()}, "runs": runs}


def start_times(engine: str, device: str, num_envs: int) -> dict[str, Any]:
    """Cold and warm start: construction, reset and first step, each in a fresh interpreter.

    The cold run gets an empty temporary `WARP_CACHE_PATH`, so MuJoCo Warp kernels compile; the
    warm run the cache the cold one filled. The C MuJoCo engine compiles nothing (same timing).

    Returns:
        {"num_envs", "cold", "warm"}, each {"start_s" (construction to first step done),
        "import_s" (importing flyenv.envs), "process_s" (the whole interpreter)}.
    """
    code = _START.format(n=int(num_envs), engine=engine, device=device)
    result: dict[str, Any] = {"num_envs": int(num_envs)}
    with tempfile.TemporaryDirectory(prefix="flyenv-bench-warp-cache-") as cache:
        for kind in ("cold", "warm"):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env={**os.environ, "WARP_CACHE_PATH": cache}, timeout=1800)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FLYENV_BENCH ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{kind} start of {engine} on {device} failed (exit "
                                   f"{proc.returncode}): {proc.stderr[-2000:]}")
            result[kind] = {**json.loads(lines[-1].split(" ", 1)[1]),
                            "process_s": time.perf_counter() - start}
    return result


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


# The ranges `--randomize` benchmarks: every parameter randomized, pushes on.
RANDOMIZATION = {"friction": (0.5, 1.5), "mass_scale": (0.8, 1.2),
                 "actuator_gain_scale": (0.8, 1.2), "joint_damping_scale": (0.5, 2.0),
                 "floor_slope_rad": (0.0, 0.2), "push_force_un": (1.0, 5.0),
                 "push_duration_s": 0.02, "push_rate_hz": 2.0}


def two_body_clips(duration_s: float = 2.0) -> tuple[Any, Any]:
    """Tripod gaits of two bodies, the template scaled by 0.9 and 1.1 (for `--two-bodies`)."""
    from flyenv.body.config import BodyConfig
    from flyenv.motion import tripod_gait

    body = BodyConfig.default()
    return tuple(tripod_gait(body.replace(thc_mm=body.thc * f, segment_lengths_mm=body.lengths
                                          * f, name=f"template_x{f}"), duration_s=duration_s)
                 for f in (0.9, 1.1))


def _variant_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    # `randomize` and `two_bodies` (recorded as flags) stand for these config fields.
    kwargs = {k: v for k, v in env_kwargs.items() if k not in ("randomize", "two_bodies")}
    if env_kwargs.get("randomize"):
        kwargs["randomization"] = RANDOMIZATION
    if env_kwargs.get("two_bodies"):
        kwargs["reference"] = two_body_clips()
    return kwargs


def run(engines: list[str], device: str | None, num_envs: list[int] | None, steps: int,
        warmup: int, out_dir: str | Path, *, min_time_s: float = 0.0,
        measure_start: bool = True, env_kwargs: dict[str, Any] | None = None,
        baseline_physics_dt_s: float | None = None,
        baseline_model_options: dict[str, Any] | None = None,
        ) -> tuple[dict[str, Any], Path, Path]:
    """`sweep` (and `start_times` at the smallest size) per engine, written as JSON and PNG.

    Args:
        engines: "mujoco" and/or "warp"; one whose default device is CUDA is skipped (and
            recorded so) where there is none.
        device: device for every engine; None: `DEFAULT_DEVICE` of each.
        num_envs: sizes for every engine; None: `DEFAULT_NUM_ENVS` of each.
        steps: see `sweep`.
        warmup: see `sweep`.
        out_dir: folder for `env_bench_<device slug>.json` and `.png`.
        min_time_s: see `sweep`.
        measure_start: also run `start_times`.
        env_kwargs: other `FlyImitationConfig` fields of every env (e.g. `deterministic`),
            and the flags `randomize` (`RANDOMIZATION`) and `two_bodies` (`two_body_clips`);
            recorded in the JSON and, the True ones, in its name.
        baseline_physics_dt_s: also time every size at this physics step (2 ms / step
            substeps) with the default model (`env_kwargs` without `physics_dt_s`,
            `control_decimation` and `model_options`), right after the same size, for
            `speedup_over_baseline`.
        baseline_model_options: `ModelOptions` fields of the baseline's model (e.g.
            `SLIDING_FEET`, the contacts before issue 22); None: the defaults.

    Returns:
        (results, JSON path, PNG path).
    """
    devices = {e: device or DEFAULT_DEVICE[e] for e in engines}
    skipped = {e: "no CUDA device" for e, d in devices.items()
               if torch.device(d).type == "cuda" and not torch.cuda.is_available()}
    engines = [e for e in engines if e not in skipped]
    if not engines:
        raise ValueError(f"nothing to benchmark: {skipped}")
    main = next((devices[e] for e in engines if torch.device(devices[e]).type == "cuda"),
                devices[engines[0]])
    environment = environment_info(main)  # before the runs load the machine (load_avg)
    sweeps, starts, baselines = {}, {}, {}
    for engine in engines:
        sizes = list(num_envs or DEFAULT_NUM_ENVS[engine])
        kwargs = dict(min_time_s=min_time_s, **_variant_kwargs(env_kwargs or {}))
        if baseline_physics_dt_s is None:
            sweeps[engine] = sweep(engine, devices[engine], sizes, steps, warmup, **kwargs)
        else:  # size by size, so that both see the same machine load
            physics = ("physics_dt_s", "control_decimation", "model_options")
            base = {k: v for k, v in kwargs.items() if k not in physics}
            for n in sizes:
                baseline = {**base, "physics_dt_s": baseline_physics_dt_s,
                            "model_options": baseline_model_options or {}}
                for target, these in ((sweeps, kwargs), (baselines, baseline)):
                    one = sweep(engine, devices[engine], [n], steps, warmup, **these)
                    if engine in target:
                        target[engine]["runs"] += one["runs"]
                    else:
                        target[engine] = one
        if measure_start:
            starts[engine] = start_times(engine, devices[engine], min(sizes))
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment,
               "env_kwargs": env_kwargs or {}, "sweeps": sweeps,
               "baseline_model_options": baseline_model_options or {},
               "randomization": RANDOMIZATION if (env_kwargs or {}).get("randomize") else None,
               "start_times": starts, "baseline_sweeps": baselines, "skipped": skipped,
               "summary": summarize(sweeps, starts, baselines)}
    variant = "".join(f"_{k}" for k, v in sorted((env_kwargs or {}).items()) if v is True)
    if "physics_dt_s" in (env_kwargs or {}):
        variant += f"_dt{env_kwargs['physics_dt_s']:g}"
    variant += "".join(f"_{k}{v}" for k, v in (env_kwargs or {}).get("model_options", {}).items())
    if baseline_model_options:
        variant += "_vs" + "".join(f"_{k}{v}" for k, v in baseline_model_options.items())
    stem = Path(out_dir) / f"env_bench_{device_slug(main)}{variant}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    # (not with_suffix: a variant like _dt0.0004 holds a dot)
    json_path, png_path = (stem.parent / f"{stem.name}{ext}" for ext in (".json", ".png"))
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    return results, json_path, plot(results, png_path)


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


def add_arguments(parser: argparse.ArgumentParser, out: Path = USER_OUT) -> None:
    """The options of `flyenv bench` and `benchmarks/env_bench.py` (see `run_args`).

    Args:
        parser: the parser to add them to.
        out: the default of `--out`: a folder of the user's (`flyenv bench`), or the repository's
            `benchmarks/results` for the project's own benchmark script.
    """
    add = parser.add_argument
    add("--engine", choices=("mujoco", "warp", "both"), default="both",
        help="both: mujoco on the CPU, then warp on CUDA if there is a GPU (default: both)")
    add("--device", help="device for every engine (default: cpu for mujoco, cuda for warp)")
    add("--num-envs", type=int, nargs="+", help=f"sizes to sweep (default: {DEFAULT_NUM_ENVS})")
    add("--steps", type=int, default=20, help="timed steps per measurement (default: 20)")
    add("--warmup", type=int, default=5, help="untimed steps before each one (default: 5)")
    add("--min-time", type=float, default=1.0,
        help="redo a measurement shorter than this [s] with more steps (default: 1.0)")
    add("--no-start-times", action="store_true", help="skip the cold/warm start measurement")
    add("--physics-dt", type=float, metavar="S",
        help="physics step of every env (2 ms / S substeps; default: the env's default; the "
             "JSON name ends in _dt<S>)")
    add("--model-option", action="append", default=[], metavar="NAME=VALUE",
        help="a ModelOptions field of every env (e.g. joint_armature=1e-4; repeatable; the "
             "JSON name ends in _<NAME><VALUE>)")
    add("--baseline-physics-dt", type=float, metavar="S",
        help="also time each size at this physics step (e.g. 1e-4, FlyGym's; 2 ms / S "
             "substeps) and report the full step's speedup over it")
    add("--baseline-model-option", action="append", default=[], metavar="NAME=VALUE",
        help="a ModelOptions field of the baseline's model (with --baseline-physics-dt; e.g. "
             "adhesion_gain_uN=0 and noslip_iterations=0, the contacts before issue 22; "
             "repeatable; default: the default model)")
    add("--deterministic", action="store_true",
        help="MuJoCo Warp's deterministic mode (its cost; the JSON name ends in _deterministic)")
    add("--randomize", action="store_true",
        help="domain randomization on (RANDOMIZATION: every range, pushes; JSON name _randomize)")
    add("--two-bodies", action="store_true",
        help="two clips of two bodies (template x0.9 and x1.1; JSON name _two_bodies)")
    add("--out", type=Path, default=out,
        help="folder for env_bench_<device>.json and .png (default: %(default)s)")


def run_args(args: argparse.Namespace) -> tuple[dict[str, Any], Path, Path]:
    """`run` with the options `add_arguments` parsed."""
    engines = ["mujoco", "warp"] if args.engine == "both" else [args.engine]
    flags = {"deterministic": args.deterministic, "randomize": args.randomize,
             "two_bodies": args.two_bodies}
    env_kwargs: dict[str, Any] = {k: True for k, v in flags.items() if v}
    if args.physics_dt is not None:
        env_kwargs["physics_dt_s"] = args.physics_dt
    if args.model_option:
        env_kwargs["model_options"] = _model_options("--model-option", args.model_option)
    baseline_options = None
    if args.baseline_model_option:
        if args.baseline_physics_dt is None:
            raise ValueError("--baseline-model-option needs --baseline-physics-dt (the baseline "
                             "it configures)")
        baseline_options = _model_options("--baseline-model-option", args.baseline_model_option)
    return run(engines, args.device, args.num_envs, args.steps, args.warmup, args.out,
               min_time_s=args.min_time, measure_start=not args.no_start_times,
               env_kwargs=env_kwargs or None, baseline_physics_dt_s=args.baseline_physics_dt,
               baseline_model_options=baseline_options)


def _model_options(option: str, values: list[str]) -> dict[str, Any]:
    # NAME=VALUE pairs, each VALUE a Python literal.
    pairs = [value.split("=", 1) for value in values]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"{option} takes NAME=VALUE, got {values}")
    try:
        return {k: ast.literal_eval(v) for k, v in pairs}
    except (ValueError, SyntaxError) as err:
        raise ValueError(f"{option}: each VALUE must be a Python literal (a number, a tuple), "
                         f"got {values}") from err


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
