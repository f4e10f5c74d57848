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
"""

from __future__ import annotations

import csv
import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.body import constants as c

MIN_FRAMES = 2
# SeqIKPy's names for the keypoint rows of its nested alignment pickles.
_NESTED_KEYPOINTS = ("Coxa", "Femur", "Tibia", "Tarsus", "Claw")
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}


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


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load global '{module}.{name}': only numpy arrays, dtypes, dicts, lists "
            f"and numbers are allowed in a pose pickle")


def load_pickle_safely(path: str | Path) -> Any:
    """Unpickles a file admitting only numpy arrays, dtypes, dicts, lists and numbers.

    Raises:
        ValueError: naming the file, for any other object or a corrupt pickle.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, ValueError) as err:
        raise ValueError(f"{path}: cannot load pickle: {err}") from err


def load_recording(path: str | Path) -> Recording:
    """Reads a recording, choosing the reader by file suffix.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, the field and what was expected, for unknown formats,
            unknown legs, wrong shapes, non-numeric data or too few frames.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return _from_dict(path, load_pickle_safely(path))
    if suffix == ".npz":
        return _from_npz(path)
    if suffix == ".csv":
        return _from_csv(path)
    raise ValueError(f"{path}: unknown recording format '{suffix}'; expected .pkl, .pickle, "
                     f".npz or .csv")


def _from_dict(path: Path, data: Any) -> Recording:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of '<leg>_leg' arrays, got "
                         f"{type(data).__name__}")
    legs, extra = {}, {}
    for key, value in data.items():
        if isinstance(key, str) and key.endswith("_leg"):
            leg = key[: -len("_leg")]
            if leg not in c.LEGS:
                raise ValueError(f"{path}: field '{key}': unknown leg '{leg}'; expected one of "
                                 f"{[f'{name}_leg' for name in c.LEGS]}")
            legs[leg] = _nested_leg(path, key, value) if isinstance(value, dict) else value
        else:
            extra[str(key)] = _numeric(path, str(key), value)
    return _assemble(path, legs, fps=None, extra=extra)


def _nested_leg(path: Path, key: str, value: dict) -> np.ndarray:
    missing = [name for name in _NESTED_KEYPOINTS
               if not (isinstance(value.get(name), dict) and "raw_pos_aligned" in value[name])]
    if missing:
        raise ValueError(f"{path}: field '{key}' is a nested dict but lacks 'raw_pos_aligned' "
                         f"for {missing}; expected keys {list(_NESTED_KEYPOINTS)}")
    tracks = [_numeric(path, f"{key}.{name}.raw_pos_aligned", value[name]["raw_pos_aligned"])
              for name in _NESTED_KEYPOINTS]
    shapes = {t.shape for t in tracks}
    if len(shapes) != 1 or tracks[0].ndim != 2 or tracks[0].shape[1] != 3:
        raise ValueError(f"{path}: field '{key}': raw_pos_aligned arrays must all have shape "
                         f"(T, 3), got {[t.shape for t in tracks]}")
    return np.stack(tracks, axis=1)


def _from_npz(path: Path) -> Recording:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz ({err})") from err
    for name in ("keypoints", "leg_names"):
        if name not in arrays:
            raise ValueError(f"{path}: missing field '{name}'; expected 'keypoints' "
                             f"(T, n_legs, 5, 3), 'leg_names' (n_legs,) and optional 'fps'")
    keypoints = _numeric(path, "keypoints", arrays["keypoints"])
    names = [str(n) for n in np.atleast_1d(arrays["leg_names"])]
    if keypoints.ndim != 4 or keypoints.shape[1:] != (len(names), c.NUM_KEYPOINTS, 3):
        raise ValueError(f"{path}: field 'keypoints' must have shape (T, {len(names)}, 5, 3) "
                         f"for leg_names {names}, got {keypoints.shape}")
    fps = None
    if "fps" in arrays:
        fps = float(_numeric(path, "fps", arrays["fps"]).reshape(-1)[0])
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"{path}: field 'fps' must be > 0, got {fps}")
    for name in names:
        if name not in c.LEGS:
            raise ValueError(f"{path}: field 'leg_names': unknown leg '{name}'; expected names "
                             f"from {list(c.LEGS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: field 'leg_names' repeats a leg: {names}")
    legs = {name: keypoints[:, i] for i, name in enumerate(names)}
    return _assemble(path, legs, fps=fps, extra={})


def _from_csv(path: Path) -> Recording:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 1 + MIN_FRAMES:
        raise ValueError(f"{path}: needs a header row and at least {MIN_FRAMES} frames, got "
                         f"{max(len(rows) - 1, 0)} data rows")
    header = [h.strip() for h in rows[0]]
    columns = {name: i for i, name in enumerate(header)}
    known = {f"{leg}_{kp}_{axis}" for leg in c.LEGS for kp in c.KEYPOINTS for axis in "xyz"}
    unknown = [h for h in header if h not in known and h not in ("frame", "time")]
    if unknown:
        raise ValueError(f"{path}: unknown columns {unknown[:5]}; expected "
                         f"'<leg>_<keypoint>_<x|y|z>' with leg in {list(c.LEGS)} and keypoint "
                         f"in {list(c.KEYPOINTS)}, or 'frame'/'time'")
    values = np.full((len(rows) - 1, len(header)), np.nan)
    for rowid, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {rowid + 2} has {len(row)} cells, the header "
                             f"{len(header)}")
        for colid, cell in enumerate(row):
            cell = cell.strip()
            if not cell or cell.lower() == "nan":
                continue
            try:
                values[rowid, colid] = float(cell)
            except ValueError:
                raise ValueError(f"{path}: row {rowid + 2}, column '{header[colid]}': "
                                 f"'{cell}' is not a number") from None
    legs = {}
    for leg in c.LEGS:
        wanted = [f"{leg}_{kp}_{axis}" for kp in c.KEYPOINTS for axis in "xyz"]
        present = [w for w in wanted if w in columns]
        if not present:
            continue
        if len(present) != len(wanted):
            missing = [w for w in wanted if w not in columns]
            raise ValueError(f"{path}: leg {leg} has only some of its columns; missing "
                             f"{missing[:6]}")
        legs[leg] = values[:, [columns[w] for w in wanted]].reshape(-1, c.NUM_KEYPOINTS, 3)
    fps = None
    if "time" in columns:
        time = values[:, columns["time"]]
        step = np.diff(time)
        if not (np.isfinite(step).all() and (step > 0).all()):
            raise ValueError(f"{path}: column 'time' must increase strictly from row to row")
        fps = float(1.0 / np.median(step))
    return _assemble(path, legs, fps=fps, extra={})


def _numeric(path: Path, field: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        raise ValueError(f"{path}: field '{field}' must be numeric, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _assemble(path: Path, legs: dict[str, Any], fps: float | None,
              extra: dict[str, np.ndarray]) -> Recording:
    if not legs:
        raise ValueError(f"{path}: no leg found; expected fields named "
                         f"{[f'{leg}_leg' for leg in c.LEGS]} (any subset)")
    arrays = {leg: _numeric(path, f"{leg}_leg", value) for leg, value in legs.items()}
    for leg, array in arrays.items():
        if array.ndim != 3 or array.shape[1:] != (c.NUM_KEYPOINTS, 3):
            raise ValueError(f"{path}: field '{leg}_leg' must have shape (T, 5, 3) (keypoints "
                             f"{list(c.KEYPOINTS)} in x, y, z), got {array.shape}")
    lengths = {leg: array.shape[0] for leg, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{path}: legs have different numbers of frames: {lengths}")
    num_frames = next(iter(lengths.values()))
    if num_frames < MIN_FRAMES:
        raise ValueError(f"{path}: too few frames ({num_frames}); at least {MIN_FRAMES} needed")
    keypoints = np.full((num_frames, c.NUM_LEGS, c.NUM_KEYPOINTS, 3), np.nan)
    for leg, array in arrays.items():
        if np.isinf(array).any():
            raise ValueError(f"{path}: field '{leg}_leg' has infinite values; use NaN for "
                             f"missing keypoints")
        keypoints[:, c.LEGS.index(leg)] = array
    keypoints.setflags(write=False)
    return Recording(path=path, keypoints=keypoints, fps=fps, extra=extra)
