"""The `.csv` recording reader (`flyenv.ik_preprocess.io` describes the format).

The file's size is bounded before anything is parsed: its line count (`MAX_FRAMES` rows), its
header's and every cell's length, and the rows parsed into numbers at a time.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.body import constants as c
from flyenv.ik_preprocess.limits import MAX_FRAMES, RecordingError, check_fps
from flyenv.ik_preprocess.recording import _MAX_NAME_CHARS, MIN_FRAMES, Recording, _assemble

# CSV: the header line's length, a cell's length (a float needs at most ~25 characters) and the
# rows parsed into numbers at a time.
_MAX_HEADER_CHARS = 1 << 16
_MAX_CELL_CHARS = 64
_CSV_CHUNK_ROWS = 512


def csv_columns(legs: tuple[str, ...] | list[str] = c.LEGS) -> list[str]:
    """The keypoint columns of a `.csv` recording, in the order the reader takes them.

    `<leg>_<keypoint>_<x|y|z>` per leg, keypoint (`KEYPOINTS`) and axis [mm]; a file may also
    have `frame` and `time` [s] columns.
    """
    return [f"{leg}_{kp}_{axis}" for leg in legs for kp in c.KEYPOINTS for axis in "xyz"]


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
        wanted = csv_columns([leg])
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
    known = set(csv_columns())
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
