"""Per-world model fields: the engines' masked writes, several bodies in one env, randomization.

Both engines run every test; the warp engine on the Warp CPU device with its captured graphs
(CUDA when there is one).
"""

import copy
import math
import os

import mujoco
import numpy as np
import pytest
import torch
from host_reads import no_host_reads

from flyenv.body.config import BodyConfig
from flyenv.body.kinematics import forward_kinematics
from flyenv.body.mjcf import build_model
from flyenv.envs import FlyImitationVecEnv, RandomizationConfig
from flyenv.envs.config import FlyImitationConfig
from flyenv.motion import tripod_gait
from flyenv.sim import make_engine
from flyenv.sim.engine import model_field

NENV = 4
FIELDS = ("geom_friction", "opt.gravity", "body_mass", "body_pos", "actuator_gainprm")
RANDOM = {"friction": (0.5, 1.5), "mass_scale": (0.8, 1.2), "actuator_gain_scale": (0.8, 1.2),
          "joint_damping_scale": (0.5, 2.0), "floor_slope_rad": (0.0, 0.3)}


def _scaled(factor, name):
    body = BodyConfig.default()
    return body.replace(thc_mm=body.thc * factor, segment_lengths_mm=body.lengths * factor,
                        name=name)


@pytest.fixture(scope="module")
def two_clips():
    return (tripod_gait(_scaled(0.9, "small"), duration_s=0.4),
            tripod_gait(_scaled(1.1, "big"), duration_s=0.4))


@pytest.fixture(scope="module", params=["mujoco", pytest.param("warp", marks=pytest.mark.warp)])
def engine_kwargs(request, warp_device):
    if request.param == "mujoco":
        return {"engine": "mujoco", "device": "cpu", "nthread": 1}
    return {"engine": "warp", "device": "cpu" if warp_device == "cpu" else "cuda"}


@pytest.fixture(scope="module")
def env(engine_kwargs, two_clips):
    env = FlyImitationVecEnv(NENV, reference=two_clips, control_decimation=2,
                             max_episode_steps=3, randomization={
                                 **RANDOM, "push_force_un": (1.0, 3.0), "push_rate_hz": 100.0},
                             **engine_kwargs)
    yield env
    env.close()


def _fields(engine):
    return {name: engine.world_field(name).detach().cpu().clone() for name in engine.world_fields}


def test_engine_writes_model_fields_of_the_masked_worlds_only(engine_kwargs):
    kwargs = {k: v for k, v in engine_kwargs.items() if k != "nthread"}
    engine = make_engine(build_model(), 3, nsubstep=2, world_fields=FIELDS, **kwargs)
    for _ in range(3):
        engine.step()
    before, state = _fields(engine), [t.detach().cpu().clone() for t in (engine.qpos,
                                                                         engine.qvel)]
    new = {name: value.to(engine.qpos.device) * 1.25 for name, value in before.items()}
    mask = torch.tensor([True, False, True], device=engine.qpos.device)
    engine.reset(mask, engine.qpos.clone(), engine.qvel.clone(), engine.ctrl.clone(), new)
    after = _fields(engine)
    for name in FIELDS:
        torch.testing.assert_close(after[name][[0, 2]], new[name].cpu()[[0, 2]])
        assert torch.equal(after[name][1], before[name][1]), name
    assert torch.equal(engine.qpos[1].cpu(), state[0][1])
    assert torch.equal(engine.qvel[1].cpu(), state[1][1])
    # The new gravity acts on the reset worlds only: world 1 still falls straight down.
    engine.step()
    assert engine.qvel[1, 0].abs() < engine.qvel[0, 0].abs()
    # A reset without fields keeps every world's.
    engine.reset(mask, engine.qpos.clone(), engine.qvel.clone(), engine.ctrl.clone())
    for name in FIELDS:
        assert torch.equal(_fields(engine)[name], after[name])
    with pytest.raises(ValueError, match="exactly the engine's world fields"):
        engine.reset(mask, engine.qpos, engine.qvel, engine.ctrl, {"body_mass": new["body_mass"]})
    with pytest.raises(ValueError, match="cannot be a per-world model field"):
        make_engine(build_model(), 1, world_fields=("geom_type",), **kwargs)
    with pytest.raises(ValueError, match="derived by the engine"):  # set_const's to compute
        make_engine(build_model(), 1, world_fields=("body_subtreemass",), **kwargs)


@pytest.mark.warp
def test_engines_derive_the_constants_of_changed_worlds_as_mj_setconst(warp_device):
    # Heavier, wider, stretched worlds: both engines recompute subtree masses, geom bounds and
    # inverse weights with their library's set_const, as C MuJoCo's mj_setConst does on a
    # model with those values, and then step alike.
    model = build_model()
    fields = ("body_mass", "body_inertia", "geom_size", "body_pos")
    warp = make_engine(model, 3, nsubstep=2, engine="warp",
                       device="cpu" if warp_device == "cpu" else "cuda", world_fields=fields)
    c_mujoco = make_engine(model, 3, nsubstep=2, engine="mujoco", device="cpu",
                           world_fields=fields)
    scale = torch.tensor([1.0, 1.3, 0.8], dtype=torch.float64)
    changed = copy.deepcopy(model)
    changed.body_mass[:] *= 1.3
    changed.body_inertia[:] *= 1.3
    changed.geom_size[1:] *= 1.3
    changed.body_pos[2:] *= 1.05
    mujoco.mj_setConst(changed, mujoco.MjData(changed))
    for engine in (warp, c_mujoco):
        assert engine.derived_fields
        new = {}
        for name in fields:
            value = torch.from_numpy(np.stack([model_field(model, name)] * 3))
            factor = {"body_pos": 1.05}.get(name, float(scale[1]))
            value[1, 2 if name == "body_pos" else 1 if name == "geom_size" else 0:] *= factor
            new[name] = value.to(engine.qpos.device)
        mask = torch.tensor([False, True, False], device=engine.qpos.device)
        engine.reset(mask, engine.qpos.clone(), engine.qvel.clone(), engine.ctrl.clone(), new)
        for name in engine.derived_fields:
            got = engine.world_field(name).double().cpu().numpy()
            np.testing.assert_allclose(got[1], getattr(changed, name), rtol=2e-4, atol=1e-6,
                                       err_msg=f"{engine.name} {name}")
            np.testing.assert_allclose(got[0], getattr(model, name), rtol=2e-4, atol=1e-6,
                                       err_msg=f"{engine.name} {name} of an unchanged world")
    assert not np.allclose(changed.dof_invweight0, model.dof_invweight0)
    for _ in range(3):
        for engine in (warp, c_mujoco):
            engine.step()
        np.testing.assert_allclose(warp.qpos.cpu().numpy(), c_mujoco.qpos.numpy(), atol=5e-5)


def test_two_bodies_reproduce_each_bodys_forward_kinematics(env, two_clips):
    assert len(env.ref.bodies) == 2 and env.ref.clip_body.tolist() == [0, 1]
    _, info = env.reset(seed=3)
    assert torch.equal(info["body"], env.ref.clip_body[info["clip"]])
    assert set(info["clip"].tolist()) == {0, 1}  # both bodies are in play (seed chosen so)
    state = env._read_state()
    ref = env.ref.claw_pos_b[info["clip"], info["frame"]]
    # Each world's claws are where its clip's body puts them (FK of that body at that frame)...
    torch.testing.assert_close(state.claw_pos_b.cpu(), ref.cpu(), atol=2e-5, rtol=0)
    # The bank's claws are each clip's own body's FK, which the other body would not give.
    for clipid, clip in enumerate(two_clips):
        q = env.ref.joint_pos[clipid, :1].double().cpu().numpy()
        fk = forward_kinematics(clip.body, q)[0, :, -1]
        other = forward_kinematics(two_clips[1 - clipid].body, q)[0, :, -1]
        np.testing.assert_allclose(env.ref.claw_pos_b[clipid, 0].cpu(), fk, atol=1e-5)
        assert np.abs(other - fk).max() > 0.1


def test_randomized_worlds_get_their_samples(env):
    _, info = env.reset(seed=5)
    e = env.engine
    fields = _fields(e)
    floor = e.model.geom("floor").id
    np.testing.assert_allclose(fields["geom_friction"][:, floor, 0],
                               info["randomization/friction"].cpu(), rtol=1e-6)
    models = env._world_models._base
    body = info["body"].cpu()
    kp = models["actuator_gainprm"].cpu()[body, 0, 0]
    np.testing.assert_allclose(fields["actuator_gainprm"][:, 0, 0],
                               kp * info["randomization/actuator_gain_scale"].cpu(), rtol=1e-5)
    np.testing.assert_allclose(fields["actuator_biasprm"][:, 0, 1],
                               -kp * info["randomization/actuator_gain_scale"].cpu(), rtol=1e-5)
    # The joints' gains only: the tarsi's adhesion (actuators 42-47) keeps its 20 µN.
    np.testing.assert_allclose(fields["actuator_gainprm"][:, 42:, 0], 20.0, rtol=1e-6)
    mass = models["body_mass"].cpu()[body].sum(1)
    np.testing.assert_allclose(fields["body_mass"].sum(1),
                               mass * info["randomization/mass_scale"].cpu(), rtol=1e-5)
    gravity = fields["opt.gravity"].double()
    tilt = torch.acos(-gravity[:, 2] / gravity.norm(dim=1))
    np.testing.assert_allclose(tilt, info["randomization/floor_slope_rad"].cpu(), atol=1e-4)
    np.testing.assert_allclose(gravity.norm(dim=1), 9810.0, rtol=1e-6)
    for name, (low, high) in RANDOM.items():
        assert ((info[f"randomization/{name}"] >= low)
                & (info[f"randomization/{name}"] <= high)).all()


def test_masked_reset_leaves_the_other_worlds_model_untouched(env):
    _, info = env.reset(seed=7)
    before = _fields(env.engine)
    mask = torch.tensor([False, True, False, False], device=env.device)
    _, after_info = env.reset(options={"reset_mask": mask})
    after = _fields(env.engine)
    for name in env.engine.world_fields:
        assert torch.equal(after[name][[0, 2, 3]], before[name][[0, 2, 3]]), name
    for name in RANDOM:
        key = f"randomization/{name}"
        assert torch.equal(after_info[key][[0, 2, 3]], info[key][[0, 2, 3]])
        assert after_info[key][1] != info[key][1]


def test_env_step_and_reset_read_nothing_on_the_host(env, engine_kwargs):
    if engine_kwargs["engine"] != "warp":
        pytest.skip("the C engine reads its reset mask on the host by design")
    env.reset(seed=1)
    actions = torch.zeros(NENV, 42, device=env.device)
    with no_host_reads():
        for _ in range(5):  # episodes of 3 steps: worlds reset inside the guard
            env.step(actions)
        env.reset(options={"reset_mask": torch.ones(NENV, dtype=torch.bool, device=env.device)})


def test_same_seed_same_samples(two_clips):
    def run(seed):
        env = FlyImitationVecEnv(NENV, reference=two_clips, engine="mujoco", device="cpu",
                                 nthread=1, control_decimation=2, randomization={
                                     **RANDOM, "push_force_un": (1.0, 5.0), "push_rate_hz": 200.0})
        _, info = env.reset(seed=seed)
        for _ in range(3):
            *_, step_info = env.step(torch.zeros(NENV, 42))
        env.close()
        return info, step_info, env._pushes.force

    a, b, c = run(11), run(11), run(12)
    for key in a[0]:
        assert torch.equal(a[0][key], b[0][key]), key
    assert torch.equal(a[1]["randomization/push"], b[1]["randomization/push"])
    assert torch.equal(a[2], b[2])
    assert not torch.equal(a[0]["randomization/friction"], c[0]["randomization/friction"])


def test_pushes_act_on_the_thorax(two_clips):
    env = FlyImitationVecEnv(NENV, reference=two_clips[0], engine="mujoco", device="cpu",
                             nthread=1, control_decimation=2, randomization={
                                 "push_force_un": (2.0, 4.0), "push_rate_hz": 1e4,
                                 "push_duration_s": 1e-3})
    env.reset(seed=0)
    *_, info = env.step(torch.zeros(NENV, 42))
    assert info["randomization/push"].all()  # rate * dt >= 1: every world is pushed
    thorax = env.engine.model.body("thorax").id
    force = env.engine.xfrc_applied[:, thorax, :3].norm(dim=1)
    assert ((force >= 2.0 - 1e-6) & (force <= 4.0 + 1e-6)).all()
    assert env.engine.xfrc_applied[:, thorax, 2].abs().max() == 0  # horizontal
    env.close()


def test_randomization_off_by_default_changes_nothing(two_clips):
    env = FlyImitationVecEnv(2, reference=two_clips[0], engine="mujoco", device="cpu", nthread=1)
    assert env.engine.world_fields == () and env._pushes is None
    _, info = env.reset(seed=0)
    assert set(info) == {"clip", "frame", "privileged_obs"}
    assert list(env.privileged_layout) == ["push_force_h", "push_left_s", "thorax_height_mm"]
    assert info["privileged_obs"].shape == (2, 4) and not info["privileged_obs"][:, :3].any()
    env.close()


def test_the_privileged_observation_holds_the_push_to_come_and_the_samples(two_clips):
    # Pushes of 3 steps (0.6 ms at control_decimation 2), started at about every fifth step.
    env = FlyImitationVecEnv(8, reference=two_clips[0], engine="mujoco", device="cpu",
                             nthread=1, control_decimation=2, randomization={
                                 "friction": (0.5, 1.5), "mass_scale": (0.8, 1.2),
                                 "push_force_un": (2.0, 4.0), "push_rate_hz": 1000.0,
                                 "push_duration_s": 6e-4})
    layout, dt = env.privileged_layout, env.config.control_dt_s
    assert list(layout)[3:] == ["randomization/friction", "randomization/mass_scale"]
    _, info = env.reset(seed=3)
    priv = info["privileged_obs"]
    assert priv.shape == (8, 6) and not priv[:, :3].any()  # no push before the first step
    for name in ("randomization/friction", "randomization/mass_scale"):
        torch.testing.assert_close(priv[:, layout[name]].squeeze(1), info[name])
    thorax = env.engine.model.body("thorax").id
    pushed, ongoing = torch.zeros(8, dtype=torch.bool), 0
    for _ in range(30):
        quat = env.engine.qpos[:, 3:7].float().clone()
        left = priv[:, layout["push_left_s"]].squeeze(1)
        *_, info = env.step(torch.zeros(8, 42))
        force_w = env.engine.xfrc_applied[:, thorax, :3].float()
        force_h = priv[:, layout["push_force_h"]]
        on = left > 0  # a push still on acts next step, and no other starts there
        ongoing += int(on.sum())
        # The push to come, in the heading frame at the observation (x forward, y left).
        yaw = torch.atan2(2 * (quat[:, 0] * quat[:, 3] + quat[:, 1] * quat[:, 2]),
                          1 - 2 * (quat[:, 2] ** 2 + quat[:, 3] ** 2))
        expected = torch.stack([torch.cos(yaw) * force_w[:, 0] + torch.sin(yaw) * force_w[:, 1],
                                -torch.sin(yaw) * force_w[:, 0] + torch.cos(yaw) * force_w[:, 1]],
                               dim=1)
        torch.testing.assert_close(force_h[on], expected[on], atol=1e-5, rtol=1e-5)
        assert not force_h[~on].any()
        priv = info["privileged_obs"]
        now_left = priv[:, layout["push_left_s"]].squeeze(1)
        torch.testing.assert_close(now_left[on], left[on] - dt)  # counts down by a step
        assert (now_left <= 2 * dt + 1e-9).all()  # what is left after the first of 3 steps
        torch.testing.assert_close(priv[:, layout["thorax_height_mm"]].squeeze(1),
                                   env.engine.qpos[:, 2].float())
        pushed |= info["randomization/push"]
    assert pushed.all() and ongoing > 10
    env.close()


def test_bad_randomization_gets_clear_errors():
    with pytest.raises(ValueError, match="low <= high"):
        RandomizationConfig(friction=(1.5, 0.5))
    with pytest.raises(ValueError, match="a \\(low, high\\) pair"):
        RandomizationConfig(mass_scale=1.2)
    with pytest.raises(ValueError, match="must lie in"):
        RandomizationConfig(mass_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="must lie in"):
        RandomizationConfig(floor_slope_rad=(0.0, math.pi / 2))
    with pytest.raises(ValueError, match="push_duration_s must be > 0"):
        RandomizationConfig(push_duration_s=0.0)
    with pytest.raises(TypeError):
        RandomizationConfig(frictions=(0.5, 1.0))
    # Through the env's config (what `flyenv train --randomization` reaches): named, with a hint.
    with pytest.raises(ValueError, match=r"randomization: unknown key 'fricton' \(did you mean "
                                         r"'friction'\?\); valid keys are \['friction', "):
        FlyImitationConfig(randomization={"fricton": (0.5, 1.5)})
    with pytest.raises(ValueError, match=r"reward: unknown key 'weight' \(did you mean "
                                         r"'weights'\?\)"):
        FlyImitationConfig(reward={"weight": {}})


def test_train_cli_names_a_misspelt_randomization(tmp_path, capsys):
    from flyenv.cli import main

    out = tmp_path / "ppo"
    assert main(["train", "--output", str(out), "--device", "cpu", "--randomization",
                 '{"mass_scal": [0.8, 1.2]}']) == 2
    err = capsys.readouterr().err
    assert "flyenv train: error:" in err and "did you mean 'mass_scale'?" in err
    assert "Traceback" not in err and not out.exists()  # no empty output folder left
    assert main(["train", "--randomization", "friction=0.5"]) == 2
    assert "--randomization: not valid JSON" in capsys.readouterr().err
    assert main(["train", "--randomization", "[0.5, 1.5]"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err


def test_every_declared_parameter_writes_world_fields_and_is_a_config_field():
    import dataclasses

    from flyenv.envs.randomized import PARAMETERS
    from flyenv.sim.engine import WORLD_FIELDS

    names = [f.name for f in dataclasses.fields(RandomizationConfig)]
    for parameter in PARAMETERS:
        assert parameter.name in names and parameter.doc in " ".join(
            RandomizationConfig.__doc__.split()), parameter.name
        assert all(w.field in WORLD_FIELDS for w in parameter.writes), parameter.name


_NEW_PARAMETER = """
PARAMETERS += (RandomizedParameter(
    "gravity_scale", "factor on gravity.", (Write("opt.gravity", "scale"),)),)
"""
_CHECK = """
import torch
from flyenv.envs import FlyImitationVecEnv, RandomizationConfig
assert RandomizationConfig.RANGES[-1] == "gravity_scale"
try:
    RandomizationConfig(gravity_scale=(0.0, 1.0))
except ValueError as err:
    assert "gravity_scale must lie in (0, inf)" in str(err)
else:
    raise AssertionError("no domain check")
env = FlyImitationVecEnv(3, engine="mujoco", device="cpu", nthread=1,
                         randomization={"gravity_scale": (0.5, 2.0)})
_, info = env.reset(seed=0)
scale = info["randomization/gravity_scale"]
assert ((scale >= 0.5) & (scale <= 2.0)).all() and len(set(scale.tolist())) == 3
gravity = env.engine.world_field("opt.gravity")[:, 2]
torch.testing.assert_close(gravity, -9810.0 * scale.double())
print("ok")
"""


def test_a_parameter_added_by_declaration_alone_is_configured_sampled_and_written(tmp_path):
    # A copy of the package with one entry added to randomized.py, and nothing else: the config
    # field, its check, the sampling, the engine's field and the info key follow.
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import flyenv

    package = tmp_path / "flyenv"
    shutil.copytree(Path(flyenv.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(package / "envs" / "randomized.py", "a") as file:
        file.write(_NEW_PARAMETER)
    result = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env={**os.environ,
                                                            "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
def test_bodies_differing_in_tarsus_tilt_each_simulate_their_own(engine_kwargs):
    """A world given a tilted body's fields moves as that body's own model does: the tarsus
    capsule's, touch zone's and inertia's orientations are held per world, not only the
    positions."""
    from flyenv.envs.randomization import body_fields, shared_model
    from flyenv.sim.engine import model_field

    kwargs = {k: v for k, v in engine_kwargs.items() if k != "nthread"}
    planar = BodyConfig.default()
    tilted = planar.replace(tarsus_tilt_rad=(0.5, -0.4, 0.3, -0.5, 0.4, -0.3), name="tilted")
    models = [build_model(planar), build_model(tilted)]
    fields = body_fields(models)
    assert {"geom_quat", "site_quat", "body_iquat", "geom_pos", "site_pos"} <= set(fields)
    both = make_engine(shared_model(models), 2, nsubstep=5, world_fields=fields, **kwargs)
    alone = make_engine(models[1], 1, nsubstep=5, **kwargs)
    device = both.qpos.device
    values = {name: torch.tensor(np.stack([model_field(m, name) for m in models]),
                                 dtype=both.world_field(name).dtype, device=device)
              for name in fields}
    mask = torch.tensor([True, True], device=device)
    start = [t.to(device).expand(2, -1).clone() for t in (alone.qpos, alone.qvel, alone.ctrl)]
    both.reset(mask, *start, values)  # the tilted body's standing start in both worlds
    for _ in range(40):
        both.step()
        alone.step()
    torch.testing.assert_close(both.qpos[1].cpu(), alone.qpos[0].cpu(), atol=1e-5, rtol=0)
    assert (both.qpos[0] - both.qpos[1]).abs().max() > 1e-3  # the tilt matters here


def test_the_privileged_push_is_in_the_heading_frame_of_the_fly():
    from flyenv.envs.observations import FlyState, build_privileged

    # A fly turned 90 deg to the left faces world +y: a push along world +x comes from its left
    # and points to its right (-y in its heading frame), whatever its pitch.
    yaw, pitch = math.pi / 2, 0.3
    turn = torch.tensor([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    nose_up = torch.tensor([math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0])
    w1, v1, w2, v2 = turn[0], turn[1:], nose_up[0], nose_up[1:]
    quat = torch.cat([(w1 * w2 - v1 @ v2)[None], w1 * v2 + w2 * v1 + torch.cross(v1, v2, dim=0)])
    zeros = torch.zeros(1, 3)
    state = FlyState(joint_pos=torch.zeros(1, 42), joint_vel=torch.zeros(1, 42),
                     root_pos_w=torch.tensor([[0.0, 0.0, 1.2]]), root_quat_w=quat[None],
                     lin_vel_w=zeros, ang_vel_b=zeros, claw_pos_b=torch.zeros(1, 6, 3),
                     touch=torch.zeros(1, 6), gravity_b=zeros, lin_vel_b=zeros)
    priv = build_privileged(state, torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([0.01]),
                            (torch.tensor([1.2], dtype=torch.float64),))
    torch.testing.assert_close(priv, torch.tensor([[0.0, -3.0, 0.01, 1.2, 1.2]]))
