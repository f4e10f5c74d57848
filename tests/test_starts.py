"""Datasets of clips and where episodes start: folders, fixed starts, adaptive start sampling."""

import numpy as np
import pytest
import torch

from flyenv.envs import AdaptiveStartsConfig, FlyImitationVecEnv
from flyenv.envs.starts import StartSampler, clip_weights
from flyenv.motion import save, tripod_gait


def make(num_envs, **kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("engine", "mujoco")
    kwargs.setdefault("nthread", 1)
    kwargs.setdefault("control_decimation", 5)  # 0.5 ms steps: few substeps
    return FlyImitationVecEnv(num_envs=num_envs, **kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    save(tripod_gait(duration_s=0.3), folder / "a_fast.npz")
    save(tripod_gait(duration_s=0.2, step_freq_hz=6.0), folder / "b_slow.npz")
    (folder / "c_broken.npz").write_bytes(b"not a zip archive")
    (folder / "notes.txt").write_text("not a clip")
    return folder


def test_a_folder_is_a_dataset_of_clips_and_a_bad_file_is_left_out(dataset, tmp_path):
    with pytest.warns(RuntimeWarning, match="c_broken.npz"):
        env = make(16, reference=str(dataset))
    assert env.ref.names == ("a_fast", "b_slow")
    _, info = env.reset(seed=0)
    assert set(info["clip"].tolist()) == {0, 1}
    # A folder among files, and a folder with nothing loadable, named in the error.
    with pytest.warns(RuntimeWarning):
        env = make(2, reference=(str(dataset), str(dataset / "a_fast.npz")))
    assert env.ref.names == ("a_fast", "b_slow", "a_fast")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.*holds no loadable"):
        make(1, reference=str(tmp_path / "empty"))


def test_fixed_starts_from_reset_options(dataset):
    with pytest.warns(RuntimeWarning):
        env = make(4, reference=str(dataset), adaptive_starts={"bin_s": 0.05})
    clip, frame = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 5, 150, 290])
    _, info = env.reset(seed=3, options={"clip": clip, "frame": frame})
    assert torch.equal(info["clip"], clip) and torch.equal(info["frame"], frame)
    assert torch.allclose(env.engine.qpos[:, -42:].float(), env.ref.joint_pos[clip, frame],
                          atol=1e-6)
    with pytest.raises(ValueError, match="'frame' must lie in"):
        env.reset(options={"clip": clip, "frame": torch.tensor([0, 5, 400, 0])})
    with pytest.raises(ValueError, match="go together"):
        env.reset(options={"clip": clip})


def _sampler(**config):
    lengths = torch.tensor([1000, 401])  # frames at 1 ms: bins of 100 frames, 10 and 4
    return StartSampler(lengths, 1e-3, AdaptiveStartsConfig(bin_s=0.1, **config),
                        torch.device("cpu"))


def test_without_failures_adaptive_starts_are_the_uniform_ones():
    sampler = _sampler()
    probs = sampler.probabilities()
    assert probs.shape == (2, 10) and torch.isclose(probs.sum(), torch.tensor(1.0))
    assert torch.allclose(probs[0], torch.full((10,), 0.05))
    assert torch.allclose(probs[1, :4], torch.full((4,), 0.125)) and (probs[1, 4:] == 0).all()
    gen = torch.Generator().manual_seed(0)
    clip, frame = sampler.sample(gen, 20_000)
    assert abs(clip.float().mean().item() - 0.5) < 0.02
    assert (frame >= 0).all() and (frame <= sampler.lengths[clip] - 2).all()
    assert frame[clip == 1].max() >= 390  # the last, partial bin is reached


def test_adaptive_starts_follow_failures_with_a_floor():
    sampler = _sampler(decay=0.5, kernel_bins=1, kernel_lambda=0.5)
    worlds = torch.arange(200)
    clip = (worlds >= 100).long()
    frame = torch.where(clip == 0, (worlds % 100) * 10, (worlds % 100) * 4)  # every bin visited
    failed = (clip == 0) & (frame >= 700) & (frame < 800)  # clip 0 fails in bin 7 only
    live = torch.ones(200, dtype=torch.bool)
    for _ in range(10):
        sampler.record(clip, frame, live, failed)
    rate = sampler.failure_rate()
    assert rate[0, 7] > 0.99 and rate.sum() - rate[0, 7] < 1e-6
    probs = sampler.probabilities()
    # 0.9 of the mass on the failing bin and, at half weight, the bin before; the floor elsewhere.
    assert torch.isclose(probs[0, 7], torch.tensor(0.1 * 0.05 + 0.9 * 2 / 3))
    assert torch.isclose(probs[0, 6], torch.tensor(0.1 * 0.05 + 0.9 * 1 / 3))
    floor = 0.1 * sampler.uniform
    others = torch.ones(2, 10, dtype=torch.bool)
    others[0, 6:8] = False
    assert torch.allclose(probs[others], floor[others]) and (probs >= floor - 1e-9).all()
    gen = torch.Generator().manual_seed(1)
    clip_s, frame_s = sampler.sample(gen, 20_000)
    in_bin = ((clip_s == 0) & (frame_s >= 600) & (frame_s < 800)).float().mean().item()
    assert abs(in_bin - (0.9 + 0.1 * 0.1)) < 0.02
    assert (clip_s == 1).float().mean().item() > 0.03  # clip 1 is not forgotten
    # Worlds being reset (not live) count nothing.
    before = sampler.visits.clone()
    sampler.record(clip, frame, torch.zeros(200, dtype=torch.bool), failed)
    assert torch.allclose(sampler.visits, before * 0.5)


def test_the_env_records_failures_where_its_worlds_fail():
    # A tight joint-error limit and large random residuals: worlds fail, and the sampler knows.
    env = make(8, reference=tripod_gait(duration_s=0.3), max_joint_error_rad=0.05,
               adaptive_starts={"bin_s": 0.05, "decay": 0.1})
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    ended = 0
    for _ in range(12):
        _, _, terminated, _, _ = env.step(0.4 * torch.randn(8, 42, generator=gen))
        ended += int(terminated.sum())
    assert ended > 0
    rate = env.start_sampler.failure_rate()
    assert rate.max() > 0 and np.isclose(env.start_sampler.probabilities().sum().item(), 1.0)


def test_clip_weights_set_each_clips_share_of_uniform_starts():
    lengths = torch.tensor([300, 300, 300])
    gen = torch.Generator().manual_seed(0)
    sampler = StartSampler(lengths, 1e-3, None, torch.device("cpu"), weights=[3.0, 0.0, 1.0])
    clip, frame = sampler.sample(gen, 40_000)
    share = torch.bincount(clip, minlength=3).float() / 40_000
    assert abs(share[0].item() - 0.75) < 0.01 and share[1] == 0
    assert (frame >= 0).all() and (frame <= 298).all()
    # Weights by name: clips left out weigh 1; all equal is the unweighted sampler's stream.
    assert clip_weights({"b": 0, "a": 3}, ("a", "b", "c")) == [3.0, 0.0, 1.0]
    assert clip_weights({"a": 2, "b": 2}, ("a", "b")) is None
    with pytest.raises(ValueError, match=r"no clip is named \['d'\]; the clips are"):
        clip_weights({"d": 1}, ("a", "b"))
    with pytest.raises(ValueError, match="every clip weighs 0"):
        clip_weights({"a": 0, "b": 0}, ("a", "b"))


def test_a_clip_weighs_in_adaptive_starts_as_its_copies_would():
    # Clips 0 and 1 fail alike in their bin 2; clip 0 at weight 3 is clips 0, 0', 0'' and 1.
    lengths = torch.tensor([500, 500])
    config = AdaptiveStartsConfig(bin_s=0.1, decay=0.5, kernel_bins=0)
    weighted = StartSampler(lengths, 1e-3, config, torch.device("cpu"), weights=[3.0, 1.0])
    copies = StartSampler(torch.tensor([500] * 4), 1e-3, config, torch.device("cpu"))
    frame = torch.arange(0, 500, 5)
    failed = (frame >= 200) & (frame < 300)
    live = torch.ones_like(failed)
    for _ in range(10):
        for c in range(2):
            weighted.record(torch.full_like(frame, c), frame, live, failed)
        for c in range(4):
            copies.record(torch.full_like(frame, c), frame, live, failed)
    expected = copies.probabilities()
    expected = torch.stack([expected[:3].sum(dim=0), expected[3]])
    assert torch.allclose(weighted.probabilities(), expected, atol=1e-6)
    assert torch.isclose(weighted.probabilities()[0].sum(), torch.tensor(0.75))


def test_the_env_takes_clip_weights_by_name(dataset):
    with pytest.warns(RuntimeWarning):
        env = make(64, reference=str(dataset), clip_weights={"b_slow": 0})
    _, info = env.reset(seed=0)
    assert (info["clip"] == 0).all()
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="'c_fast'.*'a_fast'"):
        make(1, reference=str(dataset), clip_weights={"c_fast": 2})
    for bad in ({"a_fast": -1}, {"a_fast": float("nan")}, {"a_fast": "2"}, [("a_fast", 1)]):
        with pytest.raises(ValueError, match="clip_weights must"):
            make(1, reference=str(dataset), clip_weights=bad)


def test_training_weighs_clips_and_evaluation_plays_each_alike(tmp_path, capsys):
    from flyenv.apps.evaluate import Policy, play_settings
    from flyenv.apps.train_args import PpoArgs, env_settings
    from flyenv.cli import main

    args = PpoArgs(device="cpu", clip_weights='{"tripod_gait": 2}')
    assert env_settings(args)["clip_weights"] == {"tripod_gait": 2}
    assert "clip_weights" not in play_settings(Policy(agent=None, obs_norm={}, args=args))
    out = tmp_path / "run"
    assert main(["train", "--output", str(out), "--device", "cpu", "--clip-weights",
                 '{"tripod": 2}']) == 2
    err = capsys.readouterr().err
    assert "no clip is named ['tripod']" in err and "tripod_gait" in err
    assert "Traceback" not in err and not out.exists()
