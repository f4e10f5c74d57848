import mujoco
import numpy as np
import pytest
import torch

from flyenv.body import constants as c
from flyenv.body.mjcf import ModelOptions, build_model
from flyenv.sim import make_engine, resolve_engine
from flyenv.sim.warp_engine import contact_capacity

NWORLD, NSUB = 3, 5


@pytest.fixture(scope="module")
def model():
    return build_model()


def _drive(engine, nstep, offset=0.0):
    # Different targets per world, so the worlds really differ; small enough steps (0.02 rad
    # per world) that no fly is kicked off the ground: at kp 150 a 0.1 rad jump launches one
    # within 6 ms, and float32 and float64 then part at the lift-off instant.
    # Joint targets only: the tarsi's adhesion commands (after the 42) stay as they are.
    target = engine.ctrl.clone()
    target[:, :c.NUM_DOFS] += offset + 0.02 * torch.arange(engine.nworld)[:, None].to(
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
    ctrl = engine.ctrl.clone()
    ctrl[:, :c.NUM_DOFS] = qpos[:, -42:]
    return qpos, qvel, ctrl


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
        data.ctrl[:c.NUM_DOFS] = gait.joint_angles[frame]
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
def warp_kwargs(warp_device):
    # On CUDA, float atomics make two runs differ in the last bits: tests that compare two warp
    # runs bit for bit use MuJoCo Warp's deterministic mode there. The CPU runs kernels serially,
    # so it is deterministic as it is (and the deterministic kernels need a compile of their own).
    device = "cpu" if warp_device == "cpu" else "cuda"
    return {"engine": "warp", "device": device, "deterministic": device != "cpu"}


@pytest.fixture(scope="module")
def warp_engines(model, warp_kwargs):
    return [make_engine(model, NWORLD, nsubstep=NSUB, **warp_kwargs) for _ in range(2)]


@pytest.mark.warp
def test_warp_engine_runs_captured_graphs_on_every_device(warp_engines):
    # The CPU tests exercise the graphs a GPU runs: step and reset are captured on the Warp CPU
    # device too.
    assert all(engine.use_cuda_graph for engine in warp_engines)


@pytest.mark.warp
def test_warp_engine_agrees_with_c_mujoco(model, warp_kwargs):
    warp = make_engine(model, NWORLD, nsubstep=NSUB, **warp_kwargs)
    c_mujoco = make_engine(model, NWORLD, nsubstep=NSUB, engine="mujoco", device="cpu")
    assert warp.qpos.dtype == torch.float32 and warp.qpos.device.type == warp_kwargs["device"]
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
def test_warp_agrees_with_c_mujoco_with_adhesion_and_noslip(warp_kwargs):
    # Issue 22's contact options on both engines: tarsus adhesion and noslip.
    model = build_model(options=ModelOptions(adhesion_gain_uN=30.0, noslip_iterations=3))
    warp = make_engine(model, NWORLD, nsubstep=NSUB, **warp_kwargs)
    c_mujoco = make_engine(model, NWORLD, nsubstep=NSUB, engine="mujoco", device="cpu")
    assert warp.ctrl.shape == (NWORLD, 48)
    for engine in (warp, c_mujoco):  # world 1 lets go with its left legs
        engine.ctrl[1, 42:45] = 0.0
    for _ in range(4):
        _drive(warp, 1)
        _drive(c_mujoco, 1)
        np.testing.assert_allclose(warp.qpos.cpu().numpy(), c_mujoco.qpos.numpy(), atol=2e-5)
        np.testing.assert_allclose(warp.sensordata.cpu().numpy(), c_mujoco.sensordata.numpy(),
                                   rtol=2e-3, atol=2e-3)
    # Adhesion presses the tarsi on: more normal force than the fly's weight alone.
    assert c_mujoco.sensordata[0].sum() > c_mujoco.sensordata[1].sum() + 30.0
    assert not warp.overflow().any()


@pytest.mark.warp
def test_warp_masked_reset_leaves_other_worlds_bit_identical(warp_engines):
    _check_masked_reset(*warp_engines)


@pytest.mark.warp
def test_captured_and_uncaptured_steps_and_resets_agree(model, warp_kwargs):
    # Several steps with different worlds reset midway, through the captured step and reset
    # graphs and through the same calls made one by one.
    captured = make_engine(model, 4, nsubstep=NSUB, **warp_kwargs)
    plain = make_engine(model, 4, nsubstep=NSUB, cuda_graph=False, **warp_kwargs)
    assert captured.use_cuda_graph and not plain.use_cuda_graph
    device = captured.device
    masks = {2: [True, False, False, True], 4: [False, False, False, False],
             5: [False, True, False, False]}
    for step in range(8):
        for engine in (captured, plain):
            if step in masks:
                qpos, qvel, ctrl = _reset_state(engine)
                qpos[:, -42:] += 0.02 * step
                engine.reset(torch.tensor(masks[step], device=device), qpos, qvel, ctrl)
            _drive(engine, 1, offset=0.01 * step)
        for a, b in zip(_snapshot(captured), _snapshot(plain), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0 if device.type == "cpu" else 1e-6)
        assert torch.equal(captured.overflow(), plain.overflow())


@pytest.mark.warp
def test_empty_reset_does_no_work(warp_engines):
    # The reset graph's work (reset_data, forward, restores) runs only when a world is reset:
    # after moving a world's qpos by hand, an empty reset must not recompute its body poses.
    import warp as wp

    engine = warp_engines[0]
    xpos = wp.to_torch(engine._d.xpos)
    before = xpos.clone()
    engine.qpos[0, 2] += 1.0
    engine.reset(torch.zeros(NWORLD, dtype=torch.bool, device=engine.device), engine.qpos,
                 engine.qvel, engine.ctrl)
    assert torch.equal(xpos, before)
    # A non-empty mask runs it (forward recomputes every world's body poses; the fields the
    # engine exposes are restored for the others).
    engine.reset(torch.tensor([True] + [False] * (NWORLD - 1), device=engine.device),
                 engine.qpos.clone(), engine.qvel.clone(), engine.ctrl.clone())
    torch.testing.assert_close(xpos[0, 1], engine.qpos[0, :3])  # the thorax, lifted
    engine.qpos[0, 2] -= 1.0


@pytest.mark.warp
def test_deterministic_mode_runs_and_repeats(model, warp_kwargs):
    # MuJoCo Warp's deterministic mode compiles and steps; two runs are bit-identical, and on
    # the CPU (serial, deterministic either way) it equals the default mode.
    kwargs = {**warp_kwargs, "deterministic": True}
    runs = [make_engine(model, NWORLD, nsubstep=NSUB, **kwargs) for _ in range(2)]
    default = make_engine(model, NWORLD, nsubstep=NSUB, **{**warp_kwargs,
                                                            "deterministic": False})
    assert runs[0].deterministic and not default.deterministic
    for engine in (*runs, default):
        _drive(engine, 3)
    assert torch.equal(runs[0].qpos, runs[1].qpos)
    if runs[0].device.type == "cpu":
        assert torch.equal(runs[0].qpos, default.qpos)


@pytest.mark.warp
def test_warp_overflow_is_flagged(model, warp_kwargs, monkeypatch):
    # One contact per world cannot hold a landing fly's six: the overflow must be reported.
    import flyenv.sim.warp_engine as warp_engine

    monkeypatch.setattr(warp_engine, "contact_capacity", lambda m: (1, 8))
    lifted = build_model(options=ModelOptions(standing_height_mm=1.5))
    engine = make_engine(lifted, 2, nsubstep=50, **warp_kwargs)
    assert engine.nconmax == 1
    engine.step()
    assert not engine.overflow().any()  # still in the air
    for _ in range(4):
        engine.step()
    assert engine.overflow().all()
    engine.reset(torch.tensor([True, False], device=engine.device), engine.qpos.clone(),
                 engine.qvel.clone(), engine.ctrl.clone())
    assert engine.overflow().tolist() == [False, True]


@pytest.mark.warp
def test_contact_pool_overflow_is_flagged(model, warp_kwargs, monkeypatch):
    # MuJoCo Warp drops contacts past its shared pool (nconmax * nworld) without an overflow
    # bit; with room for every constraint row, only the engine's own check can see it.
    import mujoco_warp as mjw

    import flyenv.sim.warp_engine as warp_engine

    lifted = build_model(options=ModelOptions(standing_height_mm=1.5))
    monkeypatch.setattr(warp_engine, "contact_capacity", lambda m: (1, 400))
    engine = make_engine(lifted, 2, nsubstep=50, **warp_kwargs)
    monkeypatch.undo()
    roomy = make_engine(lifted, 2, nsubstep=50, **warp_kwargs)
    engine.step()
    assert not engine.overflow().any()  # still in the air
    for _ in range(4):
        engine.step()
        roomy.step()
    assert engine.overflow().all()
    bits = engine._overflow.cpu()
    # The broadphase's candidate pairs share the pool's size and are dropped past it too.
    pool = int(mjw.OverflowType.NARROWPHASE | mjw.OverflowType.BROADPHASE)
    assert (bits & pool).all()
    assert not (bits & int(mjw.OverflowType.NEFC)).any()
    # The same landing with the engine's own capacity: nothing flagged.
    assert not roomy.overflow().any()


@pytest.mark.warp
def test_nonfinite_world_does_not_raise_the_solver_cost(model, warp_kwargs):
    # The solver loop runs until the slowest world converges: a diverged world must not make
    # it run to the iteration limit for everyone. Twin engines, one world NaN in one of them.
    engines = [make_engine(model, 4, nsubstep=1, **warp_kwargs) for _ in range(2)]
    for engine in engines:
        _drive(engine, 20)
    engines[0].qvel[1, 0] = float("nan")
    for _ in range(5):
        for engine in engines:
            _drive(engine, 1)
        sick, healthy = (e.solver_iterations().cpu() for e in engines)
        assert not torch.isfinite(engines[0].qpos[1]).all()
        assert torch.equal(sick[[0, 2, 3]], healthy[[0, 2, 3]])
        assert sick[1] <= healthy.max()
    assert healthy.max() < model.opt.iterations


def test_mujoco_engine_reports_solver_iterations(model):
    engine = make_engine(model, NWORLD, nsubstep=NSUB, engine="mujoco", device="cpu")
    _drive(engine, 2)
    iterations = engine.solver_iterations()
    assert iterations.shape == (NWORLD,) and iterations.dtype == torch.int32
    assert (iterations >= 1).all() and (iterations < model.opt.iterations).all()
