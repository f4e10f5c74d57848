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
headers before arrays are allocated.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import math
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.body import constants as c
from flyenv.ik_preprocess.limits import (
    FPS_RANGE_HZ,
    MAX_COORD_MM,
    MAX_ELEMENTS,
    MAX_FRAMES,
    RecordingError,
    check_fps,
)
from flyenv.ik_preprocess.unpickle import load_pickle_safely
from flyenv.motion.io import CORRUPT_ARCHIVE_ERRORS, open_npy_member

MIN_FRAMES = 2
# File suffixes of recordings (any case), one reader each.
SUFFIXES = (".pkl", ".pickle", ".npz", ".csv")
# What SeqIKPy writes next to its input (`pose3d_aligned.pkl`): its results, not recordings.
SEQIKPY_OUTPUTS = ("leg_joint_angles", "forward_kinematics")
# SeqIKPy's names for the keypoint rows of its nested alignment pickles.
_NESTED_KEYPOINTS = ("Coxa", "Femur", "Tibia", "Tarsus", "Claw")
# The npz fields read: name -> dtype kinds accepted ('f' float, 'i'/'u' integer, 'U'/'S' text).
_NPZ_FIELDS = {"keypoints": "fiu", "leg_names": "US", "fps": "fiu"}
_KINDS = {"fiu": "real numbers (float or integer)", "US": "text"}
_MAX_NAME_CHARS = 64
# CSV: the header line's length, a cell's length (a float needs at most ~25 characters) and the
# rows parsed into numbers at a time.
_MAX_HEADER_CHARS = 1 << 16
_MAX_CELL_CHARS = 64
_CSV_CHUNK_ROWS = 512


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """Keypoints of one recording.

    Attributes:
        path: the file it came from.
        keypoints: (T, 6, 5, 3) [mm]; NaN for missing legs and dropped keypoints.
        fps: frame rate [Hz] if the file says, else None.
        extra: other tracks found in the file (head, thorax, ...), by name.
    """

    path: Path
    keypoints: np.ndarray
    fps: float | None = None
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        """T."""
        return self.keypoints.shape[0]

    @property
    def legs_present(self) -> tuple[str, ...]:
        """Legs with at least one tracked keypoint, in `LEGS` order."""
        return tuple(leg for leg, ok in zip(c.LEGS, self._tracked(), strict=True) if ok)

    @property
    def missing_legs(self) -> tuple[str, ...]:
        """Legs absent from the recording."""
        return tuple(leg for leg, ok in zip(c.LEGS, self._tracked(), strict=True) if not ok)

    def _tracked(self) -> np.ndarray:
        return np.isfinite(self.keypoints).any(axis=(0, 2, 3))


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


def _from_csv(path: Path, fps_range: tuple[float, float]) -> Recording:
    _check_line_count(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            lines = _BoundedLines(path, f)
            reader = csv.reader(lines)
            header = [h.strip() for h in next(reader, [])]
            _check_header(path, header)
            lines.limit = (_MAX_CELL_CHARS + 1) * len(header) + 2
            values = _csv_values(path, header, reader)
    except UnicodeDecodeError as err:
        raise RecordingError(path, f"not UTF-8 text ({err})") from err
    except csv.Error as err:
        raise RecordingError(path, f"not a readable CSV file ({err})") from err
    if len(values) < MIN_FRAMES:
        raise RecordingError(path, f"needs a header row and at least {MIN_FRAMES} frames, got "
                                   f"{len(values)} data rows")
    columns = {name: i for i, name in enumerate(header)}
    legs = {}
    for leg in c.LEGS:
        wanted = [f"{leg}_{kp}_{axis}" for kp in c.KEYPOINTS for axis in "xyz"]
        present = [w for w in wanted if w in columns]
        if not present:
            continue
        if len(present) != len(wanted):
            missing = [w for w in wanted if w not in columns]
            raise RecordingError(path, f"leg {leg} has only some of its columns; missing "
                                       f"{missing[:6]}")
        legs[leg] = values[:, [columns[w] for w in wanted]].reshape(-1, c.NUM_KEYPOINTS, 3)
    fps = None
    if "time" in columns:
        step = np.diff(values[:, columns["time"]])
        if not (np.isfinite(step).all() and (step > 0).all()):
            raise RecordingError(path, "column 'time' must increase strictly from row to row "
                                       "[s]", "time")
        with np.errstate(divide="ignore", over="ignore"):
            fps = check_fps(path, "time", 1.0 / np.median(step), fps_range)
    del values  # the legs are copies; only they and the recording's array are held from here
    return _assemble(path, legs, fps=fps, extra={})


def _check_line_count(path: Path) -> None:
    """Refuses a file with more lines than `MAX_FRAMES` rows before reading any of them."""
    lines = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            lines += block.count(b"\n")
            if lines > MAX_FRAMES + 1:
                raise RecordingError(path, f"more than {MAX_FRAMES} rows; at most {MAX_FRAMES} "
                                           f"frames are read")


class _BoundedLines:
    """The file's lines for `csv.reader`, each read with a bound on its length.

    `limit` starts at `_MAX_HEADER_CHARS` for the header and is set to what a row of the
    header's columns can hold once it is known, so one line without a newline never becomes a
    gigabyte string.
    """

    def __init__(self, path: Path, f: Any) -> None:
        self.path, self.f, self.limit = path, f, _MAX_HEADER_CHARS

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.limit + 1)
        if not line:
            raise StopIteration
        if len(line) > self.limit:
            raise RecordingError(self.path, f"a line is longer than {self.limit} characters "
                                            f"(cells of at most {_MAX_CELL_CHARS} characters "
                                            f"are read)")
        return line


def _check_header(path: Path, header: list[str]) -> None:
    if not header:
        raise RecordingError(path, "empty: expected a header row naming the columns")
    known = {f"{leg}_{kp}_{axis}" for leg in c.LEGS for kp in c.KEYPOINTS for axis in "xyz"}
    unknown = [h[:_MAX_NAME_CHARS] for h in header if h not in known and h not in ("frame",
                                                                                   "time")]
    if unknown:
        raise RecordingError(path, f"unknown columns {unknown[:5]}; expected "
                                   f"'<leg>_<keypoint>_<x|y|z>' with leg in {list(c.LEGS)} and "
                                   f"keypoint in {list(c.KEYPOINTS)}, or 'frame'/'time'")
    if len(set(header)) != len(header):
        repeated = sorted({h for h in header if header.count(h) > 1})
        raise RecordingError(path, f"columns {repeated[:5]} appear more than once")


def _csv_values(path: Path, header: list[str], reader: Iterator[list[str]]) -> np.ndarray:
    """The data rows as a float array (rows, columns), parsed `_CSV_CHUNK_ROWS` at a time.

    Only the numbers are kept: the strings of one chunk at a time, never of the whole file.
    """
    ncol = len(header)
    chunks, rows, total = [], [], 0
    for row in reader:
        if len(row) != ncol:
            raise RecordingError(path, f"row {total + len(rows) + 2} has {len(row)} cells, the "
                                       f"header {ncol}")
        rows.append(row)
        if len(rows) == _CSV_CHUNK_ROWS:
            chunks.append(_parse_rows(path, header, rows, total))
            total += len(rows)
            rows = []
    if rows:
        chunks.append(_parse_rows(path, header, rows, total))
    if not chunks:
        return np.empty((0, ncol))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _parse_rows(path: Path, header: list[str], rows: list[list[str]], first: int) -> np.ndarray:
    """Cells as floats (empty cells and 'nan' are NaN); the first bad cell is named."""
    try:
        return np.array([[float(cell) if cell and not cell.isspace() else np.nan
                          for cell in row] for row in rows], dtype=float).reshape(-1,
                                                                                   len(header))
    except ValueError:
        pass
    for rowid, row in enumerate(rows):
        for colid, cell in enumerate(row):
            try:
                float(cell) if cell.strip() else None
            except ValueError:
                raise RecordingError(path, f"row {first + rowid + 2}, column "
                                           f"'{header[colid]}': '{cell.strip()[:20]}' is not a "
                                           f"number", header[colid]) from None
    raise RecordingError(path, "unreadable numbers")  # not reached: some cell failed above


def _numeric(path: Path, field: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise RecordingError(path, f"field '{field}' must be a numeric array ({err})",
                             field) from err
    if array.dtype.kind not in "fiu":
        raise RecordingError(path, f"field '{field}' must be numeric (real integers or floats), "
                                   f"got dtype {array.dtype}", field)
    return array.astype(np.float64, copy=False)


def _assemble(path: Path, legs: dict[str, Any], fps: float | None,
              extra: dict[str, np.ndarray]) -> Recording:
    if not legs:
        raise RecordingError(path, f"no leg found; expected fields named "
                                   f"{[f'{leg}_leg' for leg in c.LEGS]} (any subset)")
    arrays = {leg: _numeric(path, f"{leg}_leg", value) for leg, value in legs.items()}
    for leg, array in arrays.items():
        if array.ndim != 3 or array.shape[1:] != (c.NUM_KEYPOINTS, 3):
            raise RecordingError(path, f"field '{leg}_leg' must have shape (T, 5, 3) (keypoints "
                                       f"{list(c.KEYPOINTS)} in x, y, z), got {array.shape}",
                                 f"{leg}_leg")
    lengths = {leg: array.shape[0] for leg, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise RecordingError(path, f"legs have different numbers of frames: {lengths}")
    num_frames = next(iter(lengths.values()))
    if not MIN_FRAMES <= num_frames <= MAX_FRAMES:
        raise RecordingError(path, f"too few frames ({num_frames}); at least {MIN_FRAMES} needed"
                             if num_frames < MIN_FRAMES else
                             f"too many frames ({num_frames}); at most {MAX_FRAMES}")
    keypoints = np.full((num_frames, c.NUM_LEGS, c.NUM_KEYPOINTS, 3), np.nan)
    for leg, array in arrays.items():
        if np.isinf(array).any():
            raise RecordingError(path, f"field '{leg}_leg' has infinite values; use NaN for "
                                       f"missing keypoints", f"{leg}_leg")
        with np.errstate(invalid="ignore"):
            beyond = np.abs(array) > MAX_COORD_MM
        if beyond.any():
            largest = np.nanmax(np.abs(array))
            raise RecordingError(path, f"field '{leg}_leg' has coordinates beyond "
                                       f"{MAX_COORD_MM:g} mm (largest {largest:.3g}); keypoints "
                                       f"are mm from the thorax", f"{leg}_leg")
        keypoints[:, c.LEGS.index(leg)] = array
    if not np.isfinite(keypoints).any():
        raise RecordingError(path, f"no keypoint of any leg ({', '.join(arrays)}) is tracked "
                                   f"in any frame: every value is NaN", "keypoints")
    keypoints.setflags(write=False)
    return Recording(path=path, keypoints=keypoints, fps=fps, extra=extra)
