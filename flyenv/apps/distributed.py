"""Data-parallel training over processes with `torch.distributed` (torchrun's convention).

`torchrun --nproc-per-node N -m flyenv train ...` starts N processes with `RANK`, `LOCAL_RANK`
and `WORLD_SIZE` set; `Ranks.from_env()` joins them into one process group (NCCL on CUDA, one
GPU per local rank; Gloo on the CPU). Each rank steps its own env; the ranks stay one policy by
starting from rank 0's parameters (`broadcast`), averaging their gradients before each
optimizer step (`average_gradients`), normalizing advantages with the statistics of all ranks'
minibatches (`mean_std`) and merging the observation normalizers' running statistics once per
iteration (`merge_normalizer`). One process (`Ranks.single()`) makes all of these no-ops.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch import nn

from flyenv.wrappers import NormalizeObservation


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes.

    Attributes:
        rank: global rank (0 writes the run folder and logs).
        world_size: number of processes.
        local_rank: rank on this machine (its GPU index).
        joined: in a process group (torchrun), even of one process (which then runs the
            communication of a multi-process run, e.g. to check NCCL on a one-GPU machine).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    joined: bool = False

    @classmethod
    def single(cls) -> Ranks:
        """One process: nothing is communicated."""
        return cls()

    @classmethod
    def from_env(cls, device: str) -> Ranks:
        """Joins the process group torchrun describes (`RANK`, `WORLD_SIZE`), else `single()`.

        Args:
            device: the training device asked for ("auto", "cpu", "cuda"): NCCL on CUDA (each
                rank on `cuda:LOCAL_RANK`), Gloo on the CPU.

        Raises:
            ValueError: CUDA asked for with fewer GPUs than local ranks.
        """
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls.single()
        ranks = cls(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")), joined=True)
        cuda = ranks.device(device).type == "cuda"
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo", rank=ranks.rank,
                                    world_size=ranks.world_size)
        return ranks

    @property
    def distributed(self) -> bool:
        """Whether the ranks communicate (several processes, or one that joined a group)."""
        return self.world_size > 1 or self.joined

    def device(self, device: str) -> torch.device:
        """This rank's torch device for the device asked for (its own GPU on CUDA)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and self.distributed:
            if self.local_rank >= torch.cuda.device_count():
                raise ValueError(f"local rank {self.local_rank} has no GPU of its own "
                                 f"({torch.cuda.device_count()} visible); start at most that "
                                 f"many processes per node")
            return torch.device(f"cuda:{self.local_rank}")
        return torch.device(device)

    def broadcast(self, module: nn.Module) -> None:
        """Makes every rank's parameters and buffers rank 0's."""
        if self.distributed:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Replaces each gradient by its mean over the ranks (one all-reduce of them all)."""
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            grad.copy_(part.view_as(grad))

    def sum_(self, value: torch.Tensor) -> torch.Tensor:
        """Replaces a tensor by its sum over the ranks, in place (and returns it)."""
        if self.distributed:
            dist.all_reduce(value)
        return value

    def average(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the ranks (itself for one process)."""
        if not self.distributed:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world_size

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank (a host-side decision all ranks then share)."""
        if not self.distributed:
            return flag
        value = torch.tensor(float(flag), device=self._comm_device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    @property
    def _comm_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device(f"cuda:{self.local_rank}")
        return torch.device("cpu")

    def mean_std(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (unbiased) standard deviation of `values` over all ranks' values.

        Each rank holds the same number of values (its minibatch).
        """
        if not self.distributed:
            return values.mean(), values.std()
        moments = torch.stack([values.sum(), (values ** 2).sum(),
                               torch.tensor(float(values.numel()), device=values.device)])
        dist.all_reduce(moments)
        total, squares, count = moments.unbind()
        mean = total / count
        var = (squares - count * mean ** 2) / (count - 1).clamp_min(1.0)
        return mean, var.clamp_min(0.0).sqrt()

    def merge_normalizer(self, norm: NormalizeObservation,
                         since: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Merges what each rank's normalizer saw since the last merge into all of them.

        The statistics are held as moments (count, sum, sum of squares): the merged moments are
        those at the last merge plus every rank's increase since (an exact parallel update).

        Args:
            norm: this rank's normalizer.
            since: its `state_dict()` right after the last merge (or at the start).

        Returns:
            The merged `state_dict()`, to pass as `since` next time.
        """
        if not self.distributed:
            return norm.state_dict()
        now, before = _moments(norm.state_dict()), _moments(since)
        increase = now - before
        dist.all_reduce(increase)
        count, total, squares = (before + increase).unbind()
        mean = total / count
        var = (squares / count - mean ** 2).clamp_min(0.0)
        norm.load_state_dict({"mean": mean, "var": var, "count": count[0]})
        return norm.state_dict()


def _moments(state: dict[str, torch.Tensor]) -> torch.Tensor:
    # (3, obs_dim) float64: count (repeated), sum, sum of squares.
    count, mean, var = state["count"], state["mean"], state["var"]
    return torch.stack([count.expand_as(mean), count * mean, count * (var + mean ** 2)])
