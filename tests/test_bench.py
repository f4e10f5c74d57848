import json
import math
from pathlib import Path

import pytest

from flyenv.apps.bench import format_table, sweep
from flyenv.cli import main


def test_sweep_structure_and_positive_rates():
    result = sweep("mujoco", "cpu", [2], steps=3, warmup=1)
    assert result["engine"] == "mujoco" and result["device"] == "cpu"
    # a 500 Hz policy whatever the default physics step
    config = result["config"]
    assert math.isclose(config["control_decimation"] * config["physics_dt_s"], 2e-3)
    assert math.isclose(config["control_dt_s"], 2e-3)
    (run,) = result["runs"]
    assert run["num_envs"] == 2 and run["ok"] and run["nthread"] >= 1
    for kind in ("bare", "full"):
        rates = run[kind]
        assert rates["steps"] == 3 and rates["wall_s"] > 0
        for key in ("env_steps_per_s", "realtime_factor"):
            assert math.isfinite(rates[key]) and rates[key] > 0
        # realtime factor = env steps/s * control step (2 ms)
        assert math.isclose(rates["realtime_factor"], rates["env_steps_per_s"] * 2e-3)
    assert math.isfinite(run["overhead"]) and run["full_over_bare"] > 0
    assert 0 < run["full"]["physics_wall_s"] < run["full"]["wall_s"]
    assert run["env_overhead"] > 0
    assert math.isclose(run["full_over_bare"], 1 / (1 + run["overhead"]))
    assert 0 <= run["full"]["episode_ends_per_step"] <= 2
    assert "gpu_mem_per_world_bytes" not in run


def test_bench_cli_writes_json_and_png(tmp_path, capsys):
    assert main(["bench", "--engine", "mujoco", "--no-start-times", "--num-envs", "2",
                 "--steps", "2", "--warmup", "1", "--min-time", "0",
                 "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("env_bench_cpu-*.json")
    results = json.loads(path.read_text())
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["environment"]["cpu_count"] >= 1
    assert results["environment"]["packages"]["mujoco"]
    assert results["sweeps"]["mujoco"]["runs"][0]["ok"]
    summary = results["summary"]["mujoco"]
    assert summary["best_num_envs"] == 2 and summary["best_full_realtime_factor"] > 0
    assert set(summary["full_over_bare"]) == {"2"}
    assert results["start_times"] == {}
    out = capsys.readouterr().out
    assert "full/bare" in out and str(path) in out
    assert format_table(results).splitlines()[0] == out.splitlines()[0]


def test_bench_times_a_physics_setting_against_a_baseline_step(tmp_path):
    assert main(["bench", "--engine", "mujoco", "--no-start-times", "--num-envs", "2",
                 "--steps", "2", "--warmup", "1", "--min-time", "0", "--out", str(tmp_path),
                 "--physics-dt", "5e-4", "--model-option", "joint_armature=1e-4",
                 "--baseline-physics-dt", "1e-4"]) == 0
    (path,) = tmp_path.glob("*.json")
    assert path.name.endswith("_dt0.0005_joint_armature0.0001.json")
    results = json.loads(path.read_text())
    assert results["sweeps"]["mujoco"]["config"]["control_decimation"] == 4
    baseline = results["baseline_sweeps"]["mujoco"]["config"]
    assert baseline["physics_dt_s"] == 1e-4 and baseline["control_decimation"] == 20
    summary = results["summary"]["mujoco"]
    assert summary["speedup_over_baseline"]["2"] > 0 and summary["baseline_substeps"] == 20


def test_bench_times_the_default_model_against_the_feet_before_issue_22(tmp_path, capsys):
    assert main(["bench", "--engine", "mujoco", "--no-start-times", "--num-envs", "2",
                 "--steps", "2", "--warmup", "1", "--min-time", "0", "--out", str(tmp_path),
                 "--physics-dt", "1e-4", "--baseline-physics-dt", "1e-4",
                 "--baseline-model-option", "adhesion_gain_uN=0",
                 "--baseline-model-option", "noslip_iterations=0"]) == 0
    (path,) = tmp_path.glob("*.json")
    assert path.name.endswith("_dt0.0001_vs_adhesion_gain_uN0_noslip_iterations0.json")
    results = json.loads(path.read_text())
    assert results["sweeps"]["mujoco"]["config"]["model_options"] == {}
    baseline = results["baseline_sweeps"]["mujoco"]["config"]
    assert baseline["model_options"] == {"adhesion_gain_uN": 0, "noslip_iterations": 0}
    assert results["summary"]["mujoco"]["speedup_over_baseline"]["2"] > 0
    assert main(["bench", "--engine", "mujoco", "--baseline-model-option",
                 "noslip_iterations=0"]) != 0
    assert "--baseline-model-option needs --baseline-physics-dt" in capsys.readouterr().err



def test_flyenv_bench_writes_into_a_folder_of_the_users_by_default(monkeypatch):
    # `flyenv bench` in a checkout must not overwrite the committed benchmarks/results; the
    # project's own script keeps writing there.
    import importlib.util

    from flyenv.apps import bench

    outs = []

    def run_args(args):
        outs.append(args.out)
        raise SystemExit(0)  # the options are all this test needs

    monkeypatch.setattr(bench, "run_args", run_args)
    with pytest.raises(SystemExit):
        main(["bench"])
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "env_bench.py"
    spec = importlib.util.spec_from_file_location("env_bench", script)
    env_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(env_bench)
    with pytest.raises(SystemExit):
        env_bench.main([])
    assert outs == [Path("flyenv-bench"), Path("benchmarks/results")]


def _benchmark(name: str):
    # A benchmark script as a module, with benchmarks/ importable as its siblings import it.
    import importlib
    import sys

    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)


@pytest.mark.warp
def test_expert_iteration_play_reads_nothing_on_the_host(warp_device):
    import torch
    from host_reads import no_host_reads

    from flyenv.apps.train import Agent
    from flyenv.envs import FlyImitationVecEnv

    pe = _benchmark("push_expert_iteration")
    device = "cpu" if warp_device == "cpu" else "cuda"
    env = FlyImitationVecEnv(num_envs=4, engine="warp", device=device, control_decimation=2,
                             autoreset_mode="disabled", max_episode_steps=20)
    try:
        agent = Agent(env.single_observation_space.shape[0], 42, 16,
                      torch.full((42,), 0.1), -2.0).to(device)
        timing = {"hold": 3, "after": 4, "push": 2, "onset": (1, 3)}
        events = {"clip": torch.zeros(4, dtype=torch.long), "frame": torch.tensor([0, 5, 10, 15]),
                  "onset": torch.tensor([1, 2, 3, 1]),
                  "force": torch.tensor([[5.0, 0.0, 0.0]]).repeat(4, 1)}
        events = {key: value.to(device) for key, value in events.items()}
        residual = torch.linspace(-0.02, 0.02, 42, device=device).repeat(4, 1)
        obs, _ = env.reset(seed=0, options={"clip": events["clip"], "frame": events["frame"]})
        with no_host_reads():
            alive, window, visited = pe.roll(env, obs, agent, events, residual, timing, steps=7,
                                             calm_every=2)
    finally:
        env.close()
    with torch.no_grad():  # every world's hold, each of its steps recorded as played
        mean = agent.dist(window["obs"]).mean
    assert (window["obs"].abs().sum(-1) > 0).all()
    assert torch.allclose(window["act"], mean + residual)
    assert alive.shape == (4,) and len(visited) == 4  # steps 0, 2, 4, 6
    assert [before.tolist() for _, _, before in visited][:2] == [
        [True, True, True, True], [False, False, True, False]]


def _train_clips_result(survived: list[float], perturbation: dict) -> dict:
    run = {"survived_per_start": survived, "joint_error_deg": 0.5}
    return {"perturbation": perturbation,
            "eval": {"walk": {c: {"policy": run} for c in ("clean", "perturbed")}}}


def test_compare_runs_pairs_two_evaluations_start_by_start():
    compare_runs = _benchmark("compare_runs")
    pushes = {"push_force_un": [5.0, 10.0]}
    a = _train_clips_result([1.0, 1.0, 0.5, 1.0], pushes)
    b = _train_clips_result([1.0, 0.5, 1.0, 0.25], pushes)
    row = compare_runs.compare(a, b)["walk"]["perturbed"]
    assert row["survived_gain"] == pytest.approx((0.0 + 0.5 - 0.5 + 0.75) / 4)
    assert (row["a_only"], row["b_only"]) == (2, 1)
    low, high = row["survived_gain_ci95"]
    assert low <= row["survived_gain"] <= high
    with pytest.raises(SystemExit, match="other pushes"):
        compare_runs.compare(a, _train_clips_result([1.0] * 4, {"push_force_un": [1.0, 3.0]}))
    with pytest.raises(SystemExit, match="3 starts against 4"):
        compare_runs.compare(_train_clips_result([1.0] * 3, pushes), b)


def test_compare_runs_reads_a_flyenv_eval_json_as_a_run(tmp_path):
    compare_runs = _benchmark("compare_runs")
    pushes = {"push_force_un": [5.0, 10.0]}
    run = _train_clips_result([1.0, 1.0, 0.5, 1.0], pushes)
    evaluation = {"perturbation": pushes, "clips": run["eval"], "starts": 4}
    for name, record in (("run.json", run), ("eval.json", evaluation)):
        (tmp_path / name).write_text(json.dumps(record))
    a, b = (compare_runs._load(tmp_path / name) for name in ("run.json", "eval.json"))
    assert compare_runs.compare(a, b)["walk"]["perturbed"]["survived_gain"] == 0.0
    (tmp_path / "other.json").write_text(json.dumps({"curve": []}))
    with pytest.raises(SystemExit, match="other.json.*neither"):
        compare_runs._load(tmp_path / "other.json")


def test_train_clips_recipe_is_valid_flyenv_train_options_and_extras_win(tmp_path):
    import argparse

    from flyenv.apps import train_args

    train_clips = _benchmark("train_clips")
    args = argparse.Namespace(num_envs=8, seconds=60.0, train_randomization={}, recipe=None,
                              extra=["--seed", "2"])
    plain = train_clips.train_command(args, ["clips"], [], tmp_path)
    args.recipe = "scratch-contact"
    args.extra = ["--seed", "2", "--init-log-std", "-1.5"]
    command = train_clips.train_command(args, ["clips"], [], tmp_path)
    recipe = train_clips.RECIPES["scratch-contact"]
    assert command[:len(plain) - 2] == plain[:-2] and command[-4:] == args.extra
    assert command[len(plain) - 2:-4] == recipe
    parser = argparse.ArgumentParser()
    train_args.add_arguments(parser)
    parsed = train_args.args_from(parser.parse_args(command[command.index("train") + 1:]))
    train_args.check(parsed)
    assert parsed.seed == 2 and parsed.init_log_std == -1.5  # the extra after the recipe's
    assert parsed.privileged_critic and parsed.adaptive_starts == "on"
    assert train_args.json_option("reward", parsed.reward)["weights"] == {"contact": 0.3}


def test_expert_iteration_events_leave_room_and_push_as_the_evaluation_does():
    import math

    import torch

    pe = _benchmark("push_expert_iteration")
    timing = {"hold": 75, "after": 250, "push": 25, "onset": (10, 100)}
    lengths = torch.tensor([4000, 400])
    events = pe.draw_events(lengths, 2000, timing, torch.Generator().manual_seed(0))
    last = events["frame"] + timing["onset"][1] + timing["after"] + 1
    assert (last < lengths[events["clip"]]).all()  # every event fits its clip
    assert set(events["clip"].tolist()) == {0, 1}
    assert events["onset"].min() >= 10 and events["onset"].max() <= 100
    magnitude = events["force"][:, :2].norm(dim=1)
    low, high = pe.PUSH_FORCE_UN
    assert (magnitude >= low).all() and (magnitude <= high).all()
    assert (events["force"][:, 2] == 0).all()  # horizontal
    heading = torch.atan2(events["force"][:, 1], events["force"][:, 0])
    assert heading.min() < -0.9 * math.pi and heading.max() > 0.9 * math.pi


def test_expert_iteration_fit_learns_the_saves_and_keeps_the_parent_elsewhere():
    import copy

    import torch

    from flyenv.apps.train import Agent

    pe = _benchmark("push_expert_iteration")
    torch.manual_seed(0)
    parent = Agent(8, 3, 32, torch.full((3,), 0.1), -2.0)
    student = copy.deepcopy(parent)
    save_obs = torch.randn(256, 8) + 3.0  # the pushed states, apart from calm walking
    with torch.no_grad():
        save_act = parent.dist(save_obs).mean + 0.02
    calm_obs = torch.randn(4096, 8)
    fit = pe.fit(student, parent, save_obs, save_act, calm_obs, 400, 128, 3e-3,
                 torch.Generator().manual_seed(0))
    assert fit["save_rms_rad_before"] == pytest.approx(0.02, rel=0.05)
    assert fit["calm_rms_rad_before"] == 0.0
    assert fit["save_rms_rad_after"] < 0.3 * fit["save_rms_rad_before"]
    assert fit["calm_rms_rad_after"] < 0.3 * fit["save_rms_rad_before"]
    for name, p in student.named_parameters():  # only the actor is fitted
        if not name.startswith("actor"):
            assert torch.equal(p, dict(parent.named_parameters())[name])


def test_expert_iteration_calm_mix_holds_the_parent_on_unvisited_pairings():
    import copy

    import torch

    from flyenv.apps.train import Agent

    pe = _benchmark("push_expert_iteration")
    torch.manual_seed(0)
    parent = Agent(8, 3, 32, torch.full((3,), 0.1), -2.0)
    body = torch.randn(4096, 4)
    calm_obs = torch.cat([body, body], dim=1)  # visited: the reference part follows the body
    save_body = torch.randn(256, 4) + 3.0
    save_obs = torch.cat([save_body, save_body], dim=1)
    with torch.no_grad():
        save_act = parent.dist(save_obs).mean + 0.02
    unvisited = torch.cat([torch.randn(2048, 4), torch.randn(2048, 4)], dim=1)
    drift = {}
    for mix in (0.0, 0.5):
        student = copy.deepcopy(parent)
        fit = pe.fit(student, parent, save_obs, save_act, calm_obs, 400, 128, 3e-3,
                     torch.Generator().manual_seed(0), calm_mix=mix, reference_from=4)
        assert fit["save_rms_rad_after"] < 0.3 * fit["save_rms_rad_before"]
        with torch.no_grad():
            gap = student.dist(unvisited).mean - parent.dist(unvisited).mean
        drift[mix] = float(gap.square().mean().sqrt())
    assert drift[0.5] < 0.5 * drift[0.0]
