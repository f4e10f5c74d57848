"""The `.npz` recording reader (`flyenv.ik_preprocess.io` describes the format)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from flyenv.body import constants as c
from flyenv.ik_preprocess.limits import MAX_ELEMENTS, RecordingError, check_fps
from flyenv.ik_preprocess.recording import Recording, _assemble, _numeric
from flyenv.motion.io import CORRUPT_ARCHIVE_ERRORS, open_npy_member

# The npz fields read: name -> dtype kinds accepted ('f' float, 'i'/'u' integer, 'U'/'S' text).
_NPZ_FIELDS = {"keypoints": "fiu", "leg_names": "US", "fps": "fiu"}
_KINDS = {"fiu": "real numbers (float or integer)", "US": "text"}


def _from_npz(path: Path, fps_range: tuple[float, float]) -> Recording:
    arrays = _read_npz(path)
    for name in ("keypoints", "leg_names"):
        if name not in arrays:
            raise RecordingError(path, f"missing field '{name}'; expected 'keypoints' "
                                       f"(T, n_legs, 5, 3), 'leg_names' (n_legs,) and optional "
                                       f"'fps'", name)
    keypoints = _numeric(path, "keypoints", arrays["keypoints"])
    leg_names = arrays["leg_names"]
    if leg_names.ndim > 1 or leg_names.size > c.NUM_LEGS:
        raise RecordingError(path, f"field 'leg_names' must hold at most {c.NUM_LEGS} names, "
                                   f"got shape {leg_names.shape}", "leg_names")
    names = [n.decode("latin1") if isinstance(n, bytes) else str(n)
             for n in np.atleast_1d(leg_names)]
    if keypoints.ndim != 4 or keypoints.shape[1:] != (len(names), c.NUM_KEYPOINTS, 3):
        raise RecordingError(path, f"field 'keypoints' must have shape (T, {len(names)}, 5, 3) "
                                   f"for leg_names {names}, got {keypoints.shape}", "keypoints")
    fps = None
    if "fps" in arrays:
        value = arrays["fps"]
        if value.size != 1:
            raise RecordingError(path, f"field 'fps' must be one number [Hz], got shape "
                                       f"{value.shape}", "fps")
        fps = check_fps(path, "fps", float(value.reshape(-1)[0]), fps_range)
    for name in names:
        if name not in c.LEGS:
            raise RecordingError(path, f"field 'leg_names': unknown leg '{name[:16]}'; expected "
                                       f"names from {list(c.LEGS)}", "leg_names")
    if len(set(names)) != len(names):
        raise RecordingError(path, f"field 'leg_names' repeats a leg: {names}", "leg_names")
    legs = {name: keypoints[:, i] for i, name in enumerate(names)}
    return _assemble(path, legs, fps=fps, extra={})


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The fields of `_NPZ_FIELDS` in the archive, each checked from its npy header first."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise RecordingError(path, f"not a readable .npz (zip) archive ({err})") from err
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        arrays = {}
        for name, kinds in _NPZ_FIELDS.items():
            if f"{name}.npy" not in members:
                continue
            try:
                arrays[name] = _read_member(path, archive, members[f"{name}.npy"], name, kinds)
            except RecordingError:
                raise
            except CORRUPT_ARCHIVE_ERRORS as err:
                raise RecordingError(path, f"field '{name}': corrupt npy entry "
                                           f"({type(err).__name__}: {err})", name) from err
        return arrays


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, field: str,
                 kinds: str) -> np.ndarray:
    """One npy member: headers, dtype and size checked before its data is read."""
    try:
        with open_npy_member(archive, info) as (f, header):
            shape, dtype, nbytes = header.shape, header.dtype, header.nbytes
            if dtype.kind not in kinds or dtype.hasobject or dtype.names or dtype.subdtype:
                raise RecordingError(path, f"field '{field}' must hold {_KINDS[kinds]}, got "
                                           f"dtype {dtype}", field)
            count = math.prod(shape)
            if count > MAX_ELEMENTS:
                raise RecordingError(path, f"field '{field}': shape {shape} has {count} "
                                           f"elements, more than the {MAX_ELEMENTS} allowed "
                                           f"for pose data", field)
            if nbytes > header.held:
                raise RecordingError(path, f"field '{field}': the header claims shape {shape} "
                                           f"of {dtype} ({nbytes} bytes) but the entry holds "
                                           f"{header.held} bytes of data", field)
            data = f.read(nbytes)
    except RecordingError:
        raise
    except ValueError as err:  # what open_npy_member found wrong with the entry
        raise RecordingError(path, f"field '{field}': {err}", field) from err
    if len(data) != nbytes:
        raise RecordingError(path, f"field '{field}': truncated, {len(data)} of {nbytes} bytes",
                             field)
    if nbytes == 0:
        return np.zeros(shape, dtype)
    order = "F" if header.fortran_order else "C"
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)
