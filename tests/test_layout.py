"""The package's shape: imports flow one way, applications load only when used, concepts once."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flyenv.envs import TERMS, FlyImitationConfig, FlyImitationVecEnv, observations, rewards

PACKAGE = Path(__file__).resolve().parents[1] / "flyenv"
# What each part of the package may import: the pipeline `body -> motion -> ik_preprocess` and
# `motion -> sim -> envs -> wrappers` are two branches off `motion` (the simulator never needs
# the IK, nor the IK the simulator), with the applications (`apps`, `cli`) on top of both.
# `data` (the shipped samples) and `_version` are leaves anyone may read.
_LEAVES = {"_version", "data"}
ALLOWED = {
    "_version": set(),
    "data": set(),
    "_registration": _LEAVES,
    "body": _LEAVES,
    "motion": _LEAVES | {"body"},
    "ik_preprocess": _LEAVES | {"body", "motion"},
    "sim": _LEAVES | {"body", "motion"},
    "envs": _LEAVES | {"_registration", "body", "motion", "sim"},
    "wrappers": _LEAVES | {"_registration", "body", "motion", "sim", "envs"},
    "apps": _LEAVES | {"_registration", "body", "motion", "ik_preprocess", "sim", "envs",
                       "wrappers"},
    "cli": _LEAVES | {"_registration", "body", "motion", "ik_preprocess", "sim", "envs",
                      "wrappers", "apps"},
    "__init__": _LEAVES | {"_registration", "body", "motion"},
    "__main__": {"cli"},
}


def _imported_parts(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "flyenv" and len(parts) > 1 and parts[1] in ALLOWED:
                found.add(parts[1])
    return found


def test_imports_follow_the_pipeline():
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        part = relative.parts[0].removesuffix(".py")
        assert part in ALLOWED, f"flyenv/{relative}: a new part of the package; add its rules"
        forbidden = _imported_parts(path) - ALLOWED[part] - {part}
        assert not forbidden, f"flyenv/{relative} imports {sorted(forbidden)}"


def test_the_rules_catch_a_backward_import(tmp_path):
    # sim importing the IK was allowed by the old linear layer order; these rules refuse it.
    module = tmp_path / "probe.py"
    module.write_text("from flyenv.ik_preprocess import run\nimport flyenv.envs\n")
    assert _imported_parts(module) - ALLOWED["sim"] == {"ik_preprocess", "envs"}


def test_only_sim_imports_mujoco_warp_and_only_the_runner_joblib():
    for path in PACKAGE.rglob("*.py"):
        text, relative = path.read_text(), path.relative_to(PACKAGE).as_posix()
        if "import mujoco_warp" in text or "import warp" in text:
            assert relative.startswith("sim/warp_"), relative
        if "import joblib" in text or "from joblib" in text:
            assert relative == "ik_preprocess/runner.py", relative


def _modules_loaded(code: str) -> set[str]:
    probe = (f"{code}\nimport sys\nprint('LOADED:', *(m for m in ('torch', 'gymnasium', "
             f"'matplotlib', 'mujoco_warp') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("LOADED:"))
    return set(line.split()[1:])


def test_flyenv_ik_loads_neither_torch_nor_gymnasium_nor_matplotlib(tmp_path):
    # The CLI's ik command, up to running it on a missing file (parsing, imports, the runner).
    code = ("from flyenv.cli import main\n"
            f"main(['ik', '{tmp_path / 'missing.npz'}', '-o', '{tmp_path}', '--quiet'])")
    assert _modules_loaded(code) == set()
    assert _modules_loaded("import flyenv") == set()


def test_registration_works_whichever_is_imported_first():
    for code in ("import flyenv\nimport gymnasium as gym",
                 "import gymnasium as gym\nimport flyenv"):
        check = code + "\nassert 'flyenv/FlyImitation-v0' in gym.registry"
        result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr


def test_reward_terms_are_declared_once():
    # The config's defaults, the env's terms and info keys, and max_reward follow from TERMS.
    config = FlyImitationConfig()
    assert config.reward.weights == {t.name: t.weight for t in TERMS}
    assert config.reward.scales == {t.name: t.scale for t in TERMS}
    free = {t.name for t in TERMS if t.in_use(free=True, has_root=False)}
    tethered = {t.name for t in TERMS if t.in_use(free=False, has_root=False)}
    assert free == {"joint_pos", "joint_vel", "claw_pos", "orientation", "contact"}
    assert tethered == {"joint_pos", "joint_vel", "claw_pos"}
    assert {t.name for t in TERMS if t.in_use(free=True, has_root=True)} == free | {"root_vel"}


def test_a_new_reward_term_is_one_declaration(monkeypatch):
    # Declaring a term in rewards.TERMS is all it takes: config keys, env terms, info, reward.
    import flyenv.envs.imitation as imitation

    def _still(x):  # thorax angular speed [(rad/s)^2]
        return (x.state.ang_vel_b ** 2).sum(dim=1)

    term = rewards.RewardTerm("still", _still, 0.3, 1.0, "free", "angular speed [(rad/s)^2]")
    terms = (*rewards.TERMS, term)
    monkeypatch.setattr(rewards, "TERMS", terms)
    env = FlyImitationVecEnv(num_envs=2, engine="mujoco", device="cpu")
    assert "still" in env.terms and env.max_reward == pytest.approx(1.3)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(torch.zeros(2, 42))
    assert info["reward/still"].shape == (2,)
    total = sum(env.config.reward.weights[k] * info[f"reward/{k}"] for k in env.terms)
    torch.testing.assert_close(reward, total)
    assert imitation.rewards.TERMS is terms


def test_observation_layout_names_every_slice():
    layout = observations.observation_layout(3)
    assert list(layout) == ["joint_pos", "joint_vel", "gravity_b", "lin_vel_b", "ang_vel_b",
                            "contact", "future_joint_pos", "phase"]
    assert observations.observation_dim(3) == 226 == layout["phase"].stop
    env = FlyImitationVecEnv(num_envs=2, engine="mujoco", device="cpu")
    obs, _ = env.reset(seed=0)
    torch.testing.assert_close(env.observation_part(obs, "joint_pos"),
                               env.engine.qpos[:, -42:].float())
    gravity = env.observation_part(obs, "gravity_b")
    torch.testing.assert_close(gravity[:, 2], -torch.ones(2), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="unknown observation part"):
        env.observation_part(obs, "velocity")


def test_sensing_load_adds_each_tarsus_force_over_the_body_weight_and_nothing_else():
    layout = observations.observation_layout(3, sense_load=True)
    assert list(layout)[5:8] == ["contact", "tarsus_load", "future_joint_pos"]
    assert observations.observation_dim(3, sense_load=True) == 232 == layout["phase"].stop
    envs = {sense: FlyImitationVecEnv(num_envs=2, engine="mujoco", device="cpu",
                                      sense_load=sense) for sense in (False, True)}
    assert envs[True].single_observation_space.shape == (232,)
    obs = {}
    for sense, env in envs.items():
        env.reset(seed=0)
        for _ in range(20):  # down on the floor: the stance tarsi carry load
            obs[sense], *_ = env.step(torch.zeros(2, 42))
    senses = envs[True]
    load = senses.observation_part(obs[True], "tarsus_load")
    weight = float(senses.engine.model.body_mass.sum()) * 9.81e3  # [µN]: g x mm/s^2
    state = senses._read_state()
    torch.testing.assert_close(load, state.touch / weight)
    assert ((load > 0.05 / weight) == state.touching()).all() and state.touching().any()
    for name in envs[False].observation_layout:  # the same worlds: every other part alike
        torch.testing.assert_close(senses.observation_part(obs[True], name),
                                   envs[False].observation_part(obs[False], name))
    with pytest.raises(ValueError, match="sense_load must be a bool"):
        FlyImitationVecEnv(num_envs=1, engine="mujoco", device="cpu", sense_load="yes")


def test_no_project_file_refers_to_a_folder_beside_the_clone():
    # A lab clones flyenv with nothing beside it: the data the tests, demo, examples and
    # benchmarks need is in flyenv/data. (CI clones with a folder beside it, which would hide
    # a reference to it.) Recorded results may name where an old measurement read its data.
    repo = PACKAGE.parent
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    beside = ("../" + "shared", "/work/" + "shared")  # spelled apart: this file is checked too
    offenders = []
    for name in listed.stdout.splitlines():
        path = repo / name
        if name.startswith("benchmarks/results/") or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        if any(needle in text for needle in beside):
            offenders.append(name)
    assert not offenders, f"these files refer to a folder outside the clone: {offenders}"
