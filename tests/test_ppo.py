"""PPO's rollout: what the critic learns from."""

import pytest
import torch

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
