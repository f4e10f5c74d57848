"""PPO's rollout: what the critic learns from, and how it explores."""

import dataclasses
import json
import math
import re
from copy import deepcopy

import pytest
import torch

from flyenv.apps.demonstrations import Demonstrations, demonstration_loss
from flyenv.apps.exploration import (
    CorrelatedNoise,
    DecisionCredit,
    PushExploration,
    autoregressive,
    decision_advantages,
    self_imitation,
    widen,
)
from flyenv.apps.train import (
    Agent,
    PpoArgs,
    Rollout,
    collect,
    gae,
    make_optimizer,
    train,
    update,
)
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


# A push starts at about every other step and lasts 4 ms (2 steps at 500 Hz).
FREQUENT_PUSHES = {"push_force_un": [1.0, 2.0], "push_duration_s": 0.004, "push_rate_hz": 250.0}


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
    # Given the previous draw, a draw is the autoregressive policy's Gaussian.
    mean, std = torch.full_like(draws[1:], 0.3), torch.full_like(draws[1:], 0.2)
    action = mean + std * draws[1:]
    given = autoregressive(torch.distributions.Normal(mean, std), draws[:-1], noise.rho)
    innovation = (action - given.mean) / given.stddev
    assert innovation.std().item() == pytest.approx(1.0, abs=0.01)
    assert (innovation * draws[:-1]).mean().item() == pytest.approx(0.0, abs=0.01)


def test_correlated_noise_refuses_a_negative_time_constant():
    with pytest.raises(ValueError, match="correlation_s must be >= 0"):
        CorrelatedNoise((2, 3), -0.01, 0.002, "cpu")


def test_the_rollout_explores_with_the_noise_it_is_given():
    env = FlyImitationVecEnv(num_envs=3, device="cpu", autoreset_mode="same_step")
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, 8, torch.as_tensor(env.single_action_space.high), -2.0)
    rollout = Rollout.zeros(4, env.num_envs, obs_dim, act_dim, env.device)
    noise = CorrelatedNoise((env.num_envs, act_dim), 0.02, env.config.control_dt_s, env.device)
    first = noise.state.clone()
    obs, _ = env.reset(seed=0)
    collect(agent, env, obs, rollout, 0.95, noise=noise)
    with torch.no_grad():
        dist = agent.dist(rollout.obs)
        normalized = (rollout.actions - dist.mean) / dist.stddev  # each step's draw
        given = autoregressive(dist, rollout.noise_prev, noise.rho)
        torch.testing.assert_close(rollout.logp, given.log_prob(rollout.actions).sum(-1))
    # Each step's draw is the state the next one continues from.
    torch.testing.assert_close(rollout.noise_prev[0], first)
    torch.testing.assert_close(rollout.noise_prev[1:], normalized[:-1], atol=1e-4, rtol=0)
    torch.testing.assert_close(normalized[-1], noise.state, atol=1e-4, rtol=0)
    assert rollout.noise_rho == noise.rho > 0.9
    env.close()


@pytest.mark.parametrize(("correlation_s", "push_std", "push_correlation_s", "credit", "hold"),
                         [(0.0, 0.0, 0.0, "", 1), (0.02, 0.0, 0.0, "", 1),
                          (0.0, 0.5, 0.0, "autoregressive", 1),
                          (0.02, 0.5, 0.0, "autoregressive", 1),
                          (0.0, 0.5, 0.02, "autoregressive", 1),
                          (0.02, 0.5, 0.05, "autoregressive", 1),
                          (0.0, 0.5, 0.05, "marginal", 1), (0.02, 0.5, 0.05, "marginal", 1),
                          (0.0, 0.5, 0.0, "autoregressive", 3),
                          (0.02, 0.5, 0.05, "autoregressive", 3)])
def test_the_update_starts_from_the_rollout_s_own_probabilities(correlation_s, push_std,
                                                               push_correlation_s, credit, hold):
    # Before the policy moves, every ratio is 1: the normalized advantages' mean (0) is then the
    # policy loss. Log-probabilities recomputed from the marginal instead of the autoregressive
    # policy, or without the push exploration's extra std or its shift, would make the ratios
    # differ from 1.
    env = FlyImitationVecEnv(num_envs=4, device="cpu", autoreset_mode="same_step",
                             randomization=FREQUENT_PUSHES)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, 8, torch.as_tensor(env.single_action_space.high), -1.0)
    args = PpoArgs(num_steps=8, num_minibatches=1, update_epochs=1)
    rollout = Rollout.zeros(args.num_steps, env.num_envs, obs_dim, act_dim, env.device)
    noise = (CorrelatedNoise((env.num_envs, act_dim), correlation_s, env.config.control_dt_s,
                             env.device) if correlation_s else None)
    push = (PushExploration((env.num_envs, act_dim), push_std, 0.01, env.config.control_dt_s,
                            env.device, push_correlation_s, credit=credit, hold_steps=hold)
            if push_std else None)
    obs, _ = env.reset(seed=0)
    obs = collect(agent, env, obs, rollout, args.gamma, noise=noise, push=push)
    assert rollout.widened == bool(push_std)
    assert rollout.held == (hold > 1)
    if hold > 1:  # some steps held: their actions repeat the last ones
        held = rollout.decided[1:] == 0
        assert held.any()
        torch.testing.assert_close(rollout.actions[1:][held], rollout.actions[:-1][held])
    if push_std:
        assert (rollout.extra_std > 0).any() and (rollout.extra_std == 0).any()
        held = push_correlation_s > 0 and credit == "autoregressive"
        assert (rollout.push_shift != 0).any() == held
    losses = update(agent, make_optimizer(agent, 0.0), rollout, obs, args)
    assert losses["policy_loss"].item() == pytest.approx(0.0, abs=1e-5)
    env.close()


def test_push_exploration_lasts_from_a_push_to_after_s_past_its_end_within_the_episode():
    push = PushExploration((3, 2), 0.5, 0.004, 0.002, "cpu")  # windows 2 steps past a push
    pushed = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]],
                          dtype=torch.bool)
    done = torch.zeros(6, 3, dtype=torch.bool)
    done[1, 2] = True  # world 2's episode ends at its push's second step
    extra = torch.stack([push.update(p, d) for p, d in zip(pushed, done, strict=True)])
    expected = torch.tensor([[1, 0, 1], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]])
    torch.testing.assert_close(extra, 0.5 * expected.float())
    with pytest.raises(ValueError, match="std must be > 0"):
        PushExploration((3, 2), 0.0, 0.1, 0.002, "cpu")
    with pytest.raises(ValueError, match="correlation_s >= 0"):
        PushExploration((3, 2), 0.5, 0.1, 0.002, "cpu", correlation_s=-0.01)


def test_push_noise_is_held_within_a_window_and_drawn_afresh_when_one_opens():
    # 4000 worlds, 3 actions; pushes at steps 0 and 30, windows of 11 steps (20 ms past the
    # push's one step at 500 Hz), correlation 0.02 s (rho 0.905 between steps).
    n, std = 4000, 0.5
    push = PushExploration((n, 3), std, 0.02, 0.002, "cpu", correlation_s=0.02,
                           generator=torch.Generator().manual_seed(0))
    calm, done = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    draws, shifts, stds = [], [], []
    for step in range(45):
        shift, innovation_std, noise = push.draw()
        draws.append(noise), shifts.append(shift), stds.append(innovation_std)
        push.update(~calm if step in (0, 30) else calm, done)
    noise, shift, std_t = torch.stack(draws), torch.stack(shifts), torch.stack(stds)
    # Steps 1-11 and 31-41 are in windows; nothing outside them.
    inside = torch.zeros(45, dtype=torch.bool)
    inside[1:12] = inside[31:42] = True
    assert (noise[~inside] == 0).all() and (std_t[~inside] == 0).all()
    # Every draw in a window has the window's std; each window's first one is all innovation.
    assert noise[inside].std().item() == pytest.approx(std, rel=0.05)
    torch.testing.assert_close(std_t[1], torch.full((n,), std))
    assert (shift[1] == 0).all() and (shift[31] == 0).all()
    rho = math.exp(-0.002 / 0.02)
    torch.testing.assert_close(std_t[2], torch.full((n,), std * math.sqrt(1 - rho ** 2)))
    # Held within a window (correlation rho^k), independent across windows.
    def corr(a, b):
        return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
    assert corr(noise[1], noise[2]) == pytest.approx(rho, abs=0.03)
    assert corr(noise[1], noise[11]) == pytest.approx(rho ** 10, abs=0.03)
    assert abs(corr(noise[11], noise[31])) < 0.03
    # The shift is the part known from the last draw: the rest is an independent innovation.
    innovation = (noise[2:12] - shift[2:12]) / std_t[2:12, :, None]
    assert innovation.std().item() == pytest.approx(1.0, rel=0.03)
    assert abs(corr(innovation, noise[1:11])) < 0.03


def test_marginal_credit_draws_the_same_noise_and_reports_its_whole_std():
    # The same process and draws; PPO is told each window action's marginal: no shift, the
    # window's whole std at every step of it.
    n, std = 500, 0.5
    processes = [PushExploration((n, 3), std, 0.02, 0.002, "cpu", correlation_s=0.02,
                                 generator=torch.Generator().manual_seed(0), credit=credit)
                 for credit in ("autoregressive", "marginal")]
    calm, done = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    for step in range(20):
        (_, _, exact), (shift, std_t, noise) = (p.draw() for p in processes)
        torch.testing.assert_close(noise, exact)
        assert (shift == 0).all()
        torch.testing.assert_close(std_t, torch.full((n,), std if 1 <= step <= 11 else 0.0))
        for p in processes:
            p.update(~calm if step == 0 else calm, done)
    with pytest.raises(ValueError, match="credit must be one of"):
        PushExploration((n, 3), std, 0.02, 0.002, "cpu", credit="plain")


def test_a_hold_plays_each_decision_of_a_window_for_hold_steps():
    # Windows last 5 steps past a push (after_s 0.01 at 500 Hz). World 0 is pushed at step 0
    # and again at step 4 (its window goes on, and so do its decisions' steps); world 1 is
    # pushed at step 2 and its episode ends at step 4; world 2 is never pushed.
    push = PushExploration((3, 2), 0.5, 0.01, 0.002, "cpu", hold_steps=3)
    pushed = torch.zeros(12, 3, dtype=torch.bool)
    pushed[0, 0] = pushed[4, 0] = pushed[2, 1] = True
    done = torch.zeros(12, 3, dtype=torch.bool)
    done[4, 1] = True
    played, decide = [], []
    for step in range(12):
        action = torch.full((3, 2), float(step))  # each step's draw names its step
        played.append(push.hold(action)[:, 0].clone())
        decide.append(push.decide.clone())
        push.update(pushed[step], done[step])
    played, decide = torch.stack(played), torch.stack(decide)
    # World 0's window is steps 1-10: decisions at 1, 4, 7, 10; world 1's is steps 3-4 until
    # its episode ends: a decision at 3, held at 4; world 2 decides at every step.
    torch.testing.assert_close(played[:, 0], torch.tensor([0., 1, 1, 1, 4, 4, 4, 7, 7, 7, 10, 11]))
    torch.testing.assert_close(played[:, 1], torch.tensor([0., 1, 2, 3, 3, 5, 6, 7, 8, 9, 10, 11]))
    torch.testing.assert_close(played[:, 2], torch.arange(12.0))
    assert torch.equal(decide, played == torch.arange(12.0)[:, None])
    with pytest.raises(ValueError, match="hold_steps must be an int >= 1"):
        PushExploration((3, 2), 0.5, 0.004, 0.002, "cpu", hold_steps=0)


def _held_rollout(args: PpoArgs) -> tuple[Agent, Rollout, torch.Tensor]:
    """A small policy's rollout of 4 worlds pushed often, held for 3 steps in a window (push
    std 0.5): the agent, the rollout and the observations after it."""
    env = FlyImitationVecEnv(num_envs=4, device="cpu", autoreset_mode="same_step",
                             randomization=FREQUENT_PUSHES)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, 8, torch.as_tensor(env.single_action_space.high), -1.0)
    rollout = Rollout.zeros(args.num_steps, env.num_envs, obs_dim, act_dim, env.device)
    push = PushExploration((env.num_envs, act_dim), 0.5, 0.01, env.config.control_dt_s,
                           env.device, hold_steps=3)
    obs, _ = env.reset(seed=0)
    obs = collect(agent, env, obs, rollout, args.gamma, push=push)
    env.close()
    return agent, rollout, obs


def test_held_steps_give_the_policy_no_gradient():
    # The same rollout updates the policy through its decisions; with every step marked held,
    # nothing moves the actor (no entropy bonus; the critic is a network of its own).
    args = PpoArgs(num_steps=8, num_minibatches=1, update_epochs=1, ent_coef=0.0)
    agent, rollout, obs = _held_rollout(args)
    assert (rollout.decided == 0).any() and (rollout.decided == 1).any()

    def actor_moves(decided: torch.Tensor) -> bool:
        trained = deepcopy(agent)
        update(trained, make_optimizer(trained, 1e-3), dataclasses.replace(rollout,
               decided=decided), obs, args)
        return any(not torch.equal(a, b) for a, b in zip(
            [*agent.actor.parameters(), agent.log_std],
            [*trained.actor.parameters(), trained.log_std], strict=True))

    assert actor_moves(rollout.decided)
    assert not actor_moves(torch.zeros_like(rollout.decided))


def test_self_imitation_pulls_the_mean_to_window_actions_that_did_better_only():
    # Four steps: in a window with a positive advantage, in one with a negative advantage,
    # outside any window with a positive one, in a window with a zero advantage.
    mean = torch.zeros(4, 2, requires_grad=True)
    actions = torch.tensor([[1.0, -2.0], [3.0, 3.0], [5.0, 5.0], [1.0, 1.0]])
    advantages = torch.tensor([2.0, -1.0, 4.0, 0.0])
    window = torch.tensor([True, True, False, True])
    std = torch.tensor([0.5, 2.0])
    loss = self_imitation(mean, actions, advantages, window, std)
    loss.backward()
    # d/dmean of 2 * |(a - mean) / std|^2 / 2 / 4 at the first step; nothing elsewhere.
    expected = torch.zeros(4, 2)
    expected[0] = -2.0 * actions[0] / std ** 2 / 4
    torch.testing.assert_close(mean.grad, expected)
    torch.testing.assert_close(loss, torch.tensor(2.0 * (4.0 + 1.0) / 2 / 4))


def test_a_self_imitation_margin_imitates_only_the_excess_over_it():
    mean = torch.zeros(3, 1, requires_grad=True)
    actions = torch.ones(3, 1)
    advantages = torch.tensor([0.5, 1.0, 3.0])  # under, at and over the margin
    loss = self_imitation(mean, actions, advantages, torch.ones(3, dtype=torch.bool),
                          torch.ones(1), margin=1.0)
    loss.backward()
    torch.testing.assert_close(mean.grad, torch.tensor([[0.0], [0.0], [-2.0 / 3]]))
    torch.testing.assert_close(loss, torch.tensor(2.0 * 0.5 / 3))


def test_a_held_step_takes_the_advantage_of_the_decision_that_chose_its_action():
    # Two worlds over five steps: the first decides at 0 and 3, the second only at 2 (its
    # first two steps hold a decision made before the rollout: they take the first step's).
    advantages = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0],
                               [5.0, 50.0]])
    decided = torch.tensor([[1, 0], [0, 0], [0, 1], [1, 0], [0, 0]])
    expected = torch.tensor([[1.0, 10.0], [1.0, 10.0], [1.0, 30.0], [4.0, 30.0],
                             [4.0, 30.0]])
    torch.testing.assert_close(decision_advantages(advantages, decided), expected)
    torch.testing.assert_close(decision_advantages(advantages, torch.ones_like(decided)),
                               advantages)


def test_a_hold_carried_into_the_next_rollout_keeps_its_decisions_advantage():
    # gamma * lambda = 0.5. World 0 decides at steps 0 and 1 of the first rollout and holds
    # the second through the next rollout's first two steps and a whole third one; world 1
    # decides at every step (its own advantages).
    credit = DecisionCredit(2, 0.5, "cpu")
    first = credit(torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]),
                   torch.tensor([[1, 1], [1, 1], [0, 1]]))
    torch.testing.assert_close(first, torch.tensor([[1.0, 10.0], [2.0, 20.0], [2.0, 30.0]]))
    # The decision at step 1 is worth 2 in the first rollout plus 0.5^2 of the second's first
    # step's 4.
    second = credit(torch.tensor([[4.0, 40.0], [5.0, 50.0], [6.0, 60.0]]),
                    torch.tensor([[0, 1], [0, 1], [1, 1]]))
    torch.testing.assert_close(second, torch.tensor([[3.0, 40.0], [3.0, 50.0], [6.0, 60.0]]))
    third = credit(torch.tensor([[8.0, 70.0], [9.0, 80.0]]), torch.tensor([[0, 1], [0, 1]]))
    torch.testing.assert_close(third, torch.tensor([[10.0, 70.0], [10.0, 80.0]]))  # 6 + 0.5 * 8
    fourth = credit(torch.tensor([[16.0, 0.0]]), torch.tensor([[0, 1]]))
    # Its first step is 3 steps after the decision: 10 + 0.5^3 * 16.
    torch.testing.assert_close(fourth, torch.tensor([[12.0, 0.0]]))


@pytest.mark.parametrize("split", [1, 5, 9])
def test_carried_decision_credit_equals_that_of_one_rollout_of_the_whole_trajectory(split):
    # GAE over a trajectory cut in two rollouts (the first bootstrapped on the value after it)
    # and the credit carried across the cut give the second rollout's held steps the decision
    # advantages of the whole trajectory. Episodes end at random steps; the next step decides,
    # as PushExploration makes it.
    generator = torch.Generator().manual_seed(split)
    num_steps, num_envs, gamma, lam = 12, 5, 0.95, 0.9

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    done = (rand(num_steps, num_envs) < 0.1).float()
    decided = (rand(num_steps, num_envs) < 0.25).float()
    decided[0] = 1
    decided[1:] = torch.maximum(decided[1:], done[:-1])
    whole = dataclasses.make_dataclass("Steps", ["reward", "values", "done"])(
        rand(num_steps, num_envs), rand(num_steps, num_envs), done)
    next_value = rand(num_envs)
    expected = decision_advantages(gae(whole, next_value, gamma, lam), decided)

    def part(steps: slice) -> object:
        return dataclasses.replace(whole, reward=whole.reward[steps],
                                   values=whole.values[steps], done=whole.done[steps])

    credit = DecisionCredit(num_envs, gamma * lam, "cpu")
    credit(gae(part(slice(0, split)), whole.values[split], gamma, lam), decided[:split])
    second = credit(gae(part(slice(split, None)), next_value, gamma, lam), decided[split:])
    assert (decided[split] == 0).any()  # some hold crosses the cut
    torch.testing.assert_close(second, expected[split:])


def test_self_imitation_by_decision_credit_differs_from_step_credit_only_where_held():
    args = PpoArgs(num_steps=8, num_minibatches=1, update_epochs=1, ent_coef=0.0,
                   push_noise_std=0.5, push_self_imitation=1.0)
    agent, rollout, obs = _held_rollout(args)
    assert (rollout.decided == 0).any()

    def losses(rollout: Rollout, credit: str, carry: DecisionCredit | None = None,
               ) -> torch.Tensor:
        copy = deepcopy(agent)
        torch.manual_seed(0)  # the same minibatch order
        return update(copy, torch.optim.SGD(copy.parameters(), lr=0.0), rollout, obs,
                      dataclasses.replace(args, push_self_imitation_credit=credit),
                      decision_credit=carry)["self_imitation_loss"]

    assert losses(rollout, "decision") != losses(rollout, "step")
    # A first rollout has nothing carried into it: "carried" credits it as "decision" does.
    carry = DecisionCredit(rollout.decided.shape[1], args.gamma * args.gae_lambda, "cpu")
    torch.testing.assert_close(losses(rollout, "carried", carry), losses(rollout, "decision"))
    with pytest.raises(ValueError, match="carried needs the DecisionCredit"):
        losses(rollout, "carried")
    every = dataclasses.replace(rollout, decided=torch.ones_like(rollout.decided))
    torch.testing.assert_close(losses(every, "decision"), losses(every, "step"))


def test_self_imitation_teaches_the_mean_at_held_steps_in_windows_only():
    # With every step marked held, PPO's term leaves the actor alone (above); self-imitation
    # moves it, towards the held actions of the window steps that did better than expected,
    # and only when there are window steps.
    args = PpoArgs(num_steps=8, num_minibatches=1, update_epochs=1, ent_coef=0.0,
                   push_noise_std=0.5, push_self_imitation=1.0)
    agent, rollout, obs = _held_rollout(args)
    held = dataclasses.replace(rollout, decided=torch.zeros_like(rollout.decided))
    window = rollout.extra_std > 0
    assert window.any() and (~window).any()

    def trained(rollout: Rollout, **changes: float) -> tuple[Agent, dict]:
        copy = deepcopy(agent)
        losses = update(copy, torch.optim.SGD(copy.parameters(), lr=1e-3), rollout, obs,
                        dataclasses.replace(args, **changes))
        return copy, losses

    moved, losses = trained(held)
    assert losses["self_imitation_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(
        agent.actor.parameters(), moved.actor.parameters(), strict=True))
    torch.testing.assert_close(moved.log_std, agent.log_std)  # the mean only
    with torch.no_grad():  # closer to the imitated actions (the update's own weights)
        advantages = gae(held, agent.value(obs), args.gamma, args.gae_lambda)
        normalized = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        weights = torch.where(window, normalized.clamp(min=0.0), 0.0)

        def distance(policy: Agent) -> torch.Tensor:
            gap = (held.actions - policy.dist(held.obs).mean) / agent.action_scale
            return (weights * (gap ** 2).sum(-1)).sum()

        assert weights.sum() > 0 and distance(moved) < distance(agent)
    off, _ = trained(held, push_self_imitation=0.0)
    no_window, _ = trained(dataclasses.replace(held, extra_std=torch.zeros_like(
        held.extra_std)))
    for still in (off, no_window):
        assert all(torch.equal(a, b) for a, b in zip(
            agent.actor.parameters(), still.actor.parameters(), strict=True))


def test_the_rollout_explores_more_around_pushes_with_the_std_it_records():
    env = FlyImitationVecEnv(num_envs=6, device="cpu", autoreset_mode="same_step",
                             randomization=FREQUENT_PUSHES)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, 8, torch.as_tensor(env.single_action_space.high), -3.0)
    rollout = Rollout.zeros(16, env.num_envs, obs_dim, act_dim, env.device)
    push = PushExploration((env.num_envs, act_dim), 0.5, 0.0, env.config.control_dt_s,
                           env.device)
    obs, _ = env.reset(seed=0)
    collect(agent, env, obs, rollout, 0.95, push=push)
    widened = rollout.extra_std > 0
    assert widened.float().mean() == pytest.approx(0.5, abs=0.3)
    with torch.no_grad():
        dist = agent.dist(rollout.obs)
        given = widen(dist, rollout.extra_std[..., None] * agent.action_scale,
                      rollout.push_shift * agent.action_scale)
        torch.testing.assert_close(rollout.logp, given.log_prob(rollout.actions).sum(-1))
        z = (rollout.actions - dist.mean) / dist.stddev  # in units of the policy's own std
    ratio = math.hypot(math.exp(-3.0), 0.5) / math.exp(-3.0)  # the widened std over the policy's
    assert z[widened].std().item() == pytest.approx(ratio, rel=0.1)
    assert z[~widened].std().item() == pytest.approx(1.0, rel=0.1)
    env.close()


def test_push_exploration_needs_pushes(tmp_path):
    args = PpoArgs(device="cpu", output=str(tmp_path / "run"), push_noise_std=0.5,
                   randomization='{"friction": [0.5, 1.5]}')
    with pytest.raises(ValueError, match="--push-noise-std .*push_force_un"):
        train(args)
    assert not (tmp_path / "run").exists()


def test_the_std_floor_holds_the_exploration_without_moving_the_mean():
    scale = torch.full((3,), 0.1)
    free, floored = Agent(5, 3, 8, scale, -4.0), Agent(5, 3, 8, scale, -4.0, min_std=0.05)
    floored.load_state_dict(free.state_dict())
    obs = torch.randn(7, 5)
    torch.testing.assert_close(floored.dist(obs).mean, free.dist(obs).mean)
    torch.testing.assert_close(floored.dist(obs).stddev, torch.full((7, 3), 0.05 * 0.1))
    assert free.dist(obs).stddev.max() < 0.05 * 0.1


def test_an_asymmetric_critic_reads_the_privileged_columns_and_the_policy_does_not():
    agent = Agent(5, 3, 8, torch.full((3,), 0.1), -2.0, critic_dim=7)
    obs = torch.randn(6, 7)
    other = obs.clone()
    other[:, 5:] += 1.0  # another push, height and samples; the same senses
    torch.testing.assert_close(agent.dist(other).mean, agent.dist(obs).mean)
    torch.testing.assert_close(agent.dist(obs[:, :5]).mean, agent.dist(obs).mean)
    assert not torch.allclose(agent.value(other), agent.value(obs))
    with pytest.raises(RuntimeError):
        agent.value(obs[:, :5])  # the critic needs the privileged part


@pytest.mark.parametrize("option", ["noise_correlation_s", "min_action_std", "push_noise_std",
                                    "push_noise_s", "push_noise_correlation_s", "push_hold_s",
                                    "push_self_imitation", "push_self_imitation_margin"])
def test_a_negative_exploration_setting_is_refused_by_name(option, tmp_path):
    args = PpoArgs(device="cpu", output=str(tmp_path / "run"), **{option: -0.1})
    with pytest.raises(ValueError, match=f"--{option.replace('_', '-')} must be >= 0"):
        train(args)
    assert not (tmp_path / "run").exists()


def test_a_push_hold_needs_push_exploration(tmp_path):
    args = PpoArgs(device="cpu", output=str(tmp_path / "run"), push_hold_s=0.01)
    with pytest.raises(ValueError, match="--push-hold-s .*--push-noise-std > 0"):
        train(args)
    assert not (tmp_path / "run").exists()


def test_an_unknown_self_imitation_credit_is_refused_by_name(tmp_path):
    args = PpoArgs(device="cpu", output=str(tmp_path / "run"), push_noise_std=0.1,
                   push_self_imitation=1.0, push_self_imitation_credit="window")
    with pytest.raises(ValueError, match="--push-self-imitation-credit must be one of .*"
                                         "'carried'.*, got 'window'"):
        train(args)
    assert not (tmp_path / "run").exists()


def test_push_self_imitation_needs_push_exploration(tmp_path):
    args = PpoArgs(device="cpu", output=str(tmp_path / "run"), push_self_imitation=1.0)
    with pytest.raises(ValueError, match="--push-self-imitation .*--push-noise-std > 0"):
        train(args)
    assert not (tmp_path / "run").exists()


def test_a_push_hold_shorter_than_two_control_steps_is_refused(tmp_path):
    # At 500 Hz 0.002 s is one step: a "hold" that would hold nothing.
    args = PpoArgs(device="cpu", output=str(tmp_path / "run"), push_noise_std=0.5,
                   push_hold_s=0.002, randomization=json.dumps(FREQUENT_PUSHES))
    with pytest.raises(ValueError, match=r"--push-hold-s 0.002 holds an action for 1 control"):
        train(args)
    assert not (tmp_path / "run").exists()


def test_an_unknown_push_noise_credit_is_refused_by_name(tmp_path):
    args = PpoArgs(device="cpu", output=str(tmp_path / "run"), push_noise_credit="plain")
    with pytest.raises(ValueError, match="--push-noise-credit must be one of"):
        train(args)
    assert not (tmp_path / "run").exists()


def test_the_reward_option_reaches_the_env_and_names_an_unknown_term(tmp_path, capsys):
    from flyenv.apps.train_args import env_settings
    from flyenv.cli import main

    args = PpoArgs(device="cpu", reward='{"weights": {"contact": 0.3}, "scales": {"contact": 8}}')
    env = FlyImitationVecEnv(num_envs=1, engine="mujoco", device="cpu", **env_settings(args))
    assert env.config.reward.weights["contact"] == 0.3
    assert env.config.reward.scales["contact"] == 8.0
    assert env.max_reward == pytest.approx(1.0 + 0.3)
    env.close()
    out = tmp_path / "run"
    assert main(["train", "--output", str(out), "--device", "cpu", "--reward",
                 '{"weights": {"contakt": 0.3}}']) == 2
    err = capsys.readouterr().err
    assert "unknown terms ['contakt']" in err and "Traceback" not in err and not out.exists()


def test_a_demonstrations_file_round_trips_and_a_bad_one_is_refused_by_file_and_field(tmp_path):
    demos = Demonstrations(torch.randn(5, 6), torch.randn(5, 3))
    demos.save(tmp_path / "d.pt")
    back = Demonstrations.load(tmp_path / "d.pt", 6, 3)
    assert torch.equal(back.obs, demos.obs) and torch.equal(back.act, demos.act)
    assert [p.name for p in tmp_path.iterdir()] == ["d.pt"]  # no partial file left
    (tmp_path / "text.pt").write_text("obs, act")
    cases = {"(m, 7) tensor for this policy, got (5, 6)": (tmp_path / "d.pt", 7, 3),
             "'act' must be a (m, 2)": (tmp_path / "d.pt", 6, 2),
             "not a flyenv demonstrations file": (tmp_path / "text.pt", 6, 3)}
    torch.save({"agent": {}}, tmp_path / "checkpoint.pt")
    cases["no format"] = (tmp_path / "checkpoint.pt", 6, 3)
    Demonstrations(torch.full((2, 6), float("nan")), torch.zeros(2, 3)).save(tmp_path / "n.pt")
    cases["'obs' has non-finite values"] = (tmp_path / "n.pt", 6, 3)
    Demonstrations(torch.zeros(2, 6), torch.zeros(3, 3)).save(tmp_path / "rows.pt")
    cases["same number of rows"] = (tmp_path / "rows.pt", 6, 3)
    for message, (path, obs_dim, act_dim) in cases.items():
        with pytest.raises(ValueError, match=re.escape(f"{path.name}: ")) as err:
            Demonstrations.load(path, obs_dim, act_dim)
        assert message in str(err.value)


def test_the_demonstration_loss_moves_the_mean_only_towards_the_actions():
    agent = Agent(5, 3, 8, torch.full((3,), 0.1), -2.0)
    obs, act = torch.randn(16, 5), torch.full((16, 3), 0.05)
    loss = demonstration_loss(agent.dist(obs), act)
    loss.backward()
    assert agent.log_std.grad is None  # the std is measured in, not taught
    with torch.no_grad():  # a step down the gradient brings the mean closer
        before = (agent.dist(obs).mean - act).square().sum()
        for p in agent.actor.parameters():
            p -= 1e-2 * p.grad
        assert (agent.dist(obs).mean - act).square().sum() < before
    mean = agent.dist(obs).mean.detach()  # at the mean itself: nothing to learn
    assert demonstration_loss(agent.dist(obs), mean) == 0
