"""Sample fly recordings shipped with flyenv (real data, Apache-2.0; see `README.md` here).

Each sample has a name and a file inside this package, so the demo, the examples and the tests
run anywhere flyenv is installed::

    from flyenv import data
    data.path("df3d_walk")      # a pathlib.Path to the 1000-frame DeepFly3D walk
    data.SAMPLES                 # name -> Sample (file, frame rate, what it is)

The recordings come from the SeqIKPy repository (NeLy-EPFL/sequential-inverse-kinematics,
commit b8fd234); the Anipose files are cut to their first 600 frames.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
"""The folder holding the sample files (inside the installed package)."""

LICENSE = DATA_DIR / "LICENSE-seqikpy-data.md"


@dataclass(frozen=True)
class Sample:
    """One shipped file: where it is, its frame rate (Hz) and what it holds."""

    file: str
    """Path relative to `DATA_DIR`."""
    fps: float | None
    """Frame rate in Hz for recordings; None for files that are not recordings."""
    description: str

    @property
    def path(self) -> Path:
        """Absolute path of the file."""
        return DATA_DIR / self.file


_DF3D = "df3d_210902_PR_Fly1"
_ANIPOSE = "anipose_220525_aJO_Fly001_001"

SAMPLES: dict[str, Sample] = {
    "df3d_walk": Sample(
        f"{_DF3D}/pose_result__210902_PR_Fly1_aligned.pkl", 100.0,
        "DeepFly3D, tethered fly walking, 6 legs, 1000 frames (10 s at 100 Hz)"),
    "df3d_walk_100": Sample(
        f"{_DF3D}/pose3d_aligned.pkl", 100.0,
        "DeepFly3D, the same walk, 100 frames aligned to the template (SeqIKPy's tutorial input)"),
    "anipose_groom": Sample(
        f"{_ANIPOSE}/pose3d_aligned.pkl", 100.0,
        "Anipose, grooming with the front legs, 600 frames (100 Hz assumed: not documented)"),
    "anipose_groom_seqikpy_angles": Sample(
        f"{_ANIPOSE}/leg_joint_angles.pkl", None,
        "SeqIKPy's joint angles of anipose_groom (its grooming configuration), radians"),
    "anipose_groom_seqikpy_fk": Sample(
        f"{_ANIPOSE}/forward_kinematics.pkl", None,
        "SeqIKPy's forward kinematics of those angles, (600, 9, 3) per front leg"),
}
"""Every shipped file by name."""

RECORDINGS: tuple[str, ...] = tuple(name for name, s in SAMPLES.items() if s.fps is not None)
"""Names of the samples that are pose recordings (inputs of `flyenv ik`)."""


def sample(name: str) -> Sample:
    """The sample called `name`; a KeyError lists the names and suggests the closest."""
    try:
        return SAMPLES[name]
    except KeyError:
        close = difflib.get_close_matches(name, SAMPLES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"no sample recording {name!r}; the samples are "
                       f"{', '.join(SAMPLES)}.{hint}") from None


def path(name: str) -> Path:
    """Absolute path of the sample called `name` (see `SAMPLES`)."""
    return sample(name).path
