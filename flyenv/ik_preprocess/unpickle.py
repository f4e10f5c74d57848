"""A restricted unpickler for pose pickles: plain dicts, lists, numbers and numpy arrays.

A pickle can call any global it names; this one admits only the few that rebuild numpy arrays
and dtypes, each wrapped so that it can build nothing else and allocate no more than the pickle
holds:

- `numpy.core.multiarray._reconstruct(ndarray, (0,), typecode)` makes the empty array that
  numpy's pickle then fills with `__setstate__((version, shape, dtype, fortran, rawdata))`; the
  filled shape is checked against `rawdata` (bytes inside the pickle) before numpy sees it.
  `numpy.ndarray` itself is only a token for `_reconstruct`: calling it (which would allocate
  any shape) is refused.
- `numpy.dtype` for plain (not structured, not object) dtypes; `numpy.core.multiarray.scalar`.
- `numpy.core.numeric._frombuffer` (protocol 5): a view of bytes inside the pickle.
- `_codecs.encode(text, 'latin1')`, which protocol 0 and 2 pickles use for the raw array bytes,
  and nothing else of `_codecs`.
- `collections.OrderedDict`.

Before unpickling, the opcode stream is walked with `pickletools.genops`, which checks every
length-prefixed string against the bytes that follow and reads no more than the file holds;
memo indices beyond the opcode count (which make CPython grow its memo to that index) are refused.

Shared references let a few hundred bytes describe a tree of billions of elements (a list that
holds the list below it ten times, ten levels deep), which any later copy or `numpy.asarray`
would expand. So the unpickled object is measured as if every shared reference were a copy,
counting each element and array as the float64 bytes it would become, and one that expands to
more than `MAX_EXPANSION` times the pickle's size (plus `EXPANSION_BASE_BYTES`) is refused
before anything is expanded; the measuring walks each shared object once.
"""

from __future__ import annotations

import codecs
import collections
import io
import itertools
import math
import pickle
import pickletools
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.ik_preprocess.limits import MAX_ELEMENTS, RecordingError

_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
_MAX_DEPTH = 32  # nesting of dicts and lists in a pose pickle
_MAX_DTYPE_STR = 16
# Expanded size allowed per byte of pickle: an unshared pose pickle expands at most about 8x
# (a 1-byte element or uint8 value becomes a float64), so 16 leaves room for a few shared arrays.
MAX_EXPANSION = 16
EXPANSION_BASE_BYTES = 1 << 20
_ITEM_BYTES = 8  # one float64, or one reference in a container


class _Refused(pickle.UnpicklingError):
    """A pickle asking for something a pose pickle never needs."""


class _NdarrayToken:
    """Stands for `numpy.ndarray` as `_reconstruct`'s subtype argument; not callable."""


_NDARRAY = _NdarrayToken()


class _PickledArray(np.ndarray):
    """The array `_reconstruct` returns; checks its state before numpy's `__setstate__`."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused(f"array state must be a 4- or 5-tuple, got {type(state).__name__}")
        shape, dtype, _, rawdata = state[-4:]
        _check_dtype(dtype)
        if not isinstance(rawdata, bytes | str):
            raise _Refused(f"array data must be bytes, got {type(rawdata).__name__}")
        _check_size(_shape(shape), dtype, len(rawdata))
        super().__setstate__(state)


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    if not (isinstance(shape, tuple) and len(shape) <= 32
            and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise _Refused(f"array shape must be a tuple of at most 32 integers >= 0, got "
                       f"{type(shape).__name__}")
    return shape


def _check_dtype(dtype: Any) -> None:
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"expected a numpy dtype, got {type(dtype).__name__}")
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        raise _Refused(f"dtype {dtype} (object, structured or sub-array) is not pose data")


def _check_size(shape: tuple[int, ...], dtype: np.dtype, available: int) -> None:
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise _Refused(f"an array of shape {shape} has {count} elements, more than the "
                       f"{MAX_ELEMENTS} allowed for pose data")
    if count * dtype.itemsize > available:
        raise _Refused(f"an array of shape {shape} and dtype {dtype} claims "
                       f"{count * dtype.itemsize} bytes but the pickle holds {available}")


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise _Refused("_reconstruct is only admitted for numpy.ndarray")
    if math.prod(_shape(shape)) != 0:
        raise _Refused(f"_reconstruct must start from an empty array, got shape {shape}")
    return _PickledArray.__new__(_PickledArray, (0,), np.uint8)


def _dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not (isinstance(obj, str) and len(obj) <= _MAX_DTYPE_STR):
        raise _Refused(f"numpy.dtype is only admitted with a short type string, got "
                       f"{type(obj).__name__}")
    return np.dtype(obj, align=bool(align), copy=bool(copy))


def _scalar(dtype: Any, data: Any = None) -> Any:
    _check_dtype(dtype)
    if not (isinstance(data, bytes) and len(data) == dtype.itemsize):
        raise _Refused(f"a numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes")
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    _check_dtype(dtype)
    if not isinstance(buf, bytes | bytearray) or order not in ("C", "F"):
        raise _Refused("_frombuffer is only admitted with bytes inside the pickle")
    shape = _shape(shape)
    _check_size(shape, dtype, len(buf))
    if dtype.itemsize == 0 or math.prod(shape) == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _latin1(text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
    if encoding != "latin1" or rest or not isinstance(text, str):
        raise _Refused("_codecs.encode is only admitted as encode(str, 'latin1')")
    return codecs.encode(text, "latin1")


_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{(module, "_reconstruct"): _reconstruct for module in _MODULES},
    **{(module, "scalar"): _scalar for module in _MODULES},
    **{(module, "_frombuffer"): _frombuffer for module in _NUMERIC},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        raise _Refused(f"refused to load global '{module}.{name}': only numpy arrays, dtypes, "
                       f"dicts, lists and numbers are allowed in a pose pickle")


def load_pickle_safely(path: str | Path) -> Any:
    """Unpickles a file admitting only numpy arrays, dtypes, dicts, lists and numbers.

    Protocols 0 to 5 are read (Python 2 pickles with latin-1 strings too).

    Args:
        path: the pickle.

    Returns:
        The unpickled object; arrays are plain `numpy.ndarray`.

    Raises:
        FileNotFoundError: if there is no such file.
        RecordingError: naming the file, for any other object, a corrupt or truncated pickle, or
            an array larger than the pickle holds or than `MAX_ELEMENTS`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise RecordingError(path, f"cannot read the file ({err})") from err
    try:
        _scan(data)
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
        budget = MAX_EXPANSION * len(data) + EXPANSION_BASE_BYTES
        size = _expanded_bytes(obj, 0, {}, budget)
        if size > budget:
            raise _Refused(f"the pickle's {len(data)} bytes expand (shared references copied) "
                           f"to more than {budget} bytes of data, {MAX_EXPANSION}x its size "
                           f"plus {EXPANSION_BASE_BYTES}: not a pose pickle")
        return _plain(obj, 0, {})
    except Exception as err:  # noqa: BLE001 - anything a corrupt pickle raises is the file's fault
        raise RecordingError(path, f"cannot load pickle: {_describe(err)}") from err


def _scan(data: bytes) -> None:
    """Walks the opcodes without executing them: truncated strings and absurd memo indices."""
    count = 0
    with warnings.catch_warnings():
        # genops decodes protocol-0 strings with escape_decode, which warns on odd escapes.
        warnings.simplefilter("ignore", DeprecationWarning)
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            count += 1
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= count:
                raise _Refused(f"memo index {arg} beyond the {count} opcodes read so far")


def _expanded_bytes(obj: Any, depth: int, seen: dict[int, int], budget: int) -> int:
    """Bytes `obj` holds with every shared reference counted as a copy (float64 per element).

    `seen` caches each container's size by id, so a shared object is walked once; the walk
    stops as soon as the total passes `budget` (the result is then only known to exceed it).
    """
    if depth > _MAX_DEPTH:
        raise _Refused(f"containers nested deeper than {_MAX_DEPTH} (or a cycle)")
    if isinstance(obj, np.ndarray):
        return _ITEM_BYTES * (obj.size + 1)
    if isinstance(obj, str | bytes | bytearray):
        return _ITEM_BYTES + 4 * len(obj)  # numpy holds text as UCS-4
    if not isinstance(obj, dict | list | tuple):
        return _ITEM_BYTES
    if id(obj) in seen:
        return seen[id(obj)]
    items = itertools.chain.from_iterable(obj.items()) if isinstance(obj, dict) else obj
    total = _ITEM_BYTES
    for item in items:
        total += _expanded_bytes(item, depth + 1, seen, budget)
        if total > budget:
            break
    seen[id(obj)] = total
    return total


def _plain(obj: Any, depth: int, done: dict[int, Any]) -> Any:
    """`obj` with the checked arrays turned into plain ndarrays (containers rebuilt once each).

    Shared containers stay shared (`done` maps each id to its rebuilt object).
    """
    if depth > _MAX_DEPTH:
        raise _Refused(f"containers nested deeper than {_MAX_DEPTH} (or a cycle)")
    if isinstance(obj, np.ndarray):
        return np.asarray(obj)
    if not isinstance(obj, dict | list | tuple):
        return obj
    if id(obj) not in done:
        if isinstance(obj, dict):
            done[id(obj)] = type(obj)((key, _plain(value, depth + 1, done))
                                      for key, value in obj.items())
        else:
            done[id(obj)] = type(obj)(_plain(value, depth + 1, done) for value in obj)
    return done[id(obj)]


def _describe(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, pickle.UnpicklingError):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
