"""Can the policy's network hold a push save at all? The oracle's saves, distilled into it.

The policy trained on the real clips survives pushes no more often than the replay, though small
residual vectors held for 150 ms save most of the pushes it loses and a save is worth its cost on
PPO's objective (`push_recovery_oracle.py --returns --candidate-range-rad 0.03`). Before blaming
exploration or credit, this checks the network. Every push event of the training clips (the
oracle's: FORCE_UN for DURATION_S after ONSET_S of walking) is played by the checkpoint's policy
and by the policy plus each of CANDIDATES vectors from a box of `--candidate-range-rad`, held
from the onset for HOLD_S. Where the policy falls and some vector saves it, the smallest saving
vector's play becomes a target: over the hold, the actions it played (the policy's mean plus the
vector); every other state the policy visited keeps the policy's own mean. A copy of the actor is
fitted to both (least squares on the mean, in units of the action range, each set weighing half),
then plays every event deterministically, closed loop, beside the policy: the nominal pushes,
their variants (`push_recovery_oracle.py --push-variants`: +-20 degrees, x0.9 and x1.1 force) and
the events of `--held-out` clips it was not taught. Results: benchmarks/results/<name>.json, and
with `--save` the distilled checkpoint (for `flyenv eval`).

A check that the answer is representable, not a training method: its targets need many replays
of every event from the same state, which no rollout has.

    python benchmarks/push_recovery_distill.py --checkpoint CKPT --train CLIPS...
        [--held-out CLIPS...] [--save distilled.pt]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from push_recovery_oracle import (
    AFTER_S,
    DURATION_S,
    FORCE_UN,
    HOLD_S,
    ONSET_S,
    RESULTS,
    VARIANTS,
    push_worlds,
)
from push_recovery_oracle import _mean as _share

from flyenv.apps.evaluate import Policy
from flyenv.apps.machine import environment_info
from flyenv.apps.train import policy_env
from flyenv.envs import FlyImitationVecEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--train", nargs="+", required=True, help="clips whose saves are taught")
    parser.add_argument("--held-out", nargs="*", default=[], help="clips only played")
    parser.add_argument("--events", type=int, default=16, help="push events per clip")
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--candidate-range-rad", type=float, default=0.03)
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--save", default="", help="write the distilled checkpoint here")
    parser.add_argument("--name", default="push_recovery_distill_cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    policy = Policy.load(args.checkpoint)
    box = args.candidate_range_rad  # [rad]
    if not 0 < box <= policy.args.residual_range_rad:
        parser.error(f"--candidate-range-rad must lie in (0, {policy.args.residual_range_rad}] "
                     f"(a smaller box of {args.checkpoint}'s policy), got {box}")
    settings = {"reference": (*args.train, *args.held_out),
                "residual_range_rad": policy.args.residual_range_rad}
    raw = FlyImitationVecEnv(num_envs=1, device="cpu", **settings)
    names, dt, lengths = raw.ref.names, raw.config.control_dt_s, raw.ref.lengths.clone()
    raw.close()
    raw = FlyImitationVecEnv(num_envs=1, device="cpu", reference=tuple(args.train))
    taught_clips = raw.ref.nclip  # the training clips come first
    raw.close()
    onset, hold, after = (round(s / dt) for s in (ONSET_S, HOLD_S, AFTER_S))
    steps = onset + after

    # The oracle: the policy (controller 0) and the policy plus held vectors, nominal pushes.
    t0 = time.perf_counter()
    controllers = 1 + args.candidates
    ctrl, _, event, clip, frame, force = push_worlds(lengths, args.events, controllers,
                                                     VARIANTS[:1], steps + 1)
    events = len(lengths) * args.events
    scale = policy.agent.action_scale
    vectors = (2 * torch.rand(events, controllers, len(scale)) - 1) * box
    vectors[:, 0] = 0.0
    residual = vectors[event, ctrl]
    survived, obs_log, act_log = _play(policy, [policy.agent], torch.zeros_like(ctrl), residual,
                                       clip, frame, force, onset, hold, steps, settings,
                                       record=True)
    oracle_s = time.perf_counter() - t0
    alive = survived.reshape(events, controllers)
    lost = ~alive[:, 0]
    saving = alive[:, 1:] & lost[:, None]
    norms = torch.where(saving, vectors[:, 1:].norm(dim=-1), torch.inf)
    best = 1 + norms.argmin(1)  # (events,) the smallest saving vector's controller
    on_taught_clip = torch.arange(events) // args.events < taught_clips  # (events,)
    taught = saving.any(1) & on_taught_clip

    # The targets: the saving plays' actions over the hold; the policy's own everywhere else.
    world = torch.arange(events) * controllers
    calm_worlds = world[on_taught_clip]
    save_worlds = (world + best)[taught]
    save_obs = obs_log[onset:onset + hold, save_worlds].reshape(-1, obs_log.shape[-1])
    save_act = act_log[onset:onset + hold, save_worlds].reshape(-1, act_log.shape[-1])
    # Where the policy falls, its states from the onset on are left out: they begin where the
    # saving play's begin, and teach the opposite.
    calm_log = obs_log[:, calm_worlds].clone()
    calm_log[onset:, lost[calm_worlds // controllers]] = torch.nan
    calm_obs = calm_log.reshape(-1, obs_log.shape[-1])
    calm_obs = calm_obs[~torch.isnan(calm_obs).any(1)]  # nor steps after a fall
    student = copy.deepcopy(policy.agent)
    fit = _distil(student, policy.agent, save_obs, save_act, calm_obs, args.fit_steps,
                  args.learning_rate)

    # The check: policy and student, closed loop, every event and its variants.
    t0 = time.perf_counter()
    ctrl2, _, _, clip2, frame2, force2 = push_worlds(lengths, args.events, 2, VARIANTS,
                                                            steps + 1)
    played, _, _ = _play(policy, [policy.agent, student], ctrl2, torch.zeros(len(ctrl2), 1),
                         clip2, frame2, force2, onset, hold, steps, settings)
    check_s = time.perf_counter() - t0
    played = played.reshape(events, len(VARIANTS), 2).numpy()
    per_clip = []
    for c, name in enumerate(names):
        rows = slice(c * args.events, (c + 1) * args.events)
        was_lost, was_taught = lost[rows].numpy(), taught[rows].numpy()
        nominal, varied = played[rows, 0], played[rows, 1:]
        per_clip.append({
            "clip": name, "taught_clip": c < taught_clips, "events": args.events,
            "policy_survived": int(alive[rows, 0].sum()),
            "lost_by_policy": int(was_lost.sum()),
            "lost_saved_by_a_vector": int(saving[rows].any(1).sum()),
            "taught_saves": int(was_taught.sum()),
            "student_saves_taught": int(nominal[was_taught, 1].sum()),
            "student_saves_lost_untaught": int(nominal[was_lost & ~was_taught, 1].sum()),
            "student_loses_kept": int((~nominal[~was_lost, 1]).sum()),
            "check_policy_survived": int(nominal[:, 0].sum()),
            "variants_of_taught_survived": {
                "policy": _share(varied[was_taught, :, 0]),
                "student": _share(varied[was_taught, :, 1])},
            "variants_survived": {"policy": _share(varied[:, :, 0]),
                                  "student": _share(varied[:, :, 1])}})
    if args.save:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        state["agent"] = student.state_dict()
        state["distilled"] = {"from": args.checkpoint, "events": int(taught.sum())}
        torch.save(state, args.save)
    record = {"machine": environment_info("cpu"), "checkpoint": args.checkpoint,
              "push": {"force_un": FORCE_UN, "duration_s": DURATION_S, "onset_s": ONSET_S,
                       "hold_s": HOLD_S, "survive_s": AFTER_S},
              "candidates": args.candidates, "candidate_range_rad": box,
              "fit": fit, "oracle_wall_s": oracle_s, "check_wall_s": check_s,
              "saved_checkpoint": args.save or None, "clips": per_clip}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({"fit": fit, "clips": per_clip}, indent=1))


def _play(policy: Policy, agents: list, ctrl: torch.Tensor, residual: torch.Tensor,
          clip: torch.Tensor, frame: torch.Tensor, force: torch.Tensor, onset: int, hold: int,
          steps: int, settings: dict, record: bool = False,
          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Every world plays `agents[ctrl]`'s mean plus `residual` over the hold, pushed.

    Args:
        ctrl: (n,) which agent each world plays; residual: (n, act_dim) or (n, 1) [rad].
        clip, frame, force: (n,) the starts and (n, 3) the pushes [uN] (`push_worlds`).
        record: keep each step's (normalized) observations and actions played.

    Returns:
        (n,) bool survived; with `record`, (steps, n, obs_dim) observations (NaN after a fall)
        and (steps, n, act_dim) actions.
    """
    n = len(ctrl)
    env = policy_env(policy.obs_norm, num_envs=n, device="cpu", autoreset_mode="disabled",
                     max_episode_steps=steps + 1, **settings)
    base = env.unwrapped
    thorax = base.engine.model.body("thorax").id
    push_steps = round(DURATION_S / base.config.control_dt_s)
    obs, _ = env.reset(seed=0, options={"clip": clip, "frame": frame})
    alive = torch.ones(n, dtype=torch.bool)
    obs_log, act_log = [], []
    for step in range(steps):
        with torch.no_grad():
            action = torch.empty(n, base.single_action_space.shape[0])
            for k, agent in enumerate(agents):
                mine = ctrl == k
                action[mine] = agent.dist(obs[mine]).mean
        if onset <= step < onset + hold:
            action = action + residual
        if record:
            obs_log.append(torch.where(alive[:, None], obs, torch.nan))
            act_log.append(action)
        pushing = onset <= step < onset + push_steps
        base.engine.xfrc_applied[:, thorax, :3] = force if pushing else 0.0
        obs, _, terminated, _, _ = env.step(action)
        alive &= ~terminated
    env.close()
    if not record:
        return alive, None, None
    return alive, torch.stack(obs_log), torch.stack(act_log)


def _distil(student: torch.nn.Module, teacher: torch.nn.Module, save_obs: torch.Tensor,
            save_act: torch.Tensor, calm_obs: torch.Tensor, fit_steps: int,
            learning_rate: float) -> dict:
    """Fits the student's mean to the saving actions and to the teacher's mean elsewhere.

    Args:
        save_obs, save_act: (m, obs_dim) and (m, act_dim) the saving plays over the hold.
        calm_obs: (k, obs_dim) the rest of what the teacher visited.

    Returns:
        The fit: RMS errors [rad] before and after, per set, and the saving deviations' RMS.
    """
    scale = teacher.action_scale
    with torch.no_grad():
        calm_act = teacher.dist(calm_obs).mean
        target = save_act.clamp(-0.999 * scale, 0.999 * scale)
        deviation = (target - teacher.dist(save_obs).mean).square().mean().sqrt().item()

    def errors() -> tuple[torch.Tensor, torch.Tensor]:
        return ((student.dist(save_obs).mean - target) / scale).square().mean(), \
            ((student.dist(calm_obs).mean - calm_act) / scale).square().mean()

    def rms(err: torch.Tensor) -> float:
        return float(err.sqrt() * scale.mean())

    with torch.no_grad():
        before = [rms(e) for e in errors()]
    optimizer = torch.optim.Adam(student.actor.parameters(), lr=learning_rate)
    for _ in range(fit_steps):
        save_err, calm_err = errors()
        optimizer.zero_grad()
        (save_err + calm_err).backward()
        optimizer.step()
    with torch.no_grad():
        after = [rms(e) for e in errors()]
    return {"save_states": len(save_obs), "calm_states": len(calm_obs),
            "saving_deviation_rms_rad": deviation,
            "save_rms_rad_before": before[0], "save_rms_rad_after": after[0],
            "calm_rms_rad_before": before[1], "calm_rms_rad_after": after[1],
            "fit_steps": fit_steps}


if __name__ == "__main__":
    main()
