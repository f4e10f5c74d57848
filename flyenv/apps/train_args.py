"""The settings of `flyenv train` (`PpoArgs`, each field an option) and what a run says of them.

`PpoArgs` is the one place each option is declared and described (its docstring is the option's
help, see `flyenv.apps.options`); `env_settings` turns it into the env's config and `plan` into
the lines a run prints before it starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING

from flyenv.apps.options import add_dataclass_arguments

if TYPE_CHECKING:
    from flyenv.envs import FlyImitationVecEnv


@dataclasses.dataclass(frozen=True)
class PpoArgs:
    """PPO settings (each field is a command-line option of `flyenv train`)."""

    device: str = "auto"
    """Torch device of the env and the policy (auto: cuda when present)."""
    num_envs: int = 64
    """Simulated flies."""
    total_timesteps: int = 100_000
    """Env steps over all flies, rounded down to whole iterations of num_envs x num_steps
    steps (at least one; the run says what it will do)."""
    time_limit_s: float = 0.0
    """Stop training after the iteration that passes this wall time [s] (0: no limit); the
    checkpoint, evaluation and video follow as usual."""
    num_steps: int = 64
    """Rollout length per iteration."""
    control_decimation: int = 0
    """Physics steps per policy step (0: the env's default, a 500 Hz policy at any physics
    step; with physics_dt_s 1e-4, 50 is a 200 Hz one). The discount is per step: keep its
    horizon in time with it (0.95 at 500 Hz is about 0.9 at 200 Hz). (On the real clips of
    benchmarks/train_clips.py, 200 Hz with --gamma 0.9 neither tracked as well as its replay
    nor survived pushes more often: README, "Datasets of clips".)"""
    residual_range_rad: float = 0.1
    """Half-width of the residual action box [rad] (the env's default is 0.5). Adam moves the
    policy's mean by steps proportional to this range while the exploration noise stays ~0.025
    rad: with 0.5 each step is too large and the rollout reward falls as training goes on; with
    0.1 it rises."""
    reference: str = ""
    """ReferenceMotion .npz to imitate, a folder of them (a dataset), or several of either
    separated by commas (clips of several fitted bodies: each fly simulates its clip's body); the
    embedded tripod gait when empty. Each iteration logs every clip's score and falls."""
    augment: str = ""
    """Train on more clips made from every reference clip: a JSON object of `AugmentConfig`
    fields, e.g. '{"mirror": true, "speeds": [0.8, 1.25]}' (each clip's mirror image and copies
    played 20% slower and 25% faster); empty: none. `flyenv eval` plays the clips themselves."""
    clip_weights: str = ""
    """How often each clip starts an episode relative to the others: a JSON object of clip name
    to weight, e.g. '{"tripod_gait": 4}' (names as `clip/<name>` in the logs, augmented clips
    included; clips left out weigh 1); empty: all alike."""
    adaptive_starts: str = ""
    """Start episodes more often where they fail (per clip and phase bin, with a uniform floor;
    `flyenv.envs.starts`): "on" for the defaults, or a JSON object of `AdaptiveStartsConfig`
    fields, e.g. '{"bin_s": 0.05}'; empty: uniform starts."""
    randomization: str = ""
    """Domain randomization: a JSON object of `RandomizationConfig` fields, e.g.
    '{"friction": [0.5, 1.5], "mass_scale": [0.8, 1.2], "push_force_un": [1, 5]}' (empty: off)."""
    reward: str = ""
    """The imitation reward's weights and scales: a JSON object of `RewardConfig` fields, e.g.
    '{"weights": {"contact": 0.3}, "scales": {"contact": 20}}' (terms left out keep their
    defaults; `flyenv.envs.rewards.TERMS` lists them); empty: the defaults."""
    output: str = "ppo-out"
    """Folder for the checkpoint and the learning curve."""
    init_checkpoint: str = ""
    """A `checkpoint.pt` of an earlier run to go on from: its policy, critic and observation
    statistics (same observation, action and hidden sizes); the optimizer starts afresh, and
    the steps, curve and seed are this run's. Empty: a new policy."""
    seed: int = 1
    """Seed of torch and the env."""
    learning_rate: float = 1e-4
    """Adam learning rate (annealed linearly to 0)."""
    gamma: float = 0.95
    """Discount (0.95: a 40 ms horizon at 500 Hz; an action's effect on the tracking reward is
    nearly all in the next step, and longer horizons bury it in the other actions' noise: on the
    real clips of benchmarks/train_clips.py 0.99 lowered the tracking and did not lower the
    falls, with the privileged critic too, README "Datasets of clips")."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    termination_penalty: float = 0.0
    """Subtracted from the critic's reward at a termination (fall, tilt, ...), in units of the
    (1 - gamma)-scaled return, on which a fly earning r per step is worth r (the free fly's
    maximum r is 1): 0 (the default) is DeepMimic's early termination, a fall costs only the
    reward it forgoes; 1 makes it cost about as much again, without lengthening the horizon as a
    larger gamma would (on the real clips of benchmarks/train_clips.py, 1 did not make pushes
    survived more often: README, "Datasets of clips")."""
    noise_correlation_s: float = 0.0
    """Time constant of the exploration noise [s] (`flyenv.apps.exploration`): the actions keep
    the policy's Gaussian spread, but draws k steps apart correlate by exp(-k control_dt /
    this), and PPO's ratios use each action's distribution given the noise's last state (an
    autoregressive policy). 0 (the default): white noise, a fresh draw every step. (On the real
    clips of benchmarks/train_clips.py, 0.02 with --min-action-std 0.125 did not make pushes
    survived more often: README, "Datasets of clips".)"""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Epochs per iteration."""
    clip_coef: float = 0.2
    """PPO clip range."""
    ent_coef: float = 0.0
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    init_log_std: float = -1.386
    """Initial log standard deviation of the actions, in units of the action range (-1.386: 0.25
    of it, 0.025 rad with the default range; 0.068 rad of noise alone costs a quarter of the
    reward at 500 Hz)."""
    min_action_std: float = 0.0
    """Floor of the exploration std, in units of the action range (0: none). Without one the
    std shrinks as tracking sharpens (to 0.06 of the range after 11M steps on the real clips of
    benchmarks/train_clips.py), and with it the exploration that could find a recovery."""
    push_noise_std: float = 0.0
    """Extra exploration during a push and `push_noise_s` after it, in units of the action range
    (0: none; needs pushes in --randomization). A noise of its own added to the policy's
    (`flyenv.apps.exploration.PushExploration`), drawn afresh when a window opens and
    correlated over --push-noise-correlation-s within it; the log-probabilities use the
    distribution given its last draw (an input of the policy's distribution, as the noise's
    state is), so PPO's ratios stay those of the actions taken. Around a push the policy's own
    noise almost only topples the fly, while residual vectors of the box's size held for 150
    ms save 5-34% of the pushes the replay loses, and save nearby pushes too
    (benchmarks/push_recovery_oracle.py). (On the real clips of benchmarks/train_clips.py, 0.5
    with --noise-correlation-s 0.05 from scratch made tracking and pushed survival worse:
    README, "Datasets of clips"; that run's push noise was the policy's widened, so it took the
    0.05 s correlation of all the noise.)"""
    push_noise_s: float = 0.1
    """How long the push exploration lasts past a push's end [s]."""
    push_noise_correlation_s: float = 0.0
    """Time constant of the push exploration's noise within a window [s] (0: white): e.g. 0.05
    holds about one random deviation through a 50 ms push, as the residual vectors that save
    pushed flies are held (benchmarks/push_recovery_oracle.py), while the policy's own noise
    keeps --noise-correlation-s. (On the real clips of benchmarks/train_clips.py, 0.05 with
    --push-noise-std 0.5 for 40 minutes from a trained policy cost tracking and did not make
    pushes survived more often: README, "Datasets of clips".)"""
    push_noise_credit: str = "autoregressive"
    """How PPO's ratios credit the push exploration's actions (`flyenv.apps.exploration.
    PushExploration`): "autoregressive", each action's likelihood given the noise's last draw
    (exact, but it credits the held deviation to a window's first action only), or
    "marginal", every window action's marginal likelihood (the draws' correlation ignored, as
    gSDE does; every step credits the whole deviation to the mean). (On the real clips of
    benchmarks/train_clips.py, --push-noise-std 0.17 --push-noise-correlation-s 0.05 for 45-50
    minutes from a trained policy: autoregressive changed nothing, marginal made tracking and
    pushed survival worse: README, "Datasets of clips".)"""
    push_hold_s: float = 0.0
    """In a push exploration window, the policy decides only every this many seconds and its
    action (its noise and the push noise included) is held in between (0: every step). A held
    action is no draw of the policy, so PPO credits each decision with the return of its hold
    and the held steps with nothing: an option, where correlated noise credits a held deviation
    to one step only (autoregressive) or with a bias (marginal). Use it with
    --push-noise-correlation-s 0, the decisions then independent (`flyenv.apps.exploration`).
    (On the real clips of benchmarks/train_clips.py, 0.01 with --push-noise-std 0.17 for 50
    minutes from a trained policy did not make pushes survived more often, nor did 0.15, one
    decision per window, in 25: README, "Datasets of clips".)"""
    push_self_imitation: float = 0.0
    """Weight of self-imitation in push windows (0: none; needs --push-noise-std > 0): at every
    step of a window, held steps included, the policy's mean is regressed towards the action
    played where the step's advantage was positive (`flyenv.apps.exploration.self_imitation`,
    Oh et al. 2018), measured in the window's exploration std. It is what teaches the mean a held
    answer at the held steps, where --push-hold-s gives PPO's term nothing. 1 weighs each step as
    PPO's term weighs a decision, so a window of H held steps H times its decision; 1 / H weighs
    the whole window as its decision. (On the real clips of benchmarks/train_clips.py with
    --push-hold-s 0.15: 1 cut the rollouts' falls but also their tracking, score 0.65 to 0.50 in
    0.6M steps, and was stopped; 1/75 for 27 minutes survived the gait's pushes more often
    than the replay and than the hold alone, by 0.054, but not the df3d walk's: README,
    "Datasets of clips".)"""
    push_self_imitation_margin: float = 0.0
    """The normalized advantage a window step must exceed to be imitated, its weight being the
    excess (0: every step that did better than expected). Half of all window steps clear 0,
    and their held actions are mostly noise; a margin of 1 keeps about the best sixth. (On the
    real clips of benchmarks/train_clips.py with --push-hold-s 0.15 and decision credit: 1 at
    weight 0.2 for 55 minutes and 2 at weight 1 for 37 survived the df3d walk's pushes more
    often than the parent and the hold alone, by 0.02-0.03 (from 128 starts, 2 at weight 1:
    +0.030, +0.005 to +0.061), as often as the replay, not more, and tracked worse; 45 more
    minutes did not add to it: README, "Datasets of clips".)"""
    push_self_imitation_credit: str = "step"
    """Which advantage weighs a held step's self-imitation: "step", its own (the part of its
    hold still to come); "decision", that of the decision that chose its action (the whole
    hold's: `flyenv.apps.exploration.decision_advantages`), or the rollout's first step's
    where the decision was made in an earlier rollout; "carried", the decision's in every
    rollout (`flyenv.apps.exploration.DecisionCredit`). A hold longer than a rollout always
    spans two: 0.15 s at 500 Hz is 75 steps, against 64 per rollout. Equal without
    --push-hold-s. (On the real clips of benchmarks/train_clips.py with margin 2, "carried" did
    what "decision" did, in two seeds: README, "Datasets of clips".)"""
    privileged_critic: bool = False
    """An asymmetric critic: the value function also sees the env's privileged observation
    (`FlyImitationVecEnv.privileged_layout`: the push that acts now and how long it still acts,
    the thorax's height, each world's randomized samples), as legged-robot and motion-tracking
    PPO (rsl_rl's "critic" group, mjlab) give their critics; the policy sees the fly's own
    senses only. Without it the critic cannot tell a pushed step from a calm one, so a push's
    cost lands in the advantages of whatever the policy did. (On the real clips of
    benchmarks/train_clips.py, 100 minutes from scratch tracked as before but did not make
    pushed survival better than the replay's: README, "Datasets of clips".)"""
    sense_load: bool = False
    """The policy also senses the load on each tarsus (the env's `sense_load`: each tarsus's
    normal force over the body's weight, `tarsus_load` in the observation). With
    --init-checkpoint of a policy without it, the policy goes on unchanged at first: the new
    inputs get zero weights and the identity normalization (`flyenv.apps.inputs`)."""
    demonstrations: str = ""
    """A demonstrations file (`flyenv.apps.demonstrations`: raw observations of the policy's
    size and the actions to take there) taught alongside PPO: every minibatch adds the
    negative log-likelihood of as many of them under the policy, its std detached, times
    --demonstration-coef (DAPG's behaviour-cloning term, kept). Empty: none."""
    demonstration_coef: float = 0.1
    """Weight of the demonstrations' term against PPO's (per state, in the policy's std: a
    demonstration one std off the mean in each of 42 joints costs 21 times this)."""
    hidden: int = 256
    """Width of the two hidden layers."""
    eval_steps: int = 200
    """Steps of the final deterministic evaluation."""
    video_steps: int = 0
    """Env steps of the final video of the policy (0: no video)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds an option `--field-name` for every field of `PpoArgs` (help: its docstring)."""
    add_dataclass_arguments(parser, PpoArgs)


def args_from(namespace: argparse.Namespace) -> PpoArgs:
    """The `PpoArgs` of parsed options (other attributes of the namespace are ignored)."""
    return PpoArgs(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(PpoArgs)})


def check(args: PpoArgs) -> None:
    """Refuses settings no run can use, before anything is built.

    Raises:
        ValueError: naming the option and what it must be.
    """
    for name in ("noise_correlation_s", "min_action_std", "push_noise_std", "push_noise_s",
                 "push_noise_correlation_s", "push_hold_s", "push_self_imitation",
                 "push_self_imitation_margin", "demonstration_coef"):
        value = getattr(args, name)
        if not value >= 0:  # NaN too
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    from flyenv.apps.exploration import (  # torch: only when a run is checked
        SELF_IMITATION_CREDITS,
        PushExploration,
    )

    if args.push_noise_credit not in PushExploration.CREDITS:
        raise ValueError(f"--push-noise-credit must be one of {PushExploration.CREDITS}, got "
                         f"{args.push_noise_credit!r}")
    if args.push_self_imitation_credit not in SELF_IMITATION_CREDITS:
        raise ValueError(f"--push-self-imitation-credit must be one of "
                         f"{SELF_IMITATION_CREDITS}, got {args.push_self_imitation_credit!r}")
    if args.push_hold_s > 0 and args.push_noise_std <= 0:
        raise ValueError("--push-hold-s holds actions in the push exploration's windows: it "
                         "needs --push-noise-std > 0")
    if args.push_self_imitation > 0 and args.push_noise_std <= 0:
        raise ValueError("--push-self-imitation imitates actions in the push exploration's "
                         "windows: it needs --push-noise-std > 0")
    if args.push_noise_std > 0:
        pushes = json_option("randomization", args.randomization or "{}").get("push_force_un")
        if pushes is None:
            raise ValueError("--push-noise-std explores around pushes: --randomization must "
                             "have pushes (\"push_force_un\": [low, high] in uN)")


def env_settings(args: PpoArgs) -> dict[str, object]:
    """The env config the policy is trained in (and filmed in)."""
    settings: dict[str, object] = {"residual_range_rad": args.residual_range_rad}
    if args.control_decimation:
        settings["control_decimation"] = args.control_decimation
    if args.sense_load:
        settings["sense_load"] = True
    if args.reference:
        paths = tuple(p.strip() for p in args.reference.split(",") if p.strip())
        settings["reference"] = paths[0] if len(paths) == 1 else paths
    if args.augment:
        settings["augment"] = json_option("augment", args.augment)
    if args.clip_weights:
        settings["clip_weights"] = json_option("clip-weights", args.clip_weights)
    if args.randomization:
        settings["randomization"] = json_option("randomization", args.randomization)
    if args.reward:
        settings["reward"] = json_option("reward", args.reward)
    if args.adaptive_starts:
        settings["adaptive_starts"] = ({} if args.adaptive_starts == "on"
                                       else json_option("adaptive-starts", args.adaptive_starts))
    return settings


def describe_clips(env: FlyImitationVecEnv) -> list[dict[str, object]]:
    """The clips the env imitates: name, source, duration [s] and start weight.

    The name is the file's stem, or "tripod_gait" for the embedded gait; the source comes from
    `ReferenceBank.sources`, the weight from `FlyImitationConfig.clip_weights` (1 unless given).
    """
    ref, weights = env.ref, env.config.clip_weights
    return [{"name": name, "source": source,
             "duration_s": (int(length) - 1) * env.config.control_dt_s,
             "start_weight": weights.get(name, 1.0)}
            for name, source, length in zip(ref.names, ref.sources, ref.lengths.tolist(),
                                            strict=True)]


def plan(args: PpoArgs, clips: list[dict[str, object]], num_iterations: int,
         world_size: int = 1) -> list[str]:
    """What the run will do, said before it starts (the clips, the steps, the evaluation).

    `world_size` ranks (torchrun) each run `num_envs` flies; the steps count all of them.
    """
    n, t = args.num_envs * world_size, args.num_steps
    steps = num_iterations * n * t
    lines = ["imitating " + ", ".join(
        f"{c['name']} ({c['duration_s']:.2f} s, {c['source']}"
        + ("" if c.get("start_weight", 1.0) == 1.0 else f", start weight {c['start_weight']:g}")
        + ")" for c in clips)]
    flies = f"{n} flies" if world_size == 1 else f"{n} flies ({world_size} ranks)"
    line = f"training: {num_iterations} iteration(s) x {flies} x {t} steps = {steps} env steps"
    if steps != args.total_timesteps:
        how = "up" if steps > args.total_timesteps else "down"
        line += (f" (--total-timesteps {args.total_timesteps} rounded {how} to whole "
                 f"iterations of {'num_envs' if world_size == 1 else 'flies'} x num_steps = "
                 f"{n * t})")
    lines.append(line)
    if args.init_checkpoint:
        line = f"going on from {args.init_checkpoint}"
        if args.sense_load:
            line += (" (a policy there without the tarsi's load goes on widened to sense it, "
                     "acting as before until training weighs it)")
        lines.append(line)
    elif args.sense_load:
        lines.append("sensing each tarsus's load (tarsus_load in the observation)")
    if args.demonstrations:
        lines.append(f"teaching the demonstrations of {args.demonstrations} beside PPO "
                     f"(--demonstration-coef {args.demonstration_coef:g})")
    after = (f"then evaluation: {args.eval_steps} steps of the deterministic policy and "
             f"{args.eval_steps} of the replay baseline, on {n} flies")
    if args.video_steps:
        after += f", and a video of {args.video_steps} steps"
    return lines + [after]


def json_option(option: str, text: str) -> dict[str, object]:
    """The JSON object an option `--<option>` was given (its keys are the config's to check).

    Raises:
        ValueError: naming the option, when the text is not JSON or not an object.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--{option}: not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--{option} must be a JSON object of config fields, such as "
                         f"'{{\"friction\": [0.5, 1.5]}}' for --randomization, got {text!r}")
    return value
