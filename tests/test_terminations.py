"""Terminations, each declared once: a new cause needs its declaration alone."""

import math

import pytest
import torch

from flyenv.envs import FlyImitationVecEnv, terminations
from flyenv.envs.terminations import TERMINATIONS, TERMS, Termination

N = 3


def make(**kwargs):
    return FlyImitationVecEnv(N, device="cpu", engine="mujoco", nthread=1, **kwargs)


def _fast(x):
    # The largest joint speed of each world [rad/s].
    return x.state.joint_vel.abs().amax(dim=1)


@pytest.mark.parametrize("limit, fires", [(-1.0, True), (1e9, False)])
def test_a_cause_added_by_declaration_alone_is_reported_and_applied(monkeypatch, limit, fires):
    # Inserted in the middle, so a cause paired with another's limit would show.
    fast = Termination("too_fast", _fast, lambda cfg: limit, "always", "joint speed [rad/s]")
    monkeypatch.setattr(terminations, "TERMS", TERMS[:2] + (fast,) + TERMS[2:])
    env = make()
    assert env.terminations == TERMINATIONS[:2] + ("too_fast",) + TERMINATIONS[2:]
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(env.replay_action())
    assert info["termination/too_fast"].tolist() == [fires] * N
    assert terminated.tolist() == [fires] * N
    for name in TERMINATIONS:  # the replay ends no episode by any other cause
        assert not info[f"termination/{name}"].any(), name
    assert (reward > 0).all()  # only a cause that voids the reward zeroes it
    env.close()


def test_limits_follow_the_config_and_the_fly():
    env = make(max_joint_error_rad=0.25, min_height_mm=0.3)
    limits = dict(zip(env.terminations, env._limits[:, 0].tolist(), strict=True))
    assert limits["joint_error"] == pytest.approx(0.25)
    assert limits["fall"] == pytest.approx(-0.3)
    assert limits["tilt"] == pytest.approx(-math.cos(env.config.max_tilt_rad))
    assert limits["drift"] == pytest.approx(env.config.max_root_drift_mm)  # root motion
    tethered = make(tethered=True)
    limits = dict(zip(tethered.terminations, tethered._limits[:, 0].tolist(), strict=True))
    assert limits["fall"] == limits["tilt"] == limits["drift"] == math.inf
    env.close()
    tethered.close()


def test_only_nonfinite_voids_the_reward():
    assert [t.name for t in TERMS if t.voids_reward] == ["nonfinite"]
    assert len(set(TERMINATIONS)) == len(TERMINATIONS)


def test_nonfinite_state_ends_the_world_and_voids_its_reward():
    env = make()
    env.reset(seed=0)
    env.engine.qpos[1, 0] = torch.nan
    env.engine.qvel[1, 0] = torch.nan
    _, reward, terminated, _, info = env.step(env.replay_action())
    assert info["termination/nonfinite"].tolist() == [False, True, False]
    assert terminated[1] and reward[1] == 0 and (reward[[0, 2]] > 0).all()
    env.close()
