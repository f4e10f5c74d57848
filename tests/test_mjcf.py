import itertools

import mujoco
import numpy as np
import pytest

from flyenv.body import DOF_NAMES, BodyConfig, ModelOptions, build_model, build_spec
from flyenv.body import constants as c
from flyenv.body.kinematics import forward_kinematics


@pytest.fixture(scope="module")
def free_model():
    return build_model()


def _sites_in_thorax_frame(model, data):
    ids = [model.site(name).id for name in c.KEYPOINT_NAMES]
    thorax = model.body("thorax").id
    rel = data.site_xpos[ids] - data.xpos[thorax]
    return (rel @ data.xmat[thorax].reshape(3, 3)).reshape(6, 5, 3)


@pytest.mark.parametrize("tethered", [False, True])
def test_keypoint_sites_equal_forward_kinematics(tethered):
    body = BodyConfig.default()
    model = build_model(body, tethered=tethered)
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(body.bounds[:, 0], body.bounds[:, 1])
        data.qpos[-42:] = q
        if not tethered:  # a random root pose too: FK is in the thorax frame
            data.qpos[:3] = rng.normal(size=3)
            quat = rng.normal(size=4)
            data.qpos[3:7] = quat / np.linalg.norm(quat)
        mujoco.mj_kinematics(model, data)
        np.testing.assert_allclose(_sites_in_thorax_frame(model, data),
                                   forward_kinematics(body, q), rtol=0, atol=1e-9)


def test_custom_body_sites_equal_forward_kinematics():
    body = BodyConfig.default()
    body = body.replace(segment_lengths_mm=tuple(tuple(x * s for x, s in zip(
        leg, (1.2, 0.9, 1.1, 0.8), strict=True)) for leg in body.segment_lengths_mm),
        thc_mm=tuple((x + 0.05, y, z) for x, y, z in body.thc_mm), name="custom")
    model = build_model(body)
    data = mujoco.MjData(model)
    q = np.random.default_rng(1).uniform(body.bounds[:, 0], body.bounds[:, 1])
    data.qpos[-42:] = q
    mujoco.mj_kinematics(model, data)
    np.testing.assert_allclose(_sites_in_thorax_frame(model, data) + [0, 0, 0],
                               forward_kinematics(body, q), atol=1e-9)


def test_joints_and_actuators_in_documented_order(free_model):
    m = free_model
    # The 42 joints' actuators, then the six tarsi's adhesion (on by default, issue 22).
    assert m.nu == 48 and m.njnt == 43 and m.nq == 49
    assert [m.actuator(i).name for i in range(m.nu)] == list(DOF_NAMES + c.ADHESION_NAMES)
    assert [m.joint(i).name for i in range(1, m.njnt)] == list(DOF_NAMES)
    # Joint qpos addresses are consecutive, so qpos[7:] is the angle vector.
    np.testing.assert_array_equal(m.jnt_qposadr[1:], np.arange(7, 49))
    for i, name in enumerate(DOF_NAMES):
        assert m.actuator_trnid[i, 0] == m.joint(name).id
    bounds = BodyConfig.default().bounds
    np.testing.assert_allclose(m.jnt_range[1:], bounds)
    np.testing.assert_allclose(m.actuator_ctrlrange[:42], bounds)
    np.testing.assert_allclose(m.actuator_gainprm[:42, 0], 150.0)
    np.testing.assert_allclose(m.actuator_biasprm[:42, 1], -150.0)
    np.testing.assert_allclose(m.actuator_ctrlrange[42:], [[0.0, 1.0]] * 6)
    assert m.jnt_limited[1:].all()


def test_units_mass_and_timestep(free_model):
    m = free_model
    assert m.opt.timestep == pytest.approx(1e-4)
    np.testing.assert_allclose(m.opt.gravity, [0, 0, -9810])
    assert m.body_mass.sum() == pytest.approx(1.024e-3, rel=1e-5)
    # Thorax, head and abdomen are on the root body; legs carry the rest.
    assert 0.5 < m.body_mass[m.body("thorax").id] / m.body_mass.sum() < 0.95


def test_only_ground_contacts_possible(free_model):
    m = free_model
    floor = m.geom("floor").id
    for i, j in itertools.combinations(range(m.ngeom), 2):
        if floor in (i, j):
            continue
        can = (m.geom_contype[i] & m.geom_conaffinity[j]) or (
            m.geom_contype[j] & m.geom_conaffinity[i])
        assert not can, f"{m.geom(i).name} and {m.geom(j).name} could collide"
    touching = {m.geom(i).name for i in range(m.ngeom) if i != floor and (
        m.geom_contype[floor] & m.geom_conaffinity[i])}
    assert touching == {f"{leg}_Tarsus" for leg in c.LEGS} | {"thorax", "head", "abdomen"}


@pytest.mark.parametrize("tethered", [False, True])
def test_floor_is_a_checkerboard_of_1mm_squares_with_plain_contacts(tethered):
    # The texture is for video (forward progress shows against it); contacts stay a plain plane.
    m = build_model(tethered=tethered, floor=True)
    floor = m.geom("floor").id
    matid = m.geom_matid[floor]
    texid = m.mat_texid[matid, mujoco.mjtTextureRole.mjTEXROLE_RGB]
    assert matid >= 0 and texid >= 0 and m.tex_type[texid] == mujoco.mjtTexture.mjTEXTURE_2D
    assert m.mat_texuniform[matid]  # texrepeat per mm; a checker texture holds 2 x 2 squares
    np.testing.assert_allclose(1.0 / (2.0 * m.mat_texrepeat[matid]), [1.0, 1.0])
    options = ModelOptions()
    assert (m.geom_contype[floor], m.geom_conaffinity[floor]) == (1, 0)
    np.testing.assert_allclose(m.geom_friction[floor], [options.friction, 0.005, 0.0001])
    np.testing.assert_allclose(m.geom_solref[floor], options.contact_solref)
    np.testing.assert_allclose(m.geom_solimp[floor], options.contact_solimp)
    assert build_model(tethered=True).ntex == 0  # no floor, no texture


def test_free_fly_stands_for_one_second(free_model):
    m = free_model
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("stand").id)
    heights, uprights = [], []
    for _ in range(10_000):
        mujoco.mj_step(m, d)
        heights.append(d.qpos[2])
        uprights.append(d.xmat[m.body("thorax").id][8])
    assert np.isfinite(d.qpos).all() and np.isfinite(d.qvel).all()
    heights = np.array(heights)
    assert 0.65 < heights.min() and heights.max() < 0.95
    assert min(uprights) > 0.98
    assert np.linalg.norm(d.qpos[:2]) < 0.1  # no creeping away
    floor = m.geom("floor").id
    contacts = {(d.contact[i].geom1, d.contact[i].geom2) for i in range(d.ncon)}
    assert contacts and all(floor in pair for pair in contacts)
    touching = {m.geom(g).name for pair in contacts for g in pair if g != floor}
    assert touching == {f"{leg}_Tarsus" for leg in c.LEGS}


def test_tethered_thorax_does_not_move():
    m = build_model(tethered=True)
    assert m.nq == 42 and m.ngeom == 3 + 24  # no floor
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("stand").id)
    mujoco.mj_forward(m, d)
    start = d.xpos[m.body("thorax").id].copy()
    for _ in range(500):
        mujoco.mj_step(m, d)
    np.testing.assert_array_equal(d.xpos[m.body("thorax").id], start)


def test_mjcf_export_loads_with_plain_mujoco(tmp_path):
    spec = build_spec(tethered=False)
    model = spec.compile()
    path = tmp_path / "fly.xml"
    path.write_text(spec.to_xml())
    loaded = mujoco.MjModel.from_xml_path(str(path))
    assert (loaded.nq, loaded.nv, loaded.nu) == (model.nq, model.nv, model.nu)
    # MJCF export writes 6 significant digits.
    np.testing.assert_allclose(loaded.body_mass, model.body_mass, rtol=1e-5)
    np.testing.assert_allclose(loaded.jnt_range, model.jnt_range, rtol=1e-5)
    np.testing.assert_allclose(loaded.key_qpos, model.key_qpos, rtol=1e-5)
    assert [loaded.actuator(i).name for i in range(loaded.nu)] == list(DOF_NAMES
                                                                        + c.ADHESION_NAMES)
    assert loaded.opt.noslip_iterations == model.opt.noslip_iterations == 3


def test_model_options_validation():
    with pytest.raises(ValueError, match="timestep_s must be > 0"):
        ModelOptions(timestep_s=0)
    with pytest.raises(ValueError, match="segment_radii_mm"):
        ModelOptions(segment_radii_mm=(0.1, 0.1, 0.1))
    assert build_model(options=ModelOptions(timestep_s=2e-4)).opt.timestep == 2e-4


@pytest.mark.warp
def test_mujoco_warp_agrees_with_c_mujoco(free_model, warp_device):
    import mujoco_warp as mjw
    import warp as wp

    m = free_model
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("stand").id)
    with wp.ScopedDevice(warp_device):
        mw = mjw.put_model(m)
        dw = mjw.put_data(m, d, nworld=2)
        for _ in range(200):
            mjw.step(mw, dw)
        qpos, qvel = dw.qpos.numpy(), dw.qvel.numpy()
    for _ in range(200):
        mujoco.mj_step(m, d)
    assert d.ncon == 6
    for world in range(2):
        np.testing.assert_allclose(qpos[world], d.qpos, atol=1e-5)
        np.testing.assert_allclose(qvel[world], d.qvel, atol=1e-2)
