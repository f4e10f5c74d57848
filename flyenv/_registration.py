"""Registers `flyenv/FlyImitation-v0` with gymnasium without importing the env (or torch).

`import flyenv` runs this, so `gym.make_vec("flyenv/FlyImitation-v0", ...)` works after it while
processes that only use the IK side (e.g. its joblib workers) never load torch.
"""

import gymnasium as gym

ENV_ID = "flyenv/FlyImitation-v0"
# FlyImitationConfig.max_episode_steps; make_vec passes it to the vector entry point.
MAX_EPISODE_STEPS = 1000

if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="flyenv.envs.single:FlyImitationEnv",
        vector_entry_point="flyenv.envs.imitation:FlyImitationVecEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )
