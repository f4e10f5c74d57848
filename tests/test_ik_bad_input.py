"""Bad input, round two (issue 20): bounded memory for every input, a resumed batch that never
aborts, root motion independent of the input's origin, robust thorax, honest determinedness.

Memory is measured inside the tests (tracemalloc, or an address-space cap in a subprocess),
never by timing.
"""

import pickle
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from conftest import REPO

from flyenv.body import constants as c
from flyenv.ik_preprocess import RecordingError, load_recording
from flyenv.ik_preprocess import io as ik_io


def _shared_nested(levels=10, fanout=10):
    """A pickle of a few hundred bytes whose tree has fanout**levels leaves (shared lists)."""
    node = [1.0, 2.0, 3.0]
    for _ in range(levels):
        node = [node] * fanout
    return pickle.dumps({"RF_leg": node, "Neck": node}, protocol=2)


def _run_capped(code, cap_bytes, timeout=60):
    """Runs `code` in a fresh interpreter whose address space is capped at `cap_bytes`."""
    prelude = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(REPO)!r})
        from flyenv.ik_preprocess import load_recording, RecordingError
        resource.setrlimit(resource.RLIMIT_AS, ({cap_bytes}, {cap_bytes}))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)


def test_a_tiny_pickle_of_shared_nested_lists_is_refused_in_little_memory(tmp_path):
    data = _shared_nested()
    assert len(data) < 400
    path = tmp_path / "bomb.pkl"
    path.write_bytes(data)
    # Under a cap far below what the tree would take (1e10 leaves), with the peak measured.
    result = _run_capped(f"""
        import tracemalloc
        tracemalloc.start()
        try:
            load_recording({str(path)!r})
        except RecordingError as err:
            print("refused:", err)
        print("peak", tracemalloc.get_traced_memory()[1])
    """, cap_bytes=3 << 30)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"refused: {path}: cannot load pickle: the pickle's" in result.stdout
    assert "expand" in result.stdout
    peak = int(result.stdout.split("peak")[1])
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("levels", [2, 3])
def test_shared_references_within_the_budget_still_load(tmp_path, levels):
    # The same leg array shared by several keys is a legitimate pickle: it loads.
    leg = np.arange(4 * 5 * 3, dtype=float).reshape(4, 5, 3) / 100
    data = {"RF_leg": leg, "LF_leg": leg, "extra": [[leg] * 2] * levels}
    path = tmp_path / "shared.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    rec = load_recording(path)
    np.testing.assert_array_equal(rec.keypoints[:, c.LEGS.index("LF")], leg)


def _write_csv(path, frames, legs=c.LEGS):
    header = ["time"] + [f"{leg}_{kp}_{axis}" for leg in legs for kp in c.KEYPOINTS
                         for axis in "xyz"]
    rng = np.random.default_rng(0)
    block = rng.uniform(-2, 2, (min(frames, 1000), len(header) - 1))
    with path.open("w") as f:
        f.write(",".join(header) + "\n")
        for start in range(0, frames, 1000):
            n = min(1000, frames - start)
            times = (np.arange(start, start + n) / 100.0)[:, None]
            np.savetxt(f, np.hstack([times, block[:n]]), fmt="%.4f", delimiter=",")
    return path


def test_a_large_csv_is_read_in_a_small_multiple_of_its_arrays(tmp_path):
    frames = 5_000
    path = _write_csv(tmp_path / "big.csv", frames)
    tracemalloc.start()
    try:
        rec = load_recording(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rec.num_frames == frames and rec.fps == pytest.approx(100.0)
    held = rec.keypoints.nbytes  # (T, 6, 5, 3) float64: what the recording legitimately holds
    # The old reader kept every cell as a Python string: ~10 KB a row, 11x the held array.
    # Now: the float rows, the legs and the recording's array, plus one chunk of strings.
    assert peak < 2.5 * held + (4 << 20), (peak, held)


def test_a_csv_over_the_row_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(ik_io, "MAX_FRAMES", 5_000)
    path = _write_csv(tmp_path / "long.csv", 5_001)
    tracemalloc.start()
    try:
        with pytest.raises(RecordingError, match=r"long.csv: more than 5000 rows"):
            load_recording(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # the blocks read to count lines, not the rows


def test_a_csv_line_without_end_is_not_read_whole(tmp_path):
    path = tmp_path / "line.csv"
    header = ",".join(f"RF_{kp}_{axis}" for kp in c.KEYPOINTS for axis in "xyz")
    path.write_text(header + "\n" + "1," * 4_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(RecordingError, match=r"line.csv: a line is longer than"):
            load_recording(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 << 20, peak  # the 8 MB line would be 8 MB of text and 4e6 cells


# -- item 3: a resumed batch goes through the same per-file error handling -----------------------


def _small_recording(path, frames=12):
    from flyenv.motion import tripod_gait

    keypoints = np.asarray(tripod_gait(duration_s=0.1).fk_keypoints[:frames])
    np.savez(path, keypoints=keypoints, leg_names=np.array(c.LEGS), fps=np.array(100.0))
    return path


def test_a_resumed_batch_reports_inputs_gone_bad_and_goes_on(tmp_path, capsys):
    from flyenv.cli import main

    names = ["gone", "dangling", "folder", "loop", "last"]
    paths = [_small_recording(tmp_path / f"{n}.npz") for n in names]
    out = tmp_path / "out"
    assert main(["ik", *map(str, paths), "-o", str(out), "--frame", "thorax"]) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.npz")}
    assert len(before) == 5
    # Between the runs the inputs go bad: their outputs exist, so the resume path sees them.
    paths[0].unlink()
    paths[1].unlink()
    paths[1].symlink_to(tmp_path / "nowhere.npz")
    paths[2].unlink()
    paths[2].mkdir()
    paths[3].unlink()
    paths[3].symlink_to(paths[3])
    paths[4].unlink()
    _small_recording(paths[4], frames=14)  # changed: its output is another version's
    capsys.readouterr()
    code = main(["ik", *map(str, paths), "-o", str(out), "--frame", "thorax"])
    text = capsys.readouterr()
    assert code == 1, text
    report = text.out + text.err
    assert "Traceback" not in report
    assert f"{paths[0]}: no such file" in report
    assert f"{paths[1]}: a symbolic link to {tmp_path / 'nowhere.npz'}, which does not exist" \
        in report
    assert f"{paths[2]}: a directory, not a recording file" in report
    assert f"{paths[3]}: a symbolic link loop" in report
    assert "last.npz exists and was made from another recording" in report
    # Nothing the user had was touched.
    assert {p.name: p.read_bytes() for p in out.glob("*.npz")} == before


def test_load_recording_says_what_a_non_file_is(tmp_path):
    folder = tmp_path / "d.pkl"
    folder.mkdir()
    with pytest.raises(RecordingError, match=r"d.pkl: a directory, not a recording file"):
        load_recording(folder)
    loop = tmp_path / "l.pkl"
    loop.symlink_to(loop)
    with pytest.raises(FileNotFoundError, match=r"l.pkl: a symbolic link loop"):
        load_recording(loop)
