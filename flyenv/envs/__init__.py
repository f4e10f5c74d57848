"""Vectorized imitation environments on top of `flyenv.sim`, registered with gymnasium.

`gym.make_vec("flyenv/FlyImitation-v0", num_envs=4096, reference="walk.npz", device="cuda")`
gives a `FlyImitationVecEnv` (torch tensors on the device); `gym.make("flyenv/FlyImitation-v0")`
gives the single-fly `FlyImitationEnv` (numpy). Keyword arguments are `FlyImitationConfig` fields.
The registration itself lives in `flyenv._registration`, which `import flyenv` runs.
"""

from flyenv._registration import ENV_ID as ENV_ID
from flyenv.envs.config import REWARD_TERMS as REWARD_TERMS
from flyenv.envs.config import FlyImitationConfig as FlyImitationConfig
from flyenv.envs.config import RandomizationConfig as RandomizationConfig
from flyenv.envs.config import RewardConfig as RewardConfig
from flyenv.envs.imitation import FlyImitationVecEnv as FlyImitationVecEnv
from flyenv.envs.reference import ReferenceBank as ReferenceBank
from flyenv.envs.rewards import TERMS as TERMS
from flyenv.envs.rewards import RewardTerm as RewardTerm
from flyenv.envs.single import FlyImitationEnv as FlyImitationEnv
from flyenv.envs.starts import AdaptiveStartsConfig as AdaptiveStartsConfig
from flyenv.envs.terminations import TERMINATIONS as TERMINATIONS
from flyenv.motion.augment import AugmentConfig as AugmentConfig
