"""Throughput of `FlyImitationVecEnv`: bare physics against the full env step, and start times.

`sweep` times `engine.step()` (physics only) and `env.step(env.replay_action())` (physics,
rewards, observations, resets; the replay, so the adhesion follows the clips' stance) per number
of worlds; `start_times` times construction plus the first step in fresh interpreters; `run`
does both per engine and writes JSON and PNG (`flyenv bench` and `benchmarks/env_bench.py` call
it). The realtime factor is simulated seconds (of all flies together) per wall second at the
config's physics step; `run` can time a baseline physics step (e.g. FlyGym's 1e-4 s) and model
(`baseline_model_options`) size by size beside the defaults. The timing is
`flyenv.apps.bench_timing`; the summary, table and plot `flyenv.apps.bench_report`.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path
from typing import Any

import torch

from flyenv.apps.bench_report import MAX_COLD_START_S as MAX_COLD_START_S
from flyenv.apps.bench_report import MIN_FULL_OVER_BARE as MIN_FULL_OVER_BARE
from flyenv.apps.bench_report import format_table as format_table
from flyenv.apps.bench_report import plot, summarize
from flyenv.apps.bench_timing import start_times, sweep
from flyenv.apps.machine import device_slug
from flyenv.apps.machine import environment_info as environment_info

DEFAULT_DEVICE = {"mujoco": "cpu", "warp": "cuda"}
# Where `flyenv bench` writes unless told: a folder of the user's in the working directory,
# never the repository's committed benchmarks/results (benchmarks/env_bench.py writes there).
USER_OUT = Path("flyenv-bench")
PROJECT_OUT = Path("benchmarks/results")
DEFAULT_NUM_ENVS = {"mujoco": [4, 8, 16, 32, 64, 128, 256],
                    "warp": [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]}

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
            substeps) with `env_kwargs` without `physics_dt_s`, `control_decimation` and
            `model_options` (the model: `baseline_model_options`), right after the same size,
            for `speedup_over_baseline`.
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
