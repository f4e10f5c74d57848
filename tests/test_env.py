"""The imitation environment on the C MuJoCo engine (CPU); a MuJoCo Warp check at the end."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import flyenv  # noqa: F401  (registers the env)
from flyenv.body import BodyConfig
from flyenv.body.mjcf import ModelOptions
from flyenv.envs import (
    ENV_ID,
    TERMINATIONS,
    FlyImitationConfig,
    FlyImitationEnv,
    FlyImitationVecEnv,
    RewardConfig,
    rewards,
)
from flyenv.envs.observations import CONTACT_THRESHOLD, FlyState
from flyenv.motion import tripod_gait

N = 4


@pytest.fixture(scope="module")
def short_gait():
    return tripod_gait(duration_s=0.5)


def make(num_envs=N, **kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("engine", "mujoco")
    kwargs.setdefault("nthread", 1)
    return FlyImitationVecEnv(num_envs=num_envs, **kwargs)


def zeros(env):
    return torch.zeros(env.num_envs, 42, device=env.device)


def test_make_vec_gives_the_vector_env():
    env = gym.make_vec(ENV_ID, num_envs=3, device="cpu", max_episode_steps=7)
    assert isinstance(env, FlyImitationVecEnv)
    assert env.num_envs == 3 and env.config.max_episode_steps == 7
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.autoreset_mode == AutoresetMode.NEXT_STEP
    assert env.engine.name == "mujoco"  # no GPU here: auto picks C MuJoCo


def test_spaces_shapes_and_dtypes():
    env = make(future_frames=2)
    obs_dim = 42 * 2 + 9 + 6 + 42 * 2 + 1
    assert env.single_observation_space.shape == (obs_dim,)
    assert env.observation_space.shape == (N, obs_dim)
    assert env.single_action_space.shape == (42,)
    assert env.action_space.shape == (N, 42)
    np.testing.assert_allclose(env.single_action_space.high, 0.5)
    obs, info = env.reset(seed=0)
    assert obs.shape == (N, obs_dim) and obs.dtype == torch.float32
    obs, reward, terminated, truncated, info = env.step(zeros(env))
    assert obs.shape == (N, obs_dim) and obs.dtype == torch.float32
    assert reward.shape == (N,) and reward.dtype == torch.float32
    assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
    for name in env.terms:
        assert info[f"reward/{name}"].shape == (N,)
    for cause in TERMINATIONS:
        assert info[f"termination/{cause}"].dtype == torch.bool
    # Observation layout: the joint angles come first, then velocities; the phase is last.
    torch.testing.assert_close(obs[:, :42], env.engine.qpos[:, -42:].float())
    assert ((obs[:, -1] >= 0) & (obs[:, -1] <= 1)).all()
    absolute = make(1, action_mode="absolute")
    np.testing.assert_allclose(absolute.single_action_space.low, absolute.ref.body.bounds[:, 0],
                               rtol=1e-6)


def test_reward_is_the_weighted_sum_of_the_reported_terms():
    weights = {"joint_pos": 0.3, "joint_vel": 0.2, "claw_pos": 0.1, "orientation": 0.15,
               "root_vel": 0.15, "contact": 0.1}
    env = make(reward=RewardConfig(weights=weights))
    assert env.terms == ("joint_pos", "joint_vel", "claw_pos", "orientation", "root_vel",
                         "contact")
    assert env.max_reward == pytest.approx(1.0)
    env.reset(seed=1)
    for _ in range(5):
        _, reward, _, _, info = env.step(0.05 * torch.randn(N, 42))
        expected = sum(weights[k] * info[f"reward/{k}"] for k in env.terms)
        torch.testing.assert_close(reward, expected)
        for k in env.terms:
            assert ((info[f"reward/{k}"] >= 0) & (info[f"reward/{k}"] <= 1)).all()
    tethered = make(2, tethered=True)
    assert tethered.terms == ("joint_pos", "joint_vel", "claw_pos")
    assert tethered.max_reward == pytest.approx(0.8)


def _is_reset_obs(env, obs, world):
    # Right after a reset the joint angles are exactly the reference at the start frame.
    return torch.equal(obs[world, :42], env.ref.joint_pos[env._clip[world], env._frame[world]])


def test_next_step_autoreset_sequence():
    env = make(2, max_episode_steps=3)
    obs, info = env.reset(seed=0)
    assert _is_reset_obs(env, obs, 0)
    for step in (1, 2):
        obs, reward, terminated, truncated, info = env.step(zeros(env))
        assert not (terminated | truncated).any(), step
        assert (reward > 0).all()
    obs, reward, terminated, truncated, info = env.step(zeros(env))
    assert truncated.all() and not terminated.any()
    assert not _is_reset_obs(env, obs, 0)
    # The step after the end: reset, reward 0, not done, the action ignored.
    obs, reward, terminated, truncated, info = env.step(torch.full((2, 42), 0.3))
    assert (reward == 0).all() and not (terminated | truncated).any()
    assert all((info[f"reward/{k}"] == 0).all() for k in env.terms)
    assert _is_reset_obs(env, obs, 0) and _is_reset_obs(env, obs, 1)
    _, reward, _, _, _ = env.step(zeros(env))
    assert (reward > 0).all()


def test_same_step_autoreset_sequence():
    env = make(2, max_episode_steps=3, autoreset_mode="same_step")
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    env.reset(seed=0)
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(zeros(env))
        assert not info["_final_obs"].any()
    obs, reward, terminated, truncated, info = env.step(zeros(env))
    assert truncated.all() and info["_final_obs"].all() and info["_final_info"].all()
    assert (reward > 0).all()
    assert _is_reset_obs(env, obs, 0)  # the returned obs already starts the next episode
    final = info["final_obs"]
    assert not torch.equal(final[0, :42], obs[0, :42])
    assert "reward/joint_pos" in info["final_info"]
    obs, reward, terminated, truncated, info = env.step(zeros(env))
    assert (reward > 0).all() and not (terminated | truncated).any()


def test_disabled_autoreset_and_masked_reset():
    env = make(3, max_episode_steps=2, autoreset_mode="disabled")
    env.reset(seed=0)
    env.step(zeros(env))
    _, _, _, truncated, _ = env.step(zeros(env))
    assert truncated.all()
    frames = env._frame.clone()
    obs, reward, _, truncated, _ = env.step(zeros(env))  # no reset happens on its own
    assert (env._frame == frames + 1).all() and (reward > 0).all() and truncated.all()
    mask = torch.tensor([False, True, False])
    new_obs, info = env.reset(options={"reset_mask": mask})
    assert torch.equal(new_obs[[0, 2]], obs[[0, 2]])
    assert _is_reset_obs(env, new_obs, 1)
    assert env._steps.tolist() == [3, 0, 3]


def test_resetting_one_world_leaves_the_others_bit_identical():
    envs = [make(3, autoreset_mode="disabled") for _ in range(2)]
    actions = 0.05 * torch.randn(6, 3, 42, generator=torch.Generator().manual_seed(0))
    for env in envs:
        env.reset(seed=5)
        for a in actions[:3]:
            env.step(a)
    envs[0].reset(options={"reset_mask": torch.tensor([True, False, False])})
    for a in actions[3:]:
        outs = [env.step(a) for env in envs]
    (obs0, rew0, *_), (obs1, rew1, *_) = outs
    assert torch.equal(obs0[1:], obs1[1:]) and torch.equal(rew0[1:], rew1[1:])
    assert not torch.equal(obs0[0], obs1[0])


def test_same_seed_same_start_frames_and_observations():
    a, b = make(), make()
    obs_a, info_a = a.reset(seed=42)
    obs_b, info_b = b.reset(seed=42)
    assert torch.equal(info_a["frame"], info_b["frame"]) and torch.equal(obs_a, obs_b)
    _, info_c = b.reset(seed=43)
    assert not torch.equal(info_a["frame"], info_c["frame"])
    a.reset(seed=7)
    b.reset(seed=7)
    for _ in range(3):
        out_a, out_b = a.step(zeros(a)), b.step(zeros(b))
    assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])


def test_tethered_replay_tracks_the_reference(short_gait):
    env = make(1, reference=short_gait, tethered=True, random_start=False)
    env.reset(seed=0)
    errors = []
    while True:
        obs, _, terminated, truncated, _ = env.step(zeros(env))
        ref = env.ref.joint_pos[0, env._frame[0]]
        errors.append((obs[0, :42] - ref).abs().mean().item())
        assert not terminated.any()
        if truncated.any():
            break
    assert len(errors) == env.ref.lengths[0].item() - 1
    assert np.degrees(np.mean(errors)) < 2.0


def test_free_fly_replaying_the_demo_gait_stays_upright():
    env = make(1, random_start=False, max_episode_steps=10_000)
    env.reset(seed=0)
    for step in range(env.ref.lengths[0].item() - 1):
        _, _, terminated, truncated, info = env.step(zeros(env))
        assert not terminated.any(), (step, {k: v for k, v in info.items() if "termination" in k})
    assert truncated.all()  # the clip's end
    assert env.engine.qpos[0, 0] > 10.0  # it walked most of the 20 mm


def test_nan_in_one_world_terminates_and_resets_only_that_world():
    envs = [make(3) for _ in range(2)]
    for env in envs:
        env.reset(seed=3)
    envs[0].engine.qvel[1, 8] = float("nan")
    (obs, reward, terminated, _, info), (obs_ref, reward_ref, *_) = (env.step(zeros(env))
                                                                      for env in envs)
    assert terminated.tolist() == [False, True, False]
    assert info["termination/nonfinite"].tolist() == [False, True, False]
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all() and reward[1] == 0
    assert torch.equal(obs[[0, 2]], obs_ref[[0, 2]])
    (obs, reward, terminated, _, _), (obs_ref, *_) = (env.step(zeros(env)) for env in envs)
    assert not terminated.any() and _is_reset_obs(envs[0], obs, 1)
    assert torch.isfinite(envs[0].engine.qpos).all()
    assert torch.equal(obs[[0, 2]], obs_ref[[0, 2]])


def test_huge_state_counts_as_diverged():
    # MuJoCo only warns about a huge (finite) qpos; the env must still terminate the world.
    env = make(2)
    env.reset(seed=4)
    env.engine.qpos[1, 0] = 1e30
    obs, reward, terminated, _, info = env.step(zeros(env))
    assert info["termination/nonfinite"].tolist() == [False, True]
    assert reward[1] == 0 and obs.abs().max() < 1e6
    env.step(zeros(env))  # NEXT_STEP: the world starts over
    assert env.engine.qpos[:, 0].abs().max() < 100


def test_any_float_dtype_of_actions_is_converted_and_others_refused():
    # The rule: actions are float32; other real float dtypes are converted (no copy to the
    # host); integer, bool and complex tensors are refused.
    envs = [make(2) for _ in range(3)]
    actions = torch.full((2, 42), 0.0625)  # exact in every float dtype
    results = []
    for env, dtype in zip(envs, (torch.float32, torch.float64, torch.bfloat16), strict=True):
        env.reset(seed=5)
        results.append(env.step(actions.to(dtype))[0])
    assert torch.equal(results[0], results[1])
    assert torch.equal(results[0], results[2])
    for dtype in (torch.int32, torch.bool, torch.complex64):
        with pytest.raises(ValueError, match="real floating point"):
            envs[0].step(torch.zeros(2, 42, dtype=dtype))


def test_step_and_reset_after_close_raise():
    env = make(1)
    env.reset(seed=0)
    env.close()
    with pytest.raises(RuntimeError, match="after close"):
        env.step(zeros(env))
    with pytest.raises(RuntimeError, match="after close"):
        env.reset()


def test_invalid_actions_are_zeroed_and_flagged_or_refused():
    env = make(2)
    env.reset(seed=0)
    actions = zeros(env)
    actions[0, 3] = float("nan")
    actions[1, 0] = float("inf")
    _, reward, _, _, info = env.step(actions)
    assert info["invalid_action"].tolist() == [True, True] and torch.isfinite(reward).all()
    strict = make(2, invalid_actions="raise")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match=r"NaN/inf entries in worlds \[0, 1\]"):
        strict.step(actions)


def test_bad_actions_get_clear_errors():
    env = make(2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2, 42\), got \(2, 41\)"):
        env.step(torch.zeros(2, 41))
    with pytest.raises(ValueError, match="floating point"):
        env.step(torch.zeros(2, 42, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor on cpu or a numpy array, got list"):
        env.step([[0.0] * 42] * 2)
    with pytest.raises(ValueError, match="floating point"):
        env.step(np.zeros((2, 42), np.int64))
    with pytest.raises(ValueError, match="must be on cpu"):
        env.step(torch.zeros(2, 42, device="meta"))
    with pytest.raises(ValueError, match="reset_mask must be a bool tensor"):
        env.reset(options={"reset_mask": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="unknown keys"):
        env.reset(options={"start": 3})


def test_bad_config_gets_clear_errors(short_gait):
    with pytest.raises(ValueError, match="config: unknown key 'tetherd'.*'tethered'"):
        make(1, tetherd=True)
    with pytest.raises(ValueError, match="action_mode must be one of"):
        make(1, action_mode="torque")
    with pytest.raises(ValueError, match="control_decimation must be an int >= 1"):
        make(1, control_decimation=0)
    with pytest.raises(ValueError, match="unknown terms"):
        RewardConfig(weights={"style": 1.0})
    # Clips of several bodies are simulated each with its own (test_randomization.py), if the
    # bodies share the joint bounds.
    bounds = BodyConfig.default().bounds.copy()
    bounds[:, 1] += 0.1
    other = BodyConfig.default().replace(segment_lengths_mm=BodyConfig.default().lengths * 1.1,
                                         joint_bounds_rad=bounds, name="bigger")
    with pytest.raises(ValueError, match="joint bounds differ"):
        make(1, reference=(short_gait, tripod_gait(other, duration_s=0.5)))
    with pytest.raises(ValueError, match="mix clips with and without root motion"):
        make(1, reference=(short_gait, short_gait.replace(root_pos=None, root_quat=None,
                                                          root_lin_vel=None, root_ang_vel=None)))
    with pytest.raises(ValueError, match="num_envs must be an int >= 1"):
        FlyImitationVecEnv(num_envs=0, device="cpu")


def test_config_has_no_shared_mutable_defaults():
    a, b = FlyImitationConfig(), FlyImitationConfig()
    assert a.reward.weights is not b.reward.weights
    with pytest.raises(AttributeError):
        a.tethered = True


def test_several_clips_are_sampled_per_world(short_gait, tmp_path):
    from flyenv.motion import save

    slow = tripod_gait(duration_s=0.4, step_freq_hz=6.0)
    save(slow, tmp_path / "slow.npz")
    env = make(16, reference=(short_gait, str(tmp_path / "slow.npz")))
    assert env.ref.names == ("clip0", "slow") and env.ref.nclip == 2
    _, info = env.reset(seed=0)
    assert set(info["clip"].tolist()) == {0, 1}
    lengths = env.ref.lengths[info["clip"]]
    assert (info["frame"] < lengths - 1).all()


def test_absolute_actions_at_the_reference_track_it():
    env = make(2, action_mode="absolute", tethered=True)
    env.reset(seed=0)
    for _ in range(5):
        nxt = torch.minimum(env._frame + 1, env.ref.lengths[env._clip] - 1)
        _, _, _, _, info = env.step(env.ref.joint_pos[env._clip, nxt])
    assert (info["reward/joint_pos"] > 0.95).all()


def test_numpy_actions_such_as_action_space_samples_are_accepted():
    # Gymnasium's convention: action_space.sample() is a valid action.
    env, same = make(2), make(2)
    env.reset(seed=0)
    same.reset(seed=0)
    env.action_space.seed(3)
    sample = env.action_space.sample()
    assert isinstance(sample, np.ndarray)
    obs, reward, *_ = env.step(sample)
    obs_t, reward_t, *_ = same.step(torch.as_tensor(sample))
    torch.testing.assert_close(obs, obs_t, rtol=0, atol=0)
    torch.testing.assert_close(reward, reward_t, rtol=0, atol=0)
    assert obs.dtype == torch.float32
    env.step(sample.astype(np.float64)[:, ::-1])  # other float dtypes, any strides


def test_single_env_passes_check_env():
    env = FlyImitationEnv(nthread=1)
    check_env(env, skip_render_check=True)
    made = gym.make(ENV_ID, nthread=1)
    obs, _ = made.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = made.step(made.action_space.sample())
    assert isinstance(reward, float) and "reward/joint_pos" in info


@pytest.mark.warp
def test_warp_engine_env_agrees_with_c_mujoco(warp_device):
    device = "cpu" if warp_device == "cpu" else "cuda"
    warp = FlyImitationVecEnv(num_envs=2, engine="warp", device=device, control_decimation=5)
    c_mujoco = make(2, control_decimation=5)
    obs_w, _ = warp.reset(seed=1)
    obs_c, _ = c_mujoco.reset(seed=1)
    torch.testing.assert_close(obs_w.cpu(), obs_c, rtol=1e-4, atol=1e-4)
    for _ in range(3):
        obs_w, rew_w, *_ = warp.step(zeros(warp))
        obs_c, rew_c, *_ = c_mujoco.step(zeros(c_mujoco))
    torch.testing.assert_close(obs_w[:, :42].cpu(), obs_c[:, :42], rtol=0, atol=1e-4)
    torch.testing.assert_close(rew_w.cpu(), rew_c, rtol=0, atol=2e-3)


@pytest.mark.gpu
@pytest.mark.warp
def test_cuda_step_makes_no_host_synchronization():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    env = FlyImitationVecEnv(num_envs=64, device="cuda", max_episode_steps=3)
    assert env.engine.name == "warp" and env.engine.use_cuda_graph
    env.reset(seed=0)
    actions = torch.zeros(64, 42, device="cuda")
    env.step(actions)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):  # crosses an episode end, so the masked reset runs too
            obs, reward, *_ = env.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert obs.device.type == "cuda" and torch.isfinite(obs).all()


def test_orientation_reward_compares_with_the_references_pitch(short_gait):
    # A clip recorded nose-up (as the df3d fly walks): the replay starts at the reference's
    # pitch, so its orientation term is near 1, where "gravity straight down" would pay
    # exp(-10 * |g - down|^2) ~ 0.5 for following the reference.
    pitch = np.radians(15.0)
    quat = np.broadcast_to([np.cos(pitch / 2), 0.0, -np.sin(pitch / 2), 0.0],
                           short_gait.root_quat.shape)
    clip = short_gait.replace(root_quat=quat)
    env = make(1, reference=clip, random_start=False)
    torch.testing.assert_close(env.ref.gravity_b[0, 0], torch.tensor(
        [-np.sin(pitch), 0.0, -np.cos(pitch)], dtype=torch.float32), atol=1e-6, rtol=0)
    env.reset(seed=0)
    torch.testing.assert_close(env._read_state().gravity_b[0], env.ref.gravity_b[0, 0],
                               atol=1e-5, rtol=0)
    _, _, _, _, info = env.step(zeros(env))
    assert info["reward/orientation"][0] > 0.95


def test_root_velocity_reward_follows_a_turning_clips_odometry_in_the_flys_heading():
    # A clip without root motion has its velocity as the stance-leg odometry, in the heading
    # frame; the simulated fly turns with the clip (here by 2.4 rad), so the reward compares in
    # its own heading frame. Compared in the world, the replay's term fell from 0.6 to 0.02.
    gait = tripod_gait(duration_s=0.6, turn_rate_rad_s=4.0)
    clip = gait.replace(root_pos=None, root_quat=None, root_lin_vel=None, root_ang_vel=None)
    env = make(1, reference=clip, random_start=False, max_episode_steps=10_000)
    assert env.ref.root_vel_estimated
    env.reset(seed=0)
    terms = []
    for _ in range(env.ref.lengths[0].item() - 2):
        _, _, terminated, _, info = env.step(zeros(env))
        assert not terminated.any()
        terms.append(info["reward/root_vel"][0].item())
    quat = env._read_state().root_quat_w[0]
    yaw = torch.atan2(2 * (quat[0] * quat[3] + quat[1] * quat[2]),
                      1 - 2 * (quat[2] ** 2 + quat[3] ** 2))
    assert yaw > 1.8  # it turned
    assert np.mean(terms[-60:]) > 0.8 * np.mean(terms[:60]) > 0.4


def _fly_state(num_envs, **fields):
    # A FlyState of zeros but for `fields`.
    shapes = {"joint_pos": (42,), "joint_vel": (42,), "root_pos_w": (3,), "root_quat_w": (4,),
              "lin_vel_w": (3,), "ang_vel_b": (3,), "claw_pos_b": (6, 3), "touch": (6,),
              "gravity_b": (3,), "lin_vel_b": (3,)}
    return FlyState(**{k: fields.get(k, torch.zeros(num_envs, *shape))
                       for k, shape in shapes.items()})


def test_contact_reward_counts_the_legs_whose_touch_differs_from_the_stance_flags():
    term = next(t for t in rewards.TERMS if t.name == "contact")
    touch = torch.tensor([[0.2, 0.0, 0.2, 0.0, 0.0, 0.01], [0.2] * 6, [0.0] * 6])  # [uN]
    stance = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0], [1.0] * 6, [1.0] * 6])
    legs = torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0, 1.0], [1.0] * 6, [1.0] * 6])
    z3, z42 = torch.zeros(3, 3), torch.zeros(3, 42)
    inputs = rewards.RewardInputs(
        state=_fly_state(3, touch=touch), ref_joint_pos=z42, ref_joint_vel=z42,
        ref_claw_pos_b=torch.zeros(3, 6, 3), root_lin_vel=z3, ref_root_lin_vel=z3,
        ref_gravity_b=z3, ref_stance=stance, dof_mask=torch.ones(3, 42), leg_mask=legs)
    # World 0: leg 1 is not in the clip; leg 2 touches in swing; leg 5's 0.01 uN is below the
    # threshold, as in swing: 1 of 5 legs differs. World 2 is in the air through a stance.
    torch.testing.assert_close(term.error(inputs), torch.tensor([0.2, 0.0, 1.0]))


def test_contact_swing_clearance_leaves_out_only_swing_claws_the_clip_carries_low():
    term = next(t for t in rewards.TERMS if t.name == "contact")
    # Legs: stance touching, stance in the air (low), swing touching at 0.05 and at 0.3 mm,
    # swing in the air at 0.05 mm, missing from the clip (touching in swing, low).
    touch = torch.tensor([[0.2, 0.0, 0.2, 0.2, 0.0, 0.2]])  # [uN]
    stance = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    height = torch.tensor([[0.03, 0.02, 0.05, 0.3, 0.05, 0.05]])  # [mm]
    legs = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    z3, z42 = torch.zeros(1, 3), torch.zeros(1, 42)

    def error(clearance_mm: float) -> float:
        return term.error(rewards.RewardInputs(
            state=_fly_state(1, touch=touch), ref_joint_pos=z42, ref_joint_vel=z42,
            ref_claw_pos_b=torch.zeros(1, 6, 3), root_lin_vel=z3, ref_root_lin_vel=z3,
            ref_gravity_b=z3, ref_stance=stance, dof_mask=torch.ones(1, 42), leg_mask=legs,
            ref_claw_height=height, contact_swing_clearance_mm=clearance_mm)).item()

    assert error(0.0) == pytest.approx(3 / 5)  # legs 1, 2 and 3 differ
    # Legs 2 and 4 (swing, 0.05 mm) leave the count; the stance miss (leg 1) stays, however
    # low its claw, and so does the touch of leg 3, swinging at 0.3 mm.
    assert error(0.1) == pytest.approx(2 / 3)
    assert error(0.5) == pytest.approx(1 / 2)  # leg 3 leaves too
    for bad in (-0.1, math.inf, "0.1", True):
        with pytest.raises(ValueError, match="contact_swing_clearance_mm must be"):
            RewardConfig(contact_swing_clearance_mm=bad)


def test_reference_claw_heights_rest_stance_claws_on_the_floor(short_gait):
    # The grounded clip stands its stance claws at the foot's clearance above the floor; the
    # clip with root motion has them at its floor; swing claws are higher in both.
    grounded = short_gait.replace(root_pos=None, root_quat=None, root_lin_vel=None,
                                  root_ang_vel=None)
    for clip, rest_mm in ((short_gait, 0.0), (grounded, None)):
        env = make(1, reference=clip)
        ref, length = env.ref, int(env.ref.lengths[0])
        height = ref.claw_height[0, :length]
        stance = ref.stance[0, :length] > 0.5
        rest = ModelOptions().segment_radii_mm[-1] if rest_mm is None else rest_mm
        assert abs(height[stance].median().item() - rest) < 0.005
        assert height[~stance].median().item() > rest + 0.05
        env.close()


def test_contact_reward_pays_a_replay_whose_feet_follow_the_stance(short_gait):
    # The replay sets its feet down where the clip's stance flags do (its term stays high);
    # the same replay judged against the flags' complement (swing for stance) loses most of it.
    assert "contact" in make(1).terms and "contact" not in make(1, tethered=True).terms
    env = make(2, reference=short_gait, random_start=False)
    env.reset(seed=0)
    matched, swapped = [], []
    for _ in range(150):
        _, _, terminated, _, info = env.step(zeros(env))
        assert not terminated.any()
        matched.append(info["reward/contact"].mean().item())
        touching = (env._read_state().touch > CONTACT_THRESHOLD).float()
        flags = env.ref.stance[0, env._frame.clamp_max(env.ref.stance.shape[1] - 1)]
        swapped.append(((touching - (1.0 - flags)) ** 2).mean().item())
    scale = env.config.reward.scales["contact"]
    assert np.mean(matched[50:]) > 0.8
    assert np.mean(np.exp(-scale * np.array(swapped[50:]))) < 0.5 * np.mean(matched[50:])
