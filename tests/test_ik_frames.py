"""Thorax pose, canonical frames, fitted body, grounding and odometry (issue 13)."""

import numpy as np
import pytest
import torch
from conftest import DATA
from scipy.spatial.transform import Rotation

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.envs.reference import load_references
from flyenv.ik_preprocess import IkOptions, run, solver
from flyenv.ik_preprocess.io import load_recording
from flyenv.ik_preprocess.limits import RecordingError
from flyenv.ik_preprocess.thorax import estimate_thorax_pose
from flyenv.motion import io as motion_io
from flyenv.motion.gait import tripod_gait
from flyenv.motion.grounding import ground, odometry

DF3D_100 = DATA / "df3d_210902_PR_Fly1" / "pose3d_aligned.pkl"
ANIPOSE = DATA / "anipose_220525_aJO_Fly001_001" / "pose3d_aligned.pkl"
CAMERA = Rotation.from_euler("xyz", [30, -50, 120], degrees=True)
OFFSET = np.array([12.0, -7.0, 3.0])


@pytest.fixture(scope="module")
def gait():
    return tripod_gait(duration_s=1.0, fps=200.0)


def _world(gait, noise_mm=0.0, nan_fraction=0.0, seed=0):
    """The gait moved by a known rigid motion and seen from a tilted, offset camera."""
    t = np.arange(gait.num_frames) / gait.fps
    yaw = 0.6 * t ** 2 + 0.3 * t
    pitch = np.radians(4) * np.sin(2 * np.pi * 0.5 * t)
    roll = np.radians(3) * np.sin(2 * np.pi * 0.7 * t)
    rot = Rotation.from_euler("ZYX", np.stack([yaw, pitch, roll], 1))
    vel = gait.metadata["speed_mm_s"] * np.stack([np.cos(yaw), np.sin(yaw)], 1)
    xy = np.concatenate([[[0.0, 0.0]], np.cumsum(0.5 * (vel[1:] + vel[:-1]), 0) / gait.fps])
    pos = np.column_stack([xy, gait.root_pos[:, 2]])
    world = (np.einsum("tij,tlkj->tlki", rot.as_matrix(), np.asarray(gait.fk_keypoints))
             + pos[:, None, None])
    keypoints = CAMERA.apply(world.reshape(-1, 3)).reshape(world.shape) + OFFSET
    rng = np.random.default_rng(seed)
    keypoints = keypoints + noise_mm * rng.standard_normal(keypoints.shape)
    keypoints[rng.random(keypoints.shape[:3]) < nan_fraction] = np.nan
    return keypoints, pos, rot


@pytest.mark.parametrize(("noise", "nan", "pos_tol", "rot_tol"), [
    (0.0, 0.0, 0.05, 1.5), (0.01, 0.05, 0.2, 2.5)])
def test_world_frame_root_pose_is_recovered(gait, noise, nan, pos_tol, rot_tol):
    keypoints, pos, rot = _world(gait, noise, nan, seed=3)
    pose = estimate_thorax_pose(keypoints, BodyConfig.default().thc, gait.fps)
    assert pose.moving and pose.up_source == "floor"
    np.testing.assert_allclose(CAMERA.inv().apply(pose.up), [0, 0, 1], atol=0.03)
    assert np.linalg.norm(pose.root_pos_w - pos, axis=1).mean() < pos_tol
    rot_err = np.degrees((Rotation.from_quat(pose.root_quat_w, scalar_first=True)
                          * rot.inv()).magnitude())
    assert rot_err.mean() < rot_tol
    speed = np.linalg.norm(pose.root_lin_vel_w[10:-10, :2], axis=1)
    assert abs(speed.mean() / gait.metadata["speed_mm_s"] - 1) < 0.05


def test_world_frame_angles_equal_thorax_frame_angles(gait):
    keypoints, _, _ = _world(gait)
    pose = estimate_thorax_pose(keypoints, BodyConfig.default().thc, gait.fps)
    body_kp = pose.to_thorax(keypoints)
    # The thorax frame is recovered up to the floor estimate's tilt; joint angles do not see
    # the tilt's effect on ThC-relative vectors beyond it.
    body = BodyConfig.default()
    bounds = body.bounds.reshape(6, 7, 2)
    q_world = solver.seqik(body_kp, body.lengths, bounds, solver.SEQIKPY_SEED_RAD)
    q_body = solver.seqik(np.asarray(gait.fk_keypoints), body.lengths, bounds,
                          solver.SEQIKPY_SEED_RAD)
    np.testing.assert_allclose(q_world, q_body, atol=1e-4)


def test_world_frame_recording_through_the_runner_gets_root_motion(gait, tmp_path):
    keypoints, pos, _ = _world(gait)
    path = tmp_path / "free.npz"
    np.savez(path, keypoints=keypoints, leg_names=np.array(c.LEGS), fps=gait.fps)
    report = run([path], tmp_path / "out", IkOptions(solver="seqik"))
    motion = motion_io.load(report.files[0].output)
    assert motion.has_root and report.files[0].thorax["root_motion"]
    assert motion.root_lin_vel is not None and motion.root_ang_vel is not None
    assert np.abs(motion.root_pos - pos).max() < 0.05
    np.testing.assert_allclose(motion.joint_angles, gait.joint_angles, atol=1e-4)


def test_given_up_axis_and_thorax_frame_option(gait, tmp_path):
    keypoints, pos, _ = _world(gait)
    pose = estimate_thorax_pose(keypoints, BodyConfig.default().thc, gait.fps,
                                up=CAMERA.apply([0, 0, 1]))
    assert pose.up_source == "given"
    assert np.abs(pose.root_pos_w - pos)[:, :2].max() < 1e-3
    # Height above the stance claws' floor, which the pitch and roll tilt a little.
    assert np.abs(pose.root_pos_w - pos)[:, 2].max() < 0.05
    path = tmp_path / "body.npz"
    np.savez(path, keypoints=np.asarray(gait.fk_keypoints) + 5.0,
             leg_names=np.array(c.LEGS), fps=gait.fps)
    motion = motion_io.load(run([path], tmp_path / "o", IkOptions(frame="thorax"))
                            .files[0].output)
    assert "thorax" not in motion.metadata and not motion.has_root
    np.testing.assert_allclose(motion.keypoints, np.asarray(gait.fk_keypoints) + 5.0)


@pytest.mark.parametrize("source", [DF3D_100, ANIPOSE])
def test_real_files_have_no_root_motion_and_a_canonical_frame(source):
    recording = load_recording(source)
    pose = estimate_thorax_pose(recording.keypoints, BodyConfig.default().thc, 100.0)
    assert not pose.moving and pose.root_pos_w is None
    body_kp = pose.to_thorax(recording.keypoints)
    legs = [c.LEGS.index(leg) for leg in recording.legs_present]
    centre = np.nanmedian(body_kp[:, legs, 0], axis=0)
    layout = BodyConfig.default().thc[legs]
    # The origin and axes of the body's layout: the ThC midpoint lands on the layout's.
    np.testing.assert_allclose(centre.mean(0), layout.mean(0), atol=1e-6)


def test_left_right_swap_wrong_units_and_unmatched_layout_are_clear_errors(gait):
    keypoints = np.asarray(gait.fk_keypoints).copy()
    thc = BodyConfig.default().thc
    with pytest.raises(RecordingError, match="left and right legs appear swapped"):
        estimate_thorax_pose(keypoints[:, [3, 4, 5, 0, 1, 2]], thc, gait.fps)
    with pytest.raises(RecordingError, match="is the recording in mm"):
        estimate_thorax_pose(keypoints * 1000.0, thc, gait.fps)
    scrambled = keypoints.copy()
    scrambled[:, :, 0] = keypoints[:, [2, 0, 4, 1, 5, 3], 0] * [1.0, 1.0, -3.0]
    with pytest.raises(RecordingError, match="do not match a fly"):
        estimate_thorax_pose(scrambled, thc, gait.fps)


def test_one_mistracked_thc_and_a_missing_leg_are_tolerated(gait):
    keypoints, pos, _ = _world(gait)
    keypoints[:, 2] = np.nan  # LH missing
    keypoints[50:60, 4, 0] += 0.3  # RM ThC mistracked for 10 frames
    pose = estimate_thorax_pose(keypoints, BodyConfig.default().thc, gait.fps)
    assert pose.legs_fitted == ("LF", "LM", "RF", "RM", "RH")
    assert np.linalg.norm(pose.root_pos_w - pos, axis=1).max() < 0.1


def test_two_legs_moving_is_an_error(gait):
    keypoints, _, _ = _world(gait)
    keypoints[:, [1, 2, 4, 5]] = np.nan
    with pytest.raises(RecordingError, match="cannot fix the thorax's orientation"):
        estimate_thorax_pose(keypoints, BodyConfig.default().thc, gait.fps)


def test_grounding_of_the_gait_matches_its_root_height(gait):
    claws = np.asarray(gait.fk_keypoints)[:, :, c.KEYPOINTS.index("Claw")]
    grounding = ground(claws, gait.fps)
    np.testing.assert_allclose(grounding.height_mm, gait.root_pos[:, 2], atol=0.005)
    tilt = np.degrees(Rotation.from_quat(grounding.quat_w, scalar_first=True).magnitude())
    assert tilt.max() < 0.5
    assert ground(claws[:, :2], gait.fps) is None  # two legs cannot be grounded


def test_odometry_speed_of_the_gait_within_10_percent(gait):
    claws = np.asarray(gait.fk_keypoints)[:, :, c.KEYPOINTS.index("Claw")]
    lin_vel, ang_vel = odometry(claws, gait.fps)
    speed = gait.metadata["speed_mm_s"]
    assert abs(lin_vel[:, 0].mean() - speed) < 0.1 * speed
    assert np.abs(ang_vel[:, 2]).mean() < 0.1


@pytest.mark.parametrize(("fps", "turn_rad_s", "step_hz", "stride_mm"), [
    (100.0, 1.6, 10.0, 0.6),   # the df3d clip's rate and its odometry's mean turning
    (100.0, -3.0, 6.0, 0.5),   # slower stepping, turning right
    (500.0, 6.0, 10.0, 0.6),   # a sharp turn (a full turn per second)
])
def test_odometry_recovers_speed_and_yaw_rate_of_turning_gaits(fps, turn_rad_s, step_hz,
                                                              stride_mm):
    # Known truth: the generator's thorax walks at speed_mm_s and turns at turn_rad_s.
    gait = tripod_gait(duration_s=2.0, fps=fps, turn_rate_rad_s=turn_rad_s,
                       step_freq_hz=step_hz, stride_mm=stride_mm)
    claws = np.asarray(gait.fk_keypoints)[:, :, c.KEYPOINTS.index("Claw")]
    lin_vel, ang_vel = odometry(claws, fps)
    speed = gait.metadata["speed_mm_s"]
    assert abs(lin_vel[:, 0].mean() / speed - 1) < 0.1
    assert abs(lin_vel[:, 1].mean()) < 0.02 * speed
    assert abs(ang_vel[:, 2].mean() / turn_rad_s - 1) < 0.1
    # Integrated, the heading after 2 s is within 10% of the truth, sign included.
    heading = ang_vel[:-1, 2].sum() / fps
    assert abs(heading / (turn_rad_s * 2.0) - 1) < 0.1


@pytest.mark.parametrize("turn_rad_s", [1.6, -1.6, 0.0])
def test_odometry_yaw_rate_survives_tracking_noise(turn_rad_s):
    # 0.02 mm of tracking noise at 100 Hz (df3d's rate) makes three stance claws disagree;
    # the estimate must not then follow a mislabelled swing claw (it did, by up to 0.8 rad/s).
    gait = tripod_gait(duration_s=3.0, fps=100.0, turn_rate_rad_s=turn_rad_s,
                       step_freq_hz=6.5, stride_mm=1.0)
    speed = gait.metadata["speed_mm_s"]
    clean = np.asarray(gait.fk_keypoints)[:, :, c.KEYPOINTS.index("Claw")]
    for seed in range(3):
        claws = clean + np.random.default_rng(seed).normal(0.0, 0.02, clean.shape)
        lin_vel, ang_vel = odometry(claws, gait.fps, ground(claws, gait.fps).stance)
        assert abs(ang_vel[:, 2].mean() - turn_rad_s) < 0.4
        assert abs(lin_vel[:, 0].mean() / speed - 1) < 0.15


def test_bank_grounds_clips_without_root_motion(gait):
    tethered = gait.replace(root_pos=None, root_quat=None)
    bank = load_references(tethered, 0.01, torch.device("cpu"), standing_height_mm=0.9,
                           claw_clearance_mm=0.03)
    assert not bank.has_root and bank.root_vel_estimated and bank.grounded == (True,)
    height = bank.root_pos_w[0, :, 2].numpy()
    assert np.abs(height - (gait.root_pos[0, 2] + 0.03)).max() < 0.01
    speed = bank.root_lin_vel_w[0, :, 0].mean().item()
    assert abs(speed / gait.metadata["speed_mm_s"] - 1) < 0.1
    with_root = load_references(gait, 0.01, torch.device("cpu"), standing_height_mm=0.9,
                           claw_clearance_mm=0.03)
    assert with_root.has_root and not with_root.root_vel_estimated


def test_grounding_follows_the_env_models_claw_clearance(gait):
    # The grounded thorax rests the stance claws on the floor of the model the env builds: a
    # thicker tarsus (model_options) lifts it by the radius difference.
    from flyenv.envs import FlyImitationVecEnv

    tethered = gait.replace(root_pos=None, root_quat=None)
    radii = (0.06, 0.05, 0.04, 0.05)
    heights = [FlyImitationVecEnv(1, reference=tethered, engine="mujoco", device="cpu",
                                  model_options=options).ref.root_pos_w[0, :, 2]
               for options in ({}, {"segment_radii_mm": radii})]
    torch.testing.assert_close(heights[1] - heights[0], torch.full_like(heights[0], 0.02),
                               rtol=0, atol=1e-6)  # float32 bank
