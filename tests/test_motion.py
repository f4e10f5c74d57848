import errno
import io
import json
import os
import zipfile

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from flyenv.body import DOF_NAMES, BodyConfig, forward_kinematics
from flyenv.body import constants as c
from flyenv.motion import ReferenceMotion, load, resample, save, tripod_gait
from flyenv.motion.io import stale_temporaries

STAND = np.asarray(c.STANDING_POSE_RAD)


def _motion(num_frames=50, fps=100.0, **kwargs):
    t = np.arange(num_frames) / fps
    angles = STAND + 0.1 * np.sin(2 * np.pi * 2 * t)[:, None]
    return ReferenceMotion(fps=fps, joint_angles=angles, **kwargs)


# Construction ------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"fps": 0}, "fps must be"),
    ({"fps": np.nan}, "fps must be"),
    ({"fps": 1e-6}, r"fps must be a number in \[0.1, 1e\+06\] Hz"),
    ({"fps": np.inf}, "fps must be"),
    ({"fps": [100, 50]}, "fps must be one number"),
    ({"fps": True}, "fps must be a number"),
    ({"root_pos": np.full((10, 3), 2e4)}, "root_pos must stay within 10000 mm"),
    ({"underdetermined": np.zeros((10, 6))}, "underdetermined must be a bool array"),
    ({"joint_angles": np.zeros((10, 41))}, r"joint_angles must have shape \(T, 42\)"),
    ({"joint_angles": np.zeros((1, 42))}, "T >= 2"),
    ({"joint_angles": [["a"] * 42] * 3}, "joint_angles must be numeric"),
    ({"dof_names": tuple(reversed(DOF_NAMES))}, "dof_names must be the 42 names"),
    ({"root_pos": np.zeros((9, 3))}, r"root_pos must have shape \(10, 3\)"),
    ({"root_quat": np.tile([2.0, 0, 0, 0], (10, 1))}, "unit quaternions"),
    ({"root_pos": np.full((10, 3), np.inf)}, "root_pos has non-finite"),
    ({"keypoints": np.zeros((10, 6, 5))}, "keypoints must have shape"),
    ({"metadata": {"missing_legs": ["XX"]}}, "unknown legs"),
    ({"metadata": []}, "metadata must be a dict"),
])
def test_construction_rejects_bad_fields(kwargs, match):
    fields = {"fps": 100.0, "joint_angles": np.tile(STAND, (10, 1)), **kwargs}
    with pytest.raises(ValueError, match=match):
        ReferenceMotion(**fields)


def test_nan_only_allowed_for_missing_legs():
    angles = np.tile(STAND, (10, 1))
    angles[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"frames \[3\] of DOFs \['LF_FTi_pitch'\]"):
        ReferenceMotion(fps=100, joint_angles=angles)
    angles = np.tile(STAND, (10, 1))
    angles[:, 7:14] = np.nan
    motion = ReferenceMotion(fps=100, joint_angles=angles, metadata={"missing_legs": ["LM"]})
    np.testing.assert_array_equal(motion.leg_mask, [1, 0, 1, 1, 1, 1])
    # A leg declared missing must really be NaN: zeros would be silently imitated.
    with pytest.raises(ValueError, match="missing legs .* must be NaN"):
        ReferenceMotion(fps=100, joint_angles=np.tile(STAND, (10, 1)),
                        metadata={"missing_legs": ["LM"]})


def test_arrays_are_read_only_copies():
    angles = np.tile(STAND, (10, 1))
    motion = ReferenceMotion(fps=100, joint_angles=angles)
    angles[:] = 0
    assert motion.joint_angles[0, 1] == STAND[1]
    with pytest.raises(ValueError):
        motion.joint_angles[0, 0] = 1.0
    # A read-only view of writable memory is still copied; a frozen array owning its memory
    # (what the IK runner hands over) is adopted without a copy.
    view = angles.view()
    view.setflags(write=False)
    assert ReferenceMotion(fps=100, joint_angles=view).joint_angles is not view
    frozen = np.tile(STAND, (10, 1)).copy()
    frozen.setflags(write=False)
    assert ReferenceMotion(fps=100, joint_angles=frozen).joint_angles is frozen


def test_bound_violations_name_dofs_and_frames():
    angles = np.tile(STAND, (10, 1))
    angles[[2, 7], DOF_NAMES.index("RM_ThC_roll")] = 0.5  # range is [-pi, 0]
    angles[4, DOF_NAMES.index("LH_TiTa_pitch")] = 0.2  # range is [-pi, 0]
    motion = ReferenceMotion(fps=100, joint_angles=angles)
    violations = motion.bound_violations()
    assert [(v.dof_name, v.frames) for v in violations] == [
        ("LH_TiTa_pitch", (4,)), ("RM_ThC_roll", (2, 7))]
    assert violations[1].worst_rad == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"RM_ThC_roll: 2 frame\(s\) \[2, 7\]"):
        motion.validate()
    ReferenceMotion(fps=100, joint_angles=np.tile(STAND, (10, 1))).validate()


def test_body_round_trips_through_metadata():
    body = BodyConfig.default().replace(name="data:fly1", thc_mm=tuple(
        (x, y, z + 0.01) for x, y, z in c.TEMPLATE_THC_MM))
    motion = _motion(metadata={"body": body.to_dict()})
    assert motion.body == body
    assert _motion().body == BodyConfig.default()


def test_frames_slices_every_per_frame_array_and_keeps_the_rest(gait):
    flags = np.zeros((gait.num_frames, c.NUM_LEGS), dtype=bool)
    flags[12, 1] = True
    motion = gait.replace(underdetermined=flags, metadata={**gait.metadata, "note": "kept"})
    part = motion.frames(10, 30)
    assert part.num_frames == 20 and part.fps == motion.fps
    for name in ("joint_angles", "joint_velocities", "root_pos", "root_quat", "root_lin_vel",
                 "root_ang_vel", "fk_keypoints", "underdetermined"):
        original = getattr(motion, name)
        if original is not None:
            np.testing.assert_array_equal(getattr(part, name), original[10:30])
    assert part.keypoints is None and part.metadata == motion.metadata
    with pytest.raises(ValueError, match="T >= 2"):
        motion.frames(5, 6)


# Files -------------------------------------------------------------------------------------

def test_save_load_round_trip_all_fields(tmp_path, gait):
    kp = forward_kinematics(BodyConfig.default(), gait.joint_angles)
    kp[3, 2] = np.nan  # a tracking dropout survives the trip
    motion = gait.replace(keypoints=kp, ik_error=np.zeros((gait.num_frames, 6, 5)),
                          metadata={**gait.metadata, "note": "é ü"})
    path = save(motion, tmp_path / "walk")
    assert path.name == "walk.npz"
    again = load(path)
    for name in ("joint_angles", "root_pos", "root_quat", "fk_keypoints", "ik_error"):
        np.testing.assert_array_equal(getattr(again, name), getattr(motion, name))
    np.testing.assert_array_equal(again.keypoints, kp)
    assert again.metadata == motion.metadata and again.fps == motion.fps
    with np.load(path, allow_pickle=False) as archive:
        assert int(archive["schema_version"]) == 1
        assert json.loads(str(archive["metadata"]))["note"] == "é ü"


def test_save_refuses_to_overwrite_when_asked(tmp_path):
    path = save(_motion(), tmp_path / "a.npz")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="a.npz: exists"):
        save(_motion(num_frames=20), path, overwrite=False)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]  # no temp file left


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    np.savez(path, **arrays)


@pytest.mark.parametrize(("changes", "match"), [
    ({"schema_version": np.array(3)}, "schema_version 3 is newer"),
    ({"underdetermined": np.zeros((50, 6), bool)}, r"unknown keys \['underdetermined'\] for "
                                                   r"schema_version 1"),
    ({"fps": np.array(True)}, "fps must be one real number"),
    ({"fps": np.array(1e-6)}, r"fps must be a number in \[0.1, 1e\+06\] Hz"),
    ({"schema_version": np.array(1.5)}, "schema_version must be an integer"),
    ({"joint_angles": None}, r"missing keys \['joint_angles'\]"),
    ({"extra": np.zeros(3)}, r"unknown keys \['extra'\]"),
    ({"metadata": np.array("{not json")}, "metadata is not valid JSON"),
    ({"root_pos": np.zeros((3, 3))}, "root_pos must have shape"),
    ({"fps": np.array([1.0, 2.0])}, "bad.npz"),
])
def test_load_names_file_and_problem(tmp_path, changes, match):
    path = save(_motion(), tmp_path / "bad.npz")
    _rewrite(path, **changes)
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert "bad.npz" in str(info.value)


def test_load_rejects_non_npz(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    with pytest.raises(ValueError, match="x.npz: not a readable .npz"):
        load(path)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")
    with zipfile.ZipFile(tmp_path / "y.npz", "w") as z:
        z.writestr("a.npy", b"junk")
    with pytest.raises(ValueError, match="y.npz"):
        load(tmp_path / "y.npz")


# Resampling --------------------------------------------------------------------------------

def test_resample_interpolates_and_differentiates():
    fps, freq = 200.0, 3.0
    t = np.arange(201) / fps
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    angles = STAND + wave[:, None]
    root_pos = np.stack([5 * t, 0 * t, 0.9 + 0 * t], axis=1)
    yaw = 2.0 * t  # constant yaw rate of 2 rad/s
    root_quat = np.stack([np.cos(yaw / 2), 0 * t, 0 * t, np.sin(yaw / 2)], axis=1)
    motion = ReferenceMotion(fps=fps, joint_angles=angles, root_pos=root_pos,
                             root_quat=root_quat, keypoints=np.zeros((201, 6, 5, 3)))
    fine = resample(motion, 1e-3)
    assert fine.fps == pytest.approx(1000) and fine.num_frames == 1001
    assert fine.duration_s == pytest.approx(motion.duration_s)
    assert fine.keypoints is None  # per-frame measurements do not exist at the new times
    tf = np.arange(1001) * 1e-3
    inner = slice(50, -50)  # away from the filter's edges
    np.testing.assert_allclose(fine.joint_angles[inner, 1] - STAND[1],
                               0.3 * np.sin(2 * np.pi * freq * tf)[inner], atol=2e-4)
    np.testing.assert_allclose(fine.joint_velocities[inner, 1],
                               0.3 * 2 * np.pi * freq * np.cos(2 * np.pi * freq * tf)[inner],
                               rtol=0, atol=0.05)
    np.testing.assert_allclose(fine.root_lin_vel[inner], [[5, 0, 0]] * 901, atol=1e-6)
    np.testing.assert_allclose(fine.root_ang_vel[inner], [[0, 0, 2]] * 901, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(fine.root_quat, axis=1), 1, atol=1e-12)
    assert fine.metadata["resampled"]["from_fps"] == fps


def test_resample_keeps_missing_legs_nan_and_bounds():
    angles = np.tile(STAND, (30, 1))
    angles[:, 7:14] = np.nan
    tita = DOF_NAMES.index("LF_TiTa_pitch")
    angles[10:20, tita] = 0.0  # at its upper bound: a cubic would overshoot it
    motion = ReferenceMotion(fps=100, joint_angles=angles, metadata={"missing_legs": ["LM"]})
    fine = resample(motion, 2e-3, smooth_frames=0)
    assert np.isnan(fine.joint_angles[:, 7:14]).all()
    assert np.isnan(fine.joint_velocities[:, 7:14]).all()
    assert fine.joint_angles[:, tita].max() <= 0.0
    assert fine.missing_legs == ("LM",)
    fine.validate()


def test_resample_rejects_bad_dt():
    with pytest.raises(ValueError, match="dt must be"):
        resample(_motion(), -1)
    with pytest.raises(ValueError, match="longer than the clip"):
        resample(_motion(num_frames=3), 1.0)


# Embedded gait -----------------------------------------------------------------------------

def test_gait_keeps_stance_claws_on_the_ground(gait):
    body = gait.body
    kp = forward_kinematics(body, gait.joint_angles)
    np.testing.assert_allclose(kp, gait.fk_keypoints)
    claw_z = kp[..., 4, 2] + gait.root_pos[:, 2:3]  # world height of each claw
    t = np.arange(gait.num_frames) / gait.fps
    params = gait.metadata["generator"]
    phase = (t[:, None] * params["step_freq_hz"] + np.array([0, .5, 0, .5, 0, .5])) % 1
    stance = phase < params["duty"]
    assert np.abs(claw_z[stance]).max() < 1e-6
    assert claw_z[~stance].max() == pytest.approx(params["lift_mm"], rel=1e-3)
    assert claw_z.min() > -1e-6  # never through the floor
    # Stance claws stay still in the world (the thorax moves at the matching speed).
    claw_x_world = kp[..., 4, 0] + gait.root_pos[:, :1]
    vx = np.gradient(claw_x_world, t, axis=0)
    both = stance & np.roll(stance, 1, axis=0) & np.roll(stance, -1, axis=0)
    assert np.abs(vx[both]).max() < 0.05 * gait.metadata["speed_mm_s"]


def test_turning_gait_keeps_stance_claws_still_in_the_world():
    turn = -2.0  # rad/s, to the right
    gait = tripod_gait(duration_s=1.0, turn_rate_rad_s=turn)
    t = np.arange(gait.num_frames) / gait.fps
    yaw = Rotation.from_quat(np.array(gait.root_quat), scalar_first=True).as_euler("xyz")[:, 2]
    np.testing.assert_allclose(np.unwrap(yaw), turn * t, atol=1e-9)
    # The thorax moves along its heading at the generator's speed.
    vel = np.gradient(gait.root_pos[:, :2], t, axis=0)
    heading = np.stack([np.cos(turn * t), np.sin(turn * t)], axis=1)
    np.testing.assert_allclose(vel[1:-1], gait.metadata["speed_mm_s"] * heading[1:-1],
                               rtol=1e-3, atol=1e-3)
    claws_b = np.array(gait.fk_keypoints[..., 4, :])
    rotation = Rotation.from_quat(np.repeat(np.array(gait.root_quat), 6, axis=0),
                                  scalar_first=True)
    claws_w = (rotation.apply(claws_b.reshape(-1, 3)).reshape(claws_b.shape)
               + gait.root_pos[:, None])
    params = gait.metadata["generator"]
    phase = (t[:, None] * params["step_freq_hz"] + np.array([0, .5, 0, .5, 0, .5])) % 1
    stance = phase < params["duty"]
    inner = stance & np.roll(stance, 1, axis=0) & np.roll(stance, -1, axis=0)
    claw_vel = np.gradient(claws_w, t, axis=0)
    assert np.abs(claw_vel[inner]).max() < 0.05 * gait.metadata["speed_mm_s"]
    assert np.abs(claws_w[stance][:, 2]).max() < 1e-6


def test_gait_is_a_tripod_within_bounds(gait):
    gait.validate()
    q = gait.joint_angles.reshape(-1, 6, 7)
    # LF, RM, LH move together; RF, LM, RH are half a cycle (5 frames at 10 Hz, 500 fps) off.
    half = int(gait.fps / gait.metadata["generator"]["step_freq_hz"] / 2)
    np.testing.assert_allclose(q[half:, 3, 1], q[:-half, 0, 1], atol=1e-9)  # RF vs LF pitch
    assert np.ptp(q[:, 0, 1]) > 0.2  # the legs really move
    np.testing.assert_array_equal(tripod_gait(duration_s=1.0).joint_angles, gait.joint_angles)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"duty": 1.0}, "duty must be in"),
    ({"stride_mm": 0.0}, "stride_mm must be > 0"),
    ({"fps": 30.0}, "fps .* must be at least 4x"),
    ({"stride_mm": 3.0}, "cannot reach|outside the joint ranges"),
])
def test_gait_rejects_bad_parameters(kwargs, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        tripod_gait(duration_s=0.2, **kwargs)


def test_underdetermined_round_trips_as_schema_2(tmp_path):
    flags = np.zeros((50, 6), bool)
    flags[[3, 4], 2] = True
    path = save(_motion(underdetermined=flags), tmp_path / "u.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert int(archive["schema_version"]) == 2
    again = load(path)
    np.testing.assert_array_equal(again.underdetermined, flags)
    assert not again.underdetermined.flags.writeable
    assert load(save(_motion(), tmp_path / "plain.npz")).underdetermined is None


def test_load_refuses_a_header_claiming_more_than_the_file_holds(tmp_path):
    path = save(_motion(), tmp_path / "big.npz", compress=False)
    data = path.read_bytes()
    assert data.count(b"(50, 42)") == 1
    path.write_bytes(data.replace(b"(50, 42)", b"(90, 42)"))  # a truncated file looks so
    with pytest.raises(ValueError, match=r"big.npz: .*claims shape \(90, 42\) of float64 "
                                         r"\(30240 bytes\) but holds 16800"):
        load(path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**9, 42)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("joint_angles.npy", header.getvalue())
    with pytest.raises(ValueError, match=r"big.npz: .*'joint_angles.npy' claims shape "
                                         r"\(1000000000, 42\)"):
        load(path)


def test_atomic_write_names_the_file_on_a_full_disk(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*m\.npz'") as info:
        save(_motion(), tmp_path / "m.npz")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_only_atomic_write_leftovers(tmp_path):
    target = tmp_path / "clip.npz"
    stale = [tmp_path / ".clip.npz.ab_12xyz.tmp", tmp_path / ".clip.npz.00000000.tmp"]
    others = [".clip.npz.short.tmp", "clip.npz.abcdefgh.tmp", ".clip2.npz.abcdefgh.tmp",
              ".clip.npz.abcdefgh.tmp.bak"]
    for name in [*stale, *others]:
        (tmp_path / name).write_bytes(b"")
    assert stale_temporaries(target) == sorted(stale)
