"""Contact physics of the fly (issue 22): the slide metric, adhesion, noslip and impratio."""

import mujoco
import numpy as np
import pytest

from flyenv.body import constants as c
from flyenv.body.mjcf import SLIDING_FEET, ModelOptions, build_model
from flyenv.sim.contacts import contact_slide_speed

RADIUS_MM = 0.1


def _rolling_capsule():
    # A capsule lying across y on a plane, pressed in by 1 nm, with a site at one end.
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=(0, 0, 1))
    body = spec.worldbody.add_body(name="capsule", pos=(0, 0, RADIUS_MM - 1e-6))
    body.add_freejoint()
    body.add_geom(name="capsule", type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=(RADIUS_MM, 0, 0),
                  fromto=(0, -0.5, 0, 0, 0.5, 0))
    body.add_site(name="end", pos=(0, 0.5, 0))
    model = spec.compile()
    return model, mujoco.MjData(model), model.geom("capsule").id


@pytest.mark.parametrize(("speed", "spin", "slide"), [
    (5.0, 5.0 / RADIUS_MM, 0.0),  # rolls without sliding: the site moves, the contact does not
    (5.0, 0.0, 5.0),              # slides without rolling
    (5.0, -5.0 / RADIUS_MM, 10.0),  # spins backwards: the contact slides at twice the speed
    (0.0, 0.0, 0.0),              # still
])
def test_slide_is_measured_at_the_contact_not_at_a_site(speed, spin, slide):
    model, data, geom = _rolling_capsule()
    data.qvel[:] = [speed, 0, 0, 0, spin, 0]  # linear (world), angular (body frame)
    mujoco.mj_forward(model, data)
    assert data.ncon >= 1
    # (the contact point sits mid-penetration, 0.5 nm inside the capsule surface)
    np.testing.assert_allclose(contact_slide_speed(model, data, [geom]), [slide], atol=1e-4)
    site_velocity = np.zeros(6)  # (angular, linear) at the site, world frame
    mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_SITE, model.site("end").id,
                             site_velocity, 0)
    assert site_velocity[3] == pytest.approx(speed)  # the capsule's end moves at the speed


def test_slide_is_nan_without_contact():
    model, data, geom = _rolling_capsule()
    data.qpos[2] = 1.0  # lifted
    mujoco.mj_forward(model, data)
    assert np.isnan(contact_slide_speed(model, data, [geom])).all()


def test_contact_options_reach_the_model():
    options = ModelOptions(noslip_iterations=3, impratio=10.0, cone="elliptic",
                           adhesion_gain_uN=20.0, actuator_timeconst_s=0.01)
    model = build_model(options=options)
    assert model.opt.noslip_iterations == 3 and model.opt.impratio == pytest.approx(10.0)
    assert model.nu == c.NUM_DOFS + c.NUM_LEGS and model.na == c.NUM_DOFS
    for leg, name in zip(c.LEGS, c.ADHESION_NAMES, strict=True):
        actuator = model.actuator(name)
        assert actuator.trntype == mujoco.mjtTrn.mjTRN_BODY
        assert model.body(actuator.trnid[0]).name == f"{leg}_Tarsus"
        np.testing.assert_allclose(actuator.ctrlrange, [0, 1])
        assert actuator.gainprm[0] == pytest.approx(20.0)
    np.testing.assert_allclose(model.key("stand").act, c.STANDING_POSE_RAD)
    default = build_model()  # issue 22's feet that hold: adhesion 20 µN and noslip 3
    assert default.nu == c.NUM_DOFS + c.NUM_LEGS and default.opt.noslip_iterations == 3
    assert default.actuator(c.ADHESION_NAMES[0]).gainprm[0] == pytest.approx(20.0)
    sliding = build_model(options=ModelOptions(**SLIDING_FEET))
    assert sliding.nu == c.NUM_DOFS and sliding.opt.noslip_iterations == 0


@pytest.mark.parametrize(("field", "value"), [
    ("noslip_iterations", -1), ("noslip_iterations", 1.5), ("impratio", 0.5),
    ("adhesion_gain_uN", -1.0), ("actuator_timeconst_s", -0.01)])
def test_bad_contact_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ModelOptions(**{field: value})


def _pulled_claw_lift(adhesion_on: bool, pull_uN: float) -> float:
    # The standing fly; the left front tarsus is pulled straight up for 50 ms. Returns how far
    # its claw rose [mm].
    model = build_model(options=ModelOptions(adhesion_gain_uN=30.0))
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    data.ctrl[c.NUM_DOFS:] = 1.0 if adhesion_on else 0.0
    for _ in range(300):  # settle 30 ms
        mujoco.mj_step(model, data)
    claw = model.site("LF_Claw").id
    before = data.site_xpos[claw, 2]
    data.xfrc_applied[model.body("LF_Tarsus").id, 2] = pull_uN
    for _ in range(500):
        mujoco.mj_step(model, data)
    return float(data.site_xpos[claw, 2] - before)


def test_adhesion_holds_a_claw_against_a_pull():
    # 10 µN up (about the fly's weight) lifts a free claw off the ground; switched on, 30 µN of
    # adhesion holds it against 20 µN, and not against 40.
    assert _pulled_claw_lift(adhesion_on=False, pull_uN=10.0) > 0.05
    assert abs(_pulled_claw_lift(adhesion_on=True, pull_uN=20.0)) < 0.005
    assert _pulled_claw_lift(adhesion_on=True, pull_uN=40.0) > 0.05


# The env with adhesion -----------------------------------------------------------------------

ADHESION = {"adhesion_gain_uN": 30.0}


@pytest.mark.parametrize("action_mode", ["residual", "absolute"])
def test_reference_stance_drives_the_adhesion_by_default(action_mode):
    import torch

    from flyenv.envs import FlyImitationVecEnv
    from flyenv.motion.gait import tripod_gait

    gait = tripod_gait(duration_s=0.4)
    env = FlyImitationVecEnv(num_envs=2, reference=gait, engine="mujoco", device="cpu",
                             random_start=False, action_mode=action_mode)
    try:
        assert env.adhesion and not env.policy_adhesion
        assert env.single_action_space.shape == (c.NUM_DOFS,)  # the 42 joints' only
        env.reset(seed=0)
        np.testing.assert_array_equal(env.engine.ctrl[:, c.NUM_DOFS:].numpy(),
                                      env.ref.stance[0, 0].expand(2, -1).numpy())
        flags = []
        for step in range(30):
            action = env.replay_action()
            assert action.shape == (2, c.NUM_DOFS)
            env.step(action)
            # The adhesion commands are the stance flags of the frame the step targets.
            np.testing.assert_array_equal(env.engine.ctrl[:, c.NUM_DOFS:].numpy(),
                                          env.ref.stance[0, step + 1].expand(2, -1).numpy())
            np.testing.assert_allclose(env.engine.ctrl[:, :c.NUM_DOFS].numpy(),
                                       env.ref.joint_pos[0, step + 1].expand(2, -1).numpy(),
                                       atol=1e-6)
            flags.append(env.engine.ctrl[0, c.NUM_DOFS:].clone())
        flags = torch.stack(flags)
        assert set(flags.unique().tolist()) == {0.0, 1.0}
        assert (flags[:, 0] != flags[:, 3]).any()
        with pytest.raises(ValueError, match=rf"shape \(2, {c.NUM_DOFS}\)"):
            env.step(torch.zeros(2, c.NUM_DOFS + c.NUM_LEGS))
    finally:
        env.close()


def test_adhesion_control_is_checked():
    from flyenv.envs import FlyImitationConfig

    with pytest.raises(ValueError, match="adhesion_control must be one of"):
        FlyImitationConfig(adhesion_control="stance")
    with pytest.raises(ValueError, match="adhesion_control='policy' needs a model with adhesion"):
        FlyImitationConfig(adhesion_control="policy", model_options=SLIDING_FEET)
    # Without adhesion actuators the stance has nothing to drive: 42 actions either way.
    assert FlyImitationConfig(model_options=SLIDING_FEET).physics_options().adhesion is False


def test_env_without_adhesion_has_42_actuators_and_actions():
    from flyenv.envs import FlyImitationVecEnv
    from flyenv.motion.gait import tripod_gait

    env = FlyImitationVecEnv(num_envs=2, reference=tripod_gait(duration_s=0.2), engine="mujoco",
                             device="cpu", model_options=SLIDING_FEET)
    try:
        assert not env.adhesion and env.engine.ctrl.shape == (2, c.NUM_DOFS)
        env.reset(seed=0)
        env.step(env.replay_action())
        assert env.replay_action().shape == (2, c.NUM_DOFS)
    finally:
        env.close()


def test_policy_adhesion_adds_six_actions_in_0_1_and_replays_the_stance():
    import torch

    from flyenv.envs import FlyImitationVecEnv
    from flyenv.motion.gait import tripod_gait

    gait = tripod_gait(duration_s=0.4)
    env = FlyImitationVecEnv(num_envs=2, reference=gait, engine="mujoco", device="cpu",
                             model_options=ADHESION, random_start=False,
                             adhesion_control="policy")
    try:
        assert env.single_action_space.shape == (c.NUM_DOFS + c.NUM_LEGS,)
        np.testing.assert_array_equal(env.single_action_space.low[c.NUM_DOFS:], 0.0)
        np.testing.assert_array_equal(env.single_action_space.high[c.NUM_DOFS:], 1.0)
        env.reset(seed=0)
        # Reset: the adhesion commands are the start frame's stance flags.
        np.testing.assert_array_equal(env.engine.ctrl[:, c.NUM_DOFS:].numpy(),
                                      env.ref.stance[0, 0].expand(2, -1).numpy())
        stance_seen = []
        for _ in range(30):
            action = env.replay_action()
            assert action.shape == (2, c.NUM_DOFS + c.NUM_LEGS)
            assert (action[:, :c.NUM_DOFS] == 0).all()
            stance_seen.append(action[0, c.NUM_DOFS:].clone())
            env.step(action)
            np.testing.assert_array_equal(env.engine.ctrl[:, c.NUM_DOFS:].numpy(),
                                          action[:, c.NUM_DOFS:].numpy())
        stance_seen = torch.stack(stance_seen)
        # A tripod: the flags switch during 60 ms of 10 Hz stepping, and LF and RF alternate.
        assert set(stance_seen.unique().tolist()) == {0.0, 1.0}
        assert (stance_seen[:, 0] != stance_seen[:, 3]).any()
        over = env.replay_action()
        over[:, c.NUM_DOFS:] = 5.0  # clipped to the action space
        env.step(over)
        assert (env.engine.ctrl[:, c.NUM_DOFS:] == 1.0).all()
        with pytest.raises(ValueError, match=r"shape \(2, 48\)"):
            env.step(torch.zeros(2, c.NUM_DOFS))
    finally:
        env.close()


def test_env_refuses_the_actuator_filter():
    from flyenv.envs import FlyImitationConfig

    with pytest.raises(ValueError, match="actuator_timeconst_s"):
        FlyImitationConfig(model_options={"actuator_timeconst_s": 0.01}).physics_options()
