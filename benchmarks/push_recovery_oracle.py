"""Can residual actions within the policy's bound save a pushed fly at all? A sampling oracle.

Issue 23's policy tracks the real clips better than the replay but survives pushes no more often.
This asks whether the action space allows it: each push event (a start frame of a clip and a
horizontal push of the thorax, FORCE_UN for DURATION_S after ONSET_S of walking) is played by
many worlds from the same state under the same push: the replay (zero residuals), the trained
policy (a checkpoint, optional) and CANDIDATES open-loop residual vectors drawn uniformly from
the policy's action box, held from the push's onset for HOLD_S. A world survives when it does not
terminate within AFTER_S of the onset. The share of events the replay loses that some candidate
saves is a lower bound on what a policy in that box could recover (open loop, one constant
vector; a closed-loop policy can do more). Results: benchmarks/results/<name>.json.

With `--noise-std-rad S`, the candidates ask instead whether PPO's exploration can see recovery:
each is the deterministic controller (the policy's mean with a checkpoint, else the replay) plus
Gaussian noise of S rad per step from the start, half of them white (a fresh draw every step, as
PPO explores by default) and half correlated over `--noise-correlation-s`
(`flyenv.apps.exploration.CorrelatedNoise`). A policy gradient learns what avoids a fall only
where the noise changes whether the fly falls: the share of draws whose fate differs from the
noiseless controller's is reported per family. With `--noise-hold-s H` the second half explores
as `flyenv train --push-hold-s` does instead: from the onset for HOLD_S (the training's window,
the push and `--push-noise-s` after it), the controller's action plus a draw of S rad is decided
every H and played unchanged in between, and nothing is added outside that window.

With `--response-delay-s D`, the candidates' vectors act only from D after the push's onset (to
the same end, onset + HOLD_S): how fast a response must come for the box to still save the
fly (falls come 32-59 ms after the onset, `push_margin.py`).

With `--returns`, every world's discounted return from the push's onset is recorded too, under
the checkpoint's reward (without one, the default), with its discount and termination penalty
and with those of GAMMAS x PENALTIES: does the objective PPO optimizes prefer a saving vector to
the replay at all? A save that costs more tracking reward than the fall it avoids forgoes is
not something PPO would learn, however it explores. `--candidate-range-rad R` draws the vectors
from a smaller box (R rad): how small a save can be, and so what it costs.

With `--push-variants`, every event is also played under four nearby pushes (the heading turned
by -20 and +20 degrees, the force scaled by 0.9 and 1.1) by the same controllers, which asks
whether a save is luck or something a policy could learn: a vector that saves an event by
exploiting its exact contact timing saves its variants no more often than any vector does, one
that counters the push saves them too.

    python benchmarks/push_recovery_oracle.py --reference CLIPS... [--checkpoint CKPT]
        [--noise-std-rad S --noise-correlation-s TAU | --push-variants] [--returns]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from flyenv.apps.evaluate import Policy
from flyenv.apps.exploration import CorrelatedNoise
from flyenv.apps.machine import environment_info
from flyenv.apps.train import policy_env
from flyenv.apps.train_args import PpoArgs, env_settings
from flyenv.envs import FlyImitationVecEnv

RESULTS = Path(__file__).resolve().parent / "results"
FORCE_UN, DURATION_S = 10.0, 0.05  # the top of train_clips' pushes (5-10 uN, 50 ms)
ONSET_S, HOLD_S, AFTER_S = 0.04, 0.15, 0.5
# --push-variants: (heading offset [rad], force scale) of each push played, the nominal first.
# --returns: the objectives the returns are also computed under, besides the checkpoint's.
GAMMAS, PENALTIES = (0.95, 0.98, 0.99), (0.0, 1.0, 3.0)
VARIANTS = ((0.0, 1.0), (-math.radians(20), 1.0), (math.radians(20), 1.0), (0.0, 0.9),
            (0.0, 1.1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", nargs="+", required=True)
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--events", type=int, default=16, help="push events per clip")
    parser.add_argument("--candidates", type=int, default=62)
    parser.add_argument("--residual-range-rad", type=float, default=0.1)
    parser.add_argument("--candidate-range-rad", type=float, default=None,
                        help="draw the candidates' vectors from this smaller box [rad] "
                             "(default: the policy's whole box)")
    parser.add_argument("--noise-std-rad", type=float, default=0.0,
                        help="candidates: the controller plus noise of this std [rad] (0: "
                             "constant vectors in the action box)")
    parser.add_argument("--noise-correlation-s", type=float, default=0.02)
    parser.add_argument("--noise-hold-s", type=float, default=0.0,
                        help="with --noise-std-rad: the second half decides every this many "
                             "seconds from the onset for HOLD_S and holds its action between "
                             "(--push-hold-s), instead of correlated noise")
    parser.add_argument("--push-variants", action="store_true",
                        help="also play every event under four nearby pushes (+-20 deg, "
                             "x0.9 and x1.1 force): is a save luck?")
    parser.add_argument("--response-delay-s", type=float, default=0.0,
                        help="the candidates' vectors act from this long after the onset [s]")
    parser.add_argument("--returns", action="store_true",
                        help="also record each world's discounted return from the onset under "
                             "the checkpoint's reward, gamma and termination penalty")
    parser.add_argument("--name", default="push_recovery_oracle_cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.push_variants and args.noise_std_rad > 0:
        parser.error("--push-variants plays constant vectors: not with --noise-std-rad")
    if args.candidate_range_rad is not None and not (
            0 < args.candidate_range_rad <= args.residual_range_rad):
        parser.error(f"--candidate-range-rad must lie in (0, --residual-range-rad "
                     f"{args.residual_range_rad}] (a smaller box of the policy's), got "
                     f"{args.candidate_range_rad}")
    torch.manual_seed(args.seed)
    policy = Policy.load(args.checkpoint) if args.checkpoint else None
    settings: dict = {"reference": tuple(args.reference),
                      "residual_range_rad": args.residual_range_rad}
    if policy is not None and not math.isclose(policy.args.residual_range_rad,
                                               args.residual_range_rad):
        parser.error(f"{args.checkpoint}: trained with --residual-range-rad "
                     f"{policy.args.residual_range_rad}, not {args.residual_range_rad}")
    trained = policy.args if policy is not None else PpoArgs()
    if args.returns and (reward := env_settings(trained).get("reward")) is not None:
        settings["reward"] = reward
    raw = FlyImitationVecEnv(num_envs=1, device="cpu", **settings)
    nclip, dt, lengths = raw.ref.nclip, raw.config.control_dt_s, raw.ref.lengths.clone()
    raw.close()
    controllers = 1 + (policy is not None) + args.candidates  # replay, policy, candidates
    onset, hold, after = (round(s / dt) for s in (ONSET_S, HOLD_S, AFTER_S))
    delay = round(args.response_delay_s / dt)
    if not 0 <= delay < hold:
        parser.error(f"--response-delay-s must lie in [0, {HOLD_S}), got {args.response_delay_s}")
    push_steps = round(DURATION_S / dt)
    events = nclip * args.events
    variants = VARIANTS if args.push_variants else VARIANTS[:1]
    n = events * len(variants) * controllers
    kwargs = dict(num_envs=n, device="cpu", autoreset_mode="disabled",
                  max_episode_steps=onset + after + 1, **settings)
    env = (policy_env(policy.obs_norm, **kwargs) if policy is not None
           else FlyImitationVecEnv(**kwargs))
    base = env.unwrapped
    ctrl, variant, event, clip, frame, force = push_worlds(lengths, args.events, controllers,
                                                          variants, onset + after + 1)
    act_dim = base.single_action_space.shape[0]
    bound = torch.as_tensor(base.single_action_space.high)
    first = 1 + (policy is not None)
    noisy = args.noise_std_rad > 0
    hold_every = round(args.noise_hold_s / dt)  # --noise-hold-s in steps (0: none)
    box = bound if args.candidate_range_rad is None else torch.full_like(
        bound, args.candidate_range_rad)
    residual = (2 * torch.rand(events, controllers, act_dim) - 1) * box
    residual = residual[event, ctrl]  # a candidate holds one vector over its event's variants
    residual[ctrl < first] = 0.0
    if noisy:  # the candidates: white noise, then correlated noise, on the controller
        residual.zero_()
        half = first + args.candidates // 2
        white = ((ctrl >= first) & (ctrl < half))[:, None].float() * args.noise_std_rad
        colored = (ctrl >= half)[:, None].float() * args.noise_std_rad
        white_noise = CorrelatedNoise((n, act_dim), 0.0, dt, "cpu")
        colored_noise = CorrelatedNoise((n, act_dim), args.noise_correlation_s, dt, "cpu")
        decided = torch.zeros(n, act_dim)  # the held family's last decision
    obs, _ = env.reset(seed=args.seed, options={"clip": clip, "frame": frame})
    thorax = base.engine.model.body("thorax").id
    alive = torch.ones(n, dtype=torch.bool)
    earned, fell = [], []  # from the onset on: (n,) reward of each step and whether it fell
    t0 = time.perf_counter()
    # The policy's worlds (none without a checkpoint): its own, and with noise the candidates'.
    played = (ctrl >= 1) if noisy else (ctrl == 1)
    for step in range(onset + after):
        action = base.replay_action().clone()
        if onset + delay <= step < onset + hold:
            action = action + residual
        if policy is not None:
            with torch.no_grad():
                action[played] = policy.act(obs[played])
        if noisy and hold_every:  # the held family: decisions every hold_every in the window
            window = onset <= step < onset + hold
            if window and (step - onset) % hold_every == 0:
                decided = action + colored * torch.randn(n, act_dim)
            action = torch.where((colored > 0) & window, decided, action + white * white_noise())
        elif noisy:
            action = action + white * white_noise() + colored * colored_noise()
        pushing = onset <= step < onset + push_steps
        base.engine.xfrc_applied[:, thorax, :3] = force if pushing else 0.0
        obs, reward, terminated, truncated, _ = env.step(action)
        if step >= onset:
            earned.append(reward * alive)
            fell.append(terminated & alive)
        alive &= ~terminated
    wall = time.perf_counter() - t0
    by_variant = alive.reshape(events, len(variants), controllers).numpy()
    survived = by_variant[:, 0]  # the nominal pushes
    replay, candidates = survived[:, 0], survived[:, first:]
    lost = ~replay
    if args.returns:  # the checkpoint's objective first, then longer horizons and penalties
        objectives = dict.fromkeys([(trained.gamma, trained.termination_penalty),
                                    *((g, p) for g in GAMMAS for p in PENALTIES)])
        rewards, falls = torch.stack(earned), torch.stack(fell)
        returns = {key: _discounted(rewards, falls, *key).reshape(
            events, len(variants), controllers)[:, 0].numpy() for key in objectives}
    per_clip = []
    for c, name in enumerate(base.ref.names):
        rows = slice(c * args.events, (c + 1) * args.events)
        if noisy:
            per_clip.append({"clip": name, "events": args.events,
                             "replay_survived": int(replay[rows].sum()),
                             **_noise_outcomes(survived[rows, first - 1],
                                               candidates[rows], args.candidates // 2,
                                               "held" if hold_every else "correlated")})
            continue
        entry = {"clip": name, "events": args.events,
                 "replay_survived": int(replay[rows].sum()),
                 "lost_by_replay": int(lost[rows].sum()),
                 "lost_by_replay_saved_by_a_candidate": int((lost[rows]
                                                             & candidates[rows].any(1)).sum()),
                 "candidate_survival_where_replay_lost": float(candidates[rows][lost[rows]].mean())
                 if lost[rows].any() else None,
                 "candidate_survival_where_replay_survived": float(
                     candidates[rows][~lost[rows]].mean()) if (~lost[rows]).any() else None}
        if args.returns:
            entry["returns"] = {
                f"gamma={gamma},penalty={penalty}": _return_outcomes(
                    returns[gamma, penalty][rows], survived[rows], first)
                for gamma, penalty in returns}
        if args.push_variants:
            entry["variants"] = _variant_outcomes(by_variant[rows], first)
        if policy is not None:
            pol = survived[rows, 1]
            entry.update({"policy_survived": int(pol.sum()),
                          "lost_by_replay_saved_by_policy": int((lost[rows] & pol).sum()),
                          "kept_by_replay_lost_by_policy": int((~lost[rows] & ~pol).sum())})
        per_clip.append(entry)
    record = {"machine": environment_info("cpu"), "push": {
        "force_un": FORCE_UN, "duration_s": DURATION_S, "onset_s": ONSET_S, "hold_s": HOLD_S,
        "response_delay_s": delay * dt,
        "survive_s": AFTER_S, "variants": [
            {"heading_offset_deg": math.degrees(turn), "force_scale": scale}
            for turn, scale in variants[1:]]}, "candidates": args.candidates,
        "residual_range_rad": args.residual_range_rad,
        "candidate_range_rad": args.candidate_range_rad, "checkpoint": args.checkpoint or None,
        "noise_std_rad": args.noise_std_rad or None,
        "noise_correlation_s": args.noise_correlation_s if noisy and not hold_every else None,
        "noise_hold_s": hold_every * dt if noisy and hold_every else None,
        "returns": {"trained_gamma": trained.gamma,
                    "trained_termination_penalty": trained.termination_penalty,
                    "reward": settings.get("reward")} if args.returns else None,
        "wall_s": wall, "clips": per_clip}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(per_clip, indent=1))


def push_worlds(lengths: torch.Tensor, events_per_clip: int, controllers: int,
                variants: tuple[tuple[float, float], ...], steps: int,
                ) -> tuple[torch.Tensor, ...]:
    """Who plays what: every event's pushes, each played by every controller.

    Event e is clip e // events_per_clip from a start frame spread over the clip, pushed by
    FORCE_UN along a heading spread over the circle (the golden angle, so that neighbouring
    starts get different ones). World i plays controller i % controllers on variant
    (i // controllers) % len(variants) of event i // (controllers * len(variants)).

    Args:
        lengths: (nclip,) the clips' lengths [frames].
        events_per_clip: push events per clip.
        controllers: worlds per event and variant.
        variants: (heading offset [rad], force scale) of each push, the nominal one first.
        steps: the env steps each world plays (its start leaves room for them).

    Returns:
        (n,) each: controller, variant, event, clip, start frame, and (n, 3) the push [uN].
    """
    n = len(lengths) * events_per_clip * len(variants) * controllers
    ctrl = torch.arange(n) % controllers
    variant = (torch.arange(n) // controllers) % len(variants)
    event = torch.arange(n) // (controllers * len(variants))
    clip = event // events_per_clip
    k = event % events_per_clip
    span = lengths[clip] - 2 - steps
    frame = (span.clamp(min=1) * k // events_per_clip).long()
    turn, scale = (torch.tensor(column)[variant] for column in zip(*variants, strict=True))
    heading = (k * 2.399963) % (2 * math.pi) + turn
    magnitude = FORCE_UN * scale
    force = torch.stack([magnitude * torch.cos(heading), magnitude * torch.sin(heading),
                         torch.zeros(n)], dim=1)
    return ctrl, variant, event, clip, frame, force


def _mean(values: np.ndarray) -> float | None:
    """The mean of `values`, or None where there are none (JSON null)."""
    return float(values.mean()) if values.size else None


def _variant_outcomes(survived: np.ndarray, first: int) -> dict:
    """Whether the nominal push's fate carries over to its variants.

    Args:
        survived: (events, variants, controllers) bool, the nominal push first, the replay the
            first controller and the candidates from `first` on.
    """
    nominal, varied = survived[:, :1], survived[:, 1:]
    same = varied == nominal  # (events, variants - 1, controllers)
    lost = ~nominal[:, 0, 0]
    cand_nominal = nominal[lost, :, first:]  # (lost events, 1, candidates)
    cand_varied = varied[lost, :, first:]
    saved = np.broadcast_to(cand_nominal, cand_varied.shape)
    return {
        "replay_fate_kept": _mean(same[:, :, 0]),
        "candidate_fate_kept": _mean(same[:, :, first:]),
        "where_replay_lost": {
            "events": int(lost.sum()),
            "replay_survived_variants": _mean(varied[lost, :, 0]),
            "nominal_saves": int(cand_nominal.sum()),
            # A save that counters the push keeps saving nearby pushes; a lucky one saves them
            # as often as a vector that did not save the nominal push.
            "variant_survival_after_nominal_save": _mean(cand_varied[saved]),
            "variant_survival_after_nominal_loss": _mean(cand_varied[~saved]),
            "vectors_saving_all_variants": int((cand_nominal[:, 0] & cand_varied.all(1)).sum()),
        }}


def _discounted(rewards: torch.Tensor, falls: torch.Tensor, gamma: float,
                penalty: float) -> torch.Tensor:
    """(n,) (1 - gamma)-scaled returns as PPO's critic sees them (`flyenv.apps.train`).

    Args:
        rewards: (steps, n) reward of each step from the onset on (0 after a fall).
        falls: (steps, n) bool, the world terminated at that step.
        gamma: discount; penalty: `PpoArgs.termination_penalty`, subtracted at a fall.
    """
    discount = gamma ** torch.arange(len(rewards), dtype=torch.float32)[:, None]
    ret = (discount * ((1 - gamma) * rewards - penalty * falls.float())).sum(0)
    # A world alive at the end is bootstrapped as PPO bootstraps a time-out: worth its last
    # reward per step from then on.
    alive = ~falls.any(0)
    return ret + alive * gamma ** len(rewards) * rewards[-1]


def _return_outcomes(ret: np.ndarray, survived: np.ndarray, first: int) -> dict:
    """What the objective makes of the saves: returns of replay, policy and candidates.

    Args:
        ret: (events, controllers) (1 - gamma)-scaled return from the onset, the critic's
            units (a fly earning r every step is worth r), the replay first (then the policy
            with a checkpoint) and the candidates from `first` on.
        survived: (events, controllers) bool, likewise.
    """
    lost = ~survived[:, 0]
    cand, cand_alive = ret[:, first:], survived[:, first:]
    saving = cand_alive & lost[:, None]
    best_saving = np.where(saving, cand, -np.inf).max(1)
    out = {"replay_where_lost": _mean(ret[lost, 0]), "replay_where_kept": _mean(ret[~lost, 0]),
           "candidates_where_kept": _mean(cand[~lost]),
           "candidates_saving": _mean(cand[saving]),
           "candidates_falling_where_lost": _mean(cand[~cand_alive & lost[:, None]]),
           # Events the replay loses whose best saving vector returns more than the replay:
           # there, a save is worth what it costs on PPO's own objective.
           "lost_events_saved": int(saving.any(1).sum()),
           "lost_events_a_save_beats_replay": int((best_saving > ret[:, 0])[lost].sum())}
    if first > 1:
        out.update({"policy_where_lost": _mean(ret[lost, 1]),
                    "policy_where_kept": _mean(ret[~lost, 1])})
    return out


def _noise_outcomes(reference: np.ndarray, candidates: np.ndarray, white: int,
                    second: str) -> dict:
    """How often noise changed a pushed fly's fate, per noise family.

    Args:
        reference: (events,) bool, the noiseless controller survived.
        candidates: (events, candidates) bool, each noisy draw survived: `white` white ones,
            then those of the `second` family ("correlated" or "held").
    """
    out = {"controller_survived": int(reference.sum())}
    kept = reference[:, None]
    for family, draws in (("white", candidates[:, :white]), (second, candidates[:, white:])):
        changed = draws != kept
        out[family] = {"draws": int(draws.size), "fate_changed": float(changed.mean()),
                       "saved_where_controller_lost": int((changed & ~kept).sum()),
                       "lost_where_controller_survived": int((changed & kept).sum()),
                       "events_some_draw_changed": int(changed.any(1).sum())}
    return out


if __name__ == "__main__":
    main()
