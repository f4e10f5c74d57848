"""Which pushes topple a fly: its stance's margin at a push's onset, the replay against a policy.

Issue 23's policies track the real clips better than the zero-residual replay but survive the
evaluation's pushes less often. This plays `train_clips.py`'s randomization and pushes (the
evaluation's) on every clip given, from the same random starts and with the same pushes for
the replay and a checkpoint's deterministic policy, and records every push event: at its onset
(the end of the first pushed step) the thorax height [mm], the stance claws (tarsi touching the
ground) and their reach in the push's direction (the furthest stance claw's horizontal offset
from the thorax along the push [mm]), the tipping margin `atan2(reach, height)` [rad] (the tilt
the push must produce before the thorax passes over its support; the thorax stands in for the
centre of mass), the push's force [uN], and whether the world terminated within AFTER_S of the
onset (pushes whose window the play does not see to its end are left out unless the fly fell
in it), and for those that fell, how long after the onset (the span a critic's discount must
see across for a push's outcome to reach the actions taken at it). If a policy loses pushes
because of its posture, its margins at onset are smaller and the falls gather at small margins
for both controllers; if because of how it reacts, it falls more often than the replay at the
same margins. Results: benchmarks/results/<name>.json.

    python benchmarks/push_margin.py --reference CLIPS... [--checkpoint CKPT] [--worlds 64]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from train_clips import RANDOMIZATION

from flyenv.apps.evaluate import Policy, play_settings
from flyenv.apps.machine import environment_info
from flyenv.apps.train import policy_env
from flyenv.envs import FlyImitationVecEnv
from flyenv.envs.observations import quat_rotate

RESULTS = Path(__file__).resolve().parent / "results"
AFTER_S = 0.12  # a termination this soon after a push's onset is the push's [s]
FEATURES = ("height_mm", "reach_mm", "margin_rad", "stance", "force_un")


def play(env: FlyImitationVecEnv, act, seed: int, horizon_s: float) -> dict:
    """Every push event of one controller: onset features and outcome, as numpy arrays."""
    base = env.unwrapped
    steps = round(horizon_s / base.config.control_dt_s)
    obs, _ = env.reset(seed=seed)
    num = base.num_envs
    alive = torch.ones(num, dtype=torch.bool)
    was_pushed = torch.zeros(num, dtype=torch.bool)
    terminated = torch.zeros(num, dtype=torch.bool)
    stopped_at = torch.full((num,), steps)  # the step a world ended at (the horizon: steps)
    events: list[tuple[torch.Tensor, ...]] = []
    for t in range(steps):
        obs, _, term, trunc, info = env.step(act(obs))
        pushed = info["randomization/push"]
        onset = pushed & ~was_pushed & alive
        was_pushed = pushed
        if onset.any():
            state = base._read_state()
            force_w, _ = base._pushes.upcoming()
            direction = torch.nn.functional.normalize(force_w[:, :2], dim=1)
            claws_w = quat_rotate(state.root_quat_w[:, None].expand(-1, 6, -1), state.claw_pos_b)
            stance = state.touching()
            along = (claws_w[..., :2] * direction[:, None]).sum(dim=2)
            reach = torch.where(stance, along, -math.inf).amax(dim=1)
            reach = torch.where(stance.any(dim=1), reach, 0.0)  # no foot down: no reach
            height = state.root_pos_w[:, 2]
            idx = onset.nonzero().flatten()
            events.append((idx, torch.full_like(idx, t), height[idx], reach[idx],
                           stance.sum(dim=1)[idx], force_w[idx, :2].norm(dim=1)))
        terminated |= term & alive
        stopped_at = torch.where((term | trunc) & alive, t, stopped_at)
        alive &= ~(term | trunc)  # a clip's end truncates
    if not events:
        raise SystemExit(f"no push started in {steps} steps of {num} worlds: give a longer "
                         "--horizon-s or more --worlds")
    world, onset_step, height, reach, stance, force = (torch.cat(c) for c in zip(*events,
                                                                                strict=True))
    after = round(AFTER_S / base.config.control_dt_s)
    fell = terminated[world] & (stopped_at[world] - onset_step <= after)
    # A push whose window the play does not see to its end (the horizon or the clip ended
    # first) is left out unless the fly fell within it.
    seen = fell | (stopped_at[world] - onset_step > after)
    world, onset_step, height, reach, stance, force, fell = (
        x[seen] for x in (world, onset_step, height, reach, stance, force, fell))
    margin = torch.atan2(reach.clamp_min(0.0), height)  # no stance claw beyond: margin 0
    # The step a world ends at is the one whose transition terminated it: the fall is seen
    # (stopped_at - onset_step) control steps after the onset step.
    delay_s = (stopped_at[world] - onset_step).float() * base.config.control_dt_s
    return {k: v.numpy() for k, v in dict(height_mm=height, reach_mm=reach, margin_rad=margin,
                                          stance=stance.float(), force_un=force,
                                          fell=fell, delay_s=delay_s).items()}


def _replay(env: FlyImitationVecEnv):
    return lambda _obs: env.unwrapped.replay_action()


def summary(events: dict, edges: np.ndarray) -> dict:
    """Fall share overall and per margin bin, the features of kept and fallen events, and the
    quartiles of the fallen events' time from onset to termination [s]."""
    fell = events["fell"]
    bins = np.digitize(events["margin_rad"], edges[1:-1])
    return {
        "events": int(len(fell)), "fell": int(fell.sum()), "fell_share": float(fell.mean()),
        "mean_at_onset": {k: float(events[k].mean()) for k in FEATURES},
        "fall_delay_s_quartiles": ([float(q) for q in np.quantile(events["delay_s"][fell],
                                                                 [0.25, 0.5, 0.75])]
                                   if fell.any() else None),
        "kept_vs_fell": {k: [float(events[k][~fell].mean()), float(events[k][fell].mean())
                             if fell.any() else None] for k in FEATURES},
        "fell_share_by_margin_bin": [
            {"margin_rad": [float(edges[b]), float(edges[b + 1])],
             "events": int((bins == b).sum()),
             "fell_share": float(fell[bins == b].mean()) if (bins == b).any() else None}
            for b in range(len(edges) - 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", nargs="+", required=True)
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--worlds", type=int, default=64)
    parser.add_argument("--horizon-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="push_margin_cpu")
    args = parser.parse_args()
    policy = Policy.load(args.checkpoint) if args.checkpoint else None
    config = play_settings(policy) if policy else {}  # as `flyenv eval` plays it
    record: dict = {"machine": environment_info("cpu"), "args": vars(args),
                    "randomization": RANDOMIZATION, "after_s": AFTER_S, "clips": {}}
    start = time.perf_counter()
    for clip in args.reference:
        played = {}
        for name in ("replay", "policy") if policy else ("replay",):
            env_config = dict(config, reference=clip, num_envs=args.worlds, device="cpu",
                              engine="mujoco", autoreset_mode="disabled",
                              randomization=RANDOMIZATION, max_episode_steps=10**9)
            env = (policy_env(policy.obs_norm, **env_config) if policy
                   else FlyImitationVecEnv(**env_config))
            act = policy.act if name == "policy" else _replay(env)
            played[name] = play(env, act, args.seed, args.horizon_s)
            env.close()
        pooled = np.concatenate([p["margin_rad"] for p in played.values()])
        edges = np.quantile(pooled, [0.0, 0.25, 0.5, 0.75, 1.0])
        edges[0], edges[-1] = -np.inf, np.inf
        record["clips"][Path(clip).stem] = {k: summary(v, edges) for k, v in played.items()}
        print(Path(clip).stem, {k: (s["fell_share"], round(s["mean_at_onset"]["margin_rad"], 3))
                                for k, s in record["clips"][Path(clip).stem].items()})
    record["seconds"] = time.perf_counter() - start
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
