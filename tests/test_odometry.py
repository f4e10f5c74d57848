"""Stance-leg odometry and grounding, all frames at once, against a per-frame reading (issue 21)."""

import itertools

import numpy as np
from scipy.linalg import lstsq

from flyenv.body import constants as c
from flyenv.motion import grounding
from flyenv.motion.gait import tripod_gait


def _per_frame_motion(claws, velocity, use):
    """The consensus of `grounding._rigid_planar_motion`, one frame at a time (the oracle)."""
    def solve(points, moves):
        design = np.zeros((2 * len(points), 3))
        design[0::2, 0], design[0::2, 2] = 1.0, -points[:, 1]
        design[1::2, 1], design[1::2, 2] = 1.0, points[:, 0]
        return lstsq(design, -moves[:, :2].reshape(-1))[0]

    def miss(motion, points, moves):
        predicted = -(motion[:2] + motion[2] * np.stack([-points[:, 1], points[:, 0]], 1))
        return np.linalg.norm(predicted - moves[:, :2], axis=1)

    out = np.full((len(claws), 3), np.nan)
    for t in range(len(claws)):
        points, moves = claws[t, use[t]], velocity[t, use[t]]
        if len(points) == 1:
            out[t] = [-moves[0, 0], -moves[0, 1], 0.0]
        elif len(points) > 1:
            best, key = None, (-1, -np.inf)
            for a, b in itertools.combinations(range(len(points)), 2):
                motion = solve(points[[a, b]], moves[[a, b]])
                speed = np.linalg.norm(motion[:2])
                missed = miss(motion, points, moves)
                agree = missed <= grounding.OUTLIER_FRACTION * speed + 1e-9
                agree[[a, b]] = True
                # Ties: the least summed miss over the speed (then the first pair).
                candidate = (int(agree.sum()), -missed.sum() / (speed + 1e-9))
                if candidate > key:
                    best, key = agree, candidate
            out[t] = solve(points[best], moves[best])
    return out


def test_consensus_of_all_frames_equals_the_per_frame_one():
    gait = tripod_gait(duration_s=0.4, fps=200.0)
    claws = np.asarray(gait.fk_keypoints)[:, :, c.KEYPOINTS.index("Claw")]
    rng = np.random.default_rng(0)
    noisy = claws + 0.005 * rng.standard_normal(claws.shape)
    velocity = np.gradient(noisy, 1 / gait.fps, axis=0)
    stance = grounding.stance_claws(noisy, gait.fps)
    stance[::7, 0] = False  # frames with fewer claws, down to one and none
    stance[5] = [True, False, False, False, False, False]
    stance[6] = False
    slip = np.zeros_like(velocity)
    slip[::3, 1, 1] = 30.0  # a claw slipping sideways in stance [mm/s]
    vectorized = grounding._rigid_planar_motion(noisy, velocity + slip, stance)
    np.testing.assert_allclose(vectorized, _per_frame_motion(noisy, velocity + slip, stance),
                               atol=1e-9)
    assert np.isnan(vectorized[6]).all() and vectorized[5, 2] == 0.0


def test_clip_stance_flags_the_tripods_and_not_missing_legs():
    # What drives the tarsi's adhesion in replays: the tripods LF RM LH and RF LM RH step
    # together, each leg in stance for about the gait's duty (0.6), a missing leg never.
    gait = tripod_gait(duration_s=1.0)
    stance = grounding.clip_stance(gait)
    assert stance.shape == (gait.num_frames, c.NUM_LEGS) and set(np.unique(stance)) == {0, 1}
    tripods = ([c.LEGS.index(x) for x in ("LF", "RM", "LH")],
               [c.LEGS.index(x) for x in ("RF", "LM", "RH")])
    for legs in tripods:
        assert (stance[:, legs] == stance[:, legs[:1]]).mean() > 0.95
    assert (stance[:, tripods[0][0]] != stance[:, tripods[1][0]]).mean() > 0.2
    assert 0.5 < stance.mean() < 0.8
    rh = slice(c.LEGS.index("RH") * c.DOF_PER_LEG, (c.LEGS.index("RH") + 1) * c.DOF_PER_LEG)
    angles = gait.joint_angles.copy()
    angles[:, rh] = np.nan  # a clip without the right hind leg
    lacking = gait.replace(joint_angles=angles, fk_keypoints=None,
                           metadata={**gait.metadata, "missing_legs": ["RH"]})
    assert lacking.leg_mask[c.LEGS.index("RH")] == 0
    lacking = grounding.clip_stance(lacking)
    assert (lacking[:, c.LEGS.index("RH")] == 0).all() and lacking.sum() > 0
