"""Warp kernels of the masked per-world reset (so the whole reset can be one CUDA graph)."""

from __future__ import annotations

from typing import Any

import warp as wp

wp.set_module_options({"enable_backward": False})


@wp.kernel
def _masked_copy(
    # In:
    mask_in: wp.array(dtype=bool),
    where_in: bool,
    value_in: wp.array2d(dtype=Any),
    # Out:
    value_out: wp.array2d(dtype=Any),
):
    worldid, elemid = wp.tid()
    if mask_in[worldid] == where_in:
        value_out[worldid, elemid] = value_in[worldid, elemid]


def masked_set(mask: wp.array, value: wp.array, out: wp.array) -> None:
    """out[w] = value[w] for the worlds w in mask; (nworld, n) arrays of one dtype."""
    _masked_copy_launch(mask, True, value, out)


def masked_keep(mask: wp.array, kept: wp.array, out: wp.array) -> None:
    """out[w] = kept[w] for the worlds w not in mask; (nworld, n) arrays of one dtype."""
    _masked_copy_launch(mask, False, kept, out)


def _masked_copy_launch(mask: wp.array, where: bool, value: wp.array, out: wp.array) -> None:
    if out.shape[1] > 0:
        wp.launch(_masked_copy, dim=out.shape, inputs=[mask, where, value], outputs=[out])
