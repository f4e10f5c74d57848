"""Exploration noise correlated in time, for a Gaussian policy at a high control rate.

At 500 Hz, PPO's usual noise (a fresh draw every step) is averaged away by the legs' actuators
and masses before it moves the fly: the rollout varies little from the mean policy, and rare
outcomes such as a fall under a push barely depend on it, so the policy gradient cannot learn
what avoids them (`benchmarks/push_recovery_oracle.py --noise` measures how often noise changes
a pushed fly's fate). gSDE (Raffin et al. 2021) and colored noise in PPO (Hollenstein et al.
2024) answer with noise correlated over time. `CorrelatedNoise` is the simplest such process
that runs on the device with no sequence drawn ahead: a discretised Ornstein-Uhlenbeck process
whose every draw is still N(0, 1), so the policy's per-step Gaussian, its log-probabilities and
PPO's ratios are those of white noise; only the noise's spectrum changes.
"""

from __future__ import annotations

import math

import torch


class CorrelatedNoise:
    """Unit Gaussian noise per world and action, an AR(1) process in time.

    eps_t = rho * eps_(t-1) + sqrt(1 - rho^2) * xi_t with xi_t ~ N(0, 1) and
    rho = exp(-control_dt_s / correlation_s): stationary with variance 1 and correlation rho^k
    between draws k steps apart. `correlation_s` 0 gives white noise (rho 0). The process runs
    on across episode ends (it is stationary, so a new episode's first draw is as any other).

    Args:
        shape: (num_envs, act_dim).
        correlation_s: the time constant tau [s] (>= 0).
        control_dt_s: time between draws [s] (> 0).
        device: where the state lives.
        generator: the torch generator of the draws (default: torch's global one).
    """

    def __init__(self, shape: tuple[int, int], correlation_s: float, control_dt_s: float,
                 device: torch.device | str, generator: torch.Generator | None = None) -> None:
        if not (correlation_s >= 0 and control_dt_s > 0):
            raise ValueError(f"CorrelatedNoise: correlation_s must be >= 0 and control_dt_s > 0 "
                             f"[s], got {correlation_s} and {control_dt_s}")
        self.rho = math.exp(-control_dt_s / correlation_s) if correlation_s > 0 else 0.0
        self._innovation = math.sqrt(1.0 - self.rho ** 2)
        self._generator = generator
        self.state = torch.randn(shape, device=device, generator=generator)

    def __call__(self) -> torch.Tensor:
        """Advances the process one step.

        Returns:
            (num_envs, act_dim) the process's state, overwritten in place by the next call.
        """
        xi = torch.randn(self.state.shape, device=self.state.device, generator=self._generator)
        return self.state.mul_(self.rho).add_(xi, alpha=self._innovation)
