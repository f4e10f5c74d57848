"""No host reads on the warp engine's path: env step/reset, wrappers, a PPO iteration.

These run MuJoCo Warp on the Warp CPU device with its captured graphs (the code a GPU runs)
under `no_host_reads()`, which fails at the first read of a tensor value by the host.
"""

import dataclasses

import pytest
import torch
from host_reads import HostReadError, no_host_reads

from flyenv.envs import AdaptiveStartsConfig, FlyImitationVecEnv
from flyenv.envs.starts import StartSampler
from flyenv.wrappers import AppendPrivileged, EpisodeStatistics, NormalizeObservation

pytestmark = pytest.mark.warp
NENV = 4


def test_guard_catches_host_reads():
    values = torch.arange(5.0)
    mask = values > 2
    for read in (lambda: values.sum().item(), lambda: bool(mask.any()), lambda: values[mask],
                 lambda: values.cpu(), lambda: values.numpy(), lambda: values.tolist(),
                 lambda: torch.nonzero(mask), lambda: float(values[0]),
                 lambda: values.to("cpu"), lambda: torch.equal(values, values),
                 lambda: torch.distributions.Normal(values, torch.ones(5),
                                                    validate_args=True).sample()):
        with pytest.raises(HostReadError), no_host_reads():
            read()
    with no_host_reads():  # device-side equivalents
        torch.where(mask, values, 0.0).sum()
        values.masked_fill(mask, 0.0)
        values[torch.tensor([1, 2])]
        torch.distributions.Normal(values, torch.ones(5), validate_args=False).sample()


@pytest.fixture(scope="module")
def warp_env(warp_device):
    envs = {}

    def make(mode, **kwargs):
        key = (mode, *kwargs)
        if key not in envs:
            # Short episodes, so that episodes end (and worlds reset) inside the guarded steps.
            envs[key] = FlyImitationVecEnv(
                num_envs=NENV, engine="warp", device="cpu" if warp_device == "cpu" else "cuda",
                control_decimation=2, max_episode_steps=3, autoreset_mode=mode, **kwargs)
        return envs[key]

    yield make
    for env in envs.values():
        env.close()


def _actions(env, step):
    actions = torch.full((env.num_envs, 42), 0.01 * step, device=env.device)
    actions[0, 0] = float("nan")  # zeroed and flagged on the device, no sync
    return actions


@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_env_step_and_reset_read_nothing_on_the_host(warp_env, mode):
    env = warp_env(mode)
    assert env.engine.use_cuda_graph
    ended = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    with no_host_reads():
        env.reset(seed=0)
        for step in range(8):
            _, _, terminated, truncated, info = env.step(_actions(env, step))
            done = terminated | truncated
            ended |= done
            if mode == "disabled":
                env.reset(options={"reset_mask": done})
    assert ended.all()  # every world ended (and was reset) at least once
    assert info["invalid_action"][0] and not info["invalid_action"][1:].any()


@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_wrappers_read_nothing_on_the_host(warp_env, mode):
    env = NormalizeObservation(EpisodeStatistics(warp_env(mode)))
    with no_host_reads():
        env.reset(seed=1)
        for step in range(8):
            _, _, terminated, truncated, info = env.step(_actions(env.unwrapped, step))
            if mode == "disabled":
                env.reset(options={"reset_mask": terminated | truncated})
    assert env.env.pop()["episodes"] >= NENV  # the one read, once per logging interval


def test_ppo_iteration_reads_nothing_on_the_host(warp_env):
    from flyenv.apps.demonstrations import Demonstrations
    from flyenv.apps.exploration import CorrelatedNoise, DecisionCredit, PushExploration
    from flyenv.apps.train import (
        Agent,
        ClipStatistics,
        PpoArgs,
        Rollout,
        collect,
        make_optimizer,
        update,
    )

    # Pushes at about every other step, explored around (`PpoArgs.push_noise_std`) with actions
    # held in the windows (`PpoArgs.push_hold_s`) and imitated where they did better
    # (`PpoArgs.push_self_imitation`, each held step by its decision's advantage carried across
    # rollouts), and a critic that sees them (`PpoArgs.privileged_critic`); the policy senses
    # the tarsi's load (`PpoArgs.sense_load`).
    base = warp_env("same_step", randomization={"push_force_un": [1.0, 2.0],
                                                "push_duration_s": 0.004, "push_rate_hz": 250.0},
                    sense_load=True)
    envs = NormalizeObservation(AppendPrivileged(EpisodeStatistics(base)))
    args = PpoArgs(num_envs=NENV, num_steps=6, num_minibatches=2, update_epochs=2,
                   push_noise_std=0.5, push_self_imitation=1.0,
                   push_self_imitation_credit="carried")
    obs_dim, act_dim = base.single_observation_space.shape[0], envs.single_action_space.shape[0]
    critic_dim = envs.single_observation_space.shape[0]
    scale = torch.as_tensor(envs.single_action_space.high, device=base.device)
    agent = Agent(obs_dim, act_dim, 32, scale, args.init_log_std,
                  critic_dim=critic_dim).to(base.device)
    optimizer = make_optimizer(agent, args.learning_rate)
    rollout = Rollout.zeros(args.num_steps, NENV, critic_dim, act_dim, base.device)
    clip_stats = ClipStatistics(base.ref.names, base.device)
    before = [p.detach().clone() for p in agent.parameters()]
    noise = CorrelatedNoise((NENV, act_dim), 0.02, base.config.control_dt_s, base.device)
    push = PushExploration((NENV, act_dim), 0.5, 0.004, base.config.control_dt_s, base.device,
                           correlation_s=0.02, hold_steps=2)
    credit = DecisionCredit(NENV, args.gamma * args.gae_lambda, base.device)
    # Demonstrations taught alongside (raw, of the policy's columns: normalized each update).
    demos = Demonstrations(torch.randn(16, obs_dim, device=base.device),
                           torch.zeros(16, act_dim, device=base.device))
    obs, _ = envs.reset(seed=2)
    for _ in range(2):  # the second iteration runs Adam with its state in place
        with no_host_reads():
            obs = collect(agent, envs, obs, rollout, args.gamma, clip_stats, 0.5, noise, push)
            taught = dataclasses.replace(demos, obs=envs.normalize(demos.obs))
            losses = update(agent, optimizer, rollout, obs, args, decision_credit=credit,
                            demonstrations=taught)
    assert torch.isfinite(losses["value_loss"]) and rollout.done.any()
    assert "tarsus_load" in base.observation_layout
    assert torch.isfinite(losses["self_imitation_loss"])
    assert torch.isfinite(losses["demonstration_loss"])
    assert (rollout.extra_std > 0).any() and (rollout.decided == 0).any()
    assert clip_stats.pop(base.max_reward)["clip/tripod_gait/episodes"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.parameters(), strict=True))


def test_adaptive_starts_read_nothing_on_the_host(warp_env):
    # A tight joint-error limit makes worlds fail (and their failures be recorded) inside the
    # guarded steps; resets then draw from the failure-weighted bins.
    env = warp_env("next_step", adaptive_starts={"bin_s": 0.002, "decay": 0.5},
                   max_joint_error_rad=0.02)
    failed = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
    with no_host_reads():
        env.reset(seed=3)
        for step in range(8):
            _, _, terminated, _, _ = env.step(_actions(env, 4 * step))
            failed |= terminated
    assert failed.any() and env.start_sampler.failure_rate().max() > 0


def test_weighted_start_sampling_reads_nothing_on_the_host():
    # Uniform and adaptive starts with clip weights (a zero among them), without an env.
    for config in (None, AdaptiveStartsConfig(bin_s=0.1, decay=0.5)):
        sampler = StartSampler(torch.tensor([300, 200, 100]), 1e-3, config, torch.device("cpu"),
                               weights=[2.0, 0.0, 1.0])
        gen = torch.Generator().manual_seed(0)
        with no_host_reads():
            clip, frame = sampler.sample(gen, 64)
            sampler.record(clip, frame, torch.ones(64, dtype=torch.bool), frame > 50)
            clip, frame = sampler.sample(gen, 64)
        assert not (clip == 1).any()
