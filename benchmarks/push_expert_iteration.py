"""Expert iteration for push recovery: a search's saves on the student's own pushes, round by round.

`push_recovery_distill.py` showed that the policy's network can hold the saves a search finds
(a copy taught them keeps 5 of 9 and loses nothing it kept). This makes that a training method
at the scale this box allows. Starting from a checkpoint (the parent), each round:

1. Screen: EVENTS push events drawn afresh (a training clip, a start frame, walking for a time
   drawn from ONSET_RANGE_S, then a horizontal push of the thorax of PUSH_FORCE_UN (the
   evaluation's range) for 50 ms along a random heading) are played by the student, its mean
   closed loop. An event is lost when the fly terminates within AFTER_S of the push's onset.
2. Search: each lost event (at most `--max-search`) is played again by CANDIDATES worlds, the
   student's mean plus a vector from a box of `--candidate-range-rad` held from the onset for
   HOLD_S. The mean of the event's saving vectors is played too, and its play gives the
   targets where it saves (else the smallest saving vector's): the actions it played at the
   states it visited over the hold. `--target smallest` always teaches the smallest's (a
   random vector of the box is mostly directions that do not matter; their mean keeps what
   the saves share, and taught so the student tracks the clips it was not taught better).
3. Fit: the student's mean is fitted (minibatch least squares, in units of the action range) to
   every round's targets so far and, weighing as much, to the parent's mean at the states the
   screens' students visited (kept events whole, lost ones up to the onset): calm walking stays
   the parent's, as a DAgger-style aggregate keeps earlier saves. Half the calm rows of a step
   (`--calm-mix`) pair a calm state's body part with another calm state's reference part
   (future frames, phase), the parent's mean there the target: the fit otherwise changes the
   student most on pairings the plays never visit, and a clip it was not taught presents new
   ones. With `--calm-clips` the student also walks those clips unpushed each round and its
   states there join the calm set.

Each screen is the previous round's student on events it has never seen, so the screens are the
curve; a last screen judges the last student, and `drift_*_rad` say how far its mean moved
from the parent's on calm walking of the training and the held-out clips (where the fit was
not taught: a tracking cost shows there first). The screens and searches play the nominal model
(a candidate must replay its event exactly); the evaluation randomizes it. With `--save` the
student is written as a checkpoint and evaluated by `flyenv eval` as `train_clips.py`
evaluates (`--starts` fixed starts, its RANDOMIZATION), so `compare_runs.py` pairs the result
with the parent's run and `flyenv eval`'s replay. Results: benchmarks/results/<name>.json.
With `--device cuda` the plays and the fit run on the GPU (the draws stay on the CPU's
generator), the scale expert iteration is for: thousands of events a round. With
`--demonstrations FILE` the taught states (raw) and actions are written for `flyenv train
--demonstrations`, which keeps teaching them while PPO polishes the student's tracking.

    python benchmarks/push_expert_iteration.py --checkpoint CKPT --train DIR [--held-out DIR]
        [--rounds 4 --events 768] [--device cuda] --save student.pt
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import gymnasium as gym
import torch
from push_recovery_oracle import AFTER_S, DURATION_S, HOLD_S, RESULTS
from train_clips import RANDOMIZATION, evaluate

from flyenv.apps.demonstrations import Demonstrations
from flyenv.apps.evaluate import Policy, play_settings
from flyenv.apps.inputs import sensing_load
from flyenv.apps.machine import environment_info
from flyenv.apps.train import policy_env
from flyenv.envs import FlyImitationConfig, FlyImitationVecEnv

ONSET_RANGE_S = (0.02, 0.2)  # walking before the push [s]
PUSH_FORCE_UN = tuple(RANDOMIZATION["push_force_un"])  # the evaluation's push sizes [uN]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the parent")
    parser.add_argument("--train", nargs="+", required=True, help="clips whose pushes are searched")
    parser.add_argument("--held-out", nargs="*", default=[], help="clips only evaluated")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--events", type=int, default=768, help="push events per screen")
    parser.add_argument("--max-search", type=int, default=64, help="lost events searched per round")
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--candidate-range-rad", type=float, default=0.03)
    parser.add_argument("--target", choices=("smallest", "mean"), default="mean",
                        help="teach the mean saving vector's play where it saves (else the "
                        "smallest's), or always the smallest saving vector's")
    parser.add_argument("--fit-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=2048, help="states per set per fit step")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--calm-every", type=int, default=4, help="keep every k-th calm state")
    parser.add_argument("--calm-weight", type=float, default=1.0,
                        help="weight of the calm states' error against the saves' in the fit")
    parser.add_argument("--calm-clips", nargs="*", default=[],
                        help="clips the student walks unpushed each round to widen the calm set")
    parser.add_argument("--calm-events", type=int, default=256,
                        help="walks per round on --calm-clips")
    parser.add_argument("--calm-mix", type=float, default=0.5,
                        help="share of each fit step's calm states whose reference part "
                        "(future frames and phase) comes from another calm state (0: the "
                        "anchor of the runs before it)")
    parser.add_argument("--sense-load", action="store_true",
                        help="widen the parent to sense the tarsi's load first (it acts as "
                             "before; flyenv.apps.inputs), so the fit can weigh load")
    parser.add_argument("--starts", type=int, default=64, help="the evaluation's starts per clip")
    parser.add_argument("--save", default="", help="write the student here and evaluate it")
    parser.add_argument("--demonstrations", default="",
                        help="write every round's taught states (raw) and actions here, a "
                        "flyenv.apps.demonstrations file for flyenv train --demonstrations")
    parser.add_argument("--drift-of", nargs="+", default=[], metavar="STUDENT",
                        help="only measure these saved students' drift from --checkpoint "
                        "(no rounds) and write it to NAME.json")
    parser.add_argument("--name", default="push_expert_iteration_cpu")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where NAME.json goes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu",
                        help="torch device of the plays and the fit (the draws stay on the CPU's "
                        "generator, so a seed draws the same events on any device)")
    args = parser.parse_args()
    parent_state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    if args.sense_load:  # the parent widened: it acts as before, and the fit may weigh load
        parent_state = sensing_load(parent_state, FlyImitationConfig.future_frames)
    policy = Policy.from_state(parent_state, args.device, args.checkpoint)
    box = args.candidate_range_rad  # [rad]
    if not 0 < box <= policy.args.residual_range_rad:
        parser.error(f"--candidate-range-rad must lie in (0, {policy.args.residual_range_rad}] "
                     f"(a smaller box of {args.checkpoint}'s policy), got {box}")
    if not 0 <= args.calm_mix <= 1:
        parser.error(f"--calm-mix is a share of the calm rows, in [0, 1], got {args.calm_mix}")
    gen = torch.Generator().manual_seed(args.seed)  # every draw of the run
    settings = play_settings(policy) | {"reference": tuple(args.train)}
    view = policy_env(policy.obs_norm, num_envs=1, device=args.device, **settings)
    names, dt = view.unwrapped.ref.names, view.unwrapped.config.control_dt_s
    reference_from = view.unwrapped.observation_layout["future_joint_pos"].start  # to the end
    lengths = view.unwrapped.ref.lengths.cpu()
    calm_settings = settings | {"reference": tuple(args.calm_clips)}
    if args.calm_clips:
        calm_lengths = clip_lengths(calm_settings)
    timing = {"hold": round(HOLD_S / dt), "after": round(AFTER_S / dt),
              "push": round(DURATION_S / dt),
              "onset": tuple(round(s / dt) for s in ONSET_RANGE_S)}
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{args.name}.json"
    groups = {group: clips for group, clips in (("train", args.train),
                                                ("held_out", args.held_out)) if clips}
    if args.drift_of:
        drifts = {name: {group: drift(policy, Policy.load(name, args.device).agent, clips, timing,
                                      settings, reference_from) for group, clips in groups.items()}
                  for name in args.drift_of}
        path.write_text(json.dumps({"machine": environment_info(args.device),
                                    "checkpoint": args.checkpoint, "args": vars(args),
                                    "drift_rad": drifts}, indent=1, default=str))
        view.close()
        return
    parent, student = policy.agent, copy.deepcopy(policy.agent)
    save_obs, save_act, calm_obs = [], [], []
    rounds, t_start = [], time.perf_counter()
    result = {"machine": environment_info(args.device), "checkpoint": args.checkpoint,
              "push": {"force_un": PUSH_FORCE_UN, "duration_s": DURATION_S,
                       "onset_range_s": ONSET_RANGE_S, "hold_s": HOLD_S, "survive_s": AFTER_S},
              "args": vars(args), "rounds": rounds}
    for r in range(args.rounds + 1):
        t0 = time.perf_counter()
        events = draw_events(lengths, args.events, timing, gen)
        survived, _, calm = play(policy, student, events, None, timing, settings,
                                 calm_every=args.calm_every)
        survived = survived.cpu()
        record = {"round": r, "screen": screen_summary(events, survived, names),
                  "screen_s": time.perf_counter() - t0}
        if r == args.rounds:  # the last student's screen: nothing more to search
            rounds.append(record)
            break
        calm_obs.append(calm)
        if args.calm_clips:
            walks = draw_events(calm_lengths, args.calm_events, timing, gen)
            walks["force"].zero_()
            calm_obs.append(play(policy, student, walks, None, timing, calm_settings,
                                 calm_every=args.calm_every)[2])
            record["calm_walk_s"] = time.perf_counter() - t0 - record["screen_s"]
        t0 = time.perf_counter()
        lost = (~survived).nonzero().squeeze(1)[:args.max_search]
        found = search(policy, student, events, lost, args.candidates, box, timing, settings,
                       gen, args.target)
        save_obs.append(found["obs"])
        save_act.append(found["act"])
        if args.demonstrations:  # the whole aggregate so far, raw, rewritten each round
            Demonstrations(view.denormalize(torch.cat(save_obs)), torch.cat(save_act)).save(
                args.demonstrations)
        record.update({"searched": len(lost), "saved": found["saved"],
                       "mean_saved": found.get("mean_saved"),
                       "saving_vector_rms_rad": found["vector_rms_rad"],
                       "search_s": time.perf_counter() - t0})
        t0 = time.perf_counter()
        record["fit"] = fit(student, parent, torch.cat(save_obs), torch.cat(save_act),
                            torch.cat(calm_obs), args.fit_steps, args.batch, args.learning_rate,
                            gen, args.calm_weight, args.calm_mix, reference_from)
        record["fit_s"] = time.perf_counter() - t0
        rounds.append(record)
        print(json.dumps(record), flush=True)
        result["wall_s"] = time.perf_counter() - t_start  # written as it goes: a cut run
        path.write_text(json.dumps(result, indent=1, default=str))  # keeps its rounds
    result["wall_s"] = time.perf_counter() - t_start
    view.close()
    drifts = {group: drift(policy, student, clips, timing, settings, reference_from)
              for group, clips in groups.items()}
    for stat in ("rms", "median", "p90", "mixed_median"):
        result[f"drift_{stat}_rad"] = {group: value[stat] for group, value in drifts.items()}
    if args.save:
        state = dict(parent_state)
        state["agent"] = {k: v.cpu() for k, v in student.state_dict().items()}
        state["expert_iteration"] = {"from": args.checkpoint, "rounds": args.rounds,
                                     "saves": sum(r.get("saved", 0) for r in rounds)}
        torch.save(state, args.save)
        result.update(evaluate(args.save, [*args.train, *args.held_out], args.starts, 2.0,
                               Path(args.save).with_suffix(""), args.device))
    path.write_text(json.dumps(result, indent=1, default=str))


def clip_lengths(settings: dict) -> torch.Tensor:
    """(nclip,) frames of each clip of `settings["reference"]`."""
    probe = FlyImitationVecEnv(num_envs=1, device="cpu", **settings)
    lengths = probe.ref.lengths.clone()
    probe.close()
    return lengths


def drift(policy: Policy, student: torch.nn.Module, clips: list[str], timing: dict,
          settings: dict, reference_from: int, walks: int = 128) -> dict[str, float]:
    """How far the student's mean moved from the parent's on calm walking of `clips` [rad].

    Over the states the student visits in `walks` unpushed plays (drawn as push events with a
    fixed generator, so every run walks the same starts): on held-out clips, what the fit
    changed where it was not taught. "rms" pools joints and states; a few states of a walk
    gone astray can carry it, so "median" and "p90" are taken over the states' own RMS
    across joints. "mixed_median" is the median on the same states with their reference
    parts (from `reference_from` on) shuffled among them: pairings the plays never visit.
    """
    settings = settings | {"reference": tuple(clips)}
    events = draw_events(clip_lengths(settings), walks, timing, torch.Generator().manual_seed(0))
    events["force"].zero_()
    _, _, calm = play(policy, student, events, None, timing, settings, calm_every=4)
    shuffle = torch.randperm(len(calm), generator=torch.Generator().manual_seed(1))
    mixed = paired(calm, calm[shuffle.to(calm.device)], reference_from)
    with torch.no_grad():
        gap, gap_mixed = (student.dist(x).mean - policy.agent.dist(x).mean for x in (calm, mixed))
    per_state = gap.square().mean(dim=1).sqrt()
    return {"rms": float(gap.square().mean().sqrt()), "median": float(per_state.median()),
            "p90": float(per_state.quantile(0.9)),
            "mixed_median": float(gap_mixed.square().mean(dim=1).sqrt().median())}


def paired(body: torch.Tensor, reference: torch.Tensor, reference_from: int) -> torch.Tensor:
    """(n, obs_dim) observations of `body`'s rows with `reference`'s columns from
    `reference_from` on (future frames and phase): a body and a reference never played together.
    """
    out = body.clone()
    out[:, reference_from:] = reference[:, reference_from:]
    return out


def draw_events(lengths: torch.Tensor, count: int, timing: dict, gen: torch.Generator,
                ) -> dict[str, torch.Tensor]:
    """`count` push events: clip, start frame, onset [steps] and push [uN], (count, ...) each.

    The start leaves room for the latest onset and AFTER_S after it; the heading is uniform,
    the force uniform over PUSH_FORCE_UN.
    """
    clip = torch.randint(len(lengths), (count,), generator=gen)
    steps = timing["onset"][1] + timing["after"] + 1
    span = (lengths[clip] - 2 - steps).clamp(min=1)
    frame = (torch.rand(count, generator=gen) * span).long()
    onset = torch.randint(timing["onset"][0], timing["onset"][1] + 1, (count,), generator=gen)
    heading = 2 * math.pi * torch.rand(count, generator=gen)
    low, high = PUSH_FORCE_UN
    magnitude = low + (high - low) * torch.rand(count, generator=gen)
    force = torch.stack([magnitude * heading.cos(), magnitude * heading.sin(),
                         torch.zeros(count)], dim=1)
    return {"clip": clip, "frame": frame, "onset": onset, "force": force}


def play(policy: Policy, agent: torch.nn.Module, events: dict[str, torch.Tensor],
         residual: torch.Tensor | None, timing: dict, settings: dict, *, calm_every: int = 0,
         ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None, torch.Tensor | None]:
    """Every world plays `agent`'s mean (plus `residual` over its hold) through its event.

    Args:
        events: (n, ...) each world's event (`draw_events`, rows repeated per candidate).
        residual: (n, act_dim) held from each world's onset for HOLD_S [rad], or None.
        calm_every: with k > 0, return every k-th state of the worlds that survive (all their
            steps) or fall (up to their onset).

    Returns:
        (n,) bool survived; with a residual, the hold's {"obs": (hold, n, obs_dim) normalized
        observations, "act": (hold, n, act_dim) actions played}; with calm_every, (m, obs_dim)
        calm states. All on the agent's device.
    """
    device = agent.action_scale.device
    events = {key: value.to(device) for key, value in events.items()}
    if residual is not None:
        residual = residual.to(device)
    steps = int(events["onset"].max()) + timing["after"]
    env = policy_env(policy.obs_norm, num_envs=len(events["clip"]), device=str(device),
                     autoreset_mode="disabled", max_episode_steps=steps + 1, **settings)
    try:  # fixed starts are checked on the host once, before the loop
        obs, _ = env.reset(seed=0, options={"clip": events["clip"], "frame": events["frame"]})
        alive, window, visited = roll(env, obs, agent, events, residual, timing, steps,
                                      calm_every)
    finally:
        env.close()
    calm = None
    if calm_every:  # a fallen world's states from its onset on are no calm walking
        calm = torch.cat([states[was_upright & (alive | before)]
                          for states, was_upright, before in visited])
    return alive, window, calm


def roll(env: gym.vector.VectorEnv, obs: torch.Tensor, agent: torch.nn.Module,
         events: dict[str, torch.Tensor], residual: torch.Tensor | None, timing: dict,
         steps: int, calm_every: int = 0,
         ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None, list]:
    """`play`'s loop, on the env's device with no host read: a GPU plays it as fast as it steps.

    Args:
        env: (n worlds) the policy's view of the env, its autoreset disabled, reset to the
            events' starts; obs (n, obs_dim) its observation there.
        events, residual: as `play`'s, on the env's device.
        steps: control steps to play.

    Returns:
        (n,) bool survived, the hold's window (as `play`'s) or None, and every calm_every
        steps ((n, obs_dim) states, (n,) not terminated yet, (n,) before the onset).
    """
    n, device = env.num_envs, env.unwrapped.device
    onset, hold = events["onset"], timing["hold"]
    base = env.unwrapped
    thorax = base.engine.model.body("thorax").id
    alive = torch.ones(n, dtype=torch.bool, device=device)  # no fall within AFTER_S of onset
    upright = torch.ones(n, dtype=torch.bool, device=device)  # not terminated yet
    worlds = torch.arange(n, device=device)
    window = None
    if residual is not None:
        window = {"obs": torch.zeros(hold, n, obs.shape[1], device=device),
                  "act": torch.zeros(hold, n, residual.shape[1], device=device)}
    visited = []
    for step in range(steps):
        since = step - onset  # steps since each world's onset
        with torch.no_grad():
            action = agent.dist(obs).mean
        if residual is not None:
            holding = ((since >= 0) & (since < hold))[:, None]
            action = action + holding * residual
            at = since.clamp(0, hold - 1)  # a world outside its hold rewrites its row as it was
            for key, value in (("obs", obs), ("act", action)):
                window[key][at, worlds] = torch.where(holding, value, window[key][at, worlds])
        if calm_every and step % calm_every == 0:
            visited.append((obs.clone(), upright.clone(), since < 0))
        pushing = ((since >= 0) & (since < timing["push"]))[:, None]
        base.engine.xfrc_applied[:, thorax, :3] = torch.where(pushing, events["force"], 0.0)
        obs, _, terminated, _, _ = env.step(action)
        alive &= ~(terminated & (since < timing["after"]))
        upright &= ~terminated
    return alive, window, visited


def search(policy: Policy, agent: torch.nn.Module, events: dict[str, torch.Tensor],
           lost: torch.Tensor, candidates: int, box: float, timing: dict, settings: dict,
           gen: torch.Generator, target: str = "mean") -> dict:
    """Plays each lost event with `candidates` held vectors; a saving play's hold.

    With `target` "smallest" the smallest saving vector's play is taught. With "mean" the
    mean of an event's saving vectors is played too and taught where it saves (else the
    smallest): a random vector of the box is mostly directions that do not matter, and the
    mean of the saves keeps what they share.

    Returns:
        {"obs": (m, obs_dim), "act": (m, act_dim)} the taught plays' states and actions over
        their holds, "saved" the events some vector saves, "vector_rms_rad" the taught
        vectors' RMS, and with "mean" "mean_saved" the events whose mean saving vector saves.
    """
    act_dim, device = len(agent.action_scale), agent.action_scale.device
    if len(lost) == 0:
        return {"obs": torch.zeros(0, policy.agent.actor[0].in_features, device=device),
                "act": torch.zeros(0, act_dim, device=device), "saved": 0,
                "vector_rms_rad": None}
    events = {key: value.to(device) for key, value in events.items()}
    lost = lost.to(device)
    repeated = {key: value[lost].repeat_interleave(candidates, 0)
                for key, value in events.items()}
    vectors = ((2 * torch.rand(len(lost) * candidates, act_dim, generator=gen) - 1) * box
               ).to(device)
    survived, window, _ = play(policy, agent, repeated, vectors, timing, settings)
    survived = survived.reshape(len(lost), candidates)
    norms = torch.where(survived, vectors.norm(dim=1).reshape(len(lost), candidates), torch.inf)
    saved = survived.any(1)
    best = (torch.arange(len(lost), device=device) * candidates + norms.argmin(1))[saved]
    taught = vectors[best]
    obs = window["obs"][:, best]  # (hold, saved events, obs_dim)
    act = window["act"][:, best]
    out = {"saved": int(saved.sum())}
    if target == "mean" and len(best):
        weights = survived[saved].float()  # (saved events, candidates)
        mean = (weights[:, :, None] * vectors.reshape(len(lost), candidates, act_dim)[saved]
                ).sum(1) / weights.sum(1, keepdim=True)
        rows = lost[saved]
        kept, mean_window, _ = play(policy, agent, {k: v[rows] for k, v in events.items()},
                                    mean, timing, settings)
        taught = torch.where(kept[:, None], mean, taught)
        obs = torch.where(kept[None, :, None], mean_window["obs"], obs)
        act = torch.where(kept[None, :, None], mean_window["act"], act)
        out["mean_saved"] = int(kept.sum())
    rms = taught.square().mean().sqrt().item() if len(best) else None
    return out | {"obs": obs.reshape(-1, obs.shape[-1]), "act": act.reshape(-1, act_dim),
                  "vector_rms_rad": rms}


def fit(student: torch.nn.Module, parent: torch.nn.Module, save_obs: torch.Tensor,
        save_act: torch.Tensor, calm_obs: torch.Tensor, steps: int, batch: int,
        learning_rate: float, gen: torch.Generator, calm_weight: float = 1.0,
        calm_mix: float = 0.0, reference_from: int = 0) -> dict:
    """Fits the student's mean to the saves' actions and to the parent's mean on calm states.

    Each step draws `batch` states of each set; both errors are in units of the action range,
    the calm states' weighted `calm_weight` times the saves'. With `calm_mix`, that share of
    the calm rows takes its columns from `reference_from` on (the reference part) from another
    calm state, the parent's mean there its target: the anchor then also holds for pairings of
    body and reference the plays never visit, as a clip the fit was not taught presents them.
    Returns the RMS errors [rad] before and after, per set (the drawn calm states unmixed).
    """
    scale = parent.action_scale
    with torch.no_grad():
        calm_act = torch.cat([parent.dist(chunk).mean for chunk in calm_obs.split(65536)])
        target = save_act.clamp(-0.999 * scale, 0.999 * scale)

    def errors(rows_save: torch.Tensor, rows_calm: torch.Tensor, mixed: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, ...]:
        save_err = (student.dist(save_obs[rows_save]).mean - target[rows_save]) / scale
        calm, goal = calm_obs[rows_calm], calm_act[rows_calm]
        if mixed is not None:
            calm = torch.cat([calm, mixed])
            with torch.no_grad():
                goal = torch.cat([goal, parent.dist(mixed).mean])
        calm_err = (student.dist(calm).mean - goal) / scale
        return save_err.square().mean(), calm_err.square().mean()

    def mix(size: int) -> torch.Tensor | None:  # calm bodies with other calm states' references
        if size == 0:
            return None
        body, ref = (torch.randint(len(calm_obs), (size,), generator=gen).to(scale.device)
                     for _ in range(2))
        return paired(calm_obs[body], calm_obs[ref], reference_from)

    def draw(size: int, calm_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # the CPU generator's rows of each set
        calm_size = size if calm_size is None else calm_size
        return tuple(torch.randint(len(states), (n,), generator=gen).to(scale.device)
                     for states, n in ((save_obs, size), (calm_obs, calm_size)))

    def rms() -> list[float]:
        with torch.no_grad():
            return [float(e.sqrt() * scale.mean()) for e in errors(*draw(16384))]

    before = rms() if len(save_obs) else [None, None]
    if len(save_obs):
        optimizer = torch.optim.Adam(student.actor.parameters(), lr=learning_rate)
        for _ in range(steps):
            mixing = round(calm_mix * batch)
            save_err, calm_err = errors(*draw(batch, batch - mixing), mix(mixing))
            optimizer.zero_grad()
            (save_err + calm_weight * calm_err).backward()
            optimizer.step()
    after = rms() if len(save_obs) else [None, None]
    return {"save_states": len(save_obs), "calm_states": len(calm_obs),
            "save_rms_rad_before": before[0], "save_rms_rad_after": after[0],
            "calm_rms_rad_before": before[1], "calm_rms_rad_after": after[1]}


def screen_summary(events: dict[str, torch.Tensor], survived: torch.Tensor,
                   names: tuple[str, ...]) -> dict[str, dict]:
    """Per clip: events played and the share survived."""
    out = {}
    for c, name in enumerate(names):
        mine = events["clip"] == c
        out[name] = {"events": int(mine.sum()),
                     "survived": float(survived[mine].float().mean()) if mine.any() else None}
    return out


if __name__ == "__main__":
    main()
