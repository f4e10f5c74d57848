"""What a pose recording may hold, and the one error every reader raises for a file that does not.

The limits are generous for pose tracking and refuse what no recording needs: they are checked
from file headers (npy headers inside an `.npz`, array shapes inside a pickle, the CSV's row
count) before any array is allocated, so a small file claiming a huge array is refused without
asking for the memory.
"""

from __future__ import annotations

from pathlib import Path

# Longest recording: 10^7 frames (~28 h at 100 Hz, 100 s at 100 kHz).
MAX_FRAMES = 10_000_000
# Most elements in any one array of a recording: MAX_FRAMES frames of 6 legs x 5 keypoints x 3
# (keypoints of a maximal recording, 7.2 GB as float64).
MAX_ELEMENTS = MAX_FRAMES * 6 * 5 * 3
# Frame rates real pose tracking uses [Hz]; `IkOptions.fps_range` (--fps-range) widens it.
FPS_RANGE_HZ = (1.0, 100_000.0)
# Largest keypoint coordinate [mm]: 10 m from the thorax is no fly (and 1e30 breaks the fit).
MAX_COORD_MM = 1e4


class RecordingError(ValueError):
    """A recording that cannot be used: unreadable, corrupt, or holding implausible data.

    The message starts with the file and names the field (where there is one) and what was
    expected.

    Attributes:
        path: the file.
        field: the field at fault, or None for the file as a whole.
    """

    def __init__(self, path: str | Path, message: str, field: str | None = None) -> None:
        self.path = Path(path)
        self.field = field
        super().__init__(f"{self.path}: {message}")


def check_fps(path: str | Path, field: str, fps: float,
              fps_range: tuple[float, float] = FPS_RANGE_HZ) -> float:
    """Returns `fps` as a float if it is finite and inside `fps_range` [Hz].

    Raises:
        RecordingError: naming the file and field, otherwise.
    """
    lo, hi = fps_range
    fps = float(fps)
    if not (lo <= fps <= hi):  # also False for NaN
        raise RecordingError(path, f"field '{field}': frame rate {fps:.6g} Hz is outside "
                                   f"[{lo:g}, {hi:g}] Hz, the range pose tracking uses "
                                   f"(IkOptions.fps_range / --fps-range widens it)", field)
    return fps
