"""Which pushes and randomization topple the zero-residual replay (issue 23: pushes that matter).

The replay (the reference's own angles as targets) of every clip of `train_clips.py`'s dataset,
from `starts` fixed starts per clip spread evenly over it, for `horizon_s`, under each candidate
perturbation (C MuJoCo, the same seed for all). A perturbation that never topples the replay
leaves a policy nothing to gain over it; one that topples it nearly always leaves nothing to
imitate. Per candidate and clip: fraction of the horizon survived and share of starts completed.
Results: benchmarks/results/<name>.json.

`--fall-delays` instead measures, for `train_clips.py`'s perturbation, how long after the start of
the last push each toppled replay terminates: the horizon a policy's discount must span to learn
that a push leads to a fall (gamma 0.95 at 500 Hz weighs a reward 20 steps, 40 ms, ahead by 1/e).

    python benchmarks/perturbation_sweep.py --name perturbation_sweep_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_clips import RANDOMIZATION, dataset  # noqa: E402

from flyenv.apps.evaluate import _clip_summary, _run  # noqa: E402
from flyenv.apps.machine import environment_info  # noqa: E402
from flyenv.envs import FlyImitationVecEnv  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
_MODEL = {"friction": [0.7, 1.3], "mass_scale": [0.9, 1.1], "actuator_gain_scale": [0.9, 1.1]}


def _pushes(low_un: float, high_un: float, duration_s: float, rate_hz: float = 2.0,
            note: str = "") -> tuple[str, dict]:
    """A candidate of model randomization plus pushes: (its label, RandomizationConfig fields)."""
    label = f"{note}{low_un:g}-{high_un:g} uN, {duration_s * 1e3:g} ms, {rate_hz:g} Hz"
    return label, {**_MODEL, "push_force_un": [low_un, high_un], "push_duration_s": duration_s,
                   "push_rate_hz": rate_hz}


# (label, RandomizationConfig fields): model randomization alone, then pushes of growing
# impulse (force x duration) at 2 Hz on top of it.
CANDIDATES: list[tuple[str, dict | None]] = [
    ("clean", None),
    ("model only", dict(_MODEL)),
    # The first train_clips run's pushes (its RANDOMIZATION is now the 5-10 uN, 50 ms row).
    _pushes(1.0, 3.0, 0.02, rate_hz=1.0, note="train_clips: "),
    _pushes(3, 6, 0.02), _pushes(5, 10, 0.02), _pushes(3, 6, 0.05), _pushes(5, 10, 0.05),
    _pushes(5, 10, 0.1), _pushes(10, 20, 0.05), _pushes(10, 20, 0.1), _pushes(20, 40, 0.05),
]


def fall_delays(refs: tuple[str, ...], starts: int, seed: int, steps: int = 1000) -> dict:
    """Replays every clip from random starts under `RANDOMIZATION`; per termination, the delay
    since its world's last push began [ms] and the termination's cause."""
    env = FlyImitationVecEnv(num_envs=4 * starts, device="cpu", reference=refs,
                             autoreset_mode="disabled", max_episode_steps=steps,
                             randomization=RANDOMIZATION)
    env.reset(seed=seed)
    n, dt = env.num_envs, env.config.control_dt_s
    last_push = torch.full((n,), -(10 ** 6))
    was_on = torch.zeros(n, dtype=torch.bool)
    alive = torch.ones(n, dtype=torch.bool)
    falls = []
    for k in range(steps):
        _, _, terminated, truncated, info = env.step(env.replay_action())
        on = info["randomization/push"]
        last_push = torch.where(on & ~was_on, k, last_push)
        was_on = on
        for i in (alive & terminated).nonzero().flatten().tolist():
            falls.append({"delay_ms": (k - int(last_push[i])) * dt * 1000.0,
                          "cause": [key.split("/")[1] for key in info
                                    if key.startswith("termination/") and bool(info[key][i])]})
        alive &= ~(terminated | truncated)
    env.close()
    delays = np.array([f["delay_ms"] for f in falls])
    print(f"{len(falls)} of {n} replays terminated; delay after the last push's start [ms]: "
          f"quartiles {np.percentile(delays, [25, 50, 75]).round(0).tolist() if falls else []}")
    return {"randomization": RANDOMIZATION, "worlds": n, "steps": steps, "falls": falls,
            "delay_ms_quartiles": np.percentile(delays, [25, 50, 75]).tolist() if falls else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="perturbation_sweep_cpu")
    parser.add_argument("--work", type=Path, default=Path("train-clips-work"))
    parser.add_argument("--starts", type=int, default=16)
    parser.add_argument("--horizon-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, nargs="*", help="indices of CANDIDATES to run")
    parser.add_argument("--fall-delays", action="store_true",
                        help="measure push-to-termination delays instead (module doc)")
    args = parser.parse_args()
    train_dir, held_dir = dataset(args.work)
    if args.fall_delays:
        record = fall_delays((str(train_dir), str(held_dir)), args.starts, args.seed)
        record["machine"] = environment_info("cpu")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1))
        return
    refs = (str(train_dir), str(held_dir))
    rows = []
    chosen = args.only if args.only else range(len(CANDIDATES))
    for k in chosen:
        label, randomization = CANDIDATES[k]
        extra = {} if randomization is None else {"randomization": randomization}
        probe = FlyImitationVecEnv(num_envs=1, device="cpu", reference=refs)
        nclip, dt = probe.ref.nclip, probe.config.control_dt_s
        probe.close()
        env = FlyImitationVecEnv(num_envs=nclip * args.starts, device="cpu", reference=refs,
                                 autoreset_mode="disabled",
                                 max_episode_steps=round(args.horizon_s / dt), **extra)
        began = time.perf_counter()
        run = _run(env, None, "replay", args.starts, args.seed)
        seconds = time.perf_counter() - began
        clips = {name: _clip_summary(run, i, args.starts)
                 for i, name in enumerate(env.ref.names)}
        env.close()
        steps = float(np.sum(run["planned"]))
        rows.append({"label": label, "randomization": randomization, "clips": clips,
                     "seconds": seconds, "env_steps_per_s": steps / seconds})
        print(f"{label:34s} " + "  ".join(
            f"{n[:14]}: surv {c['survived']:.2f} done {c['completed']:.2f} "
            f"err {c['joint_error_deg']:.2f}" for n, c in clips.items())
            + f"  ({steps / seconds:.0f} steps/s)", flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(
            {"machine": environment_info("cpu"), "starts": args.starts,
             "horizon_s": args.horizon_s, "seed": args.seed, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
