"""The measured body (`--body data`): recovery, scale equivariance, honest metadata (issue 21)."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.body.kinematics import forward_kinematics
from flyenv.ik_preprocess import IkOptions, LmOptions, load_recording, run, solver
from flyenv.ik_preprocess.bodyfit import SOURCES, fit_body
from flyenv.motion import io as motion_io
from flyenv.motion.gait import tripod_gait

DF3D_1000 = DATA / "df3d_210902_PR_Fly1" / "pose_result__210902_PR_Fly1_aligned.pkl"
ANIPOSE = DATA / "anipose_220525_aJO_Fly001_001" / "pose3d_aligned.pkl"


@pytest.fixture(scope="module")
def gait():
    return tripod_gait(duration_s=1.0, fps=200.0)


@pytest.fixture(scope="module")
def walking():
    """(240, 6, 5, 3) keypoints of the DF3D walk."""
    return load_recording(DF3D_1000).keypoints[:240]


def _synthetic_fly(gait, size, seed, noise_mm=0.01, drop=0.05):
    """A fly `size` x the template with +-15% per segment and tarsi tilted up to 15 deg,
    walking the gait, tracked with noise, dropped keypoints and a claw lost for 20 frames; its
    body and (T, 6, 5, 3) keypoints."""
    rng = np.random.default_rng(seed)
    template = BodyConfig.default()
    factors = rng.uniform(0.85, 1.15, c.NUM_SEGMENTS)  # the same fly on both sides
    tilt = np.radians(rng.uniform(-15, 15, 3))
    body = template.replace(segment_lengths_mm=size * template.lengths * factors,
                            thc_mm=size * template.thc,
                            tarsus_tilt_rad=np.concatenate([tilt, -tilt]))  # mirrored
    keypoints = forward_kinematics(body, gait.joint_angles)
    keypoints = keypoints + noise_mm * size * rng.standard_normal(keypoints.shape)
    keypoints[rng.random(keypoints.shape[:3]) < drop] = np.nan
    keypoints[50:70, 2, 4] = np.nan
    return body, keypoints


@pytest.mark.parametrize(("size", "seed"), [(0.7, 0), (1.3, 1)])
def test_synthetic_flies_give_back_their_lengths_and_angles(gait, size, seed):
    truth, keypoints = _synthetic_fly(gait, size, seed)
    fit = fit_body(keypoints, BodyConfig.default())
    np.testing.assert_allclose(fit.body.lengths, truth.lengths, rtol=0.03)
    np.testing.assert_allclose(fit.body.thc, truth.thc, atol=0.01 * size)
    np.testing.assert_allclose(np.degrees(fit.body.tarsus_tilt), np.degrees(truth.tarsus_tilt),
                               atol=1.0)
    assert (fit.source == SOURCES.index("measured")).all()
    assert fit.scale == pytest.approx(size, rel=0.15)
    # The angles solved with the measured body are those the true body gives on the same
    # tracking (tracking noise moves both alike; the gait's own within 1e-6 deg without it).
    # Both solved as `--body data` solves: its default weights, the floor scaled with the fly.
    lm = IkOptions(body="data").solve_lm
    lm = dataclasses.replace(lm, error_floor_mm=lm.error_floor_mm * fit.scale)
    assert lm.keypoint_weights == solver.MEASURED_BODY_WEIGHTS
    bounds = truth.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    angles, determined = _solve(keypoints, fit.body, bounds, lm)
    with_truth, _ = _solve(keypoints, truth, bounds, lm)
    assert np.percentile(np.degrees(np.abs(angles - with_truth))[determined], 95) < 1.0
    exact = forward_kinematics(truth, gait.joint_angles)
    exact_fit = fit_body(exact, BodyConfig.default()).body
    np.testing.assert_allclose(exact_fit.tarsus_tilt, truth.tarsus_tilt, atol=1e-9)
    angles, _ = _solve(exact, exact_fit, bounds, lm)
    true = np.asarray(gait.joint_angles).reshape(angles.shape)
    assert np.degrees(np.abs(angles - true)).max() < 1e-6


def _solve(keypoints, body, bounds, lm):
    """lm angles (T, 6, 7) for a body with settings `lm`, and which the tracking determines."""
    filled, tracked = solver.fill_gaps(keypoints)
    args = (body.lengths, bounds)
    angles = solver.seqik(filled, *args, solver.SEQIKPY_SEED_RAD,
                          tarsus_tilt_rad=body.tarsus_tilt)
    angles = solver.lm(filled, *args, angles, keypoint_mask=tracked[..., 1:], options=lm,
                       tarsus_tilt_rad=body.tarsus_tilt)
    return angles, ~solver.undetermined_angles(tracked)


def test_the_tarsus_tilt_moves_only_the_claw(walking):
    """With the measured tilt, SeqIKPy's stages leave CTr, FTi and TiTa where they were and
    bring the claw nearer on frames the tilt was not measured on."""
    fit = fit_body(walking[::2], BodyConfig.default())
    assert np.degrees(np.abs(fit.body.tarsus_tilt)).max() > 3.0
    filled, _ = solver.fill_gaps(walking[1::2])
    args = (fit.body.lengths, fit.body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2))
    errors = {}
    for tilt in (None, fit.body.tarsus_tilt):
        angles = solver.seqik(filled, *args, solver.SEQIKPY_SEED_RAD, tarsus_tilt_rad=tilt)
        errors[tilt is None] = solver.fit_error(filled, fit.body.lengths, angles, tilt)
    planar, tilted = errors[True], errors[False]
    np.testing.assert_allclose(tilted[..., :4], planar[..., :4], atol=1e-12)
    assert tilted[..., 4].mean() < 0.85 * planar[..., 4].mean()


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(0.2, 5.0))
def test_the_body_scales_with_the_recording(scale):
    keypoints = load_recording(ANIPOSE).keypoints[::10]
    template = BodyConfig.default()
    fit, scaled = fit_body(keypoints, template), fit_body(keypoints * scale, template)
    np.testing.assert_allclose(scaled.body.lengths, scale * fit.body.lengths, rtol=1e-12)
    np.testing.assert_allclose(scaled.body.thc, scale * fit.body.thc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scaled.body.tarsus_tilt, fit.body.tarsus_tilt, atol=1e-9)
    assert scaled.scale == pytest.approx(scale * fit.scale, rel=1e-12)


def test_legs_and_segments_not_tracked_come_from_the_mirror_or_the_scaled_template():
    keypoints = load_recording(ANIPOSE).keypoints.copy()  # front legs only
    keypoints[:, 3, 4] = np.nan  # RF claw never tracked: its tarsus is LF's
    fit = fit_body(keypoints, BodyConfig.default())
    lengths, template = fit.body.lengths, BodyConfig.default().lengths
    assert SOURCES[fit.source[3, 3]] == "mirror" and lengths[3, 3] == lengths[0, 3]
    tilt = fit.body.tarsus_tilt  # RF's tilt is LF's mirrored; LM's and its mirror's unknown
    assert tilt[3] == -tilt[0] != 0 and tilt[1] == tilt[4] == 0
    assert fit.summary()["tarsus_tilt_frames"]["RF"] == 0
    assert [SOURCES[s] for s in fit.source[1]] == ["template"] * 4
    np.testing.assert_allclose(lengths[1:3], fit.scale * template[1:3])
    np.testing.assert_allclose(fit.body.thc[1:3], fit.scale * BodyConfig.default().thc[1:3])
    assert fit.summary()["source"]["RF"] == ["measured"] * 3 + ["mirror"]
    assert fit.summary()["spread_mm"]["LM"] == [None] * 4
    with pytest.raises(ValueError, match="no segment"):
        fit_body(np.full((3, 6, 5, 3), np.nan), BodyConfig.default())


def _write(path, keypoints):
    np.savez(path, keypoints=keypoints, leg_names=np.array(c.LEGS), fps=100.0)
    return path


def test_angles_do_not_change_with_the_size_of_the_fly(walking, tmp_path):
    motions = {}
    for scale in (1.0, 0.8, 1.2):
        path = _write(tmp_path / f"walk_{scale}.npz", walking * scale)
        report = run([path], tmp_path / f"out_{scale}", IkOptions(body="data"))
        motions[scale] = motion_io.load(report.files[0].output)
    for scale in (0.8, 1.2):
        np.testing.assert_allclose(motions[scale].body.lengths, scale * motions[1.0].body.lengths,
                                   rtol=1e-12)
        diff = np.degrees(np.abs(motions[scale].joint_angles - motions[1.0].joint_angles))
        assert diff.max() < 1e-4  # by construction: the lm floor scales with the body


def _solve_as_recorded(motion):
    """The angles (T, 6, 7) the output's recorded body and lm settings give, and those settings."""
    recorded = LmOptions(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in motion.metadata["ik"]["lm_used"].items()})
    body = BodyConfig.from_dict(motion.metadata["body"])
    filled, tracked = solver.fill_gaps(motion.keypoints)
    bounds = body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    angles = solver.seqik(filled, body.lengths, bounds, solver.SEQIKPY_SEED_RAD,
                          tarsus_tilt_rad=body.tarsus_tilt)
    angles = solver.lm(filled, body.lengths, bounds, angles, keypoint_mask=tracked[..., 1:],
                       options=recorded, tarsus_tilt_rad=body.tarsus_tilt)
    determined = ~solver.undetermined_angles(tracked).any(-1)
    np.testing.assert_allclose(motion.joint_angles.reshape(angles.shape)[determined],
                               angles[determined], atol=1e-12)
    return recorded


@pytest.mark.parametrize("weights", [None, (1.0, 2.0, 0.5, 4.0), solver.TEMPLATE_BODY_WEIGHTS],
                         ids=["default", "user", "user_template_default"])
def test_metadata_says_what_was_solved(walking, tmp_path, weights):
    """The output's body and solver settings reproduce its angles: weights the user set are
    used as set (the template body's default too), unset ones are the measured body's default,
    and the metadata records which."""
    lm = LmOptions(keypoint_weights=weights, iterations=5, error_floor_mm=0.02)
    path = _write(tmp_path / "walk.npz", walking[:60])
    motion = motion_io.load(run([path], tmp_path / "out", IkOptions(body="data", lm=lm))
                            .files[0].output)
    recorded = _solve_as_recorded(motion)
    # The weights solved with, the floor scaled with the fly's size (and recorded so).
    used = solver.MEASURED_BODY_WEIGHTS if weights is None else weights
    scale = motion.metadata["body_fit"]["scale_to_template"]
    assert recorded == dataclasses.replace(lm, keypoint_weights=used,
                                           error_floor_mm=0.02 * scale) and scale != 1.0
    assert motion.metadata["ik"]["keypoint_weights_set"] is (weights is not None)
    assert motion.metadata["ik"]["lm"]["keypoint_weights"] == list(used)
    body = BodyConfig.from_dict(motion.metadata["body"])
    assert body == motion.body and body.name == "data:walk.npz"
    assert motion.metadata["body_fit"]["method"] == "median segment distances, tarsus tilts"
    assert np.abs(body.tarsus_tilt).min() > 0  # measured, and used above
    if weights is not None:  # other weights give other angles: the setting was not ignored
        default = motion_io.load(run([path], tmp_path / "default",
                                     IkOptions(body="data", lm=dataclasses.replace(
                                         lm, keypoint_weights=None))).files[0].output)
        assert np.abs(default.joint_angles - motion.joint_angles).max() > 1e-3


def test_template_body_default_weights_are_recorded(walking, tmp_path):
    path = _write(tmp_path / "walk.npz", walking[:30])
    motion = motion_io.load(run([path], tmp_path / "out", IkOptions()).files[0].output)
    recorded = _solve_as_recorded(motion)
    assert recorded.keypoint_weights == solver.TEMPLATE_BODY_WEIGHTS == LmOptions().weights
    assert motion.metadata["ik"]["keypoint_weights_set"] is False


def test_default_weights_decide_resume():
    """An output solved with other weights is redone; the default and the same weights set by
    hand give the same result, so neither redoes the other."""
    default = IkOptions(body="data")
    same = IkOptions(body="data", lm=LmOptions(keypoint_weights=solver.MEASURED_BODY_WEIGHTS))
    record = json.loads(json.dumps(default.record()))  # as an output holds it
    assert default.differences(json.loads(json.dumps(same.record()))) == []
    assert same.differences(record) == []
    before = {**record, "lm": {**record["lm"], "keypoint_weights": [3.0, 1.0, 1.5, 6.0]}}
    assert default.differences(before) == [
        f"lm.keypoint_weights [3.0, 1.0, 1.5, 6.0], now {list(solver.MEASURED_BODY_WEIGHTS)}"]
    # The template body's default is what --body data solved with before: such a template
    # output is not redone.
    assert IkOptions().differences({**before, "body": "template"}) == []
    assert LmOptions().with_default_weights(measured_body=False).keypoint_weights == (
        solver.TEMPLATE_BODY_WEIGHTS)
    user = LmOptions(keypoint_weights=(1.0, 1.0, 1.0, 1.0))
    assert user.with_default_weights(measured_body=True) is user


def test_an_output_from_before_the_measured_body_default_is_refused_with_a_way_to_keep_it(
        walking, tmp_path):
    """A `--body data` output made before the measured body's default (weights 3 1 1.5 6, no
    `keypoint_weights_set`) is neither skipped nor overwritten by a plain resume: the file fails,
    naming the weights and how to keep it; with those weights set it is skipped."""
    path = _write(tmp_path / "walk.npz", walking[:30])
    out = tmp_path / "out"
    former = IkOptions(body="data", lm=LmOptions(keypoint_weights=solver.TEMPLATE_BODY_WEIGHTS))
    motion = motion_io.load(run([path], out, former).files[0].output)
    del motion.metadata["ik"]["keypoint_weights_set"]  # as flyenv wrote it before
    motion_io.save(motion, out / "walk.npz")
    before = (out / "walk.npz").read_bytes()
    result = run([path], out, IkOptions(body="data")).files[0]
    assert result.status == "failed", result.message
    assert ("lm.keypoint_weights [3.0, 1.0, 1.5, 6.0], now [1000.0, 100.0, 10.0, 1.0] (--body "
            "data's default weights were 3 1 1.5 6 before this version; --keypoint-weights "
            "3 1 1.5 6 keeps this output)") in result.message
    assert (out / "walk.npz").read_bytes() == before
    assert run([path], out, former).files[0].status == "skipped"
    # An output that recorded its weights as set (or a template body's) gets no such note.
    note = "default weights were"
    recorded = json.loads(json.dumps(former.record()))
    assert all(note not in d for d in IkOptions(body="data").differences(recorded))
    assert IkOptions(body="data").differences(recorded)


def test_cli_keypoint_weights_reach_the_solve_and_its_metadata(walking, tmp_path, capsys):
    from flyenv.cli import main

    path = _write(tmp_path / "walk.npz", walking[:40])
    assert main(["ik", str(path), "-o", str(tmp_path / "out"), "--body", "data",
                 "--keypoint-weights", "10", "5", "5", "1", "--quiet"]) == 0
    motion = motion_io.load(tmp_path / "out" / "walk.npz")
    assert motion.metadata["ik"]["lm_used"]["keypoint_weights"] == [10.0, 5.0, 5.0, 1.0]
    assert motion.metadata["ik"]["keypoint_weights_set"] is True
    assert main(["ik", str(path), "-o", str(tmp_path / "default"), "--body", "data",
                 "--quiet"]) == 0
    default = motion_io.load(tmp_path / "default" / "walk.npz")
    assert default.metadata["ik"]["lm_used"]["keypoint_weights"] == list(
        solver.MEASURED_BODY_WEIGHTS)
    assert default.metadata["ik"]["keypoint_weights_set"] is False
    assert np.abs(default.joint_angles - motion.joint_angles).max() > 1e-3
    _solve_as_recorded(default)
    assert main(["ik", str(path), "-o", str(tmp_path / "bad"),
                 "--keypoint-weights", "1", "-1", "1", "1"]) == 2
    assert "keypoint_weights must be 4 finite numbers >= 0" in capsys.readouterr().err


def test_a_measured_body_reused_from_an_output_solves_as_where_it_was_measured(walking, tmp_path):
    # `--body OUTPUT.npz`: a body measured by an earlier `--body data` run, applied to another
    # recording (here the same one) takes the measured body's default weights and a floor
    # scaled with the fly, as the run that measured it did, and says so in its metadata.
    path = _write(tmp_path / "walk.npz", walking[:60] * 0.8)
    measured = motion_io.load(run([path], tmp_path / "data", IkOptions(body="data"))
                              .files[0].output)
    options = IkOptions(template=measured.body)
    assert options.measured_body and not IkOptions().measured_body
    reused = motion_io.load(run([path], tmp_path / "reused", options).files[0].output)
    recorded = _solve_as_recorded(reused)
    assert recorded == LmOptions(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in measured.metadata["ik"]["lm_used"].items()})
    assert recorded.keypoint_weights == solver.MEASURED_BODY_WEIGHTS
    scale = measured.metadata["body_fit"]["scale_to_template"]
    assert recorded.error_floor_mm == pytest.approx(scale * LmOptions().error_floor_mm, rel=1e-9)
    assert scale < 0.9  # the recording was shrunk: the floor is not the template's
    assert reused.body == measured.body
    # The same body and settings: the angles agree up to the thorax frame, which the reused run
    # estimates with the measured body's ThC positions instead of the template's.
    diff = np.degrees(np.abs(reused.joint_angles - measured.joint_angles))
    assert np.nanpercentile(diff, 99) < 1.0
