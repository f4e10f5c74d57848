"""Warp kernels of the masked per-world reset (so the whole reset can be one CUDA graph)."""

from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})


@wp.kernel
def _masked_set(
    # In:
    mask_in: wp.array(dtype=bool),
    value_in: wp.array2d(dtype=float),
    # Out:
    value_out: wp.array2d(dtype=float),
):
    worldid, elemid = wp.tid()
    if mask_in[worldid]:
        value_out[worldid, elemid] = value_in[worldid, elemid]


@wp.kernel
def _masked_keep_vec3(
    # In:
    mask_in: wp.array(dtype=bool),
    kept_in: wp.array2d(dtype=wp.vec3),
    # Out:
    value_out: wp.array2d(dtype=wp.vec3),
):
    worldid, elemid = wp.tid()
    if not mask_in[worldid]:
        value_out[worldid, elemid] = kept_in[worldid, elemid]


@wp.kernel
def _masked_keep(
    # In:
    mask_in: wp.array(dtype=bool),
    kept_in: wp.array2d(dtype=float),
    # Out:
    value_out: wp.array2d(dtype=float),
):
    worldid, elemid = wp.tid()
    if not mask_in[worldid]:
        value_out[worldid, elemid] = kept_in[worldid, elemid]


@wp.kernel
def _reset_flags(
    # In:
    mask_in: wp.array(dtype=bool),
    kept_in: wp.array(dtype=int),
    # Out:
    value_out: wp.array(dtype=int),
):
    worldid = wp.tid()
    if mask_in[worldid]:
        value_out[worldid] = 0
    else:
        value_out[worldid] = kept_in[worldid]


def masked_set(mask: wp.array, value: wp.array, out: wp.array) -> None:
    """out[w] = value[w] for the worlds w in mask; (nworld, n) float arrays."""
    if out.shape[1] > 0:
        wp.launch(_masked_set, dim=out.shape, inputs=[mask, value], outputs=[out])


def masked_keep(mask: wp.array, kept: wp.array, out: wp.array) -> None:
    """out[w] = kept[w] for the worlds w not in mask; (nworld, n) float or vec3 arrays."""
    if out.shape[1] == 0:
        return
    kernel = _masked_keep_vec3 if out.dtype == wp.vec3 else _masked_keep
    wp.launch(kernel, dim=out.shape, inputs=[mask, kept], outputs=[out])


def reset_flags(mask: wp.array, kept: wp.array, out: wp.array) -> None:
    """out[w] = 0 for the worlds w in mask, kept[w] for the others; (nworld,) int arrays."""
    wp.launch(_reset_flags, dim=out.shape, inputs=[mask, kept], outputs=[out])
