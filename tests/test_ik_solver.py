import json

import numpy as np
import pytest
from conftest import DATA
from ikpy.chain import Chain
from ikpy.link import OriginLink, URDFLink

from flyenv.body import BodyConfig, leg_forward_kinematics
from flyenv.body import constants as c
from flyenv.ik_preprocess import IkOptions, align, load_pickle_safely, load_recording, solver

DF3D = DATA / "df3d_210902_PR_Fly1" / "pose3d_aligned.pkl"
ANIPOSE = DATA / "anipose_220525_aJO_Fly001_001"
# SeqIKPy on DF3D (its tutorial's locomotion config), as measured for the issue: pooled
# CTr/FTi/TiTa/Claw FK error mean and p95 [mm].
SEQIKPY_DF3D_POOLED = (0.0577, 0.2099)


def _body_arrays(body, legs):
    return (body.lengths[legs], body.bounds.reshape(6, 7, 2)[legs],
            solver.SEQIKPY_SEED_RAD[legs])


@pytest.fixture(scope="module")
def df3d():
    keypoints = load_recording(DF3D).keypoints
    lengths, bounds, seed = _body_arrays(BodyConfig.default(), list(range(6)))
    angles = solver.seqik(keypoints, lengths, bounds, seed)
    return keypoints, lengths, bounds, seed, angles


def _anipose_body():
    # SeqIKPy's default NeuroMechFly config, front legs (what produced leg_joint_angles.pkl).
    lengths = np.array([[0.40, 0.69, 0.54, 0.63]] * 2)
    lf = [(-50, 50), (-40, 60), (-50, 130), (-180, 0), (0, 150), (0, 170), (-150, 0)]
    rf = [(-50, 50), (-40, 60), (-130, 50), (-180, 0), (-150, 0), (0, 170), (-150, 0)]
    return lengths, np.radians([lf, rf]), solver.SEQIKPY_SEED_RAD[[0, 3]]


def _pooled(error):
    distal = error[..., 1:]
    return distal.mean(), np.percentile(distal, 95)


def test_round_trip_recovers_keypoints():
    body = BodyConfig.default()
    rng = np.random.default_rng(0)
    bounds = body.bounds.reshape(6, 7, 2)
    # Keep clear of the +-180 deg ends so a sample is not a hair from wrapping, and on the
    # seed's side of the two mirror solutions of stages 2 and 3 (rolls within 1 rad of the
    # seed's, CTr pitch < 0, FTi pitch > 0, as in real legs): a stage-wise fit cannot tell the
    # mirrors apart, and takes the one nearer the seed, as SeqIKPy's warm start does.
    lo, hi = np.maximum(bounds[..., 0], -3.0), np.minimum(bounds[..., 1], 3.0)
    for joint in (2, 4):
        lo[..., joint] = np.maximum(lo[..., joint], solver.SEQIKPY_SEED_RAD[:, joint] - 1.0)
        hi[..., joint] = np.minimum(hi[..., joint], solver.SEQIKPY_SEED_RAD[:, joint] + 1.0)
    hi[..., 3], lo[..., 5] = -0.05, 0.05
    angles = rng.uniform(lo, hi, size=(200, 6, 7))
    keypoints = leg_forward_kinematics(body.thc, body.lengths, angles)
    lengths, _, seed = _body_arrays(body, list(range(6)))
    sequential = solver.seqik(keypoints, lengths, bounds, seed)
    joint = solver.lm(keypoints, lengths, bounds, sequential)
    for result in (sequential, joint):
        assert np.abs(solver.fit_error(keypoints, lengths, result)).max() < 1e-6
        assert (result >= bounds[..., 0] - 1e-12).all() and (result <= bounds[..., 1] + 1e-12).all()


def test_seqik_reproduces_seqikpy_error_on_df3d(df3d):
    keypoints, lengths, _, _, angles = df3d
    mean, p95 = _pooled(solver.fit_error(keypoints, lengths, angles))
    np.testing.assert_allclose((mean, p95), SEQIKPY_DF3D_POOLED, atol=1e-4)


def test_seqik_matches_seqikpy_angles_on_anipose():
    keypoints = load_recording(ANIPOSE / "pose3d_aligned.pkl").keypoints[:, [0, 3]]
    lengths, bounds, seed = _anipose_body()
    ours = solver.seqik(keypoints, lengths, bounds, seed)
    saved = load_pickle_safely(ANIPOSE / "leg_joint_angles.pkl")
    theirs = np.stack([np.stack([saved[f"Angle_{leg}_{joint}"] for joint in c.JOINTS], -1)
                       for leg in ("LF", "RF")], 1)
    diff = np.degrees(np.abs(np.angle(np.exp(1j * (ours - theirs)))))
    match = (diff < 0.01).all(-1)
    # SeqIKPy's optimizer stops early on some frames (its error there is >= ours): 1% of the
    # 6000 frames of the full recording, 4% of the 600 most active ones shipped here.
    assert match.mean() > 0.95
    fk = load_pickle_safely(ANIPOSE / "forward_kinematics.pkl")
    theirs_fk = np.stack([fk[f"{leg}_leg"][:, [0, 4, 6, 7, 8]] for leg in ("LF", "RF")], 1)
    their_error = np.linalg.norm(theirs_fk - keypoints, axis=-1)
    our_error = solver.fit_error(keypoints, lengths, ours)
    assert our_error[~match].sum() <= their_error[~match].sum()
    # SeqIKPy's FK carries its optimizer's last digits (~1e-5 mm).
    np.testing.assert_allclose(our_error[match], their_error[match], atol=1e-4)


def _ikpy_stage_chain(lengths, fixed, stage, bounds):
    """SeqIKPy's chain for one stage: earlier angles fixed, the stage's joints free."""
    _, joints = solver._STAGES[stage]
    free = [j for j in joints if j is not None]
    # The first joint of a segment sits at the end of the previous one.
    offsets = {3: lengths[0], 5: lengths[1], 6: lengths[2]}
    links, active = [OriginLink()], [False]
    for j in range(max(free) + 1):
        translation = [0.0, 0.0, -offsets.get(j, 0.0)]
        axis = np.asarray(c.JOINT_AXES[j])
        if j in free:
            links.append(URDFLink(c.JOINTS[j], origin_translation=translation,
                                  origin_orientation=np.zeros(3), rotation=axis,
                                  bounds=tuple(bounds[j])))
        else:
            links.append(URDFLink(c.JOINTS[j], origin_translation=translation,
                                  origin_orientation=axis * fixed[j], joint_type="fixed"))
        active.append(j in free)
    end = [0.0, 0.0, -lengths[c.JOINT_SEGMENT[max(free)]]]
    links.append(URDFLink("end", origin_translation=end, origin_orientation=np.zeros(3),
                          joint_type="fixed"))
    return Chain(links, active_links_mask=[*active, False]), free


def test_seqik_matches_ikpy_oracle_stage_by_stage(df3d):
    keypoints, lengths, bounds, seed, ours = df3d
    compared = converged = 0
    for legid in (0, 2, 4):
        warm = {}
        for t in range(20):
            for stage, (kpid, _) in enumerate(solver._STAGES):
                chain, free = _ikpy_stage_chain(lengths[legid], ours[t, legid], stage,
                                                bounds[legid])
                start = np.zeros(len(chain.links))
                for j in free:
                    start[j + 1] = warm.get(j, seed[legid, j])
                target = keypoints[t, legid, kpid] - keypoints[t, legid, 0]
                result = chain.inverse_kinematics(target, initial_position=start)
                theirs = np.array([result[j + 1] for j in free])
                for j, value in zip(free, theirs, strict=True):
                    warm[j] = value
                reached = np.linalg.norm(chain.forward_kinematics(result)[:3, 3] - target)
                mine = start.copy()
                mine[[j + 1 for j in free]] = ours[t, legid, free]
                our_reach = np.linalg.norm(chain.forward_kinematics(mine)[:3, 3] - target)
                assert our_reach <= reached + 1e-9
                compared += 1
                if reached <= our_reach + 1e-7:  # ikpy converged to the optimum
                    converged += 1
                    diff = np.degrees(np.abs(np.angle(np.exp(1j * (theirs - ours[t, legid,
                                                                                 free])))))
                    assert diff.max() < 0.01, (legid, t, stage, diff)
    assert converged >= 0.9 * compared


def test_lm_beats_seqik_on_pooled_error_within_per_keypoint_cap(df3d):
    keypoints, lengths, bounds, _, seeded = df3d
    angles = solver.lm(keypoints, lengths, bounds, seeded)
    before = solver.fit_error(keypoints, lengths, seeded)
    after = solver.fit_error(keypoints, lengths, angles)
    assert _pooled(after)[0] < 0.85 * _pooled(before)[0]
    assert _pooled(after)[1] < 0.85 * _pooled(before)[1]
    per_keypoint = after[..., 1:].mean((0, 1)) / before[..., 1:].mean((0, 1))
    assert (per_keypoint <= 1.1).all(), per_keypoint


def test_lm_on_anipose_keeps_each_keypoint_within_ten_percent():
    keypoints = load_recording(ANIPOSE / "pose3d_aligned.pkl").keypoints[:, [0, 3]]
    lengths, bounds, seed = _anipose_body()
    seeded = solver.seqik(keypoints, lengths, bounds, seed)
    before = solver.fit_error(keypoints, lengths, seeded)
    after = solver.fit_error(keypoints, lengths, solver.lm(keypoints, lengths, bounds, seeded))
    assert _pooled(after)[0] < 0.9 * _pooled(before)[0]
    assert (after[..., 1:].mean((0, 1)) <= 1.1 * before[..., 1:].mean((0, 1))).all()


def test_lm_ignores_untracked_keypoints(df3d):
    keypoints, lengths, bounds, _, seeded = df3d
    clean = solver.lm(keypoints, lengths, bounds, seeded)
    corrupted = keypoints.copy()
    corrupted[10, 1, 4] += 5.0  # a wild claw, flagged as untracked
    mask = np.ones((*keypoints.shape[:2], 4), dtype=bool)
    mask[10, 1, 3] = False
    angles = solver.lm(corrupted, lengths, bounds, seeded, keypoint_mask=mask)
    # Frames are independent without smoothness: the others are untouched...
    np.testing.assert_array_equal(np.delete(angles, 10, 0), np.delete(clean, 10, 0))
    # ... and the flagged frame still fits its tracked keypoints as well as the seed does.
    error = solver.fit_error(keypoints, lengths, angles)[10, 1, 1:4]
    assert (error <= solver.fit_error(keypoints, lengths, seeded)[10, 1, 1:4] * 1.5 + 1e-3).all()


def test_smoothness_reduces_frame_to_frame_jumps(df3d):
    keypoints, lengths, bounds, _, seeded = df3d
    plain = solver.lm(keypoints, lengths, bounds, seeded)
    smooth = solver.lm(keypoints, lengths, bounds, seeded,
                       options=solver.LmOptions(smoothness=1e-3))
    assert np.abs(np.diff(smooth, axis=0)).mean() < np.abs(np.diff(plain, axis=0)).mean()


def test_singular_target_keeps_previous_angle():
    body = BodyConfig.default()
    lengths, bounds, seed = _body_arrays(body, [0])
    angles = np.tile(np.radians([10, 20, 30, -100, 40, 90, -40]), (3, 1, 1))
    angles[1, 0, 3] = 0.0  # femur straight on from the coxa: ThC roll is undetermined
    keypoints = leg_forward_kinematics(body.thc[[0]], lengths, angles)
    result = solver.seqik(keypoints, lengths, bounds, seed)
    assert result[1, 0, 2] == pytest.approx(result[0, 0, 2])
    assert solver.fit_error(keypoints, lengths, result).max() < 1e-9


def test_fill_gaps_and_interpolate_frames():
    keypoints = np.arange(5 * 1 * 5 * 3, dtype=float).reshape(5, 1, 5, 3)
    holes = keypoints.copy()
    holes[2, 0, 3] = np.nan
    filled, tracked = solver.fill_gaps(holes)
    np.testing.assert_allclose(filled, keypoints)
    assert not tracked[2, 0, 3] and tracked.sum() == 24
    angles = np.arange(5.0)[:, None, None] * np.ones((1, 1, 7))
    angles[2] = 99.0
    out = solver.interpolate_frames(angles, np.array([[0], [0], [1], [0], [0]], bool))
    np.testing.assert_allclose(out[:, 0, 0], np.arange(5.0))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"keypoint_weights": (1, 1, 1)}, "keypoint_weights"),
    ({"smoothness": -1}, "smoothness"),
    ({"error_floor_mm": 0}, "error_floor_mm"),
])
def test_lm_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solver.LmOptions(**kwargs)


def test_lm_options_take_weights_as_any_sequence_of_numbers():
    """Weights from numpy or from an output's JSON record (a list) are the same settings as a
    tuple: equal, hashable, and recorded as JSON."""
    as_tuple = solver.LmOptions(keypoint_weights=(1.0, 2.0, 0.5, 4.0))
    for weights in (np.array([1, 2, 0.5, 4]), [1, 2, 0.5, 4]):
        options = solver.LmOptions(keypoint_weights=weights)
        assert options == as_tuple and hash(options) == hash(as_tuple)
        assert json.loads(json.dumps(IkOptions(lm=options).record()))["lm"][
            "keypoint_weights"] == [1.0, 2.0, 0.5, 4.0]
    with pytest.raises(ValueError, match="keypoint_weights must be 4 finite numbers"):
        solver.LmOptions(keypoint_weights=("a", 1, 1, 1))


def test_solver_checks_shapes(df3d):
    keypoints, lengths, bounds, seed, _ = df3d
    with pytest.raises(ValueError, match="lengths_mm"):
        solver.seqik(keypoints, lengths[:2], bounds, seed)
    with pytest.raises(ValueError, match=r"\(T, L, 5, 3\)"):
        solver.seqik(keypoints[..., :2], lengths, bounds, seed)


def test_align_pins_thc_and_scales_to_body():
    body = BodyConfig.default()
    raw = load_recording(DATA / "df3d_210902_PR_Fly1" /
                         "pose_result__210902_PR_Fly1_aligned.pkl").keypoints
    moved = raw * 1.7 + np.array([3.0, -1.0, 0.5])
    aligned, scale = align.align_to_body(moved, body)
    np.testing.assert_allclose(aligned[:, :, 0], np.broadcast_to(body.thc, aligned[:, :, 0].shape))
    # SeqIKPy's scale: body coxa + femur + tibia over the recording's robust lengths.
    measured = align.segment_lengths(moved)[:, :3].sum(-1)
    np.testing.assert_allclose(scale, body.lengths[:, :3].sum(-1) / measured)
    np.testing.assert_allclose(scale * 1.7, align.align_to_body(raw, body)[1])
    # With a still ThC (as in the 100-frame file) the aligned legs have the body's length.
    still = load_recording(DF3D).keypoints * 0.5
    aligned, _ = align.align_to_body(still, body)
    np.testing.assert_allclose(align.segment_lengths(aligned)[:, :3].sum(-1),
                               body.lengths[:, :3].sum(-1))


def test_body_from_recording_is_symmetric_and_buildable():
    from flyenv.body import build_model

    keypoints = load_recording(ANIPOSE / "pose3d_aligned.pkl").keypoints
    base = BodyConfig.default()
    body = align.body_from_recording(keypoints, base, name="data:test")
    half = c.NUM_LEGS // 2
    np.testing.assert_allclose(body.lengths[:half], body.lengths[half:])
    # Front legs are measured; the untracked middle and hind legs keep the template's numbers.
    assert not np.allclose(body.lengths[0], base.lengths[0])
    np.testing.assert_allclose(body.lengths[1:3], base.lengths[1:3])
    np.testing.assert_allclose(body.thc[0], [0.33, 0.17, 1.07], atol=1e-9)
    model = build_model(body)
    assert model.nu == c.NUM_DOFS + c.NUM_LEGS  # the joints', then the tarsi's adhesion


@pytest.mark.parametrize("solve", [solver.seqik, solver.lm])
def test_keypoints_of_a_wrong_shape_get_the_shape_error(solve):
    """The tilt's leg count is read after the shape checks (an IndexError before)."""
    with pytest.raises(ValueError, match="must have shape"):
        solve(np.zeros(5), np.ones((1, 4)), np.zeros((1, 7, 2)), np.zeros((1, 7)),
              tarsus_tilt_rad=np.zeros(1))
