"""The TorchRL adapter drives the real `torchrl.envs.GymWrapper` over `FlyImitationVecEnv`."""

import pytest
import torch

pytest.importorskip("torchrl")

from torchrl.envs import GymWrapper, TransformedEnv  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from flyenv.envs import FlyImitationVecEnv  # noqa: E402
from flyenv.wrappers.torchrl import make_torchrl_env  # noqa: E402

N, T = 4, 5


def make(**kwargs):
    return FlyImitationVecEnv(num_envs=N, device="cpu", engine="mujoco", nthread=1, **kwargs)


def test_specs_and_random_rollout():
    env = make_torchrl_env(num_envs=N, device="cpu", engine="mujoco", nthread=1)
    assert isinstance(env, GymWrapper) and env.batch_size == (N,)
    assert env.autoreset_mode.name == "DISABLED"
    check_env_specs(env)
    env.set_seed(0)
    torch.manual_seed(0)
    # Random actions from the action spec (full-range residuals soon tip a fly over).
    data = env.rollout(max_steps=T, break_when_any_done=False)
    assert data.batch_size == (N, T) and data.device == env.device
    assert data["action"].shape == (N, T, 42)
    assert data["observation"].shape == data["next", "observation"].shape == (N, T, 226)
    for key in ("reward", "done", "terminated", "truncated"):
        assert data["next", key].shape == (N, T, 1)
        assert data["next", key].device == env.device
    # The reward is the weighted sum of the terms read from info.
    weights = env.config.reward.weights
    total = sum(weights[t] * data["next", f"reward/{t}"] for t in env.terms)
    assert data["next", f"reward/{env.terms[0]}"].shape == (N, T)
    torch.testing.assert_close(total, data["next", "reward"].squeeze(-1))


def test_partial_resets():
    env = make_torchrl_env(make(autoreset_mode="disabled"))
    env.set_seed(0)
    torch.manual_seed(0)
    data = env.rollout(max_steps=20, break_when_any_done=False)
    done = data["next", "done"].squeeze(-1)
    assert (done.any(0) & ~done.all(0)).any(), "some steps should end only some episodes"
    # Only the worlds that ended start over; the others carry on from their last observation.
    same = (data["observation"][:, 1:] == data["next", "observation"][:, :-1]).all(-1)
    assert torch.equal(same, ~done[:, :-1])
    assert not data["done"][:, 1:][done[:, :-1]].any()


def check_rollout_across_reset(env):
    env.set_seed(1)
    torch.manual_seed(1)
    data = env.rollout(max_steps=T, break_when_any_done=False)
    assert data.batch_size == (N, T) and data.device == env.device
    truncated = data["next", "truncated"].squeeze(-1)
    done = data["next", "done"].squeeze(-1)
    # max_episode_steps=3: every world is truncated at the 3rd step, never terminated early.
    assert truncated[:, 2].all() and done[:, 2].all()
    assert not done[:, [0, 1, 3, 4]].any() and not data["next", "terminated"].any()
    # The last observation of the episode is the true one (the clip phase went on) ...
    phase = data["observation"][..., -1]
    next_phase = data["next", "observation"][..., -1]
    assert (next_phase[:, 2] > phase[:, 2]).all()
    # ... and the rollout goes on from a reset: a new start, the steps after it chained again.
    assert not torch.equal(data["observation"][:, 3], data["next", "observation"][:, 2])
    assert not data["done"][:, 3].any()
    torch.testing.assert_close(data["observation"][:, 4], data["next", "observation"][:, 3])
    assert torch.isfinite(data["next", "reward"]).all()
    return data


def test_rollout_across_episode_end_disabled():
    env = make_torchrl_env(make(max_episode_steps=3, autoreset_mode="disabled"))
    data = check_rollout_across_reset(env)
    # The step after the reset is a real step (rewarded), not the ignored step of a NEXT_STEP
    # autoreset. (The total, not joint_pos: random actions of the 0.5 rad residual range put
    # joint_pos's exp(-2000 * err) below float32's smallest number.)
    assert data["next", "reward"][:, 3].gt(0).all()


def test_rollout_across_episode_end_same_step():
    env = make_torchrl_env(make(max_episode_steps=3, autoreset_mode="same_step"))
    assert isinstance(env, TransformedEnv)  # TorchRL adds its VecGymEnvTransform
    check_env_specs(env)
    check_rollout_across_reset(env)


def test_info_keys_and_refusals():
    env = make_torchrl_env(make(autoreset_mode="disabled"),
                           info_keys=("termination/fall", "clip", "invalid_action"))
    check_env_specs(env)
    data = env.rollout(max_steps=2)
    assert data["next", "clip"].dtype == torch.int64
    assert data["next", "termination/fall"].dtype == torch.bool
    assert "reward/joint_pos" not in data["next"].keys()
    with pytest.raises(RuntimeError, match="SAME_STEP or DISABLED"):
        make_torchrl_env(make(autoreset_mode="next_step"))
    with pytest.raises(TypeError, match="not both"):
        make_torchrl_env(make(autoreset_mode="disabled"), num_envs=2)
