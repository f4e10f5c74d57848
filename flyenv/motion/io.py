"""Saving and loading `ReferenceMotion` as a versioned `.npz`.

The archive's keys are the field names of `ReferenceMotion` plus `schema_version`; `metadata` is
stored as JSON text and `dof_names` as a string array, so files load with `allow_pickle=False`
and can be read from any language with an npz reader.

Schema versions: 1 has the fields up to `ik_error`; 2 adds `underdetermined` (T, 6) bool. A file
is written with the lowest version that holds it, so files without the new field still load in
older flyenv versions; `load` reads both.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import tempfile
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from flyenv.motion.format import OPTIONAL_ARRAYS, ReferenceMotion

SCHEMA_VERSION = 2
_REQUIRED = ("schema_version", "fps", "dof_names", "joint_angles", "metadata")
# Optional keys by the schema version that introduced them.
_ADDED_IN = {**dict.fromkeys(OPTIONAL_ARRAYS, 1), "underdetermined": 2}
# What numpy and zipfile raise for a corrupt or truncated archive.
CORRUPT_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                          SyntaxError, tokenize.TokenError)
# Deflate compresses at most 1032:1, so a zip member claiming more than this many bytes per
# compressed byte is corrupt (a "zip bomb" header) and is refused before it is inflated.
MAX_DEFLATE_RATIO = 1100
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}


def save(motion: ReferenceMotion, path: str | os.PathLike, *, overwrite: bool = True,
         compress: bool = True) -> Path:
    """Writes a motion atomically: a crash leaves either the old file or the new one.

    Args:
        motion: the clip.
        path: destination; `.npz` is appended if missing.
        overwrite: replace an existing file; when False an existing file is an error.
        compress: zip-deflate the arrays (about 25% smaller for IK output, but ~20x slower to
            write: batch IK writes uncompressed).

    Returns:
        The path written.

    Raises:
        FileExistsError: if the file exists and `overwrite` is False.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    version = 1 if motion.underdetermined is None else 2
    arrays = {
        "schema_version": np.array(version),
        "fps": np.array(motion.fps),
        "dof_names": np.array(motion.dof_names, dtype=str),
        "joint_angles": motion.joint_angles,
        "metadata": np.array(json.dumps(motion.metadata)),
    }
    for name in _ADDED_IN:
        if getattr(motion, name) is not None:
            arrays[name] = getattr(motion, name)
    with atomic_write(path) as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces `path` only once the block completes.

    The data goes to a temporary file beside `path`, is flushed to disk and renamed over
    `path`; on any error the temporary file is removed and `path` is untouched. The file gets
    the usual permissions (0666 less the umask), not the temporary file's private ones. The
    temporary file is named `.<name>.<8 random characters>.tmp` (`stale_temporaries` finds those
    a killed process left).

    Raises:
        OSError: naming `path` (a full disk, a read-only folder), of the same type and errno.
    """
    path = Path(path)
    try:
        with _naming(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileExistsError as err:  # the parent is a file
        raise NotADirectoryError(err.errno, "not a folder", str(path.parent)) from err
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            with _naming(path):
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        with _naming(path):
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files that `atomic_write(path)` left beside `path` when its process was killed.

    Only names of the exact form `atomic_write` creates are returned; a live writer's file has
    the same form, so call this only when no other process writes `path`.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    try:
        return sorted(p for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp")
                      if pattern.fullmatch(p.name) and p.is_file())
    except OSError:
        return []


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raises an OSError without a file name (ENOSPC from a write) with `path` in it."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise type(err)(err.errno, err.strerror, str(path)) from err


def load(path: str | os.PathLike) -> ReferenceMotion:
    """Reads a motion written by `save`.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: naming the file and the problem, for a file that is not a flyenv motion,
            has a newer schema, misses a key, or holds malformed arrays.
    """
    path = Path(path)
    try:
        _check_sizes(path)
        archive = np.load(path, allow_pickle=False)
        return _from_archive(path, archive)
    except FileNotFoundError:
        raise
    except CORRUPT_ARCHIVE_ERRORS as err:
        if isinstance(err, ValueError) and str(err).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})"
                         ) from err


def _from_archive(path: Path, archive: np.lib.npyio.NpzFile) -> ReferenceMotion:
    with archive:
        keys = set(archive.files)
        missing = [k for k in _REQUIRED if k not in keys]
        if missing:
            raise ValueError(f"{path}: not a flyenv ReferenceMotion, missing keys {missing}")
        version = archive["schema_version"]
        if version.shape != () or not np.issubdtype(version.dtype, np.integer):
            raise ValueError(f"{path}: schema_version must be an integer scalar")
        version = int(version)
        if version > SCHEMA_VERSION:
            raise ValueError(f"{path}: schema_version {version} is newer than this flyenv "
                             f"reads ({SCHEMA_VERSION}); upgrade flyenv")
        if version < 1:
            raise ValueError(f"{path}: schema_version must be >= 1, got {version}")
        known = {name for name, added in _ADDED_IN.items() if added <= version}
        unknown = sorted(keys - set(_REQUIRED) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown} for schema_version {version}")
        fps = archive["fps"]
        if fps.shape != () or fps.dtype.kind not in "fiu":
            raise ValueError(f"{path}: fps must be one real number [Hz], got {fps.dtype} "
                             f"{fps.shape}")
        try:
            metadata = json.loads(str(archive["metadata"]))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: metadata is not valid JSON ({err})") from err
        fields = {name: archive[name] for name in known if name in keys}
        angles = archive["joint_angles"]
        for name, array in (("joint_angles", angles), *fields.items()):
            kind = "b" if name == "underdetermined" else "f"
            if array.dtype.kind != kind:
                raise ValueError(f"{path}: field '{name}' must hold "
                                 f"{'booleans' if kind == 'b' else 'real floats [rad, mm, s]'}, "
                                 f"got dtype {array.dtype}")
        try:
            return ReferenceMotion(fps=float(fps),
                                   dof_names=tuple(str(n) for n in archive["dof_names"]),
                                   joint_angles=angles, metadata=metadata,
                                   **fields)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err


def _check_sizes(path: Path) -> None:
    """Refuses npy members whose header claims more data than the archive holds (no allocation).

    Raises:
        ValueError: naming the file and member.
    """
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                try:
                    with open_npy_member(archive, info) as (_, header):
                        pass
                except ValueError as err:
                    raise ValueError(f"{path}: member {info.filename!r}: {err}") from err
                if header.nbytes > header.held:
                    raise ValueError(f"{path}: member {info.filename!r} claims shape "
                                     f"{header.shape} of {header.dtype} ({header.nbytes} bytes) "
                                     f"but holds {header.held}")
            elif info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1):
                raise ValueError(f"{path}: member {info.filename!r} claims {info.file_size} "
                                 f"bytes from {info.compress_size} (corrupt archive)")


class NpyHeader(NamedTuple):
    """What an npy member's header claims, and what the entry holds.

    `nbytes` is the data's size [bytes] by the header, `held` the bytes after the header:
    `nbytes > held` is a corrupt or hostile file.
    """

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    nbytes: int
    held: int


@contextlib.contextmanager
def open_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                    ) -> Iterator[tuple[BinaryIO, NpyHeader]]:
    """Opens an .npz member positioned at its data, with what its headers claim (no allocation).

    The zip entry must be stored or deflated and claim no more bytes than deflate can make of
    what it holds, and its npy header must be format 1.0 or 2.0. The caller compares the
    header's `nbytes` with `held` (and its own limits) before reading, so a small file claiming
    a huge array is refused before anything is read.

    Raises:
        ValueError: saying what is wrong (without the file's name; the caller adds it).
        The errors in CORRUPT_ARCHIVE_ERRORS, for an entry too broken to parse.
    """
    stored = info.compress_type == zipfile.ZIP_STORED
    if not stored and info.compress_type != zipfile.ZIP_DEFLATED:
        raise ValueError(f"zip compression method {info.compress_type} is not one numpy writes "
                         f"(stored or deflated)")
    limit = info.compress_size if stored else MAX_DEFLATE_RATIO * max(info.compress_size, 1)
    if info.file_size > limit:
        raise ValueError(f"the zip entry claims {info.file_size} bytes from "
                         f"{info.compress_size} stored, more than it can hold (corrupt archive)")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in _NPY_HEADER_READERS:
            raise ValueError(f"npy format version {version} is not supported; expected 1.0 or "
                             f"2.0")
        shape, fortran, dtype = _NPY_HEADER_READERS[version](f)
        nbytes = math.prod(shape) * dtype.itemsize
        yield f, NpyHeader(shape, fortran, dtype, nbytes, info.file_size - f.tell())
