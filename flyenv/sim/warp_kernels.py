"""Warp kernels of the warp engine's graphs: masked per-world copies, reset count, overflow flag.

Each kernel has one concrete signature (float arrays; a `vec3` array is passed as a flat float
view of its memory, see `flat`): in Warp 1.19's CPU graph replay (APIC), a generic (`Any`) copy
kernel launched for a vec3 and a float array in one capture replayed the vec3 launch copying a
third of the values (the masked reset silently restored a third of the sites; captured and
uncaptured resets then differ by 2 um), while one concrete kernel replays correctly.
"""

from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})


@wp.kernel
def _copy_where(
    # In:
    mask_in: wp.array(dtype=bool),
    where_in: int,
    value_in: wp.array2d(dtype=float),
    # Out:
    value_out: wp.array2d(dtype=float),
):
    worldid, elemid = wp.tid()
    if int(mask_in[worldid]) == where_in:
        value_out[worldid, elemid] = value_in[worldid, elemid]


@wp.kernel
def _count_true(
    # In:
    mask_in: wp.array(dtype=bool),
    # Out:
    count_out: wp.array(dtype=wp.int32),
):
    worldid = wp.tid()
    if mask_in[worldid]:
        wp.atomic_add(count_out, 0, 1)


@wp.kernel
def _flag_contact_overflow(
    # In:
    nacon_in: wp.array(dtype=int),
    ncollision_in: wp.array(dtype=int),
    naconmax_in: int,
    narrowphase_bit: int,
    broadphase_bit: int,
    # Out:
    overflow_out: wp.array(dtype=int),
):
    worldid = wp.tid()
    flags = (wp.where(nacon_in[0] > naconmax_in, narrowphase_bit, 0)
             | wp.where(ncollision_in[0] > naconmax_in, broadphase_bit, 0))
    if flags != 0:
        overflow_out[worldid] = overflow_out[worldid] | flags


def flat(array: wp.array) -> wp.array:
    """A (nworld, n * k) float view of a (nworld, n) array of k-float vectors (same memory)."""
    width = array.size // array.shape[0] * wp.types.type_size_in_bytes(array.dtype) // 4
    return wp.array(ptr=array.ptr, dtype=float, shape=(array.shape[0], width),
                    device=array.device)


def masked_set(mask: wp.array, value: wp.array, out: wp.array) -> None:
    """out[w] = value[w] for the worlds w in mask; (nworld, n) float arrays."""
    if out.shape[1] > 0:
        wp.launch(_copy_where, dim=out.shape, inputs=[mask, 1, value], outputs=[out])


def masked_keep(mask: wp.array, kept: wp.array, out: wp.array) -> None:
    """out[w] = kept[w] for the worlds w not in mask; (nworld, n) float arrays."""
    if out.shape[1] > 0:
        wp.launch(_copy_where, dim=out.shape, inputs=[mask, 0, kept], outputs=[out])


def count_true(mask: wp.array, count: wp.array) -> None:
    """count[0] = number of True entries of mask (an int32 array of one element)."""
    count.zero_()
    wp.launch(_count_true, dim=mask.shape[0], inputs=[mask], outputs=[count])


def flag_contact_overflow(nacon: wp.array, ncollision: wp.array, naconmax: int,
                          narrowphase_bit: int, broadphase_bit: int, overflow: wp.array) -> None:
    """Sets the overflow bits of every world when the shared contact pool overflowed.

    MuJoCo Warp 4.0 keeps one contact pool of `naconmax` for all worlds and drops the contacts
    past it (and the broadphase pairs past it) without an overflow bit. Which worlds lost
    contacts is not recorded, so every world of the step is flagged.
    """
    wp.launch(_flag_contact_overflow, dim=overflow.shape[0],
              inputs=[nacon, ncollision, naconmax, narrowphase_bit, broadphase_bit],
              outputs=[overflow])
