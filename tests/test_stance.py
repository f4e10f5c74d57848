"""One stance classifier for the IK's floor plane and the env's grounding."""

import numpy as np
from scipy.spatial.transform import Rotation

from flyenv.body.kinematics import forward_kinematics
from flyenv.ik_preprocess import thorax
from flyenv.motion import grounding, stance, tripod_gait


def test_both_frames_find_the_same_stance_claws_of_a_walking_gait():
    # The gait's claws seen from the thorax (grounding: forward swing, per-frame plane) and from
    # the world (the IK's floor: speed, one plane) are the same claws on the same floor.
    gait = tripod_gait(duration_s=1.0)
    claws_b = forward_kinematics(gait.body, gait.joint_angles)[:, :, -1]
    rotation = Rotation.from_quat(gait.root_quat, scalar_first=True)
    claws_w = np.stack([rotation.apply(claws_b[:, leg]) for leg in range(6)], axis=1)
    claws_w += gait.root_pos[:, None]
    in_thorax = grounding.stance_claws(claws_b, gait.fps)
    normal, offset = thorax.floor_plane(claws_w, np.array([0.0, 0.0, 1.0]), gait.fps)
    np.testing.assert_allclose(normal, [0.0, 0.0, 1.0], atol=1e-4)
    in_world = (stance.not_swinging(claws_w, gait.fps, "world")
                & stance.on_plane(claws_w @ normal - offset, signed=False))
    assert 0.6 < in_thorax.mean() < 0.8
    assert (in_thorax == in_world).mean() > 0.95


def test_gaps_single_frames_and_windows():
    claws = np.zeros((4, 2, 3))
    claws[1, 0] = np.nan
    slow = stance.not_swinging(claws, 100.0, "world")
    assert not slow[0, 0] and not slow[2, 0] and slow[3, 1]  # no speed next to a gap
    assert stance.not_swinging(claws[:1], 100.0, "thorax").all()
    assert not stance.on_plane(np.array([np.nan, -0.5]), signed=False)[0:2].any()
    assert stance.on_plane(np.array([-0.5]), signed=True).all()
    for frames, fps in ((1000, 100.0), (6, 500.0), (4, 500.0), (1000, 37.0)):
        window = stance.savgol_window(frames, fps, 0.05)
        assert window == 0 or (window % 2 == 1 and stance.MIN_WINDOW <= window <= frames)
    assert stance.savgol_window(4, 500.0, 0.05) == 0
