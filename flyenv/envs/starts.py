"""Where episodes start: reference-state initialization, uniform or following failure.

`StartSampler` draws each reset world's (clip, start frame) on the device. Uniform (the default):
a clip uniformly (or in proportion to its weight, `clip_weights`), then a frame uniformly in it.
Adaptive (`AdaptiveStartsConfig`, after mjlab's / BeyondMimic's adaptive bins): every clip is
cut into phase bins of `bin_s`; each step, every live world adds one visit to the bin it is in
and, if its episode terminated (not a time-out), one failure; both are exponential moving
averages on the device. A bin's failure rate (failures / visits) is smeared back over the
`kernel_bins` bins before it (a fall is best practised from a little before it), and the start
distribution mixes it with the uniform one:

    p(clip, bin) = uniform_ratio * u(clip, bin) + (1 - uniform_ratio) * rate'(clip, bin) / sum

with `u` the uniform sampler's distribution (each clip 1 / nclip, or its share of the weights,
spread evenly over its bins) and the rates of a clip of weight w counted w times (a clip weighs
as w copies of it would), so no start is ever sampled less than `uniform_ratio` times as often
as uniformly (the floor: nothing is forgotten), and with no failure at all the distribution is
the uniform one.

Each env (each rank of a data-parallel run) keeps its own statistics. In DISABLED autoreset mode
a world that ended keeps being counted until the caller resets it (the env cannot tell), so the
statistics are meant for the autoreset modes training uses.

Nothing here reads a device value on the host: the statistics are updated by `index_add_`, the
bins drawn by inverse-CDF (`searchsorted` on a cumulative sum), whatever the mask.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import torch


@dataclasses.dataclass(frozen=True)
class AdaptiveStartsConfig:
    """Adaptive start sampling (see `flyenv.envs.starts`).

    Attributes:
        bin_s: width of a phase bin [s] of the clip (0.1: about one stride of a walking fly).
        uniform_ratio: share of starts drawn uniformly, the floor of every bin (0 < r <= 1).
        decay: weight of each step's counts in the moving averages (per env step: 1e-3 forgets
            over ~1000 steps of all worlds).
        kernel_bins: bins before a failing one that share its weight (0: none).
        kernel_lambda: the weight of the k-th bin before is kernel_lambda ** k.
    """

    bin_s: float = 0.1
    uniform_ratio: float = 0.1
    decay: float = 1e-3
    kernel_bins: int = 2
    kernel_lambda: float = 0.8

    def __post_init__(self) -> None:
        checks = {"bin_s": self.bin_s > 0, "uniform_ratio": 0 < self.uniform_ratio <= 1,
                  "decay": 0 < self.decay <= 1, "kernel_lambda": 0 <= self.kernel_lambda <= 1,
                  "kernel_bins": isinstance(self.kernel_bins, int) and self.kernel_bins >= 0}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"AdaptiveStartsConfig: bad {bad} (bin_s > 0, 0 < uniform_ratio <= "
                             f"1, 0 < decay <= 1, 0 <= kernel_lambda <= 1, int kernel_bins >= "
                             f"0), got {self!r}")


def clip_weights(weights: Mapping[str, float], names: Sequence[str]) -> list[float] | None:
    """Each clip's sampling weight from weights by clip name (clips left out weigh 1).

    Args:
        weights: name -> weight >= 0 (`FlyImitationConfig.clip_weights`); a name given to
            several clips weighs each of them.
        names: (nclip,) the clips' names, in the bank's order.

    Returns:
        (nclip,) the weights, or None where they are all equal (uniform starts as without).

    Raises:
        ValueError: a name no clip has (the clips' names listed), or every clip weighing 0.
    """
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"FlyImitationConfig.clip_weights: no clip is named {unknown}; the "
                         f"clips are {list(names)}")
    result = [float(weights.get(name, 1.0)) for name in names]
    if not any(w > 0 for w in result):
        raise ValueError(f"FlyImitationConfig.clip_weights: every clip weighs 0 ({list(names)}); "
                         "at least one must weigh > 0")
    return None if len(set(result)) == 1 else result


class StartSampler:
    """Draws the (clip, frame) each reset world starts from, and tracks failures per bin.

    Args:
        lengths: (nclip,) int64 frames of each clip (at the control rate).
        control_dt_s: the env step [s].
        config: adaptive sampling, or None for uniform starts.
        device: the env's device.
        weights: (nclip,) each clip's sampling weight (`clip_weights`), or None for equal ones.
    """

    def __init__(self, lengths: torch.Tensor, control_dt_s: float,
                 config: AdaptiveStartsConfig | None, device: torch.device,
                 weights: Sequence[float] | None = None) -> None:
        self.config = config
        self.lengths = lengths
        self.nclip = int(lengths.shape[0])
        if weights is not None and len(weights) != self.nclip:
            raise ValueError(f"StartSampler: {self.nclip} clips but {len(weights)} weights")
        equal = weights is None
        # (nclip,) each clip's share of the starts, summing to 1.
        self.share = (torch.full((self.nclip,), 1 / self.nclip, device=device) if equal
                      else torch.tensor(weights, dtype=torch.float32, device=device)
                      / sum(weights))
        # Uniform starts draw weighted clips by inverse CDF, unweighted ones as they always did.
        self._share_cdf = None if equal else self.share.cumsum(0)
        if config is None:
            return
        self.bin_frames = max(1, round(config.bin_s / control_dt_s))
        # Start frames run over [0, length - 2] (a start needs a next frame).
        starts = [int(n) - 1 for n in lengths.tolist()]
        nbins = [math.ceil(s / self.bin_frames) for s in starts]
        self.nbins = max(nbins)
        valid = torch.zeros(self.nclip, self.nbins, device=device)
        for clipid, count in enumerate(nbins):
            valid[clipid, :count] = 1.0
        self.valid = valid
        # Each clip its share, spread evenly over its bins: the uniform sampler's distribution
        # (up to the last, partial bin).
        per_bin = valid / valid.sum(dim=1, keepdim=True)
        # Each valid bin's failure rate counts as many times as its clip weighs (relative to
        # the mean weight); the bins past a clip's end count nothing. Unweighted, the numbers
        # are exactly those of the sampler before weights existed.
        if equal:
            self.uniform, self._rate_weight = per_bin / self.nclip, valid
        else:
            self.uniform = per_bin * self.share[:, None]
            self._rate_weight = valid * self.share[:, None] * self.nclip
        self.visits = torch.zeros(self.nclip * self.nbins, device=device)
        self.failures = torch.zeros(self.nclip * self.nbins, device=device)
        k = config.kernel_bins
        self._kernel = (config.kernel_lambda ** torch.arange(k + 1, dtype=torch.float32,
                                                             device=device))

    @property
    def adaptive(self) -> bool:
        """Whether starts follow failures (else uniform)."""
        return self.config is not None

    def sample(self, generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(clip, frame) for `n` worlds, (n,) int64 each (the frame in [0, length - 2])."""
        device = self.lengths.device
        if self.config is None:
            if self._share_cdf is None:
                clip = torch.randint(self.nclip, (n,), generator=generator, device=device)
            else:  # inverse CDF of the shares: no host read
                u = torch.rand(n, generator=generator, device=device)
                clip = _inverse_cdf(self._share_cdf, u)
            frame = torch.rand(n, generator=generator, device=device) * (self.lengths[clip] - 1)
            return clip, frame.long()
        u_clip = torch.rand(n, generator=generator, device=device)
        u_frame = torch.rand(n, generator=generator, device=device)
        flat = _inverse_cdf(self.probabilities().flatten().cumsum(0), u_clip)
        clip, bin_ = flat // self.nbins, flat % self.nbins
        frame = ((bin_ + u_frame) * self.bin_frames).long()
        return clip, torch.minimum(frame, self.lengths[clip] - 2)

    def record(self, clip: torch.Tensor, frame: torch.Tensor, live: torch.Tensor,
               failed: torch.Tensor) -> None:
        """Adds one step of every world: a visit where `live`, a failure where `failed` too.

        Args:
            clip: (num_envs,) int64 each world's clip.
            frame: (num_envs,) int64 each world's frame after the step.
            live: (num_envs,) bool, the worlds whose step counts (not one being reset).
            failed: (num_envs,) bool, terminated this step (time-outs are not failures).
        """
        if self.config is None:
            return
        bin_ = (frame // self.bin_frames).clamp_max(self.nbins - 1)
        index = clip * self.nbins + bin_
        decay = self.config.decay  # in place: no per-step (nclip * nbins) buffers
        self.visits.mul_(1 - decay).index_add_(0, index, live.float(), alpha=decay)
        self.failures.mul_(1 - decay).index_add_(0, index, (failed & live).float(), alpha=decay)

    def failure_rate(self) -> torch.Tensor:
        """(nclip, nbins) failures per visited step in each bin (0 where never visited)."""
        rate = self.failures / self.visits.clamp_min(1e-12)
        return rate.view(self.nclip, self.nbins) * self.valid

    def probabilities(self) -> torch.Tensor:
        """(nclip, nbins) the probability of a start in each clip's phase bin (sums to 1)."""
        rate = self.failure_rate()
        # Smeared back: bin b takes lambda^k of the rate of bin b + k (same clip only).
        k = self._kernel.shape[0] - 1
        padded = torch.nn.functional.pad(rate, (0, k))
        smeared = padded.unfold(1, k + 1, 1) @ self._kernel * self._rate_weight
        total = smeared.sum()
        ratio = self.config.uniform_ratio
        # No failure anywhere: the uniform distribution (without a host read of `total`).
        adaptive = torch.where(total > 0, smeared / total.clamp_min(1e-12), self.uniform)
        return ratio * self.uniform + (1 - ratio) * adaptive


def _inverse_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(n,) int64 indices drawn by inverse CDF: `cdf` (k,) cumulative weights, `u` (n,) in [0, 1).

    An index of zero weight is never drawn (not even by `u * total` rounding onto the last
    step), and nothing is read on the host.
    """
    flat = torch.searchsorted(cdf, u * cdf[-1], right=True)
    return torch.minimum(flat, (cdf < cdf[-1]).sum())  # the last index of positive weight
