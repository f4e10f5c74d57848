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
