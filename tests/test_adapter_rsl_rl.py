import pytest
import torch
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict

from flyenv.envs import FlyImitationVecEnv
from flyenv.wrappers import EpisodeStatistics, NormalizeObservation
from flyenv.wrappers.rsl_rl import RslRlVecEnv

N = 4


def make(**kwargs):
    kwargs = {"autoreset_mode": "same_step", **kwargs}
    return FlyImitationVecEnv(num_envs=N, device="cpu", engine="mujoco", nthread=1, **kwargs)


def train_cfg():
    # The rsl-rl-lib 5.x runner configuration: models and their distribution by class name.
    mlp = {"class_name": "MLPModel", "hidden_dims": [16, 16], "activation": "elu",
           "obs_normalization": False}
    return {
        "num_steps_per_env": 4,
        "save_interval": 1,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "actor": {**mlp, "obs_normalization": True,
                  "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 0.1,
                                       "std_type": "scalar"}},
        "critic": mlp,
        "algorithm": {"class_name": "PPO", "num_learning_epochs": 1, "num_mini_batches": 2,
                      "learning_rate": 1e-3, "schedule": "adaptive", "desired_kl": 0.01,
                      "gamma": 0.99, "lam": 0.95, "entropy_coef": 0.0, "clip_param": 0.2,
                      "value_loss_coef": 1.0, "max_grad_norm": 1.0,
                      "use_clipped_value_loss": True},
    }


@pytest.mark.parametrize("mode", ["next_step", "disabled"])
def test_refuses_other_autoreset_modes(mode):
    with pytest.raises(ValueError, match='autoreset_mode="same_step"'):
        RslRlVecEnv(make(autoreset_mode=mode))


def test_steps_through_an_episode_end():
    env = RslRlVecEnv(EpisodeStatistics(make(max_episode_steps=3)), seed=0)
    assert (env.num_envs, env.num_actions, env.max_episode_length) == (N, 42, 3)
    assert env.device == torch.device("cpu") and env.cfg.max_episode_steps == 3
    obs = env.get_observations()
    assert isinstance(obs, TensorDict) and obs.batch_size == torch.Size([N])
    assert obs["policy"].shape == (N, 226) and obs["policy"].dtype == torch.float32
    assert obs["privileged"].shape == (N, 4)  # the push (none here), the thorax's height
    for t in range(1, 4):
        obs, rewards, dones, extras = env.step(torch.zeros(N, 42))
        assert obs["policy"].shape == (N, 226) and rewards.shape == (N,)
        assert rewards.dtype == torch.float32 and dones.dtype == torch.long
        assert set(extras) == {"time_outs", "log"}
        assert extras["log"] and all(k.startswith("reward/") and v.dim() == 0
                                     for k, v in extras["log"].items())
        if t < 3:
            assert dones.tolist() == [0] * N and not extras["time_outs"].any()
            assert env.episode_length_buf.tolist() == [t] * N
    # Every world ran out of time (nothing fell in 3 steps) and already started over.
    assert dones.tolist() == [1] * N and extras["time_outs"].all()
    assert env.episode_length_buf.tolist() == [0] * N
    assert obs is env.get_observations()
    _, _, dones, _ = env.step(torch.zeros(N, 42))
    assert dones.tolist() == [0] * N and env.episode_length_buf.tolist() == [1] * N
    # Setting the buffer (init_at_random_ep_len) moves the env's counter: world 0 times out.
    env.episode_length_buf = torch.tensor([2, 0, 0, 0])
    _, _, dones, extras = env.step(torch.zeros(N, 42))
    assert dones.tolist() == [1, 0, 0, 0] and extras["time_outs"].tolist() == dones.bool().tolist()
    env.close()


@pytest.mark.parametrize("critic", [["policy"], ["policy", "privileged"]])
def test_on_policy_runner_learns_and_infers(tmp_path, critic):
    # An asymmetric critic reads the privileged group too (pushes on, so it has something).
    env = RslRlVecEnv(NormalizeObservation(make(max_episode_steps=3, randomization={
        "push_force_un": (1.0, 2.0), "push_rate_hz": 100.0})), seed=0)
    cfg = train_cfg()
    cfg["obs_groups"]["critic"] = critic
    cfg["critic"]["obs_normalization"] = True
    runner = OnPolicyRunner(env, cfg, log_dir=str(tmp_path), device="cpu")
    assert runner.alg.critic.obs_dim == 226 + 4 * (len(critic) - 1)
    runner.learn(num_learning_iterations=1, init_at_random_ep_len=True)
    assert list(tmp_path.glob("model_*.pt"))
    policy = runner.get_inference_policy(device="cpu")
    with torch.inference_mode():
        actions = policy(env.get_observations())
    assert actions.shape == (N, 42) and torch.isfinite(actions).all()
    # The env was stepped under rsl_rl's inference mode yet still steps in ordinary code.
    obs, rewards, _, _ = env.step(actions.clone())
    assert torch.isfinite(obs["policy"]).all() and torch.isfinite(rewards).all()
