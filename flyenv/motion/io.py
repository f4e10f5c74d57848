"""Saving and loading `ReferenceMotion` as a versioned `.npz`.

The archive's keys are the field names of `ReferenceMotion` plus `schema_version`; `metadata` is
stored as JSON text and `dof_names` as a string array, so files load with `allow_pickle=False`
and can be read from any language with an npz reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from flyenv.motion.format import OPTIONAL_ARRAYS, ReferenceMotion

SCHEMA_VERSION = 1
_REQUIRED = ("schema_version", "fps", "dof_names", "joint_angles", "metadata")


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
    arrays = {
        "schema_version": np.array(SCHEMA_VERSION),
        "fps": np.array(motion.fps),
        "dof_names": np.array(motion.dof_names, dtype=str),
        "joint_angles": motion.joint_angles,
        "metadata": np.array(json.dumps(motion.metadata)),
    }
    for name in OPTIONAL_ARRAYS:
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
    the usual permissions (0666 less the umask), not the temporary file's private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike) -> ReferenceMotion:
    """Reads a motion written by `save`.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: naming the file and the problem, for a file that is not a flyenv motion,
            has a newer schema, misses a key, or holds malformed arrays.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    with archive:
        keys = set(archive.files)
        missing = [k for k in _REQUIRED if k not in keys]
        if missing:
            raise ValueError(f"{path}: not a flyenv ReferenceMotion, missing keys {missing}")
        version = archive["schema_version"]
        if version.shape != () or not np.issubdtype(version.dtype, np.integer):
            raise ValueError(f"{path}: schema_version must be an integer scalar")
        if int(version) > SCHEMA_VERSION:
            raise ValueError(f"{path}: schema_version {int(version)} is newer than this flyenv "
                             f"reads ({SCHEMA_VERSION}); upgrade flyenv")
        if int(version) < 1:
            raise ValueError(f"{path}: schema_version must be >= 1, got {int(version)}")
        unknown = sorted(keys - set(_REQUIRED) - set(OPTIONAL_ARRAYS))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown} for schema_version "
                             f"{SCHEMA_VERSION}")
        try:
            metadata = json.loads(str(archive["metadata"]))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: metadata is not valid JSON ({err})") from err
        fields = {name: archive[name] for name in OPTIONAL_ARRAYS if name in keys}
        try:
            return ReferenceMotion(fps=float(archive["fps"]),
                                   dof_names=tuple(str(n) for n in archive["dof_names"]),
                                   joint_angles=archive["joint_angles"], metadata=metadata,
                                   **fields)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err
