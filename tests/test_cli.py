import subprocess
import sys

import mujoco
import numpy as np
import pytest

from flyenv.body import DOF_NAMES, BodyConfig
from flyenv.cli import main
from flyenv.motion import load, save
from flyenv.sim import track_reference


def test_model_prints_42_dofs_and_writes_loadable_mjcf(tmp_path, capsys):
    out = tmp_path / "sub" / "fly.xml"
    assert main(["model", "--tethered", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tethered" in text and "total mass 1.0240 mg" in text
    for name in DOF_NAMES:
        assert name in text
    model = mujoco.MjModel.from_xml_path(str(out))
    assert model.nu == 42 and model.nq == 42


def test_model_builds_the_body_of_a_motion(tmp_path, capsys, gait):
    body = BodyConfig.default().replace(segment_lengths_mm=((0.5, 0.7, 0.5, 0.6),) * 6)
    path = save(gait.replace(metadata={**gait.metadata, "body": body.to_dict()}),
                tmp_path / "m.npz")
    out = tmp_path / "fly.xml"
    assert main(["model", "--body", str(path), "--output", str(out)]) == 0
    model = mujoco.MjModel.from_xml_path(str(out))
    np.testing.assert_allclose(model.body("LF_Femur").pos, [0, 0, -0.5])


def test_model_reports_bad_body_file(tmp_path, capsys):
    bad = tmp_path / "body.json"
    bad.write_text('{"schema_version": 1, "thc_mm": []}')
    assert main(["model", "--body", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "body.json" in err and "missing keys" in err


def test_demo_runs_the_pipeline_and_writes_its_artefacts(tmp_path):
    import imageio.v2 as imageio

    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "flyenv.cli", "demo", "--output", str(out),
                             "--duration", "0.3"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for stage in ("1. keypoints", "2. IK", "3. replay", "4. vector env"):
        assert stage in result.stdout
    motion = load(out / "reference_tripod.npz")
    assert motion.ik_error is not None and motion.num_frames == 151
    assert np.nanmean(motion.ik_error) < 0.02  # noise is 5 um
    for png in (out / "ik_fit_tripod.png", out / "tracking.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frames = imageio.mimread(out / "imitation.mp4")
    assert len(frames) == 151 and frames[0].shape == (360, 480, 3)  # reset + 150 steps
    assert str(out / "imitation.mp4") in result.stdout

    # The same with a recording of one's own, and `flyenv replay` on the reference.
    own = tmp_path / "own"
    assert main(["demo", "--output", str(own), "--recording",
                 str(out / "keypoints_tripod.npz")]) == 0
    assert sorted(p.name for p in own.iterdir()) == [
        "ik_fit_keypoints_tripod.png", "imitation.mp4", "reference_keypoints_tripod.npz",
        "tracking.png"]
    assert main(["replay", str(own / "reference_keypoints_tripod.npz"), "--steps", "5",
                 "--output", str(tmp_path / "r.mp4")]) == 0
    assert len(imageio.mimread(tmp_path / "r.mp4")) == 6


def test_tracking_the_gait(gait):
    tethered = track_reference(gait, tethered=True)
    assert tethered.root_pos is None and tethered.num_steps == 10_000
    assert np.sqrt(np.mean(tethered.tracking_rms_deg() ** 2)) < 1.5
    free = track_reference(gait)
    walked = free.root_pos[-1, 0] - free.root_pos[0, 0]
    assert 0.5 * 9.99 < walked < 1.1 * 9.99  # the reference walks 10 mm in 1 s
    assert 0.6 < free.root_pos[:, 2].min() and free.root_pos[:, 2].max() < 1.0


def test_tracking_holds_missing_legs_in_standing_pose(gait):
    angles = np.array(gait.joint_angles)
    angles[:, 35:42] = np.nan
    motion = gait.replace(joint_angles=angles, fk_keypoints=None,
                          metadata={**gait.metadata, "missing_legs": ["RH"]})
    result = track_reference(motion, tethered=True)
    assert np.isnan(result.tracking_rms_deg()[35:]).all()
    assert np.isfinite(result.joint_angles).all()
    with pytest.raises(ValueError, match="record_every"):
        track_reference(motion, record_every=0)
