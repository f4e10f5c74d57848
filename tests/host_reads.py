"""A guard that fails on every read of a tensor's value by the host, on any device.

On a GPU such a read stalls the CPU until the device has caught up (a sync); on the CPU it costs
nothing and `torch.cuda.set_sync_debug_mode` sees nothing, so a sync can hide in code that CI
runs on the CPU only. `no_host_reads()` catches them there: a `TorchDispatchMode` fails on the
aten ops whose result the host has to read (`.item()`, `bool(t)`, `nonzero`, boolean-mask
indexing, `unique`, `torch.equal`, ...) and a `TorchFunctionMode` on the Python-level copies to
the host (`.cpu()`, `.numpy()`, `.tolist()`, `.to("cpu")` written with the string "cpu").

    with no_host_reads():
        env.step(actions)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Ops whose output the host must read (sizes that depend on values, or a Python scalar).
_HOST_READ_OPS = {
    aten._local_scalar_dense.default, aten.item.default, aten.is_nonzero.default,
    aten.nonzero.default, aten.nonzero_numpy.default, aten.masked_select.default,
    aten.equal.default, aten.allclose.default, aten._unique.default, aten._unique2.default,
    aten.unique_dim.default, aten.unique_consecutive.default, aten.repeat_interleave.Tensor,
    aten.argwhere.default,
}
# Indexing ops that read the host only when an index is a boolean mask.
_MASK_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
                   aten._index_put_impl_.default}
_HOST_COPY_METHODS = {torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.tolist,
                      torch.Tensor.item, torch.Tensor.__array__}


class HostReadError(AssertionError):
    """A tensor's value was read by the host inside `no_host_reads()`."""


class _DispatchGuard(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _HOST_READ_OPS:
            raise HostReadError(f"host read of a tensor value: {func}")
        if func in _MASK_INDEX_OPS:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                   for i in indices):
                raise HostReadError(f"boolean-mask indexing reads the mask on the host: {func}")
        return func(*args, **kwargs)


class _FunctionGuard(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _HOST_COPY_METHODS:
            raise HostReadError(f"copy of a tensor to the host: Tensor.{func.__name__}")
        if func is torch.Tensor.to and _to_cpu(args[1:], kwargs):
            raise HostReadError("copy of a tensor to the host: Tensor.to('cpu')")
        return func(*args, **kwargs)


def _to_cpu(args: tuple, kwargs: dict) -> bool:
    # On a CPU box every tensor is on the CPU, so a move is told by how it is written: a literal
    # "cpu" is a copy to the host on any machine, while a torch.device object is the device of
    # something else (`x.to(grad.device)`), which is a no-op on the GPU too.
    return any(isinstance(t, str) and t.startswith("cpu") for t in (*args, kwargs.get("device")))


@contextlib.contextmanager
def no_host_reads() -> Iterator[None]:
    """Raises `HostReadError` at the first host read of a tensor value inside the block."""
    with _FunctionGuard(), _DispatchGuard():
        yield
