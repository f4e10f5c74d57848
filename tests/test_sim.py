import mujoco
import numpy as np
import pytest
import torch

from flyenv.body.mjcf import ModelOptions, build_model
from flyenv.sim import contact_capacity, make_engine, resolve_engine

NWORLD, NSUB = 3, 5


@pytest.fixture(scope="module")
def model():
    return build_model()


def _drive(engine, nstep, offset=0.0):
    # Different targets per world, so the worlds really differ.
    target = engine.ctrl.clone() + offset + 0.05 * torch.arange(engine.nworld)[:, None].to(
        engine.ctrl)
    for _ in range(nstep):
        engine.ctrl.copy_(target)
        engine.step()


def _snapshot(engine):
    return [t.detach().cpu().clone() for t in (engine.qpos, engine.qvel, engine.site_xpos,
                                                  engine.sensordata)]


def _reset_state(engine):
    qpos, qvel = engine.qpos.clone(), torch.zeros_like(engine.qvel)
    qpos[:, -42:] += 0.1
    return qpos, qvel, qpos[:, -42:].clone()


def test_mujoco_engine_views_alias_the_simulations(model):
    engine = make_engine(model, NWORLD, nsubstep=NSUB, engine="mujoco", device="cpu")
    assert engine.qpos.shape == (NWORLD, model.nq) and engine.qpos.dtype == torch.float64
    assert engine.sensordata.shape == (NWORLD, 6)
    pointer = engine.qpos.data_ptr()
    before = engine.qpos.clone()
    _drive(engine, 2)
    assert engine.qpos.data_ptr() == pointer
    assert not torch.equal(engine.qpos, before)
    # The model's own copy is untouched; the engine's has automatic reset disabled.
    assert not model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_AUTORESET
    assert engine.model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_AUTORESET


def test_mujoco_engine_matches_mj_step(model):
    engine = make_engine(model, 1, nsubstep=NSUB, engine="mujoco", device="cpu")
    data = mujoco.MjData(engine.model)
    mujoco.mj_resetDataKeyframe(engine.model, data, 0)
    for _ in range(4):
        engine.step()
        for _ in range(NSUB):
            mujoco.mj_step(engine.model, data)
    np.testing.assert_array_equal(engine.qpos[0].numpy(), data.qpos)


def _check_masked_reset(engine_a, engine_b):
    # Two identical engines; A resets world 0 midway. Worlds 1.. must stay bit-identical to B.
    _drive(engine_a, 3)
    _drive(engine_b, 3)
    qpos, qvel, ctrl = _reset_state(engine_a)
    mask = torch.tensor([True] + [False] * (engine_a.nworld - 1), device=engine_a.device)
    engine_a.reset(mask, qpos, qvel, ctrl)
    assert torch.equal(engine_a.qpos[0], qpos[0])
    for a, b in zip(_snapshot(engine_a), _snapshot(engine_b), strict=True):
        assert torch.equal(a[1:], b[1:])
    _drive(engine_a, 3, offset=0.01)
    _drive(engine_b, 3, offset=0.01)
    for a, b in zip(_snapshot(engine_a), _snapshot(engine_b), strict=True):
        assert torch.equal(a[1:], b[1:])


def test_mujoco_masked_reset_leaves_other_worlds_bit_identical(model):
    engines = [make_engine(model, NWORLD, nsubstep=NSUB, engine="mujoco", device="cpu")
               for _ in range(2)]
    _check_masked_reset(*engines)


def test_nonfinite_world_stays_flagged_not_silently_reset(model):
    engine = make_engine(model, NWORLD, nsubstep=NSUB, engine="mujoco", device="cpu")
    engine.qvel[1, 0] = float("nan")
    engine.step()
    assert not torch.isfinite(engine.qpos[1]).all()
    assert torch.isfinite(engine.qpos[[0, 2]]).all()


def test_contact_capacity_covers_a_walking_fly(model, gait):
    nconmax, njmax = contact_capacity(model)
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    most_con = most_efc = 0
    for frame in range(0, gait.num_frames, 5):
        data.ctrl[:] = gait.joint_angles[frame]
        for _ in range(20):
            mujoco.mj_step(model, data)
        most_con, most_efc = max(most_con, data.ncon), max(most_efc, data.nefc)
    assert 0 < most_con <= nconmax
    assert most_efc <= njmax
    assert contact_capacity(build_model(tethered=True))[0] == 1  # nothing collides: minimum


def test_resolve_engine_choices():
    assert resolve_engine("auto", "cpu") == ("mujoco", torch.device("cpu"))
    assert resolve_engine("warp", "cpu") == ("warp", torch.device("cpu"))
    with pytest.raises(ValueError, match="engine must be"):
        resolve_engine("physx", "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_engine("auto", "tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_engine("auto", "cuda")
        assert resolve_engine("auto", "auto") == ("mujoco", torch.device("cpu"))
    with pytest.raises(ValueError, match="nworld and nsubstep"):
        make_engine(build_model(tethered=True), 0)


# MuJoCo Warp (Warp CPU device in CI; CUDA when there is one) ---------------------------------


@pytest.fixture(scope="module")
def warp_engines(model, warp_device):
    device = "cpu" if warp_device == "cpu" else "cuda"
    return [make_engine(model, NWORLD, nsubstep=NSUB, engine="warp", device=device)
            for _ in range(2)]


@pytest.mark.warp
def test_warp_engine_agrees_with_c_mujoco(model, warp_engines):
    warp = make_engine(model, NWORLD, nsubstep=NSUB, engine="warp",
                       device=str(warp_engines[0].device))
    c_mujoco = make_engine(model, NWORLD, nsubstep=NSUB, engine="mujoco", device="cpu")
    assert warp.qpos.dtype == torch.float32 and warp.qpos.device == warp_engines[0].device
    for _ in range(4):
        _drive(warp, 1)
        _drive(c_mujoco, 1)
        np.testing.assert_allclose(warp.qpos.cpu().numpy(), c_mujoco.qpos.numpy(), atol=2e-5)
        np.testing.assert_allclose(warp.site_xpos.cpu().numpy(), c_mujoco.site_xpos.numpy(),
                                   atol=2e-5)
        np.testing.assert_allclose(warp.sensordata.cpu().numpy(), c_mujoco.sensordata.numpy(),
                                   rtol=2e-3, atol=2e-3)
    assert not warp.overflow().any()


@pytest.mark.warp
def test_warp_masked_reset_leaves_other_worlds_bit_identical(warp_engines):
    _check_masked_reset(*warp_engines)


@pytest.mark.warp
def test_warp_overflow_is_flagged(model, warp_engines, monkeypatch):
    # One contact per world cannot hold a landing fly's six: the overflow must be reported.
    import flyenv.sim.warp_engine as warp_engine

    monkeypatch.setattr(warp_engine, "contact_capacity", lambda m: (1, 8))
    lifted = build_model(options=ModelOptions(standing_height_mm=1.5))
    engine = make_engine(lifted, 2, nsubstep=50, engine="warp",
                         device=str(warp_engines[0].device))
    assert engine.nconmax == 1
    engine.step()
    assert not engine.overflow().any()  # still in the air
    for _ in range(4):
        engine.step()
    assert engine.overflow().all()
    engine.reset(torch.tensor([True, False], device=engine.device), engine.qpos.clone(),
                 engine.qvel.clone(), engine.ctrl.clone())
    assert engine.overflow().tolist() == [False, True]


@pytest.mark.gpu
@pytest.mark.warp
def test_captured_and_uncaptured_steps_agree(model):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    captured = make_engine(model, 8, nsubstep=NSUB, engine="warp", device="cuda")
    plain = make_engine(model, 8, nsubstep=NSUB, engine="warp", device="cuda", cuda_graph=False)
    assert captured.use_cuda_graph and not plain.use_cuda_graph
    for _ in range(5):
        _drive(captured, 1)
        _drive(plain, 1)
    torch.testing.assert_close(captured.qpos, plain.qpos, rtol=0, atol=1e-6)
