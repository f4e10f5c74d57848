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
    # A recording the IK refuses: one error naming the file once, and no empty folder left.
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["demo", "--recording", str(bad), "--fps", "100", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count(str(bad)) == 1 and "IK failed" in err
    assert not out.exists()


def _example(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and inspect look the module up
    spec.loader.exec_module(module)
    return module


def test_replay_example_cuts_a_given_reference_to_duration(tmp_path, monkeypatch):
    # --duration used to apply to the embedded gait only; a --reference was replayed whole.
    from flyenv.motion import load, save, tripod_gait

    example = _example("replay_reference")
    clip = save(tripod_gait(duration_s=0.4), tmp_path / "clip.npz")
    seen = {}

    def track(motion, tethered):
        seen.setdefault("tracked", []).append(motion.num_frames)
        raise SystemExit(0)  # the frames the replay gets are all this test needs

    monkeypatch.setattr(example, "track_reference", track)
    monkeypatch.setattr(sys, "argv", ["replay_reference.py", "--reference", str(clip),
                                      "--duration", "0.1", "--output", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        example.main()
    motion = load(clip)
    assert seen["tracked"] == [round(0.1 * motion.fps) + 1]
    cut = example.first_seconds(motion, 0.1)
    assert cut.duration_s == pytest.approx(0.1)
    assert cut.root_pos.shape[0] == cut.joint_angles.shape[0] == cut.num_frames
    assert example.first_seconds(motion, 10.0).num_frames == motion.num_frames


def test_every_option_has_help_text_from_its_docstring(capsys):
    import dataclasses

    from flyenv.apps.options import field_docs
    from flyenv.apps.train import PpoArgs

    docs = field_docs(PpoArgs)
    assert set(docs) == {f.name for f in dataclasses.fields(PpoArgs)}
    assert docs["gamma"].startswith("Discount (0.95: a 40 ms horizon")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(PpoArgs):
        flag = f"--{field.name.replace('_', '-')}"
        assert flag in help_text
        assert " ".join(docs[field.name].split()[:4]) in help_text, field.name
    assert "(default: 100000)" in help_text
    for name in ("replay_reference", "recording_to_policy"):
        example = _example(name)
        assert set(field_docs(example.Args)) == {f.name for f in dataclasses.fields(example.Args)}


def test_clips_of_folders_keep_their_own_files_even_when_names_repeat(tmp_path):
    # Each clip's source comes from the bank that loaded it: two folders may hold clips of the
    # same name, and the gait names where it came from.
    from flyenv.apps.train_args import describe_clips
    from flyenv.envs import FlyImitationVecEnv
    from flyenv.envs.reference import GAIT_SOURCE
    from flyenv.motion import save, tripod_gait

    files = [save(tripod_gait(duration_s=0.2), tmp_path / folder / "walk.npz")
             for folder in ("a", "b")]
    env = FlyImitationVecEnv(num_envs=1, reference=(str(tmp_path / "a"), str(tmp_path / "b")),
                             device="cpu")
    clips = describe_clips(env)
    env.close()
    assert [(c["name"], c["source"]) for c in clips] == [("walk", str(f)) for f in files]
    gait = FlyImitationVecEnv(num_envs=1, device="cpu")
    assert describe_clips(gait)[0]["source"] == GAIT_SOURCE
    gait.close()


def test_train_says_what_it_will_run_and_on_which_clip(tmp_path):
    # `--total-timesteps 1` ran a whole iteration and 400 evaluation steps without a word, and
    # nothing named the clip.
    from flyenv.apps.train_args import PpoArgs, describe_clips, plan
    from flyenv.envs import FlyImitationVecEnv
    from flyenv.motion import save, tripod_gait

    clip = save(tripod_gait(duration_s=0.2), tmp_path / "walk.npz")
    env = FlyImitationVecEnv(num_envs=1, reference=str(clip), device="cpu")
    clips = describe_clips(env)
    env.close()
    assert clips == [{"name": "walk", "source": str(clip), "duration_s": pytest.approx(0.2),
                      "start_weight": 1.0}]
    args = PpoArgs(num_envs=4, num_steps=64, total_timesteps=1, reference=str(clip))
    lines = plan(args, clips, num_iterations=1)
    assert lines[0] == f"imitating walk (0.20 s, {clip})"
    weighted = [dict(clips[0], start_weight=4.0), dict(clips[0], name="gait")]
    assert plan(args, weighted, 1)[0] == (f"imitating walk (0.20 s, {clip}, start weight 4), "
                                          f"gait (0.20 s, {clip})")
    assert lines[1] == ("training: 1 iteration(s) x 4 flies x 64 steps = 256 env steps "
                        "(--total-timesteps 1 rounded up to whole iterations of num_envs x "
                        "num_steps = 256)")
    assert lines[2] == ("then evaluation: 200 steps of the deterministic policy and 200 of the "
                        "replay baseline, on 4 flies")
    exact = plan(PpoArgs(num_envs=4, num_steps=64, total_timesteps=512), clips, 2)
    assert exact[1].endswith("= 512 env steps")
    taught = plan(PpoArgs(num_envs=4, num_steps=64, total_timesteps=512,
                          demonstrations="saves.pt", demonstration_coef=0.01), clips, 2)
    assert taught[2] == ("teaching the demonstrations of saves.pt beside PPO "
                         "(--demonstration-coef 0.01)")
    assert taught[3] == exact[2]
    on = plan(PpoArgs(init_checkpoint="parent.pt", sense_load=True), clips, 1)
    assert on[2] == ("going on from parent.pt (a policy there without the tarsi's load goes on "
                     "widened to sense it, acting as before until training weighs it)")
    assert plan(PpoArgs(sense_load=True), clips, 1)[2] == ("sensing each tarsus's load "
                                                           "(tarsus_load in the observation)")
