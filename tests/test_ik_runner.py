import os
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA

from flyenv.body import BodyConfig
from flyenv.body import constants as c
from flyenv.cli import main
from flyenv.ik_preprocess import IkOptions, LmOptions, load_recording, run
from flyenv.ik_preprocess import runner as ik_runner
from flyenv.ik_preprocess.thorax import estimate_thorax_pose
from flyenv.motion import io as motion_io

DF3D_1000 = DATA / "df3d_210902_PR_Fly1" / "pose_result__210902_PR_Fly1_aligned.pkl"
ANIPOSE = DATA / "anipose_220525_aJO_Fly001_001" / "pose3d_aligned.pkl"


def _write_npz(path, keypoints, legs=c.LEGS, fps=100.0):
    np.savez(path, keypoints=keypoints, leg_names=np.array(legs), fps=fps)
    return path


@pytest.fixture(scope="module")
def walking():
    """(T, 6, 5, 3) keypoints of 240 frames of the 1000-frame DF3D recording."""
    return load_recording(DF3D_1000).keypoints[:240]


@pytest.fixture(scope="module")
def serial(walking, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serial")
    path = _write_npz(folder / "walk.npz", walking)
    report = run([path], folder / "out", IkOptions())
    return motion_io.load(report.files[0].output)


def _angles(report):
    return motion_io.load(report.files[0].output).joint_angles


def test_output_carries_angles_keypoints_fk_and_metadata(serial, walking):
    assert serial.joint_angles.shape == (240, 42) and np.isfinite(serial.joint_angles).all()
    # The keypoints are stored in the canonical thorax frame (a tethered fly: one transform).
    thorax = estimate_thorax_pose(walking, BodyConfig.default().thc, 100.0)
    assert not thorax.moving and not serial.has_root
    np.testing.assert_allclose(serial.keypoints, thorax.to_thorax(walking))
    assert serial.metadata["thorax"]["root_motion"] is False
    # fk_keypoints are the chain of the solved angles, from the tracked ThC.
    np.testing.assert_allclose(serial.ik_error, np.linalg.norm(serial.fk_keypoints
                                                               - serial.keypoints, axis=-1))
    assert serial.ik_error[..., 1:].mean() < 0.06
    assert serial.bound_violations() == []
    assert serial.metadata["ik"]["solver"] == "lm" and serial.fps == 100.0
    assert serial.metadata["missing_legs"] == []


@pytest.mark.parametrize("options", [
    IkOptions(chunk_frames=37, overlap_frames=5),
    IkOptions(chunk_frames=100, overlap_frames=20, lm=LmOptions(smoothness=1e-3)),
    IkOptions(solver="seqik", chunk_frames=1, overlap_frames=0),
])
def test_chunked_equals_serial(walking, tmp_path, options):
    path = _write_npz(tmp_path / "walk.npz", walking)
    whole = IkOptions(solver=options.solver, lm=options.lm)
    expected = _angles(run([path], tmp_path / "whole", whole))
    chunked = _angles(run([path], tmp_path / "chunked", options))
    assert np.degrees(np.abs(chunked - expected)).max() < 0.01


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_parallel_backends_match_serial(serial, walking, tmp_path, backend):
    path = _write_npz(tmp_path / "walk.npz", walking)
    report = run([path], tmp_path / "out", IkOptions(chunk_frames=60), n_jobs=2,
                 backend=backend)
    np.testing.assert_allclose(_angles(report), serial.joint_angles, atol=np.radians(0.01))


def test_dask_backend_on_a_local_cluster(serial, walking, tmp_path):
    distributed = pytest.importorskip("distributed")
    path = _write_npz(tmp_path / "walk.npz", walking)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        report = run([path], tmp_path / "out", IkOptions(chunk_frames=50), backend="dask",
                     client=client)
    np.testing.assert_allclose(_angles(report), serial.joint_angles, atol=np.radians(0.01))


def test_missing_legs_stay_nan_and_listed(tmp_path):
    report = run([ANIPOSE], tmp_path, IkOptions(fps=100.0))
    motion = motion_io.load(report.files[0].output)
    assert motion.missing_legs == ("LM", "LH", "RM", "RH")
    front = [c.DOF_NAMES.index(f"{leg}_{j}") for leg in ("LF", "RF") for j in c.JOINTS]
    assert np.isfinite(motion.joint_angles[:, front]).all()
    assert np.isnan(np.delete(motion.joint_angles, front, axis=1)).all()


def test_untracked_keypoints_are_ignored_flagged_and_gaps_interpolated(serial, walking,
                                                                       tmp_path):
    holes = walking.copy()
    holes[50, 0, 4] = np.nan  # LF claw lost for one frame
    holes[120, 3, 1:] = np.nan  # RF: nothing beyond the ThC tracked
    path = _write_npz(tmp_path / "holes.npz", holes)
    motion = motion_io.load(run([path], tmp_path / "out", IkOptions()).files[0].output)
    assert np.isfinite(motion.joint_angles).all()
    assert np.isnan(motion.keypoints[50, 0, 4]).all() and np.isnan(motion.ik_error[50, 0, 4])
    assert motion.metadata["interpolated_frames"] == {"RF": [120]}
    assert motion.metadata["frames_with_untracked_keypoints"]["LF"] == 1
    rf = slice(3 * 7, 4 * 7)
    np.testing.assert_allclose(motion.joint_angles[120, rf],
                               0.5 * (motion.joint_angles[119, rf] + motion.joint_angles[121, rf]))
    # Frames without holes are solved exactly as before.
    untouched = np.setdiff1d(np.arange(240), [50, 120])
    np.testing.assert_array_equal(motion.joint_angles[untouched], serial.joint_angles[untouched])


def test_align_and_data_body_are_recorded(walking, tmp_path):
    path = _write_npz(tmp_path / "walk.npz", walking * 1.3)
    motion = motion_io.load(run([path], tmp_path / "a", IkOptions(align=True)).files[0].output)
    np.testing.assert_allclose(motion.keypoints[:, :, 0], np.broadcast_to(
        motion.body.thc, motion.keypoints[:, :, 0].shape))
    assert motion.ik_error[..., 1:].mean() < 0.06
    measured = motion_io.load(run([path], tmp_path / "d", IkOptions(body="data")).files[0]
                              .output)
    assert measured.metadata["body"]["name"] == "data:walk.npz"
    # The body was measured from the scaled recording, so its legs are 1.3x the template's.
    ratio = measured.body.lengths.sum(-1) / IkOptions().template.lengths.sum(-1)
    assert np.all((ratio > 1.2) & (ratio < 1.4))
    assert measured.ik_error[..., 1:].mean() < 0.06


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda k: k.__setitem__((slice(None), 2, 3), np.nan),
     r"field 'LH_leg': keypoint\(s\) \['TiTa'\]"),
])
def test_unfittable_leg_is_a_clear_error(walking, tmp_path, mutate, match):
    bad = walking.copy()
    mutate(bad)
    path = _write_npz(tmp_path / "bad.npz", bad)
    report = run([path], tmp_path / "out", IkOptions())
    assert report.files[0].status == "failed"
    assert str(path) in report.files[0].message
    assert pytest.importorskip("re").search(match, report.files[0].message)
    assert not (tmp_path / "out" / "bad.npz").exists()


def test_frame_rate_errors(walking, tmp_path):
    no_fps = tmp_path / "nofps.npz"
    np.savez(no_fps, keypoints=walking, leg_names=np.array(c.LEGS))
    report = run([no_fps], tmp_path / "out", IkOptions())
    assert "carries no frame rate" in report.files[0].message
    clash = _write_npz(tmp_path / "clash.npz", walking, fps=50.0)
    report = run([clash], tmp_path / "out", IkOptions(fps=100.0))
    assert "the file says 50 fps but 100 was given" in report.files[0].message


def test_bad_options_and_name_clashes(walking, tmp_path):
    with pytest.raises(ValueError, match="solver"):
        IkOptions(solver="newton")
    with pytest.raises(ValueError, match="chunk_frames"):
        IkOptions(chunk_frames=0)
    (tmp_path / "a").mkdir()
    one = _write_npz(tmp_path / "a" / "walk.npz", walking)
    with pytest.raises(ValueError, match="would both write"):
        run([one, tmp_path / "a" / ".." / "a" / "walk.npz"], tmp_path / "out")
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "walk.npz").write_bytes(one.read_bytes())
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'}: no recording"):
        run([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ValueError, match="backend"):
        run([one], tmp_path / "out", backend="spark")


def test_chunks_cover_every_frame_once():
    spans = ik_runner.chunks(103, 25, 7)
    assert [s[:2] for s in spans] == [(0, 25), (25, 50), (50, 75), (75, 100), (100, 103)]
    assert spans[1][2:] == (18, 57) and spans[-1][2:] == (93, 103)


def test_cli_end_to_end_and_resume(walking, tmp_path, capsys):
    inputs = [_write_npz(tmp_path / f"clip{i}.npz", walking[:40 + 10 * i]) for i in range(3)]
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"not a pickle")
    out = tmp_path / "out"
    code = main(["ik", *map(str, inputs[:2]), str(broken), "-o", str(out), "--plot", "--quiet"])
    printed = capsys.readouterr()
    assert code == 1
    assert "2 written, 1 failed" in printed.out and "skipped" not in printed.out
    assert "Claw" in printed.out and "broken.pkl" in printed.err
    assert (out / "clip0.png").exists() and (out / "clip1.npz").exists()
    assert not (out / "broken.npz").exists()
    before = os.stat(out / "clip0.npz").st_mtime_ns
    # Resume: the finished outputs are kept, only the new recording is solved (chunking and
    # workers do not change a result).
    code = main(["ik", *map(str, inputs), "-o", str(out), "--quiet", "--workers", "2",
                 "--chunk-frames", "25"])
    printed = capsys.readouterr()
    assert code == 0 and "1 written, 2 skipped" in printed.out
    assert os.stat(out / "clip0.npz").st_mtime_ns == before
    # Other options: refused by name, the old result kept, until --overwrite redoes it.
    code = main(["ik", str(inputs[0]), "-o", str(out), "--quiet", "--solver", "seqik",
                 "--body", "data"])
    printed = capsys.readouterr()
    assert code == 1 and "0 written, 1 failed" in printed.out and "skipped" not in printed.out
    assert (f"{inputs[0]}: {out / 'clip0.npz'} exists and was made from this recording with "
            f"other options (solver lm, now seqik; body template, now data)") in printed.err
    assert os.stat(out / "clip0.npz").st_mtime_ns == before
    code = main(["ik", str(inputs[0]), "-o", str(out), "--quiet", "--overwrite", "--solver",
                 "seqik"])
    assert code == 0 and "1 written" in capsys.readouterr().out
    assert os.stat(out / "clip0.npz").st_mtime_ns != before
    assert motion_io.load(out / "clip0.npz").metadata["ik"]["solver"] == "seqik"


def test_cli_body_file_and_bad_option(walking, tmp_path, capsys):
    body = tmp_path / "body.json"
    body.write_text(IkOptions().template.replace(name="mine").to_json())
    clip = _write_npz(tmp_path / "clip.npz", walking[:30])
    assert main(["ik", str(clip), "-o", str(tmp_path / "out"), "--body", str(body),
                 "--quiet"]) == 0
    assert motion_io.load(tmp_path / "out" / "clip.npz").metadata["body"]["name"] == "mine"
    assert main(["ik", str(clip), "-o", str(tmp_path / "o2"), "--chunk-frames", "0"]) == 2
    assert "chunk_frames" in capsys.readouterr().err


def test_untracked_tita_or_claw_is_interpolated_and_listed(serial, walking, tmp_path):
    holes = walking.copy()
    holes[60:71, 0, 4] = np.nan  # LF claw lost for 11 frames: its TiTa pitch is free
    holes[100:106, 4, 3] = np.nan  # RM TiTa lost: CTr roll, FTi pitch, TiTa pitch are free
    path = _write_npz(tmp_path / "holes.npz", holes)
    motion = motion_io.load(run([path], tmp_path / "out", IkOptions()).files[0].output)
    expected = np.zeros((240, 6), bool)
    expected[60:71, 0] = expected[100:106, 4] = True
    np.testing.assert_array_equal(motion.underdetermined, expected)
    assert motion.metadata["underdetermined_frames"] == {leg: int(expected[:, i].sum())
                                                         for i, leg in enumerate(c.LEGS)}
    tita = motion.joint_angles[:, c.DOF_NAMES.index("LF_TiTa_pitch")]
    # Linear between the last and next frames where the claw was tracked, never the bound (0).
    np.testing.assert_allclose(tita[60:71], np.interp(np.arange(60, 71), [59, 71],
                                                      tita[[59, 71]]))
    assert tita[60:71].max() < -0.1
    rm = [c.DOF_NAMES.index(f"RM_{j}") for j in ("CTr_roll", "FTi_pitch", "TiTa_pitch")]
    for dof in rm:
        np.testing.assert_allclose(motion.joint_angles[100:106, dof], np.interp(
            np.arange(100, 106), [99, 106], motion.joint_angles[[99, 106], dof]))
    # The other angles of those frames are fitted to the keypoints still tracked.
    assert motion.ik_error[60:71, 0, 1:4].max() < 2 * serial.ik_error[:, 0, 1:4].max()
    assert np.isnan(motion.ik_error[60:71, 0, 4]).all()


def _bad_inputs(folder, walking):
    good = _write_npz(folder / "zz_good.npz", walking[:30])
    good_bytes = good.read_bytes()
    pickled = folder / "flipped.pkl"
    import pickle

    data = bytearray(pickle.dumps({"RF_leg": walking[:10, 3]}, protocol=2))
    data[40] ^= 0xFF
    pickled.write_bytes(bytes(data))
    (folder / "empty.npz").write_bytes(b"")
    (folder / "truncated.npz").write_bytes(good_bytes[: len(good_bytes) // 2])
    np.savez(folder / "nofps.npz", keypoints=walking[:10], leg_names=np.array(c.LEGS),
             fps=np.array([]))
    np.savez(folder / "slow.npz", keypoints=walking[:10], leg_names=np.array(c.LEGS),
             fps=np.array(1e-300))
    return [folder / n for n in ("empty.npz", "truncated.npz", "nofps.npz", "slow.npz",
                                 "flipped.pkl")]


@pytest.mark.parametrize(("workers", "backend"), [(1, "loky"), (2, "loky"), (2, "threading")])
def test_a_batch_writes_every_good_file_and_reports_every_bad_one(walking, tmp_path, workers,
                                                                   backend):
    bad = _bad_inputs(tmp_path, walking)
    good = [_write_npz(tmp_path / f"good{i}.npz", walking[:20 + i]) for i in range(3)]
    inputs = [good[0], *bad[:3], good[1], *bad[3:], good[2]]
    report = run(inputs, tmp_path / "out", IkOptions(chunk_frames=8), n_jobs=workers,
                 backend=backend)
    status = {r.path.name: r.status for r in report.files}
    assert [r.path for r in report.files] == inputs
    assert {n for n, s in status.items() if s == "written"} == {p.name for p in good}
    for result in report.failed:
        assert str(result.path) in result.message
    assert {r.path for r in report.failed} == set(bad)
    for path in good:
        assert motion_io.load(tmp_path / "out" / path.name).num_frames == int(path.stem[-1]) + 20


def test_a_failing_job_fails_its_file_only(walking, tmp_path, monkeypatch):
    from flyenv.ik_preprocess import jobs

    solve = jobs.solve_job

    def flaky(job):
        if job.file_id == 0 and job.leg == "RM":
            raise np.linalg.LinAlgError("Singular matrix")
        return solve(job)

    monkeypatch.setattr(jobs, "solve_job", flaky)  # what the workers' solve_job_safely calls
    paths = [_write_npz(tmp_path / f"c{i}.npz", walking[:20]) for i in range(2)]
    report = run(paths, tmp_path / "out", IkOptions(chunk_frames=5))
    assert [r.status for r in report.files] == ["failed", "written"]
    assert report.files[0].message.startswith(f"{paths[0]}: IK of leg RM, frames 0-5 failed: "
                                              f"LinAlgError: Singular matrix")
    assert not (tmp_path / "out" / "c0.npz").exists()


def test_resume_redoes_corrupt_outputs_and_removes_stale_temporaries(walking, tmp_path):
    paths = [_write_npz(tmp_path / f"c{i}.npz", walking[:20]) for i in range(3)]
    out = tmp_path / "out"
    run(paths, out)
    data = (out / "c1.npz").read_bytes()
    (out / "c1.npz").write_bytes(data[: len(data) // 3])  # a crash mid-copy
    stale = out / ".c2.npz.k3_x9abc.tmp"
    stale.write_bytes(data[:100])
    keep = out / ".notes.txt.tmp"
    keep.write_text("not ours")
    report = run(paths, out)
    assert [r.status for r in report.files] == ["skipped", "written", "skipped"]
    assert "c1.npz did not load, so it was redone" in report.files[1].message
    assert motion_io.load(out / "c1.npz").num_frames == 20
    assert report.removed_temporaries == [stale] and not stale.exists() and keep.exists()


def test_unwritable_output_is_a_per_file_error(walking, tmp_path, monkeypatch):
    import errno
    import pathlib

    paths = [_write_npz(tmp_path / f"c{i}.npz", walking[:20]) for i in range(2)]

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "mkdir", read_only)
        report = run(paths, tmp_path / "ro" / "out")
    assert [r.status for r in report.files] == ["failed", "failed"]
    assert all(f"cannot create the output folder {tmp_path / 'ro' / 'out'}" in r.message
               and "Read-only file system" in r.message for r in report.files)
    calls = []

    def full_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_once)
    report = run(paths, tmp_path / "out")
    assert [r.status for r in report.files] == ["failed", "written"]
    assert f"No space left on device: '{tmp_path / 'out' / 'c0.npz'}'" in report.files[0].message


def test_fps_range_option(walking, tmp_path):
    slow = _write_npz(tmp_path / "slow.npz", walking[:20], fps=0.5)
    report = run([slow], tmp_path / "out", IkOptions())
    assert r"frame rate 0.5 Hz is outside [1, 100000] Hz" in report.files[0].message
    report = run([slow], tmp_path / "out", IkOptions(fps_range=(0.1, 1e3)))
    assert report.files[0].status == "written"
    with pytest.raises(ValueError, match="fps must be in fps_range"):
        IkOptions(fps=1e6)


def test_planning_and_stitching_are_pure_and_order_free(gait):
    # The jobs of a recording own disjoint frames of one leg each; stitching them in any order
    # gives the same arrays, and every frame of every present leg is written once.
    from flyenv.ik_preprocess.jobs import Solution, plan_jobs, solve_job, stitch
    from flyenv.ik_preprocess.solver import LmOptions, fill_gaps

    keypoints = gait.fk_keypoints[:60].copy()
    keypoints[:, 5] = np.nan  # RH missing
    filled, tracked = fill_gaps(keypoints)
    jobs = plan_jobs(0, filled, tracked, [0, 1, 2, 3, 4], gait.body, "seqik", LmOptions(), 25,
                     5)
    assert len(jobs) == 3 * 5 and {j.leg for j in jobs} == {"LF", "LM", "LH", "RF", "RM"}
    results = [solve_job(job) for job in jobs]
    forward, backward = Solution.empty(60), Solution.empty(60)
    for result in results:
        stitch(forward, result)
    for result in reversed(results):
        stitch(backward, result)
    np.testing.assert_array_equal(forward.angles, backward.angles)
    assert np.isfinite(forward.angles[:, :5]).all() and np.isnan(forward.angles[:, 5]).all()


def test_an_output_of_another_recording_is_never_skipped_or_overwritten(tmp_path, gait):
    # Two recordings with the same stem in two folders, written to one output folder in two
    # batches: the second is refused by name (exit 1), the first output is left as it was.
    from flyenv.apps.demo import synthetic_recording

    first = synthetic_recording(tmp_path / "a" / "pose3d.npz", duration_s=0.1, seed=1)
    second = synthetic_recording(tmp_path / "b" / "pose3d.npz", duration_s=0.1, seed=2)
    out = tmp_path / "refs"
    assert ik_runner.run([first], out).files[0].status == "written"
    before = (out / "pose3d.npz").read_bytes()
    report = ik_runner.run([second], out)
    assert report.files[0].status == "failed"
    assert "made from another recording" in report.files[0].message
    assert (out / "pose3d.npz").read_bytes() == before
    assert ik_runner.run([first], out).files[0].status == "skipped"  # the same bytes: resumed
    assert ik_runner.run([second], out, overwrite=True).files[0].status == "written"


def test_an_output_made_with_other_options_is_refused_by_name(walking, tmp_path):
    clip = _write_npz(tmp_path / "clip.npz", walking[:20])
    out = tmp_path / "out"
    assert run([clip], out, IkOptions()).files[0].status == "written"
    before = (out / "clip.npz").read_bytes()
    assert run([clip], out, IkOptions(chunk_frames=7, fps=100.0)).files[0].status == "skipped"
    other_template = IkOptions().template.replace(name="mine")
    for options, said in [
        (IkOptions(lm=LmOptions(smoothness=1e-3)), "lm.smoothness 0.0, now 0.001"),
        (IkOptions(align=True, frame="thorax"), "frame estimate, now thorax; align False, "
                                                 "now True"),
        (IkOptions(template=other_template), "template body 'neuromechfly_template', now 'mine'"),
        (IkOptions(fps=50.0, fps_range=(1.0, 1e3)), "fps 100, now 50"),
    ]:
        result = run([clip], out, options).files[0]
        assert result.status == "failed" and said in result.message, result.message
        assert "pass --overwrite to redo it" in result.message
    assert (out / "clip.npz").read_bytes() == before
    # An output of an older flyenv that records fewer options is judged on what it records.
    motion = motion_io.load(out / "clip.npz")
    older = {k: v for k, v in motion.metadata["ik"].items() if k not in ("template", "lm")}
    motion_io.save(motion.replace(metadata={**motion.metadata, "ik": older}), out / "clip.npz",
                   overwrite=True)
    assert run([clip], out, IkOptions(template=other_template)).files[0].status == "skipped"


def test_solve_recording_returns_the_motion_or_raises(serial, walking, tmp_path, monkeypatch):
    from flyenv.ik_preprocess import RecordingError, solve_recording

    path = _write_npz(tmp_path / "walk.npz", walking)
    motion = solve_recording(path)  # the batch's result for the same file, nothing written
    np.testing.assert_array_equal(motion.joint_angles, serial.joint_angles)
    assert motion.metadata["source"] == str(path) and list(tmp_path.iterdir()) == [path]
    chunked = solve_recording(path, IkOptions(chunk_frames=100), n_jobs=2, backend="threading")
    np.testing.assert_allclose(chunked.joint_angles, serial.joint_angles, atol=1e-6)
    # The README's old mistake: a 100 fps file said to be 50 fps is an error, never a NaN result.
    with pytest.raises(RecordingError, match="the file says 100 fps but 50 was given") as err:
        solve_recording(path, IkOptions(fps=50.0))
    assert err.value.path == path and err.value.field == "fps"
    with pytest.raises(FileNotFoundError, match="no such file"):
        solve_recording(tmp_path / "absent.npz")

    def broken(job):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(ik_runner, "solve_job", broken)
    with pytest.raises(RuntimeError, match=f"{path}: IK of leg LF, frames 0-240 failed: "
                                           f"LinAlgError: Singular matrix"):
        solve_recording(path)


def test_output_paths_tell_same_named_recordings_apart_by_their_folders(tmp_path):
    names = [p.name for p in ik_runner.output_paths(
        ["a/x.pkl", "b/x.pkl", "c.pkl", "fly1/t1/pose.pkl", "fly1/t2/pose.pkl",
         "fly2/t1/pose.pkl", "deep/er/y.csv", "y.npz"], tmp_path)]
    # y.npz sits in the working folder: its own parent's name tells it from deep/er/y.csv.
    assert names[:7] == ["a__x.npz", "b__x.npz", "c.npz", "fly1__t1__pose.npz",
                         "fly1__t2__pose.npz", "fly2__t1__pose.npz", "er__y.npz"]
    assert names[7] == f"{Path.cwd().name}__y.npz"
    # The same file twice, or two files of one folder with one stem, keep one name, which run()
    # refuses naming the two; the others of their stem are still told apart.
    same = ik_runner.output_paths(["a/x.pkl", "b/x.pkl", "a/../a/x.pkl", "b/x.csv"], tmp_path)
    assert [p.name for p in same] == ["a__x.npz", "b__x.npz", "a__x.npz", "b__x.npz"]


def _seqikpy_tree(root, walking):
    """fly1/{t1,t2}, fly2/t1, each a pose3d_aligned.pkl (no frame rate) with SeqIKPy's outputs
    beside fly1/t1's, a flat clip, a hidden temporary and a ReferenceMotion."""
    import pickle

    legs = {f"{leg}_leg": walking[:20, i] for i, leg in enumerate(c.LEGS)}
    for trial in ("fly1/t1", "fly1/t2", "fly2/t1"):
        (root / trial).mkdir(parents=True)
        (root / trial / "pose3d_aligned.pkl").write_bytes(pickle.dumps(legs))
    (root / "fly1" / "t1" / "leg_joint_angles.pkl").write_bytes(pickle.dumps({"Angle_x": 1.0}))
    (root / "fly1" / "t1" / "forward_kinematics.pkl").write_bytes(pickle.dumps(legs))
    (root / ".cache").mkdir()
    (root / ".cache" / "old.pkl").write_bytes(pickle.dumps(legs))
    _write_npz(root / "clip.npz", walking[:20])


def test_cli_takes_folders_and_names_seqikpy_trees_apart(walking, tmp_path, capsys):
    tree = tmp_path / "data"
    _seqikpy_tree(tree, walking)
    out = tree / "refs"  # inside the folder given: its outputs are never inputs
    argv = ["ik", str(tree), "-o", str(out), "--fps", "100", "--solver", "seqik", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert f"{tree}: 4 recording(s), ignoring 2 output(s) of SeqIKPy or flyenv" in printed.out
    assert "4 written, 0 failed" in printed.out
    assert sorted(p.name for p in out.iterdir()) == [
        "clip.npz", "fly1__t1__pose3d_aligned.npz", "fly1__t2__pose3d_aligned.npz",
        "fly2__t1__pose3d_aligned.npz"]
    assert (motion_io.load(out / "fly1__t2__pose3d_aligned.npz").metadata["source"]
            == str(tree / "fly1" / "t2" / "pose3d_aligned.pkl"))
    # Again: all done. The output folder alone holds only outputs, so it is no input at all.
    assert main(argv) == 0
    assert "0 written, 4 skipped" in capsys.readouterr().out
    assert main(["ik", str(out), "-o", str(tmp_path / "o2"), "--quiet"]) == 2
    assert f"{out}: no recording (.pkl, .pickle, .npz, .csv) in this folder or below (only " \
           f"outputs of SeqIKPy or flyenv" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_a_failed_run_leaves_no_folder_and_says_each_error_once(walking, tmp_path, capsys):
    # The demo's clip: its fps is 1/0.002 s, which prints as 500, not 499.99999999999955.
    demo = _write_npz(tmp_path / "demo.npz", walking[:20], fps=1 / 0.002)
    out = tmp_path / "new" / "refs"
    assert main(["ik", str(demo), "-o", str(out), "--fps", "100", "--quiet"]) == 1
    printed = capsys.readouterr()
    assert "0 written, 1 failed\n" in printed.out and str(out) not in printed.out
    message = f"{demo}: field 'fps': the file says 500 fps but 100 was given"
    assert printed.err.count(message) == 1 and "499.9" not in printed.err + printed.out
    assert not (tmp_path / "new").exists()
    # A folder that was there stays, and so does one holding anything.
    out.mkdir(parents=True)
    assert main(["ik", str(demo), "-o", str(out), "--fps", "100", "--quiet"]) == 1
    assert out.is_dir()


def test_cli_summary_names_missing_legs_and_the_frame_rate(tmp_path, capsys):
    assert main(["ik", str(ANIPOSE), "-o", str(tmp_path / "out"), "--fps", "100", "--solver",
                 "seqik", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "600 frames at 100 fps (6 s)" in printed
    assert "legs: LF RF; missing from the recording: LM LH RM RH (NaN angles)" in printed
    body_rows = [line.split()[0] for line in printed.splitlines() if " ThC [" in line]
    assert body_rows == ["LF", "RF"]


def test_output_names_of_same_named_inputs_survive_a_link_loop(tmp_path):
    from flyenv.ik_preprocess.runner import output_paths

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    loop = tmp_path / "b" / "walk.npz"
    loop.symlink_to(loop)
    names = [p.name for p in output_paths([tmp_path / "a" / "walk.npz", loop], tmp_path)]
    assert names == ["a__walk.npz", "b__walk.npz"]


# -- the preparation in the worker pool --------------------------------------------------------


def _arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(("workers", "backend"), [(1, "loky"), (2, "loky"), (2, "threading"),
                                                  (2, "multiprocessing")])
def test_a_data_body_batch_is_bit_identical_with_any_number_of_workers(walking, tmp_path,
                                                                      workers, backend):
    # The preparation (reading, thorax estimate, body measurement) runs in the pool now: the
    # outputs must be those of the in-process path (`solve_recording`, serial) bit for bit.
    options = IkOptions(body="data", chunk_frames=50)
    paths = [_write_npz(tmp_path / f"w{i}.npz", walking[10 * i:130 + 20 * i] * (1 + 0.1 * i))
             for i in range(3)]
    report = run(paths, tmp_path / "out", options, n_jobs=workers, backend=backend)
    assert [f.status for f in report.files] == ["written"] * 3
    for path, result in zip(paths, report.files, strict=True):
        expected = ik_runner.solve_recording(path, options)
        motion_io.save(expected, tmp_path / f"expected_{path.name}", compress=False)
        got, want = _arrays(result.output), _arrays(tmp_path / f"expected_{path.name}")
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype
            assert got[key].tobytes() == want[key].tobytes(), key


def test_prepared_files_are_solved_before_more_files_are_prepared(walking, tmp_path):
    from flyenv.ik_preprocess.batch import PrepareJob, _Batch, prepare_safely
    from flyenv.ik_preprocess.jobs import Job, solve_job_safely
    from flyenv.ik_preprocess.outputs import output_paths

    paths = [_write_npz(tmp_path / f"w{i}.npz", walking[:20]) for i in range(3)]
    out = tmp_path / "out"
    out.mkdir()
    batch = _Batch(paths, output_paths(paths, out), IkOptions(frame="thorax"), False, False, None)
    batch.queue(range(3), max_files=2)
    first, second = batch.next_task(), batch.next_task()
    assert isinstance(first, PrepareJob) and isinstance(second, PrepareJob)
    assert batch.next_task() is None  # two files at once: the third waits
    batch.add(prepare_safely(first))
    jobs = [batch.next_task() for _ in range(6)]  # file 0's jobs come first
    assert all(isinstance(j, Job) and j.file_id == 0 for j in jobs)
    assert batch.next_task() is None
    for job in jobs:
        batch.add(solve_job_safely(job))
    assert batch.files[0].status == "written"  # file 1 is still being prepared
    third = batch.next_task()
    assert isinstance(third, PrepareJob) and third.file_id == 2
    batch.release_locks()


def test_resume_skips_outputs_recorded_with_a_version_1_template(walking, tmp_path):
    """An output made before the tarsus tilt (body schema 1) records the same template body: a
    resumed batch skips it; a template that now differs (a tilt) is still refused."""
    path = _write_npz(tmp_path / "c.npz", walking[:20])
    out = tmp_path / "out"
    run([path], out)
    motion = motion_io.load(out / "c.npz")
    old = motion.metadata["ik"]["template"]
    del old["tarsus_tilt_rad"]
    old["schema_version"] = 1
    motion_io.save(motion, out / "c.npz", overwrite=True)
    assert [r.status for r in run([path], out).files] == ["skipped"]
    tilted = BodyConfig.default().replace(tarsus_tilt_rad=(0.1,) * 6)
    report = run([path], out, IkOptions(template=tilted))
    assert report.files[0].status == "failed"
    assert "template body 'neuromechfly_template', now 'neuromechfly_template'" in (
        report.files[0].message)
