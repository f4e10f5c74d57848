import json

import numpy as np
import pytest
from ikpy.chain import Chain
from ikpy.link import OriginLink, URDFLink

from flyenv.body import (
    DOF_NAMES,
    FLYGYM_DOF_NAMES,
    LEGS,
    BodyConfig,
    forward_kinematics,
    from_flygym,
    leg_forward_kinematics,
    to_flygym,
)
from flyenv.body import constants as c


def test_dof_names_are_legs_times_joints_in_documented_order():
    assert len(DOF_NAMES) == 42
    assert DOF_NAMES[:7] == ("LF_ThC_yaw", "LF_ThC_pitch", "LF_ThC_roll", "LF_CTr_pitch",
                             "LF_CTr_roll", "LF_FTi_pitch", "LF_TiTa_pitch")
    assert [n.split("_")[0] for n in DOF_NAMES[::7]] == list(LEGS)
    assert LEGS == ("LF", "LM", "LH", "RF", "RM", "RH")


def test_default_template_matches_body_md():
    body = BodyConfig.default()
    lengths = dict(zip(LEGS, body.lengths, strict=True))
    np.testing.assert_allclose(lengths["LF"], [0.425, 0.706, 0.518, 0.663], atol=1e-12)
    np.testing.assert_allclose(lengths["RM"], [0.182, 0.783, 0.668, 0.695], atol=1e-12)
    np.testing.assert_allclose(lengths["RH"], [0.199, 0.836, 0.685, 0.795], atol=1e-12)
    kp = body.zero_pose_keypoints()
    np.testing.assert_allclose(kp[LEGS.index("RF"), 4], [0.35, -0.27, -1.912], atol=1e-12)
    np.testing.assert_allclose(kp[LEGS.index("RH"), 0], [-0.215, -0.087, -0.073], atol=1e-12)
    np.testing.assert_allclose(kp, np.asarray(c.TEMPLATE_KEYPOINTS_MM), atol=1e-12)
    bounds = dict(zip(DOF_NAMES, np.degrees(body.bounds), strict=True))
    np.testing.assert_allclose(bounds["RM_ThC_roll"], [-180, 0])
    np.testing.assert_allclose(bounds["LH_CTr_pitch"], [-180, 0])
    np.testing.assert_allclose(bounds["LF_ThC_pitch"], [-90, 90])
    np.testing.assert_allclose(bounds["RH_TiTa_pitch"], [-180, 0])


def test_config_json_round_trip_and_hash():
    body = BodyConfig.default()
    scaled = body.replace(segment_lengths_mm=tuple(tuple(1.1 * x for x in leg)
                                                   for leg in body.segment_lengths_mm),
                          name="scaled")
    again = BodyConfig.from_json(scaled.to_json())
    assert again == scaled and hash(again) == hash(scaled)
    assert again != body
    rebuilt = BodyConfig.from_keypoints(body.zero_pose_keypoints(), name=body.name)
    np.testing.assert_allclose(rebuilt.lengths, body.lengths, atol=1e-12)
    np.testing.assert_array_equal(rebuilt.thc, body.thc)


@pytest.mark.parametrize(("change", "match"), [
    ({"schema_version": 99}, "schema_version"),
    ({"colour": "red"}, "unknown keys"),
    ({"legs": ["RF", "RM", "RH", "LF", "LM", "LH"]}, "legs must be"),
    ({"legs": 6}, "legs must be"),  # a TypeError before
    ({"segment_lengths_mm": [[0.1, 0.2, 0.3]] * 6}, r"must have shape \(6, 4\)"),
    ({"segment_lengths_mm": [[0.1, -0.2, 0.3, 0.4]] * 6}, "LF_Femur"),
    ({"joint_bounds_rad": [[1.0, -1.0]] * 42}, "lower <= upper"),
    ({"thc_mm": "nope"}, "thc"),
    ({"tarsus_tilt_rad": [0.1] * 5}, r"tarsus_tilt_rad must have shape \(6,\)"),
    ({"tarsus_tilt_rad": [2.0] * 6}, r"within \(-pi/2, pi/2\)"),
    ({"tarsus_tilt_rad": None}, r"missing keys \['tarsus_tilt_rad'\]"),  # schema 2 has it
])
def test_config_from_dict_rejects_bad_input(change, match):
    data = {k: v for k, v in {**BodyConfig.default().to_dict(), **change}.items()
            if v is not None}
    with pytest.raises(ValueError, match=match) as raised:
        BodyConfig.from_dict(data, source="body.json")
    assert str(raised.value).startswith("body.json: ")  # the file is named


def test_tarsus_tilt_round_trips_and_version_1_bodies_have_none():
    tilted = BodyConfig.default().replace(tarsus_tilt_rad=(0.1, -0.2, 0.0, -0.1, 0.2, 0.3))
    assert BodyConfig.from_json(tilted.to_json()) == tilted != BodyConfig.default()
    old = BodyConfig.default().to_dict()
    del old["tarsus_tilt_rad"]
    old["schema_version"] = 1
    assert BodyConfig.from_dict(old) == BodyConfig.default()


def test_tilted_tarsus_turns_the_claw_out_of_the_leg_plane():
    """The claw sits L sin(tilt) along the TiTa pitch axis off the plane of CTr, FTi and TiTa;
    the zero pose, the segment lengths and the Jacobian agree with it."""
    tilt = np.array([0.3, -0.2, 0.1, -0.3, 0.2, -0.1])
    body = BodyConfig.default().replace(tarsus_tilt_rad=tuple(tilt))
    np.testing.assert_allclose(forward_kinematics(body, np.zeros(42)),
                               body.zero_pose_keypoints(), atol=1e-12)
    q = np.random.default_rng(2).uniform(-2, 2, (4, 6, 7))
    points = leg_forward_kinematics(body.thc, body.lengths, q, tilt)
    np.testing.assert_allclose(np.linalg.norm(np.diff(points, axis=-2), axis=-1),
                               np.broadcast_to(body.lengths, (4, 6, 4)), atol=1e-12)
    planar = leg_forward_kinematics(body.thc, body.lengths, q)
    np.testing.assert_array_equal(points[..., :4, :], planar[..., :4, :])
    normal = np.cross(planar[..., 2, :] - planar[..., 1, :], planar[..., 3, :] - planar[..., 2, :])
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    off_plane = np.abs(((points[..., 4, :] - planar[..., 3, :]) * normal).sum(-1))
    np.testing.assert_allclose(off_plane, np.broadcast_to(body.lengths[:, 3] * np.abs(np.sin(tilt)),
                                                          off_plane.shape), atol=1e-9)
    from flyenv.body.kinematics import leg_jacobian

    _, jacobian = leg_jacobian(body.thc, body.lengths, q, tilt)
    step = 1e-6 * np.eye(7)
    numeric = np.stack([(leg_forward_kinematics(body.thc, body.lengths, q + d, tilt)
                         - leg_forward_kinematics(body.thc, body.lengths, q - d, tilt)) / 2e-6
                        for d in step], axis=-1)
    np.testing.assert_allclose(jacobian, numeric, atol=1e-8)


def test_config_from_dict_names_missing_keys_and_source():
    data = BodyConfig.default().to_dict()
    del data["thc_mm"]
    with pytest.raises(ValueError, match=r"body.json: missing keys \['thc_mm'\]"):
        BodyConfig.from_dict(data, source="body.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BodyConfig.from_json("{", source="body.json")


def test_forward_kinematics_zero_pose_is_template_and_batches():
    body = BodyConfig.default()
    np.testing.assert_allclose(forward_kinematics(body, np.zeros(42)),
                               body.zero_pose_keypoints(), atol=1e-12)
    q = np.random.default_rng(0).uniform(-1, 1, (2, 3, 42))
    out = forward_kinematics(body, q)
    assert out.shape == (2, 3, 6, 5, 3)
    np.testing.assert_allclose(out[1, 2], forward_kinematics(body, q[1, 2]))
    # Segment lengths are preserved by any pose.
    np.testing.assert_allclose(np.linalg.norm(np.diff(out, axis=-2), axis=-1),
                               np.broadcast_to(body.lengths, (2, 3, 6, 4)), atol=1e-12)
    with pytest.raises(ValueError, match=r"must have shape \(\.\.\., 42\)"):
        forward_kinematics(body, np.zeros(41))


def test_forward_kinematics_nan_leg_stays_local():
    q = np.array(c.STANDING_POSE_RAD)
    q[7:14] = np.nan
    kp = forward_kinematics(BodyConfig.default(), q)
    assert np.isnan(kp[1, 1:]).all()
    assert np.isfinite(np.delete(kp, 1, axis=0)).all()


def _ikpy_leg_chain(thc, lengths):
    # SeqIKPy's chain as ikpy builds it: yaw (x), pitch (y), roll (z) at ThC, ...
    links = [OriginLink()]
    spec = [("ThC_yaw", thc, [1, 0, 0]), ("ThC_pitch", [0, 0, 0], [0, 1, 0]),
            ("ThC_roll", [0, 0, 0], [0, 0, 1]), ("CTr_pitch", [0, 0, -lengths[0]], [0, 1, 0]),
            ("CTr_roll", [0, 0, 0], [0, 0, 1]), ("FTi_pitch", [0, 0, -lengths[1]], [0, 1, 0]),
            ("TiTa_pitch", [0, 0, -lengths[2]], [0, 1, 0])]
    for name, origin, axis in spec:
        links.append(URDFLink(name, origin_translation=np.asarray(origin, float),
                              origin_orientation=np.zeros(3), rotation=np.asarray(axis, float)))
    links.append(URDFLink("Claw", origin_translation=np.array([0, 0, -lengths[3]]),
                          origin_orientation=np.zeros(3), joint_type="fixed"))
    return Chain(links, active_links_mask=[False] + [True] * 7 + [False])


def test_forward_kinematics_matches_ikpy_chain():
    body = BodyConfig.default()
    rng = np.random.default_rng(1)
    for legid in (0, 4):
        chain = _ikpy_leg_chain(body.thc[legid], body.lengths[legid])
        for _ in range(3):
            q = rng.uniform(-np.pi, np.pi, 7)
            ikpy_claw = chain.forward_kinematics([0, *q, 0])[:3, 3]
            ours = leg_forward_kinematics(body.thc[legid], body.lengths[legid], q)
            np.testing.assert_allclose(ours[4], ikpy_claw, atol=1e-12)


def test_flygym_conversion_negates_right_yaw_and_roll():
    q = np.arange(42, dtype=float) + 1
    fg = to_flygym(q)
    names = dict(zip(FLYGYM_DOF_NAMES, fg, strict=True))
    assert names["c_thorax-lf_coxa-yaw"] == q[0]
    assert names["c_thorax-rf_coxa-yaw"] == -q[21]
    assert names["c_thorax-rf_coxa-pitch"] == q[22]
    assert names["c_thorax-rm_coxa-roll"] == -q[30]
    assert names["rh_coxa-rh_trochanterfemur-roll"] == -q[39]
    assert names["rh_tibia-rh_tarsus1-pitch"] == q[41]
    np.testing.assert_array_equal(from_flygym(fg), q)


def test_from_flygym_reorders_and_ignores_extra_dofs():
    q = np.random.default_rng(2).normal(size=(5, 42))
    fg = to_flygym(q)
    order = np.random.default_rng(3).permutation(42)
    names = [FLYGYM_DOF_NAMES[i] for i in order] + ["joint_Head_yaw"]
    shuffled = np.concatenate([fg[:, order], np.zeros((5, 1))], axis=1)
    np.testing.assert_allclose(from_flygym(shuffled, names), q)
    with pytest.raises(ValueError, match="lacks FlyGym DOFs"):
        from_flygym(fg[:, 1:], FLYGYM_DOF_NAMES[1:])
    with pytest.raises(ValueError, match="to match dof_names"):
        from_flygym(fg[:, 1:])


def test_body_config_json_is_plain():
    data = json.loads(BodyConfig.default().to_json())
    assert data["dof_names"] == list(DOF_NAMES)
    assert len(data["joint_bounds_rad"]) == 42


def test_leg_jacobian_matches_finite_differences():
    from flyenv.body.kinematics import leg_jacobian

    body = BodyConfig.default()
    q = np.random.default_rng(4).uniform(-2, 2, (3, 6, 7))
    keypoints, jacobian = leg_jacobian(body.thc, body.lengths, q)
    assert jacobian.shape == (3, 6, 5, 3, 7)
    np.testing.assert_allclose(keypoints, leg_forward_kinematics(body.thc, body.lengths, q))
    numeric = np.empty_like(jacobian)
    for j in range(7):
        dq = np.zeros(7)
        dq[j] = 1e-6
        numeric[..., j] = (leg_forward_kinematics(body.thc, body.lengths, q + dq)
                           - leg_forward_kinematics(body.thc, body.lengths, q - dq)) / 2e-6
    np.testing.assert_allclose(jacobian, numeric, atol=1e-8)
    assert not jacobian[..., 0, :, :].any()  # nothing moves ThC
    assert not jacobian[..., 1, :, 3:].any()  # CTr moves only with the ThC joints
    assert not jacobian[..., 3, :, 6].any()  # TiTa pitch moves only the claw
    assert jacobian[..., 4, :, 6].any()
