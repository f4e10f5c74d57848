import numpy as np
import pytest
import torch

from flyenv.envs import FlyImitationConfig, FlyImitationVecEnv
from flyenv.wrappers import (
    AppendPrivileged,
    EpisodeStatistics,
    NormalizeObservation,
    NumpyView,
    RecordVideo,
)


def make(num_envs=3, **kwargs):
    return FlyImitationVecEnv(num_envs=num_envs, device="cpu", engine="mujoco", nthread=1,
                              **kwargs)


@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_episode_statistics_match_the_rewards(mode):
    env = EpisodeStatistics(make(max_episode_steps=3, autoreset_mode=mode))
    env.reset(seed=0)
    rewards, terms = [], []
    for _ in range(3):
        _, reward, _, truncated, info = env.step(torch.zeros(3, 42))
        rewards.append(reward)
        terms.append(info["reward/joint_pos"])
        assert not info["_episode"].any() or truncated.all()
    assert info["_episode"].all()
    episode = info["episode"]
    torch.testing.assert_close(episode["return"], sum(rewards))
    torch.testing.assert_close(episode["reward/joint_pos"], sum(terms))
    assert episode["length"].tolist() == [3, 3, 3]
    assert not episode["termination/fall"].any()
    if mode == "disabled":
        env.reset(options={"reset_mask": torch.ones(3, dtype=torch.bool)})
    # The next episode starts from zero; NEXT_STEP's reset step is in neither episode.
    for _ in range(3):
        _, reward, _, _, info = env.step(torch.zeros(3, 42))
    assert info["_episode"].all() == (mode != "next_step")
    expected_length = 2 if mode == "next_step" else 3
    if mode == "next_step":
        _, _, _, _, info = env.step(torch.zeros(3, 42))
        expected_length = 3
    assert info["episode"]["length"].tolist() == [expected_length] * 3
    stats = env.pop()
    assert stats["episodes"] == 6 and stats["length"] == 3
    assert 0 < stats["return"] <= 3 * env.unwrapped.max_reward
    assert env.pop() == {}


def test_normalize_observation_tracks_the_exact_moments_and_saves_them():
    env = NormalizeObservation(make(4))
    raw = make(4)
    seen = [raw.reset(seed=1)[0]]
    normalized, _ = env.reset(seed=1)
    actions = 0.05 * torch.randn(5, 4, 42, generator=torch.Generator().manual_seed(0))
    for a in actions:
        seen.append(raw.step(a)[0])
        normalized = env.step(a)[0]
    seen = torch.cat(seen).double()
    torch.testing.assert_close(env.mean, seen.mean(0), rtol=1e-4, atol=1e-6)
    # The prior (var 1 and mean 0 with count 1e-4) shifts the variance by ~count/n * mean^2.
    torch.testing.assert_close(env.var, seen.var(0, unbiased=False), rtol=1e-3, atol=1e-4)
    assert normalized.dtype == torch.float32 and normalized.abs().max() <= env.clip
    other = NormalizeObservation(make(4))
    other.load_state_dict(env.state_dict())
    torch.testing.assert_close(other.normalize(seen[-4:].float()), normalized)
    # A leading part of the columns (a policy's, before a privileged part), and back.
    part = seen[-4:, :10].float()
    torch.testing.assert_close(other.normalize(part), normalized[:, :10])
    torch.testing.assert_close(other.denormalize(other.normalize(part)), part)
    count = env.count.item()
    env.reset(options={"reset_mask": torch.tensor([True, False, False, False])})
    assert env.count.item() == pytest.approx(count + 1)
    env.update = False
    env.step(torch.zeros(4, 42))
    assert env.count.item() == pytest.approx(count + 1)
    with pytest.raises(ValueError, match="obs_dim"):
        NormalizeObservation(make(1, future_frames=1)).load_state_dict(env.state_dict())


def test_normalize_observation_normalizes_final_obs():
    env = NormalizeObservation(make(2, max_episode_steps=2, autoreset_mode="same_step"))
    env.reset(seed=0)
    env.step(torch.zeros(2, 42))
    _, _, _, truncated, info = env.step(torch.zeros(2, 42))
    assert truncated.all() and info["final_obs"].abs().max() <= env.clip


def test_append_privileged_gives_final_obs_the_state_the_episode_ended_in():
    env = AppendPrivileged(make(2, max_episode_steps=2, autoreset_mode="same_step"))
    assert env.policy_dim == 226 and env.privileged_dim == 4
    assert env.single_observation_space.shape == (230,) and env.observation_space.shape == (2, 230)
    obs, info = env.reset(seed=0)
    torch.testing.assert_close(obs[:, 226:], info["privileged_obs"])
    env.step(torch.zeros(2, 42))
    obs, _, _, truncated, info = env.step(torch.zeros(2, 42))
    assert truncated.all()
    torch.testing.assert_close(obs[:, 226:], info["privileged_obs"])  # the next episode's
    final = info["final_obs"][:, 226:]
    torch.testing.assert_close(final, info["final_info"]["privileged_obs"])
    assert not torch.equal(final[:, 3], obs[:, 229])  # thorax heights: ended vs new episode


def test_numpy_view():
    env = NumpyView(make(2, autoreset_mode="disabled"))
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (2, 226)
    obs, reward, terminated, truncated, info = env.step(np.zeros((2, 42)))
    assert isinstance(reward, np.ndarray) and terminated.dtype == bool
    assert isinstance(info["reward/joint_pos"], np.ndarray)
    obs, _ = env.reset(options={"reset_mask": np.array([True, False])})
    assert obs.shape == (2, 226)


@pytest.fixture(scope="module")
def gl():
    import mujoco

    try:
        mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8).close()
    except Exception as err:  # no GL backend on this machine (see MUJOCO_GL)
        pytest.skip(f"no offscreen GL: {err}")


def test_render_draws_the_chosen_worlds_with_a_ghost(gl):
    env = make(3, render_mode="rgb_array", render_worlds=(0, 2), render_size=(160, 120))
    env.reset(seed=0)
    env.step(torch.zeros(3, 42))
    frames = env.render()
    assert len(frames) == 2 and frames[0].shape == (120, 160, 3) and frames[0].dtype == np.uint8
    assert frames[0].std() > 5  # not a blank image
    plain = make(3, render_mode="rgb_array", render_size=(160, 120), render_ghost=False)
    plain.reset(seed=0)
    plain.step(torch.zeros(3, 42))
    assert not np.array_equal(plain.render()[0], frames[0])  # the ghost is drawn
    assert make(1).render() is None
    with pytest.raises(ValueError, match="render_worlds"):
        make(2, render_mode="rgb_array", render_worlds=(2,))


def _changed(a, b):
    # Pixels that differ visibly (GL backends may differ by a level here and there, e.g. in a
    # context's first frame).
    return np.any(np.abs(a.astype(int) - b) > 8, axis=2)


@pytest.mark.parametrize("tethered", [False, True])
def test_ghost_placements(gl, tethered):
    from flyenv.body import build_model
    from flyenv.sim.render import FlyRenderer

    model = build_model(tethered=tethered)
    renderer = FlyRenderer(model, 160, 120)
    qpos = model.key_qpos[0].copy()
    ghost = qpos.copy()
    ghost[-42:] += 0.3  # another pose of the legs
    plain = renderer.render(qpos)
    overlay, beside = (renderer.render(qpos, ghost, p) for p in ("overlay", "beside"))
    assert not _changed(renderer.render(qpos, ghost, "off"), plain).any()
    on_fly, to_the_left = _changed(overlay, plain), _changed(beside, plain)
    assert on_fly.sum() > 50 and to_the_left.sum() > 50 and _changed(overlay, beside).sum() > 50
    # The track camera looks along +y from the fly's right: a ghost on the fly's left is higher
    # in the image than one on the fly.
    rows = np.arange(plain.shape[0])[:, None]
    assert (rows * on_fly).sum() / on_fly.sum() > (rows * to_the_left).sum() / to_the_left.sum()
    if not tethered:  # the overlay ghost stands on the fly wherever the reference's root is
        ghost[:3] += (10.0, -5.0, 1.0)
        assert not _changed(renderer.render(qpos, ghost, "overlay"), overlay).any()
    with pytest.raises(ValueError, match=r"placement must be one of \['overlay', 'beside'"):
        renderer.render(qpos, ghost, "above")
    renderer.close()


def test_render_ghost_option(gl):
    assert FlyImitationConfig().render_ghost == "overlay"
    assert FlyImitationConfig(render_ghost=True).render_ghost == "overlay"  # the older bool form
    assert FlyImitationConfig(render_ghost=False).render_ghost == "off"
    with pytest.raises(ValueError, match=r"render_ghost must be one of \['overlay', 'beside'"):
        FlyImitationConfig(render_ghost="above")
    frames = {}
    for placement in ("overlay", "beside", "off"):
        env = make(1, render_mode="rgb_array", render_size=(160, 120), render_ghost=placement)
        env.reset(seed=0)
        env.step(torch.zeros(1, 42))
        frames[placement] = env.render()[0]
        env.close()
    assert _changed(frames["overlay"], frames["beside"]).sum() > 50
    assert _changed(frames["overlay"], frames["off"]).sum() > 50


def test_record_video_writes_mp4s(gl, tmp_path):
    import imageio.v2 as imageio

    env = RecordVideo(make(2, render_mode="rgb_array", render_worlds=(0, 1),
                           render_size=(96, 64)), tmp_path, video_length=5,
                      step_trigger=lambda step: step % 8 == 0)
    env.reset(seed=0)
    for _ in range(10):
        env.step(torch.zeros(2, 42))
    env.close()
    assert [p.name for p in env.written] == ["fly-step0.mp4", "fly-step8.mp4"]
    frames = imageio.mimread(env.written[0])
    assert len(frames) == 5 and frames[0].shape == (64, 192, 3)
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        RecordVideo(make(1), tmp_path)
