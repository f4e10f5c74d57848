"""PPO (CleanRL style, plain torch) on FlyImitation-v0: learn to imitate a reference motion.

`train(PpoArgs(...), log=print)` is what `flyenv train` and `examples/ppo_imitation.py` run. The
env runs in SAME_STEP autoreset mode; time-outs are bootstrapped with the value of
`info["final_obs"]`. Observations are normalized on the device (`NormalizeObservation`, saved in
the checkpoint), episode statistics come from `EpisodeStatistics`. It logs per iteration the
mean episode return, each reward term, the imitation score (reward per step / the env's
maximum reward) and each clip's score and falls (`ClipStatistics`) to stdout, to TensorBoard
when installed, and to `OUTPUT/curve.json`; it saves `OUTPUT/checkpoint.pt`, ends with a
deterministic evaluation and, optionally, writes `OUTPUT/policy.mp4` of the trained policy with
the reference ghost (last, after the checkpoint and the curve: a machine without OpenGL loses
only the video, with a warning).

The settings (`PpoArgs`, every field an option of `flyenv train`) are declared in
`flyenv.apps.train_args` and re-exported here. One iteration is `collect` (a rollout) and
`update` (GAE and the clipped update), neither of which reads a device value on the host; the
log reads a few scalars once per iteration. Under `torchrun` it is data-parallel
(`flyenv.apps.distributed`): one env per rank, gradients, advantage statistics and observation
statistics shared, rank 0 writing the run.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from flyenv.apps import train_args
from flyenv.apps.demonstrations import Demonstrations, demonstration_loss
from flyenv.apps.distributed import Ranks
from flyenv.apps.exploration import (
    CorrelatedNoise,
    DecisionCredit,
    PushExploration,
    autoregressive,
    decision_advantages,
    self_imitation,
    widen,
)
from flyenv.apps.inputs import sensing_load
from flyenv.apps.plots import plot_training_curve
from flyenv.apps.train_args import PpoArgs, add_arguments, args_from
from flyenv.envs import FlyImitationVecEnv
from flyenv.wrappers import AppendPrivileged, EpisodeStatistics, NormalizeObservation
from flyenv.wrappers.record_video import record_episode

__all__ = ["Agent", "PpoArgs", "Rollout", "add_arguments", "args_from", "collect", "gae",
           "make_optimizer", "policy_env", "policy_statistics", "policy_video", "train",
           "update"]

Log = Callable[[str], None]


class Agent(nn.Module):
    """Gaussian policy (tanh-bounded mean, state-independent std) and value function (MLPs).

    `min_std` floors the std, in units of the action range (`PpoArgs.min_action_std`). With a
    `critic_dim` above `obs_dim` the critic is asymmetric: it reads (batch, critic_dim)
    observations (the policy's, then the privileged part, `flyenv.wrappers.AppendPrivileged`)
    and the policy only their first `obs_dim` columns.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, action_scale: torch.Tensor,
                 init_log_std: float, min_std: float = 0.0, critic_dim: int | None = None,
                 ) -> None:
        super().__init__()
        self.min_std, self.obs_dim = min_std, obs_dim

        def mlp(inputs: int, out: int, gain: float) -> nn.Sequential:
            layers = [nn.Linear(inputs, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                      nn.Linear(hidden, out)]
            for layer in layers[::2]:
                nn.init.orthogonal_(layer.weight, np.sqrt(2))
                nn.init.zeros_(layer.bias)
            nn.init.orthogonal_(layers[-1].weight, gain)
            return nn.Sequential(*layers)

        self.critic = mlp(critic_dim or obs_dim, 1, 1.0)
        self.actor = mlp(obs_dim, act_dim, 0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))
        self.register_buffer("action_scale", action_scale)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """(batch,) state values of (batch, critic_dim) observations."""
        return self.critic(obs).squeeze(-1)

    def std(self) -> torch.Tensor:
        """(act_dim,) the actions' std in units of their range, at least `min_std`."""
        return self.log_std.exp().clamp(min=self.min_std)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """The action distribution, (batch, act_dim), of (batch, obs_dim or critic_dim) obs."""
        mean = torch.tanh(self.actor(obs[..., :self.obs_dim])) * self.action_scale
        # Valid by construction (the scale is an exponential): argument validation would read
        # device values on the host at every call, three times per env step.
        return torch.distributions.Normal(mean, self.std() * self.action_scale,
                                          validate_args=False)


@dataclasses.dataclass
class Rollout:
    """One iteration's experience, (num_steps, num_envs, ...) tensors on the device.

    `reward` is what the critic learns from: the env's reward scaled by (1 - gamma), plus the
    discounted value of the final observation where an episode was truncated (time-out
    bootstrapping); `raw_reward` is the env's. With correlated exploration noise, `noise_prev`
    holds its state before each step's draw and `noise_rho` its correlation, from which the
    update recomputes the actions' log-probabilities (`flyenv.apps.exploration.autoregressive`).
    With push exploration (`widened`), `extra_std` (num_steps, num_envs) holds the std of each
    action's extra noise not known from its last draw and `push_shift` (num_steps, num_envs,
    act_dim) the part that is, in units of the action range (`flyenv.apps.exploration.widen`).
    With a push-time hold (`held`), `decided` (num_steps, num_envs) is 1 where the action was a
    decision of the policy and 0 where it was the last one held (`PushExploration.hold`): the
    update gives held actions no credit.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    reward: torch.Tensor
    raw_reward: torch.Tensor
    done: torch.Tensor
    noise_prev: torch.Tensor | None = None
    noise_rho: float = 0.0
    extra_std: torch.Tensor | None = None
    push_shift: torch.Tensor | None = None
    widened: bool = False
    decided: torch.Tensor | None = None
    held: bool = False

    @classmethod
    def zeros(cls, num_steps: int, num_envs: int, obs_dim: int, act_dim: int,
              device: torch.device) -> Rollout:
        """Buffers for `num_steps` steps of `num_envs` worlds, allocated once."""
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(num_steps, num_envs, *shape, device=device)

        return cls(obs=zeros(obs_dim), actions=zeros(act_dim), logp=zeros(), values=zeros(),
                   reward=zeros(), raw_reward=zeros(), done=zeros(), noise_prev=zeros(act_dim),
                   extra_std=zeros(), push_shift=zeros(act_dim), decided=zeros())


class ClipStatistics:
    """Per clip of the bank, on the device: steps, reward, episodes ended and those terminated.

    Args:
        names: (nclip,) the clips' names.
        device: where the sums live.
    """

    def __init__(self, names: tuple[str, ...], device: torch.device) -> None:
        self.names = names
        self._sums = torch.zeros(4, len(names), device=device)

    def add(self, clip: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor,
            truncated: torch.Tensor) -> None:
        """Adds one step of every world (`clip`: (num_envs,) the clip it played this step)."""
        rows = torch.stack([torch.ones_like(reward), reward, (terminated | truncated).float(),
                            terminated.float()])
        self._sums.index_add_(1, clip, rows)

    def pop(self, max_reward: float, ranks: Ranks | None = None) -> dict[str, float]:
        """Per clip since the last pop (one host read), over all `ranks`, then starts over.

        Returns:
            `clip/<name>/score` (reward per step / the env's maximum), `clip/<name>/episodes`
            (ended) and `clip/<name>/fell` (the share of them terminated).
        """
        if ranks is not None:
            ranks.sum_(self._sums)
        steps, reward, episodes, fell = self._sums.tolist()  # a copy: zeroed next
        self._sums.zero_()
        record = {}
        for name, n, r, e, f in zip(self.names, steps, reward, episodes, fell, strict=True):
            record[f"clip/{name}/score"] = float(r / max(n, 1) / max_reward)
            record[f"clip/{name}/episodes"] = float(e)
            record[f"clip/{name}/fell"] = float(f / e) if e else 0.0
        return record


def collect(agent: Agent, envs: gym.vector.VectorEnv, obs: torch.Tensor, rollout: Rollout,
            gamma: float, clip_stats: ClipStatistics | None = None,
            termination_penalty: float = 0.0, noise: CorrelatedNoise | None = None,
            push: PushExploration | None = None) -> torch.Tensor:
    """Fills `rollout` with one rollout of the stochastic policy (no host read of any value).

    Args:
        agent: the policy and critic.
        envs: the (wrapped) env in SAME_STEP autoreset mode.
        obs: (num_envs, obs_dim) the current observations.
        rollout: the buffers to fill, of `num_steps` steps.
        gamma: the discount, for the reward scale and the time-out bootstrap.
        clip_stats: adds each step to these, by the clip each world played (optional).
        termination_penalty: subtracted from the critic's reward where an episode terminated
            (`PpoArgs.termination_penalty`).
        noise: the policy's exploration noise, correlated in time (`PpoArgs.noise_correlation_s`;
            the log-probabilities are then those given its previous state); None: white, a fresh
            draw of the policy's distribution every step.
        push: more exploration around pushes (`PpoArgs.push_noise_std`), a noise of its own
            added to the policy's (the log-probabilities are then those of the widened and
            shifted distribution), and its hold (`PushExploration.hold_steps`); None: none.

    Returns:
        (num_envs, obs_dim) the observations after the rollout.
    """
    if noise is not None:
        rollout.noise_rho = noise.rho
    rollout.widened = push is not None
    rollout.held = push is not None and push.hold_steps > 1
    for step in range(rollout.obs.shape[0]):
        with torch.no_grad():
            dist = agent.dist(obs)
            if noise is None:
                action = dist.sample()
            else:
                rollout.noise_prev[step] = noise.state
                action = dist.mean + dist.stddev * noise()
                dist = autoregressive(dist, rollout.noise_prev[step], noise.rho)
            if push is not None:  # its own noise, apart from the policy's
                shift, innovation_std, extra = push.draw()
                rollout.push_shift[step], rollout.extra_std[step] = shift, innovation_std
                action = action + extra * agent.action_scale
                dist = widen(dist, innovation_std[:, None] * agent.action_scale,
                             shift * agent.action_scale)
            if rollout.held:  # a held step plays the last decision (its draw unused)
                action = push.hold(action)
                rollout.decided[step] = push.decide
            rollout.obs[step], rollout.actions[step] = obs, action
            rollout.logp[step] = dist.log_prob(action).sum(-1)
            rollout.values[step] = agent.value(obs)
        obs, reward, terminated, truncated, info = envs.step(action)
        with torch.no_grad():  # bootstrap time-outs from the last observation
            final_value = agent.value(info["final_obs"])
        rollout.raw_reward[step] = reward
        # Rewards scaled by (1 - gamma) keep returns (the critic's targets) near the reward per
        # step, in [0, 1], rather than ~1 / (1 - gamma) times it; the advantages are normalized
        # per minibatch, so only the critic's fit changes.
        rollout.reward[step] = ((1 - gamma) * reward
                                + gamma * final_value * (truncated & ~terminated)
                                - termination_penalty * terminated)
        rollout.done[step] = (terminated | truncated).float()
        if push is not None:
            push.update(info["randomization/push"], terminated | truncated)
        if clip_stats is not None:  # the clip played this step (before any reset)
            clip_stats.add(info["final_info"]["clip"], reward, terminated, truncated)
    return obs


def gae(rollout: Rollout, next_value: torch.Tensor, gamma: float, gae_lambda: float,
        ) -> torch.Tensor:
    """(num_steps, num_envs) generalized advantage estimates of `rollout`'s steps.

    Args:
        rollout: the steps' rewards, values and ends.
        next_value: (num_envs,) the value of the observations after the rollout.
        gamma: the discount.
        gae_lambda: GAE's lambda.
    """
    advantages = torch.zeros_like(rollout.reward)
    last_gae = 0.0
    for step in reversed(range(rollout.reward.shape[0])):
        next_nonterminal = 1.0 - rollout.done[step]
        delta = (rollout.reward[step] + gamma * next_value * next_nonterminal
                 - rollout.values[step])
        last_gae = delta + gamma * gae_lambda * next_nonterminal * last_gae
        advantages[step] = last_gae
        next_value = rollout.values[step]
    return advantages


def update(agent: Agent, optimizer: torch.optim.Optimizer, rollout: Rollout,
           next_obs: torch.Tensor, args: PpoArgs, ranks: Ranks | None = None,
           decision_credit: DecisionCredit | None = None,
           demonstrations: Demonstrations | None = None) -> dict[str, torch.Tensor]:
    """GAE and the clipped PPO update over `update_epochs` epochs of minibatches.

    Reads no value on the host (use a fused optimizer: Adam's default keeps its step count in a
    CPU tensor and reads it every step). With several `ranks`, each minibatch is this rank's
    share of a global one: advantages are normalized over all ranks' and gradients averaged
    over them before clipping, so N ranks update like one process with N times the worlds.

    With `push_self_imitation` > 0 and push exploration, the policy's mean is also regressed
    towards the actions of push windows where the advantage was positive
    (`flyenv.apps.exploration.self_imitation`), in the window's std (the policy's and the push
    noise's together), by the part of each step's advantage (or, with
    `push_self_imitation_credit` "decision", its decision's; with "carried", its decision's
    from `decision_credit`, which this update's rollout then carries on to the next one) above
    `push_self_imitation_margin`.

    With `demonstrations` (their observations normalized as the rollout's are), each minibatch
    also draws as many of them and adds `demonstration_coef` times their negative
    log-likelihood (`flyenv.apps.demonstrations.demonstration_loss`).

    Returns:
        The last minibatch's losses as device tensors (`policy_loss`, `value_loss`, and
        `self_imitation_loss` and `demonstration_loss` when they are on), for logging.
    """
    ranks = ranks or Ranks.single()
    params = list(agent.parameters())
    t, n = rollout.reward.shape
    with torch.no_grad():
        advantages = gae(rollout, agent.value(next_obs), args.gamma, args.gae_lambda)
        returns = advantages + rollout.values

    batch_size = t * n
    minibatch = max(1, batch_size // args.num_minibatches)
    b_obs = rollout.obs.reshape(batch_size, -1)
    b_act = rollout.actions.reshape(batch_size, -1)
    b_prev = rollout.noise_prev.reshape(batch_size, -1) if rollout.noise_rho else None
    b_extra = rollout.extra_std.reshape(batch_size, 1) if rollout.widened else None
    b_shift = rollout.push_shift.reshape(batch_size, -1) if rollout.widened else None
    b_decided = rollout.decided.reshape(-1) > 0 if rollout.held else None
    b_window = (rollout.extra_std.reshape(-1) > 0
                if rollout.widened and args.push_self_imitation > 0 else None)
    b_logp, b_adv, b_ret = rollout.logp.reshape(-1), advantages.reshape(-1), returns.reshape(-1)
    b_decision_adv = None
    if rollout.held and args.push_self_imitation_credit == "decision":
        b_decision_adv = decision_advantages(advantages, rollout.decided).reshape(-1)
    elif rollout.held and args.push_self_imitation_credit == "carried":
        if decision_credit is None:
            raise ValueError("update: --push-self-imitation-credit carried needs the "
                             "DecisionCredit that carries holds from rollout to rollout")
        b_decision_adv = decision_credit(advantages, rollout.decided).reshape(-1)
    for _ in range(args.update_epochs):
        order = torch.randperm(batch_size, device=b_obs.device)
        for begin in range(0, batch_size, minibatch):
            idx = order[begin:begin + minibatch]
            dist = policy = agent.dist(b_obs[idx])
            if b_prev is not None:
                dist = autoregressive(dist, b_prev[idx], rollout.noise_rho)
            if b_extra is not None:
                dist = widen(dist, b_extra[idx] * agent.action_scale,
                             b_shift[idx] * agent.action_scale)
            log_ratio = dist.log_prob(b_act[idx]).sum(-1) - b_logp[idx]
            if b_decided is not None:  # a held action is no draw of the policy: ratio 1
                log_ratio = torch.where(b_decided[idx], log_ratio, 0.0)
            ratio = log_ratio.exp()
            adv_mean, adv_std = ranks.mean_std(b_adv[idx])
            adv = (b_adv[idx] - adv_mean) / (adv_std + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(
                1 - args.clip_coef, 1 + args.clip_coef)).mean()
            v_loss = 0.5 * ((agent.value(b_obs[idx]) - b_ret[idx]) ** 2).mean()
            loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * dist.entropy().sum(
                -1).mean()
            if b_window is not None:
                std = torch.hypot(policy.stddev, args.push_noise_std * agent.action_scale)
                sil_adv = adv if b_decision_adv is None else (
                    (b_decision_adv[idx] - adv_mean) / (adv_std + 1e-8))
                sil_loss = self_imitation(policy.mean, b_act[idx], sil_adv, b_window[idx],
                                          std.detach(), args.push_self_imitation_margin)
                loss = loss + args.push_self_imitation * sil_loss
            if demonstrations is not None:
                rows = torch.randint(len(demonstrations.obs), (len(idx),), device=b_obs.device)
                demo_loss = demonstration_loss(agent.dist(demonstrations.obs[rows]),
                                               demonstrations.act[rows])
                loss = loss + args.demonstration_coef * demo_loss
            optimizer.zero_grad()
            loss.backward()
            ranks.average_gradients(params)
            # Clipped per network: the critic's early, large gradients (returns of ~50 against
            # a value head starting at 0) must not scale the policy's away.
            nn.utils.clip_grad_norm_(agent.critic.parameters(), args.max_grad_norm)
            nn.utils.clip_grad_norm_([*agent.actor.parameters(), agent.log_std],
                                     args.max_grad_norm)
            optimizer.step()
    losses = {"policy_loss": pg_loss.detach(), "value_loss": v_loss.detach()}
    if b_window is not None:
        losses["self_imitation_loss"] = sil_loss.detach()
    if demonstrations is not None:
        losses["demonstration_loss"] = demo_loss.detach()
    return losses


def make_optimizer(agent: Agent, learning_rate: float) -> torch.optim.Optimizer:
    """Adam, fused: one kernel per step, its step count on the device (no host read)."""
    return torch.optim.Adam(agent.parameters(), lr=learning_rate, eps=1e-5, fused=True)


def train(args: PpoArgs, log: Log = lambda line: None) -> dict:
    """Trains, checkpoints and evaluates (see the module doc).

    Started by torchrun (`WORLD_SIZE` > 1), each process is one rank of a data-parallel run
    (`flyenv.apps.distributed`): its own env of `num_envs` worlds seeded `seed + rank` on its own
    device, one policy kept the same on all ranks, `total_timesteps` counted over all of them;
    rank 0 alone logs and writes the run folder.

    Args:
        args: the settings.
        log: receives one line per iteration and a summary (rank 0's).

    Returns:
        The contents of `OUTPUT/curve.json` (args, device, clips, curve, evaluation, files); on
        ranks other than 0, `{"rank": rank}` once training is done.
    """
    train_args.check(args)
    ranks = Ranks.from_env(args.device)
    device = ranks.device(args.device)
    lead = ranks.rank == 0
    log = log if lead else (lambda line: None)
    torch.manual_seed(args.seed)  # the same initial policy on every rank (and broadcast)
    envs = gym.make_vec("flyenv/FlyImitation-v0", num_envs=args.num_envs, device=str(device),
                        autoreset_mode="same_step", **train_args.env_settings(args))
    dt = envs.config.control_dt_s  # [s]
    hold_steps = round(args.push_hold_s / dt)
    if args.push_hold_s > 0 and hold_steps < 2:
        envs.close()
        raise ValueError(f"--push-hold-s {args.push_hold_s} holds an action for {hold_steps} "
                         f"control step(s) of {dt} s: at least two (>= {1.5 * dt:g} s), or 0 "
                         f"for no hold")
    demonstrations = None
    if args.demonstrations:
        try:
            demonstrations = Demonstrations.load(
                args.demonstrations, envs.single_observation_space.shape[0],
                envs.single_action_space.shape[0], device)
        except ValueError:
            envs.close()
            raise
    out = Path(args.output)  # made once the settings are known to be valid
    if lead:
        out.mkdir(parents=True, exist_ok=True)
    base = envs
    stats = EpisodeStatistics(envs)
    envs = NormalizeObservation(AppendPrivileged(stats) if args.privileged_critic else stats)
    obs_dim, act_dim = stats.single_observation_space.shape[0], envs.single_action_space.shape[0]
    critic_dim = envs.single_observation_space.shape[0]
    scale = torch.as_tensor(envs.single_action_space.high, device=device)
    agent = Agent(obs_dim, act_dim, args.hidden, scale, args.init_log_std,
                  args.min_action_std, critic_dim).to(device)
    if args.init_checkpoint:
        _go_on_from(Path(args.init_checkpoint), agent, envs, device)
    ranks.broadcast(agent)
    torch.manual_seed(args.seed + ranks.rank)  # each rank explores with its own noise
    optimizer = make_optimizer(agent, args.learning_rate)
    writer = _tensorboard(out) if lead else None
    clip_stats = ClipStatistics(base.ref.names, device)

    n, t = args.num_envs, args.num_steps
    noise = (CorrelatedNoise((n, act_dim), args.noise_correlation_s, dt, device)
             if args.noise_correlation_s > 0 else None)
    push = (PushExploration((n, act_dim), args.push_noise_std, args.push_noise_s, dt, device,
                            args.push_noise_correlation_s,
                            credit=args.push_noise_credit,
                            hold_steps=max(1, hold_steps))
            if args.push_noise_std > 0 else None)
    rollout = Rollout.zeros(t, n, critic_dim, act_dim, device)
    decision_credit = (DecisionCredit(n, args.gamma * args.gae_lambda, device)
                       if args.push_self_imitation_credit == "carried" else None)
    num_iterations = max(1, args.total_timesteps // (n * t * ranks.world_size))
    clips = train_args.describe_clips(base)
    for line in train_args.plan(args, clips, num_iterations, ranks.world_size):
        log(line)
    curve = []

    obs, _ = envs.reset(seed=args.seed + ranks.rank)
    merged = ranks.merge_normalizer(envs, envs.state_dict())
    start = time.perf_counter()
    for iteration in range(1, num_iterations + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * (1 - (iteration - 1) / num_iterations)
        obs = collect(agent, envs, obs, rollout, args.gamma, clip_stats,
                      args.termination_penalty, noise, push)
        merged = ranks.merge_normalizer(envs, merged)
        taught = None if demonstrations is None else dataclasses.replace(
            demonstrations, obs=envs.normalize(demonstrations.obs))  # this update's statistics
        losses = update(agent, optimizer, rollout, obs, args, ranks, decision_credit, taught)
        # The iteration's only host reads: a few scalars for the log (the score over all ranks).
        score = ranks.average(rollout.raw_reward.mean()).item() / base.max_reward
        steps = n * t * ranks.world_size * iteration
        losses.pop("policy_loss")  # the last minibatch's: noise, not logged
        curve.append(_log(log, iteration, num_iterations, stats, base, start, steps,
                          {"score": score, **{k: v.item() for k, v in losses.items()},
                           "action_std": agent.std().mean().item(),
                           **clip_stats.pop(base.max_reward, ranks)}, writer))
        over = 0 < args.time_limit_s <= time.perf_counter() - start
        if ranks.any(over) and iteration < num_iterations:  # the ranks stop together
            log(f"time limit of {args.time_limit_s:.0f} s reached after {iteration} iterations")
            break
    if not lead:
        base.close()
        return {"rank": ranks.rank}
    torch.save({"agent": agent.state_dict(), "obs_norm": envs.state_dict(),
                "args": dataclasses.asdict(args), "clips": list(base.ref.names)},
               out / "checkpoint.pt")
    evaluation = _evaluate(agent, envs, base, args.eval_steps)
    log(f"evaluation: imitation score {evaluation['score']:.3f} of the maximum reward "
        f"({evaluation['reward_per_step']:.3f} per step over {args.eval_steps} steps); "
        f"replaying the reference (zero residuals) scores {evaluation['replay_score']:.3f}")
    files = {"checkpoint": out / "checkpoint.pt", "curve_json": out / "curve.json",
             "curve_png": plot_training_curve(curve, evaluation, out / "curve.png")}
    result = {"args": dataclasses.asdict(args), "device": str(device),
              "world_size": ranks.world_size, "clips": clips, "curve": curve,
              "evaluation": evaluation, "files": {k: str(v) for k, v in files.items()}}
    if base.start_sampler.adaptive:
        result["start_probabilities"] = base.start_sampler.probabilities().cpu().tolist()
    # The run's results are on disk before the video is tried: rendering needs an OpenGL
    # context (EGL/OSMesa) that a training machine may lack, and must not cost the curve.
    (out / "curve.json").write_text(json.dumps(result, indent=1))
    if args.video_steps > 0:
        try:
            files["video"] = policy_video(agent, policy_statistics(envs.state_dict(), obs_dim),
                                          args, out / "policy.mp4")
        except Exception as err:  # any rendering failure costs the video only
            message = f"policy video not written ({type(err).__name__}: {err})"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log(f"warning: {message}")
            result["video_error"] = message
        else:
            result["files"]["video"] = str(files["video"])
        (out / "curve.json").write_text(json.dumps(result, indent=1))
    log("wrote " + ", ".join(str(v) for v in files.values()))
    return result


def policy_video(agent: Agent, obs_norm: dict[str, torch.Tensor], args: PpoArgs,
                 path: Path, slowdown: float = 10.0) -> Path:
    """Films the deterministic policy in one fly from the clip's start, with its ghost.

    Returns:
        The mp4 written (`slowdown` times slower than real time).
    """
    env = policy_env(obs_norm, num_envs=1, device=str(next(agent.parameters()).device),
                     random_start=False, autoreset_mode="disabled", render_mode="rgb_array",
                     **train_args.env_settings(args))
    try:
        return record_episode(env, lambda obs: agent.dist(obs).mean, path,
                              steps=args.video_steps, slowdown=slowdown)[0]
    finally:
        env.close()


def policy_statistics(obs_norm: dict[str, torch.Tensor], obs_dim: int,
                      ) -> dict[str, torch.Tensor]:
    """The policy's part of a normalizer's `state_dict()`: its first `obs_dim` columns.

    A run with a privileged critic normalizes the privileged part too (after the policy's);
    the policy, played without it, needs only its own columns' statistics.
    """
    return {"mean": obs_norm["mean"][:obs_dim], "var": obs_norm["var"][:obs_dim],
            "count": obs_norm["count"]}


def policy_env(obs_norm: dict[str, torch.Tensor], **config: Any) -> NormalizeObservation:
    """A `FlyImitationVecEnv(**config)` seen through a trained policy's frozen normalizer.

    Args:
        obs_norm: the normalizer's `state_dict()` (a checkpoint's "obs_norm").
        config: the env's config fields.
    """
    env = NormalizeObservation(FlyImitationVecEnv(**config))
    env.load_state_dict(obs_norm)
    env.update = False
    return env


def _log(log: Log, iteration: int, num_iterations: int, stats: EpisodeStatistics,
         base: gym.vector.VectorEnv, start: float, steps: int, scalars: dict[str, float],
         writer: object) -> dict[str, float]:
    # score: the rollout's mean reward per step over the env's maximum reward.
    wall = time.perf_counter() - start
    record = {"iteration": iteration, "env_steps": steps, "wall_s": wall, **scalars,
              **{f"episode/{k}": v for k, v in stats.pop().items()}}
    line = (f"iter {iteration}/{num_iterations}: {steps} steps, {steps / wall:.0f} sps, "
            f"score {scalars['score']:.3f}, action std {scalars['action_std']:.3f}")
    if "episode/return" in record:
        line += (f", {record['episode/episodes']:.0f} episodes, return "
                 f"{record['episode/return']:.1f}, length {record['episode/length']:.0f}")
    log(line)
    if writer is not None:
        for key, value in record.items():
            writer.add_scalar(key if "/" in key else f"charts/{key}", value, steps)
    return record


def _evaluate(agent: Agent, envs: gym.vector.VectorEnv, base: gym.vector.VectorEnv,
              steps: int) -> dict[str, float]:
    """The deterministic policy's score, and the replay's (`replay_action`) on the same starts."""
    envs.update = False
    per_step = {}
    for name, policy in (("policy", lambda obs: agent.dist(obs).mean),
                         ("replay", lambda obs: base.replay_action())):
        obs, _ = envs.reset(seed=12345)
        total = torch.zeros((), device=base.device)
        with torch.no_grad():
            for _ in range(steps):
                obs, reward, *_ = envs.step(policy(obs))
                total += reward.mean()
        per_step[name] = float(total) / steps
    return {"reward_per_step": per_step["policy"], "score": per_step["policy"] / base.max_reward,
            "replay_score": per_step["replay"] / base.max_reward}


def _go_on_from(path: Path, agent: Agent, envs: NormalizeObservation,
                device: torch.device) -> None:
    """Loads a checkpoint's agent and observation statistics into this run's (`init_checkpoint`).

    A policy without the tarsi's load goes on in a run that senses it (`--sense-load`) widened
    (`flyenv.apps.inputs`): it acts as it did until training gives the new inputs weight.

    Raises:
        ValueError: naming the file, when it is not a flyenv train checkpoint or its policy does
            not fit this run's observations, actions or hidden size.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        weights, obs_norm = state["agent"], state["obs_norm"]
    except (OSError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"--init-checkpoint {path}: not a readable flyenv train checkpoint "
                         f"(expected the keys 'agent' and 'obs_norm'; {type(err).__name__}: "
                         f"{err})") from err
    base = envs.unwrapped
    senses = bool(state.get("args", {}).get("sense_load", False))
    if senses and not base.config.sense_load:
        raise ValueError(f"--init-checkpoint {path}: its policy senses the tarsi's load; this "
                         f"run needs --sense-load too")
    if base.config.sense_load:  # a new sense widens the policy; it goes on acting as before
        state = sensing_load(state, base.config.future_frames)
        weights, obs_norm = state["agent"], state["obs_norm"]
    mine = agent.state_dict()
    wrong = {k: (tuple(v.shape), tuple(mine[k].shape)) for k, v in weights.items()
             if k in mine and v.shape != mine[k].shape}
    if wrong or set(weights) != set(mine):
        raise ValueError(f"--init-checkpoint {path}: its policy does not fit this run (shapes "
                         f"checkpoint vs run {wrong}, missing "
                         f"{sorted(set(mine) - set(weights))}): the observation, action and "
                         f"hidden sizes must match (same env settings, --hidden and "
                         f"--privileged-critic)")
    if not torch.equal(weights["action_scale"].to(mine["action_scale"]), mine["action_scale"]):
        raise ValueError(f"--init-checkpoint {path}: its policy acts on another action range "
                         f"(--residual-range-rad or --action-mode differ from this run's)")
    agent.load_state_dict(weights)
    envs.load_state_dict(obs_norm)


def _tensorboard(out: Path) -> object:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


