"""Exploration noise correlated in time, for a Gaussian policy at a high control rate.

PPO's usual noise, a fresh draw every step, is jitter at 500 Hz: on a pushed fly it changes the
outcome mostly by toppling it and almost never saves one (`benchmarks/push_recovery_oracle.py
--noise-std-rad`), so what a policy gradient learns from it is to shrink the noise, not how to
recover. Noise correlated over time (gSDE, Raffin et al. 2021; colored noise in PPO, Hollenstein
et al. 2024) changes fates less often, and saves more of the flies whose fate it changes (26 of
85 draws on the real clips and the gait, against white noise's 20 of 218).
`CorrelatedNoise` is the simplest such process that runs on the device with no sequence drawn
ahead: a discretised Ornstein-Uhlenbeck process whose every draw is N(0, 1), so the actions
keep the policy's Gaussian spread; only the noise's spectrum changes.

PPO's likelihood ratios must then use each action's distribution given the noise's previous state
(`autoregressive`), as autoregressive policies do (Korenkevych et al. 2019). With the marginal
instead (mean, std), the part of the noise predictable from its past, which the state partly
shows (the legs it has already moved), is credited to the mean as if it were this step's
exploration: on the real clips of `benchmarks/train_clips.py` the mean then drifted, the
rollout's joint-angle reward per episode falling from 267 to 40 in 1.1M steps, where white noise
of the same std held it (README, "Datasets of clips").

Recovering from a push takes a deviation larger and longer than tracking tolerates: a residual
vector drawn from the whole action box and held for 150 ms saves 5-34% of the pushes the replay
loses (per clip), and one that saves a push survives it turned by 20 degrees or 10% stronger in
58-75% of plays, so the saves are learnable, not luck (`push_recovery_oracle.py
--push-variants`). `PushExploration` follows which worlds are being pushed or just were and
gives them extra noise of their own: a process apart from the policy's noise, drawn afresh when a
window opens and correlated over its own time constant, so that a window can hold one deviation
as the oracle's vectors are held while tracking keeps the policy's noise. `widen` adds its std and
the part predictable from its last draw to the policy's distribution: inputs of the
distribution, stored with the rollout and known at the update.

A held deviation is credited to the policy's mean at one step only under the exact likelihood
of correlated noise, and at every step but with a bias under its marginal (`PushExploration`'s
`credit`). A hold (`hold_steps`) makes it an option instead: in a window the policy decides
every `hold_steps` steps and the action, the policy's noise and the extra noise included, is
played unchanged until the next decision. A held action does not depend on the policy, so PPO
credits each decision with the return of its whole hold and the held steps with nothing
(`Rollout.decided`), as options and action repeat are credited; the decisions of a window are
independent draws, so their likelihoods are exact and carry all of the exploration.

But a decision's credit teaches the mean the held answer at the decision's state only: the
deterministic policy, which plays its mean, must give the answer at every step of the window, and
at the held steps PPO teaches it nothing. `self_imitation` is the supervised term that does:
self-imitation learning (Oh et al. 2018) of the window's actions, held ones included, where the
step did better than the critic expected (positive advantage only, so a deviation that toppled
the fly is not pushed away from, which would add the noise of every failed draw). A held step's
better-than-expected is its own advantage or that of the decision it holds
(`decision_advantages`; `DecisionCredit` when holds span rollouts).
"""

from __future__ import annotations

import math

import torch


def step_correlation(correlation_s: float, control_dt_s: float) -> float:
    """An AR(1) process's correlation between steps, exp(-control_dt_s / correlation_s).

    `correlation_s` 0 gives 0 (white noise).
    """
    return math.exp(-control_dt_s / correlation_s) if correlation_s > 0 else 0.0


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
        self.rho = step_correlation(correlation_s, control_dt_s)
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


def autoregressive(dist: torch.distributions.Normal, previous: torch.Tensor, rho: float,
                   ) -> torch.distributions.Normal:
    """The distribution of an action mean + std * eps_t given the noise's previous state.

    With eps_t = rho * eps_(t-1) + sqrt(1 - rho^2) * xi_t (`CorrelatedNoise`), the action is
    N(mean + std * rho * eps_(t-1), std^2 (1 - rho^2)) given eps_(t-1): its log-probability and
    gradient hold only this step's innovation xi_t. rho 0 returns `dist` itself.

    Args:
        dist: the policy's (batch, act_dim) Gaussian.
        previous: (batch, act_dim) eps_(t-1), the noise's state before this step's draw.
        rho: the noise's correlation between steps (`CorrelatedNoise.rho`).
    """
    if rho == 0.0:
        return dist
    std = dist.stddev
    return torch.distributions.Normal(dist.mean + std * rho * previous,
                                      std * math.sqrt(1.0 - rho ** 2), validate_args=False)


def widen(dist: torch.distributions.Normal, extra_std: torch.Tensor,
          shift: torch.Tensor | None = None) -> torch.distributions.Normal:
    """The policy's Gaussian N(mean + shift, std^2 + extra^2): moved, `extra_std` added.

    Args:
        dist: the policy's (batch, act_dim) Gaussian.
        extra_std: (batch, act_dim) or broadcastable, in the actions' units.
        shift: (batch, act_dim) or broadcastable, in the actions' units (None: 0).
    """
    mean = dist.mean if shift is None else dist.mean + shift
    return torch.distributions.Normal(mean, torch.hypot(dist.stddev, extra_std),
                                      validate_args=False)


class PushExploration:
    """Extra exploration noise for the worlds pushed now or within `after_s`, on the device.

    In a window the action gets std * eta_t more, in units of the action range, where eta is an
    AR(1) process of unit variance and correlation rho = exp(-control_dt_s / correlation_s)
    between steps (0: white), drawn afresh (eta = xi) at the window's first step: each window
    holds its own random deviation for about `correlation_s`. Outside windows it adds nothing.
    The policy's own noise (`CorrelatedNoise` or white) is separate and stays as it is.

    How PPO credits a window's actions (`credit`): "autoregressive" gives each action's
    distribution given the noise's last state (`draw`'s shift and innovation std), the exact
    likelihood of the noisy policy; but then only a window's first action carries its held
    deviation, and the later ones only their small innovations, so the policy's mean, which a
    deterministic evaluation plays, learns to hold a deviation that saves a pushed fly through
    one step only. "marginal" gives every action of a window its marginal N(mean, std^2 + E^2)
    instead (shift 0, innovation std the whole extra std), as gSDE's held exploration is
    credited: the likelihood ignores the draws' correlation, but every step of a window credits
    its whole deviation to the mean.

    With `hold_steps` > 1 the worlds in a window decide only at its steps 0, hold_steps,
    2 hold_steps, ...; `hold` plays the last decision at the others (`decide` says which steps
    are decisions). Outside windows every step is one.

    Args:
        shape: (num_envs, act_dim).
        std: the extra std, in units of the action range (> 0).
        after_s: how long a window lasts past a push's end [s] (>= 0).
        control_dt_s: time between env steps [s] (> 0).
        device: where the state lives.
        correlation_s: the extra noise's time constant within a window [s] (>= 0; 0: white).
        generator: the torch generator of the draws (default: torch's global one).
        credit: "autoregressive" or "marginal", what `draw` reports for PPO's ratios (above).
        hold_steps: steps each decision in a window is played for (>= 1; 1: no hold).
    """

    CREDITS = ("autoregressive", "marginal")

    def __init__(self, shape: tuple[int, int], std: float, after_s: float, control_dt_s: float,
                 device: torch.device | str, correlation_s: float = 0.0,
                 generator: torch.Generator | None = None,
                 credit: str = "autoregressive", hold_steps: int = 1) -> None:
        if not (std > 0 and after_s >= 0 and correlation_s >= 0 and control_dt_s > 0):
            raise ValueError(f"PushExploration: std must be > 0, after_s and correlation_s >= 0 "
                             f"and control_dt_s > 0 [s], got {std}, {after_s}, {correlation_s} "
                             f"and {control_dt_s}")
        if credit not in self.CREDITS:
            raise ValueError(f"PushExploration: credit must be one of {self.CREDITS}, got "
                             f"{credit!r}")
        if not (isinstance(hold_steps, int) and hold_steps >= 1):
            raise ValueError(f"PushExploration: hold_steps must be an int >= 1, got "
                             f"{hold_steps!r}")
        self.std, self.credit, self.hold_steps = std, credit, hold_steps
        self.rho = step_correlation(correlation_s, control_dt_s)
        self._after = round(after_s / control_dt_s)
        self._generator = generator
        num_envs = shape[0]
        self._left = torch.zeros(num_envs, dtype=torch.long, device=device)
        self._fresh = torch.zeros(num_envs, dtype=torch.bool, device=device)
        self._age = torch.zeros(num_envs, dtype=torch.long, device=device)  # steps into window
        self.decide = torch.ones(num_envs, dtype=torch.bool, device=device)
        self._played = torch.zeros(shape, device=device)
        self.extra_std = torch.zeros(num_envs, device=device)
        self.state = torch.zeros(shape, device=device)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This step's extra noise, in units of the action range; advances the process.

        Returns:
            shift: (num_envs, act_dim) the part known from the last draw, std * rho * eta_(t-1)
                (0 where a window opens or none is open; always 0 with "marginal" credit).
            innovation_std: (num_envs,) the std of the rest, std * sqrt(1 - rho^2) (std where
                a window opens, 0 where none is open; with "marginal" credit, std in a window).
            noise: (num_envs, act_dim) the whole, std * eta_t (0 where none is open).
        """
        rho = torch.where(self._fresh, 0.0, self.rho)[:, None]  # (num_envs, 1)
        keep = torch.sqrt(1.0 - rho * rho)
        xi = torch.randn(self.state.shape, device=self.state.device, generator=self._generator)
        shift = self.extra_std[:, None] * rho * self.state
        innovation_std = self.extra_std * keep[:, 0]
        self.state = rho * self.state + keep * xi
        noise = shift + innovation_std[:, None] * xi
        if self.credit == "marginal":
            return torch.zeros_like(shift), self.extra_std, noise
        return shift, innovation_std, noise

    def update(self, pushed: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Follows one env step: the next step's `draw` gives the noise of the window it sets.

        Args:
            pushed: (num_envs,) bool, a push acted during the step (the env's
                `info["randomization/push"]`).
            done: (num_envs,) bool, the world's episode ended at the step (its next one starts
                unpushed).

        Returns:
            (num_envs,) `extra_std`: `std` where a push acted within the last
            round(after_s / control_dt_s) + 1 steps of the episode, else 0. Replaced, not
            written in place, at every update.
        """
        left = torch.where(pushed, self._after + 1, (self._left - 1).clamp(min=0))
        left = torch.where(done, 0, left)
        self._fresh = (left > 0) & (self._left == 0)
        self._left = left
        self._age = torch.where(self._fresh | (left == 0), 0, self._age + 1)
        self.decide = (left == 0) | (self._age % self.hold_steps == 0)
        self.extra_std = (left > 0).float() * self.std
        return self.extra_std

    def hold(self, action: torch.Tensor) -> torch.Tensor:
        """The action each world plays this step: `action` where it decides, else its last.

        Args:
            action: (num_envs, act_dim) this step's draw (the policy's and `draw`'s noise).

        Returns:
            (num_envs, act_dim) the action to play; remembered for the next held steps.
        """
        self._played = torch.where(self.decide[:, None], action, self._played)
        return self._played


SELF_IMITATION_CREDITS = ("step", "decision", "carried")  # whose advantage weighs a held step


def decision_advantages(advantages: torch.Tensor, decided: torch.Tensor,
                        before: torch.Tensor | None = None) -> torch.Tensor:
    """Each step's advantage of the decision that chose its action (its own where it decided).

    A held step plays its decision's action, so the held deviation's worth is the decision's
    advantage, which covers the whole hold; a held step's own covers only what is left of it.
    Steps held from a decision before the rollout take `before`, by default the advantage of
    the rollout's first step, the closest to that decision the rollout has (its hold's most).

    Args:
        advantages: (num_steps, num_envs) the steps' advantages.
        decided: (num_steps, num_envs) nonzero where the step's action was a new decision.
        before: (num_envs,) the advantage of each world's decision from before the rollout
            (`DecisionCredit`), or None for the first step's.

    Returns:
        (num_steps, num_envs) the advantages of the steps' decisions.
    """
    last = _last_decisions(decided)
    own = advantages.gather(0, last.clamp(min=0))
    return own if before is None else torch.where(last >= 0, own, before)


def _last_decisions(decided: torch.Tensor) -> torch.Tensor:
    """(num_steps, num_envs) the step of each step's latest decision in the rollout (-1: none)."""
    steps = torch.arange(decided.shape[0], device=decided.device)[:, None]
    return torch.where(decided > 0, steps, -1).cummax(dim=0).values


class DecisionCredit:
    """`decision_advantages` with holds that span rollouts credited by their decision's.

    A decision's GAE advantage in its rollout sums the discounted TD errors of its steps up to
    the rollout's end (the last one bootstrapped on the value after it); the rest of it is
    (gamma lambda)^m times the next rollout's first step's advantage, m steps after the
    decision: the same TD errors, summed by that rollout. So the steps of the next rollout
    held from it take A_d + (gamma lambda)^m A_0, the decision's advantage over its hold so
    far, where `decision_advantages` alone gives them A_0, what is left of the hold. A world
    decides at every episode's first step (`PushExploration.update`), so a carried hold never
    crosses an episode's end. Call it once per rollout, in order; the carry is per world.

    Args:
        num_envs: worlds.
        gamma_lambda: the discount times GAE's lambda (in (0, 1]).
        device: where the carry lives.
    """

    def __init__(self, num_envs: int, gamma_lambda: float, device: torch.device | str) -> None:
        if not 0 < gamma_lambda <= 1:
            raise ValueError(f"DecisionCredit: gamma_lambda must be in (0, 1], got "
                             f"{gamma_lambda}")
        self.gamma_lambda = gamma_lambda
        # The last decision's advantage so far, and the weight of the next rollout's first
        # step's advantage in it: (num_envs,) each. (0, 1) before any rollout: the first step's.
        self.carried = torch.zeros(num_envs, device=device)
        self.weight = torch.ones(num_envs, device=device)

    def __call__(self, advantages: torch.Tensor, decided: torch.Tensor) -> torch.Tensor:
        """(num_steps, num_envs) the rollout's steps' decision advantages; carries the last.

        Args:
            advantages: (num_steps, num_envs) the rollout's GAE advantages.
            decided: (num_steps, num_envs) nonzero where the step's action was a new decision.
        """
        num_steps = advantages.shape[0]
        before = self.carried + self.weight * advantages[0]
        credited = decision_advantages(advantages, decided, before)
        last = _last_decisions(decided)[-1]  # (num_envs,)
        self.carried = credited[-1]
        self.weight = torch.where(last >= 0, self.gamma_lambda ** (num_steps - last),
                                  self.weight * self.gamma_lambda ** num_steps)
        return credited


def self_imitation(mean: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                   window: torch.Tensor, std: torch.Tensor, margin: float = 0.0,
                   ) -> torch.Tensor:
    """The self-imitation loss of push windows' actions that did better than expected.

    The mean over the batch of max(A - margin, 0) * |(action - mean) / std|^2 / 2 at steps in a
    window, 0 elsewhere: the negative log-likelihood of the played action under N(mean, std^2),
    weighted by how much the step's advantage exceeds `margin` (Oh et al. 2018, on the rollout
    rather than a replay buffer; a margin > 0 keeps only the clearly better steps). Only `mean`
    carries a gradient; pass `std` detached.

    Args:
        mean: (batch, act_dim) the policy's mean, in the actions' units.
        actions: (batch, act_dim) the actions played (a held one at a held step).
        advantages: (batch,) the steps' advantages (normalized as PPO's are).
        window: (batch,) bool, the step was in a push exploration window.
        std: (batch, act_dim) or broadcastable, the spread the distance is measured in (> 0).
        margin: the advantage a step must exceed to be imitated (>= 0; in the advantages'
            units).

    Returns:
        () the loss.
    """
    weight = torch.where(window, (advantages - margin).clamp(min=0.0), 0.0)
    return (weight * action_nll(mean, actions, std)).mean()


def action_nll(mean: torch.Tensor, actions: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(batch,) |(actions - mean) / std|^2 / 2, summed over the action's joints.

    The actions' negative log-likelihood under N(mean, std^2) up to a constant: what both
    imitation terms (self-imitation, demonstrations) weigh.
    """
    return 0.5 * (((actions - mean) / std) ** 2).sum(-1)
