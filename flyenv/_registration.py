"""Registers `flyenv/FlyImitation-v0` with gymnasium, without importing gymnasium (or torch).

`import flyenv` calls `register_when_gymnasium_loads()`: if gymnasium is already imported the env
is registered at once, otherwise right after gymnasium's own import completes (an import hook
that removes itself). So `gym.make_vec("flyenv/FlyImitation-v0", ...)` works after
`import flyenv` in either order, while processes that only use the IK side (`flyenv ik`, its
joblib workers) load neither gymnasium nor torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

ENV_ID = "flyenv/FlyImitation-v0"
# The default of FlyImitationConfig.max_episode_steps (which reads it from here); make_vec
# passes it to the vector entry point.
MAX_EPISODE_STEPS = 1000


def register() -> None:
    """Registers the env (single and vector entry points) with gymnasium, once."""
    import gymnasium as gym

    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point="flyenv.envs.single:FlyImitationEnv",
            vector_entry_point="flyenv.envs.imitation:FlyImitationVecEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
        )


def register_when_gymnasium_loads() -> None:
    """`register()` now if gymnasium is imported, else as soon as it is."""
    if "gymnasium" in sys.modules:
        register()
    elif not any(isinstance(finder, _GymnasiumHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _GymnasiumHook())


class _GymnasiumHook(importlib.abc.MetaPathFinder):
    """Finds gymnasium with the other finders and registers the env once it has loaded."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: types.ModuleType) -> None:
            exec_module(module)
            register()

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec
