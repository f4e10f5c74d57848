"""`flyenv eval`: a checkpoint's policy against the replay, per clip, clean and perturbed."""

import dataclasses
import json

import pytest
import torch

from flyenv.apps.demonstrations import Demonstrations
from flyenv.apps.evaluate import CONDITIONS, CONTROLLERS, Policy, evaluate
from flyenv.apps.inputs import column_map, sensing_load
from flyenv.apps.train import PpoArgs, train
from flyenv.cli import main
from flyenv.envs import observations
from flyenv.motion import save, tripod_gait


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    clips = root / "clips"
    clips.mkdir()
    save(tripod_gait(duration_s=0.3), clips / "fast.npz")
    save(tripod_gait(duration_s=0.3, step_freq_hz=6.0), clips / "slow.npz")
    # An asymmetric critic: the checkpoint's critic reads more than its policy.
    train(PpoArgs(device="cpu", num_envs=2, num_steps=4, total_timesteps=8, eval_steps=2,
                  hidden=16, control_decimation=10, reference=str(clips),
                  adaptive_starts='{"bin_s": 0.05}', privileged_critic=True,
                  output=str(root / "run")))
    return root


def test_eval_reports_every_clip_for_policy_and_replay_clean_and_perturbed(trained):
    # Pushes of 50-60 uN (five times the fly's weight) at 100 Hz topple the replay; the clean
    # replay of the embedded gait walks the whole horizon.
    shove = {"push_force_un": [50.0, 60.0], "push_rate_hz": 100.0, "push_duration_s": 0.01}
    result = evaluate(trained / "run" / "checkpoint.pt", output=trained / "out", starts=2,
                      horizon_s=0.15, randomization=shove, video_steps=0)
    assert list(result["clips"]) == ["fast", "slow"]  # the clips it was trained on
    curve = json.loads((trained / "run" / "curve.json").read_text())
    assert [c["name"] for c in curve["clips"]] == ["fast", "slow"]
    assert "clip/slow/score" in curve["curve"][-1]
    assert len(curve["start_probabilities"]) == 2  # adaptive starts: per clip and 50 ms bin
    assert len(curve["start_probabilities"][0]) == 6
    for clip in result["clips"].values():
        for cond in CONDITIONS:
            for ctrl in CONTROLLERS:
                summary = clip[cond][ctrl]
                assert 0 <= summary["survived"] <= 1 and summary["joint_error_deg"] >= 0
                assert summary["path_error_mm"] >= 0 and "reward/joint_pos" in summary
            # Paired: the same starts (and pushes) for both controllers, start by start.
            gain = clip[cond]["policy_vs_replay"]
            per_start = {ctrl: clip[cond][ctrl]["survived_per_start"] for ctrl in CONTROLLERS}
            assert len(per_start["policy"]) == 2
            assert gain["survived_gain"] == pytest.approx(
                clip[cond]["policy"]["survived"] - clip[cond]["replay"]["survived"], abs=1e-4)
            low, high = gain["survived_gain_ci95"]
            assert low - 1e-9 <= gain["survived_gain"] <= high + 1e-9
            pairs = zip(per_start["policy"], per_start["replay"], strict=True)
            assert gain["replay_only"] == sum(r >= 1 > p for p, r in pairs)
        assert clip["clean"]["replay"]["survived"] == 1.0
        assert clip["clean"]["replay"]["joint_error_deg"] < 5.0
    perturbed = [c["perturbed"]["replay"]["survived"] for c in result["clips"].values()]
    assert min(perturbed) < 1.0
    assert json.loads((trained / "out" / "eval.json").read_text())["starts"] == 2
    assert (trained / "out" / "eval.png").stat().st_size > 10_000
    policy = Policy.load(trained / "run" / "checkpoint.pt")
    assert policy.agent.obs_dim == 226 == policy.obs_norm["mean"].shape[0]
    assert policy.agent.critic[0].in_features == 226 + 4


def test_eval_command_on_other_clips_with_a_video(trained, tmp_path, capsys):
    other = tmp_path / "held_out.npz"
    save(tripod_gait(duration_s=0.2, step_freq_hz=8.0), other)
    assert main(["eval", str(trained / "run" / "checkpoint.pt"), "--reference", str(other),
                 "--starts", "1", "--horizon-s", "0.01", "--video-steps", "2"]) == 0
    result = json.loads((trained / "run" / "eval" / "eval.json").read_text())
    assert list(result["clips"]) == ["held_out"]
    assert "held_out clean: survived policy" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not a flyenv train checkpoint"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        evaluate(bad)


def test_training_goes_on_from_a_checkpoint(trained, tmp_path):
    first = trained / "run" / "checkpoint.pt"
    state = torch.load(first, weights_only=False)
    base = dataclasses.replace(PpoArgs(**state["args"]), output=str(tmp_path / "on"),
                               init_checkpoint=str(first), learning_rate=0.0, eval_steps=1)
    train(base)  # lr 0: the policy stays the checkpoint's; the statistics go on counting
    after = torch.load(tmp_path / "on" / "checkpoint.pt", weights_only=False)
    for key, value in state["agent"].items():
        assert torch.equal(after["agent"][key], value), key
    assert after["obs_norm"]["count"] > state["obs_norm"]["count"]
    assert after["args"]["init_checkpoint"] == str(first)
    with pytest.raises(ValueError, match="hidden sizes must match"):
        train(dataclasses.replace(base, hidden=8, output=str(tmp_path / "no")))
    with pytest.raises(ValueError, match="--privileged-critic"):
        train(dataclasses.replace(base, privileged_critic=False, output=str(tmp_path / "no")))
    with pytest.raises(ValueError, match="another action range"):
        train(dataclasses.replace(base, residual_range_rad=0.2, output=str(tmp_path / "no")))
    with pytest.raises(ValueError, match="not a readable flyenv train checkpoint"):
        train(dataclasses.replace(base, init_checkpoint=str(tmp_path / "missing.pt"),
                                  output=str(tmp_path / "no")))


def test_training_goes_on_from_a_checkpoint_with_a_new_sense_acting_as_before(trained, tmp_path):
    # A policy without the tarsi's load goes on in a run that senses it: its old columns move
    # to where their parts now sit, the load's get zero weights, so it acts and values as it
    # did whatever the load reads (lr 0 keeps the widened weights). A policy that senses load
    # cannot go on without it.
    first = trained / "run" / "checkpoint.pt"
    state = torch.load(first, weights_only=False)
    base = dataclasses.replace(PpoArgs(**state["args"]), output=str(tmp_path / "on"),
                               init_checkpoint=str(first), learning_rate=0.0, eval_steps=1,
                               sense_load=True)
    train(base)
    parent, child = Policy.load(first), Policy.load(tmp_path / "on" / "checkpoint.pt")
    assert child.agent.obs_dim == 232 and child.agent.critic[0].in_features == 232 + 4
    layout = observations.observation_layout(3, sense_load=True)
    moved = column_map(observations.observation_layout(3), layout)
    wide = torch.randn(16, 232 + 4, generator=torch.Generator().manual_seed(0))
    narrow = torch.cat([wide[:, moved], wide[:, 232:]], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(child.agent.dist(wide).mean, parent.agent.dist(narrow).mean)
        torch.testing.assert_close(child.agent.value(wide), parent.agent.value(narrow))
    assert (child.agent.actor[0].weight[:, layout["tarsus_load"]] == 0).all()
    widened = Policy.from_state(sensing_load(state, 3))  # the same surgery on the dict
    for key, value in widened.agent.state_dict().items():
        assert torch.equal(value, child.agent.state_dict()[key]), key
    on = torch.load(tmp_path / "on" / "checkpoint.pt", weights_only=False)
    assert sensing_load(on, 3) is on
    old = parent.obs_norm  # the statistics moved with their columns, and went on counting
    shift = (child.obs_norm["mean"][moved] - old["mean"][:226]) / old["var"][:226].sqrt()
    assert shift.abs().max() < 0.2
    with pytest.raises(ValueError, match="senses the tarsi's load; this run needs --sense-load"):
        train(dataclasses.replace(base, init_checkpoint=str(tmp_path / "on" / "checkpoint.pt"),
                                  sense_load=False, output=str(tmp_path / "no")))


def test_widening_refuses_a_layout_that_drops_or_resizes_a_part():
    old = observations.observation_layout(3)
    with pytest.raises(ValueError, match="'future_joint_pos' has 126 columns in the checkpoint"):
        column_map(old, observations.observation_layout(2, sense_load=True))
    with pytest.raises(ValueError, match="'tarsus_load' of the checkpoint's policy is not in"):
        column_map(observations.observation_layout(3, sense_load=True), old)


def test_demonstrations_are_taught_alongside_ppo_and_a_file_of_another_size_is_refused(
        trained, tmp_path):
    # States drawn about the checkpoint's statistics (raw, as a demonstrations file holds them)
    # and one action for all of them, a third of the range each way: a run going on from the
    # checkpoint with them weighted strongly ends closer to them. The run has a privileged
    # critic, so the file holds the policy's columns only and is normalized with theirs.
    first = trained / "run" / "checkpoint.pt"
    state = torch.load(first, weights_only=False)
    parent = Policy.load(first)
    obs_dim, scale = parent.agent.obs_dim, parent.agent.action_scale
    gen = torch.Generator().manual_seed(0)
    std = parent.obs_norm["var"].sqrt().float()
    raw = parent.obs_norm["mean"].float() + std * torch.randn(64, obs_dim, generator=gen)
    act = (scale / 3 * torch.where(torch.arange(len(scale)) % 2 == 0, 1.0, -1.0)).repeat(64, 1)
    Demonstrations(raw, act).save(tmp_path / "demos.pt")
    base = dataclasses.replace(PpoArgs(**state["args"]), output=str(tmp_path / "on"),
                               init_checkpoint=str(first), eval_steps=1, learning_rate=1e-3,
                               total_timesteps=32,
                               demonstrations=str(tmp_path / "demos.pt"),
                               demonstration_coef=10.0)
    result = train(base)
    assert all(row["demonstration_loss"] > 0 for row in result["curve"])

    def distance(policy: Policy) -> float:  # RMS, in units of the action range
        norm = policy.obs_norm
        obs = ((raw - norm["mean"]) / (norm["var"] + 1e-8).sqrt()).float()
        with torch.no_grad():
            return float(((policy.agent.dist(obs).mean - act) / scale).square().mean().sqrt())

    assert distance(Policy.load(tmp_path / "on" / "checkpoint.pt")) < 0.7 * distance(parent)
    Demonstrations(raw[:, 1:], act).save(tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match=r"narrow\.pt: field 'obs' must be a \(m, \d+\)"):
        train(dataclasses.replace(base, demonstrations=str(tmp_path / "narrow.pt"),
                                  output=str(tmp_path / "no")))
    assert not (tmp_path / "no").exists()  # refused before anything was written
