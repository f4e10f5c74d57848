"""Clip augmentation: the mirror image and playback speed (flyenv.motion.augment)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from flyenv.body import BodyConfig, forward_kinematics
from flyenv.body import constants as c
from flyenv.motion import ReferenceMotion, load, mirror, resample, save, time_scale, tripod_gait
from flyenv.motion.grounding import clip_stance

S = np.diag([1.0, -1.0, 1.0])  # the mirror y -> -y


def _asymmetric_body(seed: int) -> BodyConfig:
    """The template with every leg's ThC, lengths and tarsus tilt changed differently."""
    rng = np.random.default_rng(seed)
    body = BodyConfig.default()
    return body.replace(thc_mm=tuple(map(tuple, body.thc + rng.normal(0, 0.03, (6, 3)))),
                        segment_lengths_mm=tuple(map(tuple, body.lengths
                                                     * rng.uniform(0.8, 1.2, (6, 4)))),
                        tarsus_tilt_rad=tuple(rng.uniform(-0.3, 0.3, 6)), name="asymmetric")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_mirrored_pose_is_the_mirror_image_of_the_pose(seed):
    """FK of the mirrored angles on the mirrored body = the original keypoints reflected."""
    body = _asymmetric_body(seed)
    rng = np.random.default_rng(seed)
    bounds = np.clip(body.bounds, -2.0, 2.0)
    angles = rng.uniform(bounds[:, 0], bounds[:, 1], (4, c.NUM_DOFS))
    motion = ReferenceMotion(fps=100.0, joint_angles=angles, metadata={"body": body.to_dict()})
    mirrored = mirror(motion)
    expected = forward_kinematics(body, angles)[:, c.MIRROR_LEGS] * (1.0, -1.0, 1.0)
    np.testing.assert_allclose(forward_kinematics(mirrored.body, mirrored.joint_angles),
                               expected, atol=1e-12)
    assert mirrored.body.name == "asymmetric:mirrored"
    assert mirrored.body.mirrored() == body


def test_template_is_its_own_mirror():
    body = BodyConfig.default()
    assert body.mirrored() is body
    motion = mirror(tripod_gait(duration_s=0.2))
    assert motion.body == body


def test_mirroring_twice_gives_the_clip_back(tmp_path):
    gait = resample(tripod_gait(duration_s=0.3, turn_rate_rad_s=1.5), 0.002)
    clip = gait.replace(
        keypoints=forward_kinematics(gait.body, gait.joint_angles),
        underdetermined=np.zeros((gait.num_frames, 6), bool) | (np.arange(6) == 1),
        metadata={**gait.metadata, "align_scale": {leg: i for i, leg in enumerate(c.LEGS)}})
    once = mirror(clip)
    assert once.underdetermined[:, c.LEGS.index("RM")].all()
    assert once.metadata["align_scale"]["RF"] == clip.metadata["align_scale"]["LF"]
    twice = mirror(once)
    for name in ("joint_angles", "joint_velocities", "root_pos", "root_quat", "root_lin_vel",
                 "root_ang_vel", "keypoints", "underdetermined"):
        np.testing.assert_array_equal(getattr(twice, name), getattr(clip, name), err_msg=name)
    assert twice.metadata["augmented"] == [{"mirror": True}, {"mirror": True}]
    save(once, tmp_path / "mirrored.npz")  # the format takes it as it is
    np.testing.assert_array_equal(load(tmp_path / "mirrored.npz").joint_angles,
                                  once.joint_angles)


def test_mirrored_root_motion_is_the_reflected_path():
    """A left turn becomes a right turn: R' = S R S, and the stored rates still integrate."""
    clip = resample(tripod_gait(duration_s=0.5, turn_rate_rad_s=2.0), 0.002)  # with rates
    mirrored = mirror(clip)
    rot = Rotation.from_quat(clip.root_quat, scalar_first=True).as_matrix()
    rot_m = Rotation.from_quat(mirrored.root_quat, scalar_first=True)
    np.testing.assert_allclose(rot_m.as_matrix(), S @ rot @ S, atol=1e-12)
    np.testing.assert_allclose(mirrored.root_pos, clip.root_pos @ S)
    heading = rot_m.as_euler("ZYX")[:, 0]
    assert heading[-1] < -0.8  # turned right by about 2 rad/s x 0.5 s
    # The world-frame rates match the mirrored orientations' finite differences.
    step = (rot_m[1:] * rot_m[:-1].inv()).as_rotvec() * mirrored.fps
    np.testing.assert_allclose(step, mirrored.root_ang_vel[1:], atol=0.05)
    np.testing.assert_allclose(np.diff(mirrored.root_pos, axis=0) * mirrored.fps,
                               mirrored.root_lin_vel[1:], atol=0.1)


def test_mirrored_stance_is_the_partner_legs_stance():
    clip = tripod_gait(duration_s=0.5)
    np.testing.assert_array_equal(clip_stance(mirror(clip)),
                                  clip_stance(clip)[:, c.MIRROR_LEGS])


def test_missing_legs_change_sides():
    angles = tripod_gait(duration_s=0.1).joint_angles.copy()
    angles[:, :7] = np.nan
    clip = ReferenceMotion(fps=500.0, joint_angles=angles, metadata={"missing_legs": ["LF"]})
    mirrored = mirror(clip)
    assert mirrored.missing_legs == ("RF",)
    assert np.isnan(mirrored.joint_angles[:, 21:28]).all()
    assert np.isfinite(mirrored.joint_angles[:, :21]).all()


@pytest.mark.parametrize("speed", [0.8, 1.25])
def test_time_scale_keeps_the_poses_and_scales_the_rates(speed):
    clip = resample(tripod_gait(duration_s=0.4, turn_rate_rad_s=1.0), 0.002)  # with rates
    fast = time_scale(clip, speed)
    assert fast.fps == pytest.approx(clip.fps * speed)
    assert fast.duration_s == pytest.approx(clip.duration_s / speed)
    np.testing.assert_array_equal(fast.joint_angles, clip.joint_angles)
    np.testing.assert_array_equal(fast.root_pos, clip.root_pos)
    for name in ("joint_velocities", "root_lin_vel", "root_ang_vel"):
        np.testing.assert_allclose(getattr(fast, name), getattr(clip, name) * speed)
    assert fast.metadata["augmented"] == [{"speed": speed}]


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf")])
def test_time_scale_refuses_a_bad_speed(speed):
    with pytest.raises(ValueError, match="speed must be a finite number > 0"):
        time_scale(tripod_gait(duration_s=0.1), speed)


def test_an_env_adds_the_augmented_clips_after_its_own():
    import torch

    from flyenv.envs import FlyImitationVecEnv

    env = FlyImitationVecEnv(num_envs=6, engine="mujoco", device="cpu", nthread=1,
                             reference=tripod_gait(duration_s=0.5),
                             augment={"mirror": True, "speeds": [0.8]})
    assert env.ref.names == ("clip0", "clip0_mirrored", "clip0_speed0.8")
    length, mirrored, slow = env.ref.lengths.tolist()
    assert mirrored == length and slow == pytest.approx((length - 1) / 0.8 + 1, abs=1)
    assert torch.equal(env.ref.clip_body, torch.zeros(3, dtype=torch.long))  # one body
    _, info = env.reset(seed=0)
    played = set(info["clip"].tolist())
    for _ in range(50):
        _, _, terminated, _, info = env.step(env.replay_action())
        assert not terminated.any()  # the replay of each walks
    assert played == {0, 1, 2}
    env.close()


@pytest.mark.parametrize(("augment", "match"), [
    ({"speeds": [1.0]}, "distinct finite numbers > 0 other than 1"),
    ({"speeds": [0.8, 0.8]}, "distinct finite numbers > 0 other than 1"),
    ({"speeds": 0.8}, "must be a list of numbers"),
    ({"speeds": None}, "must be a list of numbers"),
    ({"speeds": "0.8"}, "must be a list of numbers"),
    ({"mirror": "yes"}, "must be true or false"),
    ({"mirrors": True}, "mirrors"),
])
def test_a_bad_augment_config_is_refused_by_name(augment, match):
    from flyenv.envs import FlyImitationConfig

    with pytest.raises(ValueError, match=match):
        FlyImitationConfig(augment=augment)


def test_training_augments_and_evaluation_plays_the_clips_themselves(tmp_path, capsys):
    from flyenv.apps.evaluate import Policy, play_settings
    from flyenv.apps.train_args import PpoArgs, env_settings
    from flyenv.cli import main

    args = PpoArgs(device="cpu", augment='{"mirror": true, "speeds": [1.25]}')
    assert env_settings(args)["augment"] == {"mirror": True, "speeds": [1.25]}
    assert "augment" not in play_settings(Policy(agent=None, obs_norm={}, args=args))
    out = tmp_path / "run"
    assert main(["train", "--output", str(out), "--device", "cpu", "--augment",
                 '{"speed": [0.8]}']) == 2
    err = capsys.readouterr().err
    assert "speed" in err and "Traceback" not in err and not out.exists()
