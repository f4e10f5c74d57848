"""PPO's rollout: what the critic learns from, and how it explores."""

import math

import pytest
import torch

from flyenv.apps.exploration import CorrelatedNoise
from flyenv.apps.train import Agent, PpoArgs, Rollout, collect
from flyenv.envs import FlyImitationVecEnv


@pytest.mark.parametrize("penalty", [0.0, 0.5])
def test_a_termination_costs_the_penalty_on_top_of_the_forgone_reward(penalty):
    # min_height_mm above the standing thorax: every world terminates at every step.
    env = FlyImitationVecEnv(num_envs=3, device="cpu", autoreset_mode="same_step",
                             min_height_mm=5.0)
    args = PpoArgs(num_steps=3, termination_penalty=penalty)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, 8, torch.as_tensor(env.single_action_space.high), -2.0)
    rollout = Rollout.zeros(args.num_steps, env.num_envs, obs_dim, act_dim, env.device)
    obs, _ = env.reset(seed=0)
    collect(agent, env, obs, rollout, args.gamma, termination_penalty=args.termination_penalty)
    assert rollout.done.all()
    expected = (1 - args.gamma) * rollout.raw_reward - penalty
    torch.testing.assert_close(rollout.reward, expected)
    env.close()


@pytest.mark.parametrize("correlation_s", [0.0, 0.002, 0.02])
def test_correlated_noise_is_unit_gaussian_with_the_time_constant_s_correlation(correlation_s):
    dt = 0.002
    noise = CorrelatedNoise((16384, 2), correlation_s, dt, "cpu",
                            generator=torch.Generator().manual_seed(0))
    draws = torch.stack([noise().clone() for _ in range(64)])  # (steps, envs, actions)
    expected_rho = math.exp(-dt / correlation_s) if correlation_s else 0.0
    assert noise.rho == pytest.approx(expected_rho)
    # Five standard errors, over the draws' effective number of independent samples.
    tol = 5 / math.sqrt(draws.numel() * (1 - noise.rho) / (1 + noise.rho))
    assert draws.mean().item() == pytest.approx(0.0, abs=tol)
    assert draws.std().item() == pytest.approx(1.0, abs=tol)
    for lag in (1, 5):
        corr = (draws[lag:] * draws[:-lag]).mean().item()
        assert corr == pytest.approx(noise.rho ** lag, abs=tol)


def test_correlated_noise_refuses_a_negative_time_constant():
    with pytest.raises(ValueError, match="correlation_s must be >= 0"):
        CorrelatedNoise((2, 3), -0.01, 0.002, "cpu")


def test_the_rollout_explores_with_the_noise_it_is_given():
    env = FlyImitationVecEnv(num_envs=3, device="cpu", autoreset_mode="same_step")
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, 8, torch.as_tensor(env.single_action_space.high), -2.0)
    rollout = Rollout.zeros(4, env.num_envs, obs_dim, act_dim, env.device)
    # A time constant of decades: the same normalized draw at every step.
    noise = CorrelatedNoise((env.num_envs, act_dim), 1e9, env.config.control_dt_s, env.device)
    first = noise.state.clone()
    obs, _ = env.reset(seed=0)
    collect(agent, env, obs, rollout, 0.95, noise=noise)
    with torch.no_grad():
        dist = agent.dist(rollout.obs)
        normalized = (rollout.actions - dist.mean) / dist.stddev
        torch.testing.assert_close(rollout.logp, dist.log_prob(rollout.actions).sum(-1))
    torch.testing.assert_close(normalized, first.expand_as(normalized), atol=1e-3, rtol=0)
    env.close()


def test_the_std_floor_holds_the_exploration_without_moving_the_mean():
    scale = torch.full((3,), 0.1)
    free, floored = Agent(5, 3, 8, scale, -4.0), Agent(5, 3, 8, scale, -4.0, min_std=0.05)
    floored.load_state_dict(free.state_dict())
    obs = torch.randn(7, 5)
    torch.testing.assert_close(floored.dist(obs).mean, free.dist(obs).mean)
    torch.testing.assert_close(floored.dist(obs).stddev, torch.full((7, 3), 0.05 * 0.1))
    assert free.dist(obs).stddev.max() < 0.05 * 0.1
