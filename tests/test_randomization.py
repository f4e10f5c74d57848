"""Per-world model fields: the engines' masked writes, several bodies in one env, randomization.

Both engines run every test; the warp engine on the Warp CPU device with its captured graphs
(CUDA when there is one).
"""

import math

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
    assert set(info) == {"clip", "frame"}
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
