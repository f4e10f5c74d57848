import os
import pickle

import numpy as np
import pytest
from conftest import SHARED_DATA

from flyenv.body import KEYPOINTS, LEGS
from flyenv.ik_preprocess import load_pickle_safely, load_recording

DF3D = SHARED_DATA / "df3d_210902_PR_Fly1" / "pose3d_aligned.pkl"
DF3D_NESTED = SHARED_DATA / "df3d_210902_PR_Fly1" / "pose_result__210902_PR_Fly1_aligned.pkl"
ANIPOSE = SHARED_DATA / "anipose_220525_aJO_Fly001_001" / "pose3d_aligned.pkl"
needs_data = pytest.mark.skipif(not DF3D.exists(), reason="../shared/data not present")


@needs_data
def test_reads_df3d_pickle_with_all_legs():
    rec = load_recording(DF3D)
    assert rec.keypoints.shape == (100, 6, 5, 3)
    assert rec.legs_present == LEGS and rec.missing_legs == ()
    with open(DF3D, "rb") as f:
        raw = pickle.load(f)  # trusted file: compare with the plain unpickler
    np.testing.assert_array_equal(rec.keypoints[:, LEGS.index("RM")], raw["RM_leg"])


@needs_data
def test_reads_anipose_pickle_with_front_legs_only():
    rec = load_recording(ANIPOSE)
    assert rec.num_frames == 6000
    assert rec.legs_present == ("LF", "RF")
    assert rec.missing_legs == ("LM", "LH", "RM", "RH")
    assert np.isnan(rec.keypoints[:, LEGS.index("LM")]).all()
    assert set(rec.extra) == {"R_head", "L_head", "Neck"}


@needs_data
def test_reads_nested_alignment_pickle():
    rec = load_recording(DF3D_NESTED)
    assert rec.keypoints.shape == (1000, 6, 5, 3)
    with open(DF3D_NESTED, "rb") as f:
        raw = pickle.load(f)
    np.testing.assert_array_equal(rec.keypoints[:, LEGS.index("LH"), 4],
                                  raw["LH_leg"]["Claw"]["raw_pos_aligned"])


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/flyenv-pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"RF_leg": np.zeros((3, 5, 3)), "x": _Boom()}))
    with pytest.raises(ValueError, match=r"evil.pkl: cannot load pickle: refused to load global "
                                         r"'(posix|os)\.system'"):
        load_recording(path)
    assert not os.path.exists("/tmp/flyenv-pwned")
    with pytest.raises(ValueError, match="refused to load global 'builtins.eval'"):
        path.write_bytes(b"cbuiltins\neval\n(S'1'\ntR.")
        load_pickle_safely(path)


def _write_pickle(path, data):
    path.write_bytes(pickle.dumps(data))
    return path


@pytest.mark.parametrize(("data", "match"), [
    ([1, 2, 3], "expected a dict of '<leg>_leg' arrays, got list"),
    ({"XX_leg": np.zeros((3, 5, 3))}, "field 'XX_leg': unknown leg 'XX'"),
    ({"RF_leg": np.zeros((3, 4, 3))}, r"field 'RF_leg' must have shape \(T, 5, 3\)"),
    ({"RF_leg": np.zeros((1, 5, 3))}, r"too few frames \(1\)"),
    ({"RF_leg": np.array([["a"] * 3] * 5)}, "field 'RF_leg' must be numeric"),
    ({"RF_leg": np.zeros((3, 5, 3)), "LF_leg": np.zeros((4, 5, 3))}, "different numbers"),
    ({"Thorax": np.zeros((3, 3))}, "no leg found"),
    ({"RF_leg": np.full((3, 5, 3), np.inf)}, "infinite values"),
    ({"RF_leg": {"Coxa": {}}}, "lacks 'raw_pos_aligned'"),
])
def test_pickle_errors_name_file_and_field(tmp_path, data, match):
    path = _write_pickle(tmp_path / "rec.pkl", data)
    with pytest.raises(ValueError, match=match) as info:
        load_recording(path)
    assert "rec.pkl" in str(info.value)


def test_nan_keypoints_are_kept(tmp_path):
    kp = np.random.default_rng(0).normal(size=(5, 5, 3))
    kp[2, 4] = np.nan
    rec = load_recording(_write_pickle(tmp_path / "r.pkl", {"LH_leg": kp}))
    assert np.isnan(rec.keypoints[2, LEGS.index("LH"), 4]).all()
    assert rec.legs_present == ("LH",)


def test_npz_round_trip_and_errors(tmp_path):
    kp = np.random.default_rng(1).normal(size=(4, 2, 5, 3))
    path = tmp_path / "r.npz"
    np.savez(path, keypoints=kp, leg_names=np.array(["RH", "LF"]), fps=np.array(250.0))
    rec = load_recording(path)
    assert rec.fps == 250.0 and rec.legs_present == ("LF", "RH")
    np.testing.assert_array_equal(rec.keypoints[:, LEGS.index("RH")], kp[:, 0])
    np.savez(path, keypoints=kp, leg_names=np.array(["RH"]))
    with pytest.raises(ValueError, match=r"r.npz: field 'keypoints' must have shape \(T, 1, 5"):
        load_recording(path)
    np.savez(path, keypoints=kp, leg_names=np.array(["RH", "QQ"]))
    with pytest.raises(ValueError, match="unknown leg 'QQ'"):
        load_recording(path)
    np.savez(path, keypoints=kp)
    with pytest.raises(ValueError, match="missing field 'leg_names'"):
        load_recording(path)


def _csv(path, legs, frames, time=True):
    header = (["frame", "time"] if time else []) + [
        f"{leg}_{kp}_{axis}" for leg in legs for kp in KEYPOINTS for axis in "xyz"]
    lines = [",".join(header)]
    for i, row in enumerate(frames):
        lines.append(",".join(([str(i), str(i / 100)] if time else []) + row))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_reads_legs_time_and_gaps(tmp_path):
    rows = [[str(0.01 * k + i) for k in range(30)] for i in range(3)]
    rows[1][4] = ""  # RM_ThC_y... a dropped keypoint
    rec = load_recording(_csv(tmp_path / "r.csv", ["RM", "LF"], rows))
    assert rec.fps == pytest.approx(100.0)
    assert rec.legs_present == ("LF", "RM")
    assert rec.keypoints[0, LEGS.index("RM"), 0, 0] == 0.0
    assert np.isnan(rec.keypoints[1, LEGS.index("RM"), 1, 1])
    np.testing.assert_allclose(rec.keypoints[2, LEGS.index("LF"), 4, 2], 0.01 * 29 + 2)


def test_csv_errors(tmp_path):
    rows = [["1"] * 15 for _ in range(3)]
    rows[2][3] = "abc"
    with pytest.raises(ValueError, match=r"r.csv: row 4, column 'RF_CTr_x': 'abc' is not a"):
        load_recording(_csv(tmp_path / "r.csv", ["RF"], rows, time=False))
    path = tmp_path / "p.csv"
    path.write_text("RF_ThC_x,RF_ThC_y\n1,2\n3,4\n")
    with pytest.raises(ValueError, match="leg RF has only some of its columns"):
        load_recording(path)
    path.write_text("RF_Knee_x\n1\n2\n")
    with pytest.raises(ValueError, match=r"unknown columns \['RF_Knee_x'\]"):
        load_recording(path)
    path.write_text("RF_ThC_x\n")
    with pytest.raises(ValueError, match="at least 2 frames"):
        load_recording(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "r.h5").write_text("")
    with pytest.raises(ValueError, match=r"r.h5: unknown recording format '.h5'"):
        load_recording(tmp_path / "r.h5")
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_recording(tmp_path / "nope.pkl")
