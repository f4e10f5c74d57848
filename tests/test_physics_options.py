import mujoco
import pytest

from flyenv.body.mjcf import ModelOptions, build_model


def test_integrator_cone_and_tolerance_reach_the_model():
    model = build_model(options=ModelOptions(integrator="implicitfast", cone="elliptic",
                                             solver_tolerance=1e-6))
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    assert model.opt.tolerance == pytest.approx(1e-6)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("integrator", "rk4", "integrator must be one of"),
    ("cone", "round", "cone must be one of"),
    ("solver_tolerance", -1.0, "solver_tolerance must be >= 0"),
])
def test_bad_solver_options_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        ModelOptions(**{field: value})


def test_control_decimation_follows_the_physics_step():
    from flyenv.envs import FlyImitationConfig

    default = FlyImitationConfig()
    assert default.control_decimation is None
    assert default.control_dt_s == pytest.approx(2e-3)  # a 500 Hz policy
    assert default.substeps * default.physics_dt_s == pytest.approx(2e-3)
    for dt, substeps in ((1e-4, 20), (2e-4, 10), (2.5e-4, 8), (5e-4, 4), (1e-3, 2)):
        assert FlyImitationConfig(physics_dt_s=dt).substeps == substeps
    explicit = FlyImitationConfig(physics_dt_s=1e-4, control_decimation=50)
    assert explicit.substeps == 50 and explicit.control_dt_s == pytest.approx(5e-3)
    with pytest.raises(ValueError, match="does not divide the 2 ms control step"):
        FlyImitationConfig(physics_dt_s=3e-4)
    assert FlyImitationConfig(physics_dt_s=3e-4, control_decimation=7).substeps == 7


def test_env_changing_only_the_step_keeps_500_hz():
    from flyenv.envs import FlyImitationConfig, FlyImitationVecEnv

    base = FlyImitationConfig(engine="mujoco", device="cpu")
    env = FlyImitationVecEnv(num_envs=1, config=base, physics_dt_s=1e-4)
    try:
        assert env.engine.nsubstep == 20 and env.config.control_dt_s == pytest.approx(2e-3)
        assert env.engine.model.opt.timestep == pytest.approx(1e-4)
    finally:
        env.close()
