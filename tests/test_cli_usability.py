"""What a new user meets on the command line: `python -m flyenv`, sample recordings by name,
help texts, and what a run says it will do (unit tests: no pipeline is run end to end)."""

import subprocess
import sys

import pytest

from flyenv import data
from flyenv.apps.demo import resolve_recording, run_demo
from flyenv.cli import main


def test_python_m_flyenv_runs_the_cli():
    # What `torchrun -m flyenv` and job schedulers call.
    result = subprocess.run([sys.executable, "-m", "flyenv", "data", "df3d_walk_100"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(data.path("df3d_walk_100"))


def test_flyenv_data_lists_the_sample_recordings(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    for name in data.RECORDINGS:
        assert f"  {name} " in out and data.SAMPLES[name].description in out
    assert "Apache-2.0" in out and str(data.LICENSE) in out
    assert main(["data", "anipose_groom"]) == 0
    assert capsys.readouterr().out == f"{data.path('anipose_groom')}\n"
    assert main(["data", "df3d_wlak"]) == 2
    assert "Did you mean 'df3d_walk'?" in capsys.readouterr().err


def test_demo_takes_a_sample_recording_by_name(tmp_path):
    # The sample's frame rate comes with it (its pickle carries none); --fps still wins.
    path, fps, name = resolve_recording("df3d_walk_100")
    assert (path, fps, name) == (data.path("df3d_walk_100"), 100.0, "df3d_walk_100")
    assert resolve_recording("df3d_walk_100", fps=50.0)[1] == 50.0
    own = tmp_path / "my_fly.npz"
    own.write_bytes(b"")
    assert resolve_recording(own) == (own, None, "my_fly")
    with pytest.raises(FileNotFoundError, match="Did you mean 'anipose_groom'"):
        resolve_recording("anipose_grom")


def test_demo_refuses_an_unknown_recording_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--recording", "df3d_wlk", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "neither a file nor a sample recording" in err and "df3d_walk_100" in err
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        run_demo(out, recording=tmp_path / "absent.pkl")
    assert not out.exists()
