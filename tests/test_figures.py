"""Figures and videos carry what a reader needs: shared scales, labels, legends, time stamps.

The figures are drawn from made-up results (no simulation); what is checked is what a reader
would look for. The before/after look at each is in the issue's note.
"""

import numpy as np
import pytest

from flyenv.apps import plots
from flyenv.body import constants as c
from flyenv.sim.tracking import TrackingResult


def _result(tethered, error_deg, root=True):
    n = 50
    time_s = np.linspace(0.0, 1.0, n)
    target = np.zeros((n, c.NUM_DOFS))
    path = np.stack([10 * time_s, 0.5 * np.sin(time_s), 0.8 + 0 * time_s], axis=1)
    return TrackingResult(
        time_s=time_s, joint_angles=target + np.radians(error_deg), target_angles=target,
        root_pos=None if tethered else path + 0.1,
        reference_root_pos=None if tethered or not root else path, tethered=tethered,
        wall_s=1.0, num_steps=n, timestep_s=1e-4)


@pytest.fixture
def figures(monkeypatch):
    """The figures `plots` draws, kept open instead of closed after saving."""
    close, kept = plots.plt.close, []
    monkeypatch.setattr(plots.plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


def _all_axes(fig):
    return fig.axes  # with those of its subfigures


def test_tracking_heatmaps_share_one_colour_scale_and_one_colour_bar(tmp_path, figures):
    # Tethered errors of 0.5 deg and free ones of 3 deg: the same colour is the same error.
    path = plots.plot_tracking([_result(True, 0.5), _result(False, 3.0)], tmp_path / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    images = [im for ax in _all_axes(fig) for im in ax.get_images()]
    assert len(images) == 2
    assert [im.get_clim() for im in images] == [(0.0, pytest.approx(3.0))] * 2
    colour_bars = [ax for ax in _all_axes(fig) if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1


def test_tracking_thorax_shows_x_y_z_and_a_top_view_with_the_reference_path(tmp_path, figures):
    plots.plot_tracking([_result(True, 0.5), _result(False, 1.0)], tmp_path / "t.png")
    axes = {ax.get_title(): ax for ax in _all_axes(figures[0])}
    labels = {line.get_label() for line in axes["free: thorax position"].get_lines()}
    assert labels == {f"{k} ({w})" for k in "xyz" for w in ("sim", "reference")}
    top = axes["free: thorax path, top view"]
    assert top.get_xlabel().startswith("x") and top.get_ylabel().startswith("y")
    lines = {line.get_label(): line for line in top.get_lines()}
    assert {"sim", "reference", "start"} <= set(lines)
    np.testing.assert_allclose(lines["reference"].get_ydata(), 0.5 * np.sin(
        np.linspace(0, 1, 50)))  # y of the reference, seen from above
    # Without root motion in the clip: the sim's path, and a note that there is no reference.
    plots.plot_tracking([_result(False, 1.0, root=False)], tmp_path / "u.png")
    axes = {ax.get_title(): ax for ax in _all_axes(figures[1])}
    top = axes["free: thorax path, top view"]
    assert "reference" not in {line.get_label() for line in top.get_lines()}
    assert any("no root motion" in t.get_text() for t in top.texts)


def test_tethered_only_tracking_has_no_thorax_panel(tmp_path, figures):
    plots.plot_tracking([_result(True, 0.5)], tmp_path / "t.png")
    titles = [ax.get_title() for ax in _all_axes(figures[0])]
    assert not any("thorax" in t for t in titles) and len(titles) == 3  # + the colour bar


def test_training_curve_tells_evaluation_and_replay_apart(tmp_path, figures):
    # 0.001 apart: on the curve's scale they are one line; the right panel zooms to them.
    curve = [{"env_steps": 256 * i, "score": 0.8 + 0.01 * i} for i in range(1, 6)]
    plots.plot_training_curve(curve, {"score": 0.877, "replay_score": 0.876}, tmp_path / "c.png")
    main, final = figures[0].axes
    legend = [t.get_text() for t in main.get_legend().get_texts()]
    assert "policy, deterministic: 0.877" in legend
    assert "replay of the reference: 0.876" in legend
    styles = {(line.get_color(), line.get_linestyle()) for line in main.get_lines()[1:]}
    assert len(styles) == 2
    low, high = final.get_ylim()
    assert high - low < 0.01 and low < 0.876 < 0.877 < high  # apart by a third of the axis
    assert {t.get_text() for t in final.texts} == {"0.8770", "0.8760"}
    assert "+0.0010" in final.get_title()


# Videos ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def renderer():
    from flyenv.body.mjcf import build_model
    from flyenv.sim.render import FlyRenderer

    renderer = FlyRenderer(build_model(), 240, 180)
    yield renderer
    renderer.close()


def _standing(model, x_mm=0.0):
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    qpos = data.qpos.copy()
    qpos[0] = x_mm
    return qpos


def test_the_shadow_follows_the_fly_wherever_it_walks(renderer):
    # The light was fixed in the world and a directional light's shadow map covers only
    # +-stat.extent (5 mm) around it: from about 0.8 s of a replay on, the fly had no shadow
    # (before: [823, 0, 0] pixels darkened; now the same at every distance).
    import mujoco

    flags = renderer._renderer.scene.flags
    darkened = []
    for x_mm in (0.0, 8.0, 100.0):  # 100 mm: a 10 s walk
        qpos = _standing(renderer.model, x_mm)
        with_shadow = renderer.render(qpos).astype(int)
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        without = renderer.render(qpos).astype(int)
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = True
        darkened.append(int(((without - with_shadow).sum(axis=2) > 60).sum()))
    assert min(darkened) > 300, darkened  # pixels the shadow darkens
    assert max(darkened) < 1.5 * min(darkened), darkened  # the same shadow everywhere


def test_a_ghost_comes_with_a_key_and_captions_are_written(renderer):
    from flyenv.sim.render import GHOST_KEY, annotate

    qpos = _standing(renderer.model)
    plain = renderer.render(qpos)

    def changed(image, rows, cols):  # renders vary by a level or two from call to call
        return int((np.abs(image[rows, cols].astype(int) - plain[rows, cols]) > 30).sum())

    keyed = renderer.render(qpos, ghost_qpos=qpos, caption=["t = 0.010 s"])
    top, left, right = slice(0, 30), slice(0, 60), slice(-60, None)
    assert changed(keyed, top, left) > 100  # the key, top left
    assert changed(keyed, top, right) > 100  # the caption, top right
    # Each key line has its swatch in the body's colour: blue for the ghost.
    for label, rgb in GHOST_KEY:
        assert (np.abs(keyed.astype(int) - rgb).sum(axis=2) < 10).any(), label
    no_ghost = renderer.render(qpos, ghost_qpos=qpos, placement="off")
    assert changed(no_ghost, top, left) == 0  # no ghost, no key
    stamped = annotate(plain, bottom_right=["10x slow motion"])
    assert stamped.shape == plain.shape and stamped.dtype == np.uint8
    assert changed(stamped, slice(-30, None), right) > 100
    assert (stamped[:-40] == plain[:-40]).all()


def test_env_frames_are_stamped_with_world_time_and_clip(monkeypatch):
    from flyenv.envs import FlyImitationVecEnv
    from flyenv.motion import tripod_gait

    env = FlyImitationVecEnv(num_envs=2, reference=tripod_gait(duration_s=0.2), device="cpu",
                             random_start=False, render_mode="rgb_array", render_size=(96, 72),
                             render_worlds=(0, 1))
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros((2, c.NUM_DOFS), np.float32))
    env.render()
    captions = []
    monkeypatch.setattr(env._renderer, "render",
                        lambda q, g, placement, caption: captions.append(caption))
    env.render()
    env.close()
    assert captions == [("world 0  t = 0.006 s", "clip clip0 at 0.006 s"),
                        ("world 1  t = 0.006 s", "clip clip0 at 0.006 s")]
