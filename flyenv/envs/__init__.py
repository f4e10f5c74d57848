"""Vectorized imitation environments on top of `flyenv.sim`, registered with gymnasium.

`gym.make_vec("flyenv/FlyImitation-v0", num_envs=4096, reference="walk.npz", device="cuda")`
gives a `FlyImitationVecEnv` (torch tensors on the device); `gym.make("flyenv/FlyImitation-v0")`
gives the single-fly `FlyImitationEnv` (numpy). Keyword arguments are `FlyImitationConfig` fields.
"""

import gymnasium as gym

from flyenv.envs.config import REWARD_TERMS as REWARD_TERMS
from flyenv.envs.config import FlyImitationConfig as FlyImitationConfig
from flyenv.envs.config import RewardConfig as RewardConfig
from flyenv.envs.imitation import TERMINATIONS as TERMINATIONS
from flyenv.envs.imitation import FlyImitationVecEnv as FlyImitationVecEnv
from flyenv.envs.reference import ReferenceBank as ReferenceBank
from flyenv.envs.single import FlyImitationEnv as FlyImitationEnv

ENV_ID = "flyenv/FlyImitation-v0"

if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="flyenv.envs.single:FlyImitationEnv",
        vector_entry_point="flyenv.envs.imitation:FlyImitationVecEnv",
        max_episode_steps=FlyImitationConfig.max_episode_steps,
    )
