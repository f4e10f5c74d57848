"""What `flyenv ik` does with each recording: `IkOptions`, checked when made."""

from __future__ import annotations

import dataclasses

import numpy as np

from flyenv.body.config import BodyConfig
from flyenv.ik_preprocess import solver as solvers
from flyenv.ik_preprocess.limits import FPS_RANGE_HZ

SOLVERS = ("lm", "seqik")
BODY_MODES = ("template", "data")
FRAMES = ("estimate", "thorax")


@dataclasses.dataclass(frozen=True)
class IkOptions:
    """What to do with each recording.

    Attributes:
        solver: "lm" (joint fit, default) or "seqik" (SeqIKPy's stages).
        body: "template" (the `template` body) or "data" (a body measured from each
            recording, `flyenv.ik_preprocess.bodyfit`; `lm.error_floor_mm` then scales with the
            measured fly's size, and the output records the floor used).
        frame: "estimate" (default): find the thorax pose in every frame from the ThC
            keypoints, express the legs in the canonical thorax frame and, when the thorax
            moves, give the clip root motion (`flyenv.ik_preprocess.thorax`); "thorax": the
            input is in the thorax frame already and is used as it is.
        up: (3,) world up in the input frame for recordings with root motion; None finds it
            from the plane the stance claws walk on.
        align: pin each leg's ThC to the body's and, with the template body, scale the leg to
            the body's length (SeqIKPy's alignment). Off by default: aligned input is used as is.
        fps: frame rate [Hz] for files that do not carry one.
        fps_range: frame rates [Hz] accepted, from files or `fps` (default 1 Hz to 100 kHz,
            what pose tracking uses); widen it for unusual data.
        chunk_frames: frames per job (None: one job per leg per file).
        overlap_frames: warm-up frames added on each side of a chunk.
        lm: settings of the lm solver.
        template: the template body.
    """

    solver: str = "lm"
    body: str = "template"
    frame: str = "estimate"
    up: tuple[float, float, float] | None = None
    align: bool = False
    fps: float | None = None
    fps_range: tuple[float, float] = FPS_RANGE_HZ
    chunk_frames: int | None = None
    overlap_frames: int = 20
    lm: solvers.LmOptions = dataclasses.field(default_factory=solvers.LmOptions)
    template: BodyConfig = dataclasses.field(default_factory=BodyConfig.default)

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"IkOptions.solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.body not in BODY_MODES:
            raise ValueError(f"IkOptions.body must be one of {BODY_MODES}, got {self.body!r}")
        if self.frame not in FRAMES:
            raise ValueError(f"IkOptions.frame must be one of {FRAMES}, got {self.frame!r}")
        if self.up is not None and (len(self.up) != 3 or not np.isfinite(self.up).all()
                                    or not np.any(self.up)):
            raise ValueError(f"IkOptions.up must be a non-zero 3-vector, got {self.up!r}")
        if self.chunk_frames is not None and self.chunk_frames < 1:
            raise ValueError(f"IkOptions.chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.overlap_frames < 0:
            raise ValueError(f"IkOptions.overlap_frames must be >= 0, got {self.overlap_frames}")
        lo, hi = self.fps_range
        if not 0 < lo <= hi < np.inf:
            raise ValueError(f"IkOptions.fps_range must be (low, high) with 0 < low <= high < "
                             f"inf, got {self.fps_range}")
        if self.fps is not None and not lo <= self.fps <= hi:
            raise ValueError(f"IkOptions.fps must be in fps_range [{lo:g}, {hi:g}] Hz, got "
                             f"{self.fps}")
