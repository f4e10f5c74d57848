import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from conftest import DATA

from flyenv.body import KEYPOINTS, LEGS
from flyenv.ik_preprocess import RecordingError, load_pickle_safely, load_recording

DF3D = DATA / "df3d_210902_PR_Fly1" / "pose3d_aligned.pkl"
DF3D_NESTED = DATA / "df3d_210902_PR_Fly1" / "pose_result__210902_PR_Fly1_aligned.pkl"
ANIPOSE = DATA / "anipose_220525_aJO_Fly001_001" / "pose3d_aligned.pkl"



def test_reads_df3d_pickle_with_all_legs():
    rec = load_recording(DF3D)
    assert rec.keypoints.shape == (100, 6, 5, 3)
    assert rec.legs_present == LEGS and rec.missing_legs == ()
    with open(DF3D, "rb") as f:
        raw = pickle.load(f)  # trusted file: compare with the plain unpickler
    np.testing.assert_array_equal(rec.keypoints[:, LEGS.index("RM")], raw["RM_leg"])


def test_reads_anipose_pickle_with_front_legs_only():
    rec = load_recording(ANIPOSE)
    assert rec.num_frames == 600
    assert rec.legs_present == ("LF", "RF")
    assert rec.missing_legs == ("LM", "LH", "RM", "RH")
    assert np.isnan(rec.keypoints[:, LEGS.index("LM")]).all()
    assert set(rec.extra) == {"R_head", "L_head", "Neck"}


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


# Hostile and odd inputs: each is a valid recording or a RecordingError naming the file -------

@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_of_plain_arrays_loads(tmp_path, protocol):
    kp = np.random.default_rng(protocol).normal(size=(4, 5, 3))
    path = tmp_path / "r.pkl"
    path.write_bytes(pickle.dumps({"RF_leg": kp, "Neck": np.ones((1, 1, 3))}, protocol=protocol))
    rec = load_recording(path)
    np.testing.assert_array_equal(rec.keypoints[:, LEGS.index("RF")], kp)


@pytest.mark.parametrize(("data", "match"), [
    # numpy.ndarray called directly would allocate any shape (here 10^12 bytes).
    (b"\x80\x02cnumpy\nndarray\n(\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85tR.", "not callable"),
    # A bytes8 claiming 10^12 bytes, which CPython would allocate before reading.
    (b"\x80\x04\x8e" + (10**12).to_bytes(8, "little") + b"ab.", "expected 1000000000000 bytes"),
    # A memo index CPython would grow its memo list to.
    (b"\x80\x02]r\xff\xff\xff\xff.", "memo index 4294967295"),
    # _codecs.encode is admitted for latin1 only.
    (b"c_codecs\nencode\n(Vx\nVrot13\ntR.", r"encode\(str, 'latin1'\)"),
    (b"", "pickle exhausted"),
])
def test_hostile_pickles_are_refused_without_allocating(tmp_path, data, match):
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(RecordingError, match=match) as info:
        load_recording(path)
    assert str(path) in str(info.value)


def test_pickled_array_larger_than_its_data_is_refused(tmp_path):
    # The state tuple of an ndarray claims (10^6, 5, 3) float64 with 120 bytes of data.
    data = pickle.dumps({"RF_leg": np.zeros((1, 5, 3))}, protocol=2)
    assert data.count(b"K\x01K\x05K\x03\x87") == 1  # BININT1 1, 5, 3, TUPLE3
    data = data.replace(b"K\x01K\x05K\x03\x87", b"J" + (10**6).to_bytes(4, "little")
                        + b"K\x05K\x03\x87")
    path = tmp_path / "big.pkl"
    path.write_bytes(data)
    with pytest.raises(RecordingError, match=r"claims 120000000 bytes but the pickle holds 120"):
        load_recording(path)


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(("fps", "match"), [
    (np.array([]), r"field 'fps' must be one number \[Hz\], got shape \(0,\)"),
    (np.array([100.0, 50.0]), r"got shape \(2,\)"),
    (np.array(True), "field 'fps' must hold real numbers"),
    (np.array(1e-300), r"frame rate 1e-300 Hz is outside \[1, 100000\] Hz"),
    (np.array(np.inf), "frame rate inf Hz"),
    (np.array(100 + 1j), "got dtype complex128"),
])
def test_npz_frame_rate_must_be_one_plausible_number(tmp_path, fps, match):
    path = tmp_path / "r.npz"
    path.write_bytes(_npz_bytes(keypoints=np.zeros((3, 1, 5, 3)), leg_names=np.array(["RF"]),
                                fps=fps))
    with pytest.raises(RecordingError, match=match):
        load_recording(path)
    # An option widens the range.
    if fps.dtype == float and fps.shape == () and 0 < fps < 1:
        assert load_recording(path, fps_range=(0.0, 1.0)).fps == fps


def test_npz_header_claiming_terabytes_is_refused_before_reading(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**7, 6, 5, 3)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("keypoints.npy", header.getvalue() + bytes(64))
    with pytest.raises(RecordingError, match=r"field 'keypoints': the header claims shape "
                                             r"\(10000000, 6, 5, 3\) of float64 \(7200000000 "
                                             r"bytes\) but the entry holds 64 bytes"):
        load_recording(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("keypoints.npy", header.getvalue().replace(b"10000000", b"99999999"))
    with pytest.raises(RecordingError, match="more than the 900000000 allowed"):
        load_recording(path)


@pytest.mark.parametrize(("keypoints", "match"), [
    (np.zeros((3, 5, 3), complex), "must be numeric .* got dtype complex128"),
    (np.zeros((3, 5, 3), bool), "got dtype bool"),
    (np.full((3, 5, 3), 1e30), "coordinates beyond 10000 mm"),
])
def test_pickle_values_must_be_plausible_coordinates(tmp_path, keypoints, match):
    with pytest.raises(RecordingError, match=match):
        load_recording(_write_pickle(tmp_path / "r.pkl", {"RF_leg": keypoints}))


@pytest.mark.parametrize(("times", "match"), [
    (["0", "5e-324", "1e-323"], "frame rate inf Hz"),
    (["0", "1e30", "2e30"], "frame rate 1e-30 Hz"),
    (["0", "0.01", "nan"], "'time' must increase"),
])
def test_csv_frame_rate_must_be_plausible(tmp_path, times, match):
    header = ["time"] + [f"RF_{kp}_{axis}" for kp in KEYPOINTS for axis in "xyz"]
    lines = [",".join(header)] + [",".join([t] + ["1"] * 15) for t in times]
    path = tmp_path / "r.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError, match=match):
        load_recording(path)


def test_csv_not_utf8_and_repeated_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"RF_ThC_x\n\xff\xfe\n1\n")
    with pytest.raises(RecordingError, match="r.csv: not UTF-8 text"):
        load_recording(path)
    path.write_text("RF_ThC_x,RF_ThC_x\n1,2\n3,4\n")
    with pytest.raises(RecordingError, match=r"columns \['RF_ThC_x'\] appear more than once"):
        load_recording(path)


def test_a_recording_with_nothing_tracked_is_refused(tmp_path):
    # Found by the fuzz test: an all-NaN file loaded as a recording with no leg at all.
    import numpy as np

    from flyenv.ik_preprocess import RecordingError, load_recording

    path = tmp_path / "empty.npz"
    np.savez(path, keypoints=np.full((4, 2, 5, 3), np.nan), leg_names=np.array(["LF", "RF"]))
    with pytest.raises(RecordingError, match="empty.npz.*no keypoint of any leg"):
        load_recording(path)
