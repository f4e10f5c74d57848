import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import check_for_correct_spaces
from stable_baselines3.common.vec_env import VecCheckNan, VecEnv

from flyenv.envs import FlyImitationVecEnv
from flyenv.wrappers import EpisodeStatistics, NormalizeObservation
from flyenv.wrappers.sb3 import Sb3VecEnv


def make(num_envs=2, **kwargs):
    kwargs = {"autoreset_mode": "same_step", "max_episode_steps": 3, "random_start": False,
              **kwargs}
    return FlyImitationVecEnv(num_envs=num_envs, device="cpu", engine="mujoco", nthread=1,
                              **kwargs)


def test_steps_through_an_episode_end_like_the_torch_env():
    adapter = Sb3VecEnv(EpisodeStatistics(make()))
    raw = make()
    # SB3's own checks for a VecEnv: the spaces it trains with, and no NaN/inf going in or out.
    assert isinstance(adapter, VecEnv)
    check_for_correct_spaces(adapter, raw.single_observation_space, raw.single_action_space)
    checked = VecCheckNan(adapter, raise_exception=True)

    adapter.seed(0)
    obs = checked.reset()
    expected, _ = raw.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (2, raw.single_observation_space.shape[0])
    np.testing.assert_allclose(obs, expected.numpy())
    assert set(adapter.reset_infos[0]) == {"clip", "frame", "privileged_obs"}
    actions = 0.05 * np.random.default_rng(0).standard_normal((3, 2, 42)).astype(np.float32)
    for step, action in enumerate(actions, start=1):
        obs, rewards, dones, infos = checked.step(action)
        x_obs, x_reward, _, x_truncated, x_info = raw.step(torch.from_numpy(action))
        np.testing.assert_allclose(obs, x_obs.numpy())
        np.testing.assert_allclose(rewards, x_reward.numpy())
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 2
        assert dones.tolist() == [step == 3] * 2
        for i, info in enumerate(infos):
            assert info["reward/joint_pos"] == pytest.approx(float(x_info["reward/joint_pos"][i]))
            assert ("terminal_observation" in info) == (step == 3)
            assert ("episode" in info) == (step == 3)
    assert x_truncated.all()
    for i, info in enumerate(infos):
        np.testing.assert_allclose(info["terminal_observation"], x_info["final_obs"][i].numpy())
        assert not np.allclose(info["terminal_observation"], obs[i])  # obs starts a new episode
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == 3 and info["episode"]["r"] > 0

    # Seeding applies to the next reset, and only that one.
    adapter.seed(7)
    first = adapter.reset()
    adapter.seed(7)
    np.testing.assert_array_equal(adapter.reset(), first)
    adapter.close()


def test_attributes_methods_and_wrappers_go_through_the_chain():
    adapter = Sb3VecEnv(NormalizeObservation(EpisodeStatistics(make(num_envs=3))))
    assert adapter.num_envs == 3 and adapter.observation_space.shape == (226,)
    assert adapter.action_space.shape == (42,)
    assert adapter.get_attr("device") == [torch.device("cpu")] * 3
    assert adapter.get_attr("clip", indices=[1]) == [10.0]
    assert adapter.has_attr("config") and not adapter.has_attr("no_such_attribute")
    assert adapter.env_is_wrapped(EpisodeStatistics) == [True] * 3
    assert adapter.env_is_wrapped(NormalizeObservation, indices=0) == [True]
    assert not Sb3VecEnv(make()).env_is_wrapped(EpisodeStatistics)[0]
    adapter.set_attr("update", False)
    assert adapter.env.update is False
    with pytest.raises(ValueError, match="indices"):
        adapter.set_attr("update", True, indices=[0])
    assert adapter.env_method("pop") == [{}] * 3
    with pytest.raises(NotImplementedError):
        adapter.get_images()


def test_ppo_trains_and_predicts(tmp_path):
    adapter = Sb3VecEnv(EpisodeStatistics(make()))
    model = PPO("MlpPolicy", adapter, n_steps=8, batch_size=16, n_epochs=1, device="cpu", seed=0)
    model.set_logger(configure(str(tmp_path), []))  # SB3's default makes a folder in /tmp
    model.learn(total_timesteps=64)
    assert model.num_timesteps == 64
    # Episodes (3 steps at most) reached SB3's episode buffer through info["episode"].
    assert model.ep_info_buffer and all(1 <= ep["l"] <= 3 for ep in model.ep_info_buffer)
    obs = adapter.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2, 42) and adapter.action_space.contains(actions[0])
    single, _ = model.predict(obs[0], deterministic=True)
    assert single.shape == (42,)


def test_refuses_an_env_that_does_not_autoreset_in_the_same_step():
    with pytest.raises(ValueError, match="autoreset_mode='same_step'"):
        Sb3VecEnv(make(autoreset_mode="next_step"))
    with pytest.raises(ValueError, match="SAME_STEP"):
        Sb3VecEnv(EpisodeStatistics(make(autoreset_mode="disabled")))
