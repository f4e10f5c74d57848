"""Reading 3D pose recordings: SeqIKPy/DeepFly3D dict pickles, `.npz` and CSV.

Every reader returns a `Recording` with keypoints `(T, 6, 5, 3)` in `LEGS` and `KEYPOINTS`
order. Legs absent from the file are NaN and listed in `missing_legs`; single keypoints that the
tracker dropped are NaN too. Input frame convention: x anterior, y left, z up, units of the body
template (mm).

Formats:
- Pickle (`.pkl`, `.pickle`): `{"RF_leg": (T, 5, 3), ...}` as SeqIKPy and DeepFly3D write it,
  optionally with other entries (`"R_head"`, `"Thorax"`, `"Neck"`, ... kept in `extra`); or the
  nested alignment result `{"RF_leg": {"Coxa": {"raw_pos_aligned": (T, 3), ...}, ...}}`. Pickles
  are loaded with a restricted unpickler that admits numpy arrays, dtypes, dicts, lists and
  numbers only: a pickle that names any other global is refused, never executed.
- `.npz`: `keypoints` (T, n_legs, 5, 3), `leg_names` (n_legs,), optional `fps` ().
- `.csv`: a header row and one row per frame; columns `{leg}_{keypoint}_{x|y|z}` (e.g.
  `RF_ThC_x`, `RF_Claw_z`) for every leg present, optional `frame` and `time` columns (the
  frame rate is taken from `time` when present); empty cells are missing keypoints.

Errors: a reader returns a valid `Recording` or raises `RecordingError` (a `ValueError`) naming
the file, the field and what was expected; nothing else escapes, whatever the bytes. The limits
(`flyenv.ik_preprocess.limits`: frames, elements, frame rate, coordinates) are checked from
headers before arrays are allocated. The readers: pickles here, `io_npz`, `io_csv`; the
`Recording` and the checks all share: `recording`.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.body import constants as c
from flyenv.ik_preprocess.io_csv import _from_csv
from flyenv.ik_preprocess.io_npz import _from_npz
from flyenv.ik_preprocess.limits import FPS_RANGE_HZ, RecordingError
from flyenv.ik_preprocess.recording import _MAX_NAME_CHARS, _assemble, _numeric
from flyenv.ik_preprocess.recording import MIN_FRAMES as MIN_FRAMES
from flyenv.ik_preprocess.recording import Recording as Recording
from flyenv.ik_preprocess.unpickle import load_pickle_safely

# File suffixes of recordings (any case), one reader each.
SUFFIXES = (".pkl", ".pickle", ".npz", ".csv")
# What SeqIKPy writes next to its input (`pose3d_aligned.pkl`): its results, not recordings.
SEQIKPY_OUTPUTS = ("leg_joint_angles", "forward_kinematics")
# SeqIKPy's names for the keypoint rows of its nested alignment pickles.
_NESTED_KEYPOINTS = ("Coxa", "Femur", "Tibia", "Tarsus", "Claw")


def load_recording(path: str | Path, *,
                   fps_range: tuple[float, float] = FPS_RANGE_HZ) -> Recording:
    """Reads a recording, choosing the reader by file suffix.

    Args:
        path: a `.pkl`/`.pickle`, `.npz` or `.csv` file.
        fps_range: frame rates [Hz] accepted from the file (`FPS_RANGE_HZ` by default).

    Returns:
        The recording, with finite keypoints within `MAX_COORD_MM` (NaN where untracked).

    Raises:
        FileNotFoundError: if there is no file (nothing there, a dangling link, a link loop),
            saying which.
        RecordingError: (a ValueError) naming the file, the field and what was expected, for
            a directory or other non-file, an unreadable file, unknown formats, corrupt or
            truncated files, unknown legs, wrong shapes or dtypes, implausible values or frame
            rates, too few frames, or arrays larger than the file holds or than the limits in
            `flyenv.ik_preprocess.limits`.
    """
    path = Path(path)
    missing, problem = input_problem(path)
    if missing:
        raise FileNotFoundError(f"{path}: {problem}")
    if problem is not None:
        raise RecordingError(path, problem)
    suffix = path.suffix.lower()
    readers = {".pkl": _from_pickle, ".pickle": _from_pickle, ".npz": _from_npz,
               ".csv": _from_csv}
    if suffix not in readers:
        raise RecordingError(path, f"unknown recording format '{suffix}'; expected .pkl, "
                                   f".pickle, .npz or .csv")
    try:
        return readers[suffix](path, fps_range)
    except RecordingError:
        raise
    except Exception as err:  # noqa: BLE001 - the one error type of a bad file
        # The readers check what they can name; what is left (an OSError on read, a numpy
        # error on a malformed array) is still this file's fault.
        raise RecordingError(path, f"cannot read the file ({type(err).__name__}: {err})"
                             ) from err


def find_recordings(folder: str | Path, *, exclude: str | Path | None = None,
                    ) -> tuple[list[Path], list[Path]]:
    """The recordings in a folder and below it, sorted by path.

    A recording is a file with a recording suffix (`SUFFIXES`, any case). Left out, and returned
    as ignored: what SeqIKPy writes next to its input (`leg_joint_angles*.pkl`,
    `forward_kinematics*.pkl`) and `ReferenceMotion` archives (flyenv's own outputs: an `.npz`
    holding `joint_angles` but no `leg_names`). Hidden files and folders (a leading dot:
    temporaries, `.git`) and anything under `exclude` (the output folder) are not looked at.

    Args:
        folder: the folder to search.
        exclude: a folder whose files are never inputs.

    Returns:
        (recordings, ignored), each sorted.

    Raises:
        NotADirectoryError: `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    skip = None if exclude is None else Path(exclude).resolve()
    found, ignored = [], []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and (skip is None or (here / d).resolve() != skip)]
        for name in files:
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in SUFFIXES:
                continue
            if path.stem.startswith(SEQIKPY_OUTPUTS) or _is_reference_motion(path):
                ignored.append(path)
            else:
                found.append(path)
    return sorted(found), sorted(ignored)


def _is_reference_motion(path: Path) -> bool:
    """Whether an `.npz` is a ReferenceMotion (from its member names; nothing is read)."""
    if path.suffix.lower() != ".npz":
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False  # not ours to judge here: the reader names what is wrong
    return "joint_angles.npy" in names and "leg_names.npy" not in names


def input_problem(path: Path) -> tuple[bool, str | None]:
    """What keeps `path` from being read as a recording, said plainly; (False, None) if nothing.

    Returns:
        (missing, problem): missing is True when there is no file to read (nothing there, a
        dangling link, a link loop), problem the description (None for a readable file).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return True, f"a symbolic link to {os.readlink(path)}, which does not exist"
        return True, "no such file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return True, "a symbolic link loop (the link points back to itself), not a file"
        return False, f"cannot be examined ({err.strerror})"
    if stat.S_ISDIR(mode):
        return False, "a directory, not a recording file"
    if not stat.S_ISREG(mode):
        return False, "not a regular file (a device, pipe or socket), so not a recording"
    if not os.access(path, os.R_OK):
        return False, "not readable: permission denied"
    return False, None


def _from_pickle(path: Path, fps_range: tuple[float, float]) -> Recording:
    return _from_dict(path, load_pickle_safely(path))


def _from_dict(path: Path, data: Any) -> Recording:
    if not isinstance(data, dict):
        raise RecordingError(path, f"expected a dict of '<leg>_leg' arrays, got "
                                   f"{type(data).__name__}")
    legs, extra = {}, {}
    for key, value in data.items():
        name = str(key)[:_MAX_NAME_CHARS]
        if isinstance(key, str) and key.endswith("_leg"):
            leg = key[: -len("_leg")]
            if leg not in c.LEGS:
                raise RecordingError(path, f"field '{name}': unknown leg '{leg[:16]}'; expected "
                                           f"one of {[f'{n}_leg' for n in c.LEGS]}", name)
            legs[leg] = _nested_leg(path, key, value) if isinstance(value, dict) else value
        else:
            extra[name] = _numeric(path, name, value)
    return _assemble(path, legs, fps=None, extra=extra)


def _nested_leg(path: Path, key: str, value: dict) -> np.ndarray:
    missing = [name for name in _NESTED_KEYPOINTS
               if not (isinstance(value.get(name), dict) and "raw_pos_aligned" in value[name])]
    if missing:
        raise RecordingError(path, f"field '{key}' is a nested dict but lacks 'raw_pos_aligned' "
                                   f"for {missing}; expected keys {list(_NESTED_KEYPOINTS)}", key)
    tracks = [_numeric(path, f"{key}.{name}.raw_pos_aligned", value[name]["raw_pos_aligned"])
              for name in _NESTED_KEYPOINTS]
    shapes = {t.shape for t in tracks}
    if len(shapes) != 1 or tracks[0].ndim != 2 or tracks[0].shape[1] != 3:
        raise RecordingError(path, f"field '{key}': raw_pos_aligned arrays must all have shape "
                                   f"(T, 3), got {[t.shape for t in tracks]}", key)
    return np.stack(tracks, axis=1)
