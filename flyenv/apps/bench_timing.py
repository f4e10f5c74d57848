"""Timing of `FlyImitationVecEnv`: bare physics against the full env step, and start times.

`sweep` times `engine.step()` (physics only) and `env.step(env.replay_action())` (physics,
rewards, observations, resets; the replay, so the adhesion follows the clips' stance) per number
of worlds; `start_times` times construction plus the first step in fresh interpreters.
`flyenv.apps.bench` runs them and writes the results.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

from flyenv.envs import FlyImitationConfig, FlyImitationVecEnv

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
