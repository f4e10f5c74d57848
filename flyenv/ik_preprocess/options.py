"""What `flyenv ik` does with each recording: `IkOptions`, checked when made."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from flyenv.body.config import BodyConfig
from flyenv.ik_preprocess import bodyfit
from flyenv.ik_preprocess import solver as solvers
from flyenv.ik_preprocess.limits import FPS_RANGE_HZ

SOLVERS = ("lm", "seqik")
BODY_MODES = ("template", "data")
FRAMES = ("estimate", "thorax")
# The options an output records in metadata["ik"] that decide its result; the others
# (chunk_frames, overlap_frames: the chunked result equals the unchunked one; fps_range: it only
# accepts or refuses) are recorded for information. fps is the output's own `fps`.
RESULT_OPTIONS = ("solver", "body", "frame", "up", "align", "lm", "template")


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
        lm: settings of the lm solver. Its `keypoint_weights` left None takes the default for
            the body (`solver.default_keypoint_weights`: the template's, or the measured body's
            with `body="data"` or a measured `template`, see `measured_body`); weights set are
            always used as set.
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
                             f"{self.fps:.6g}")

    @property
    def solve_lm(self) -> solvers.LmOptions:
        """The lm settings the solve uses (before a measured body scales their floor).

        `lm`, with the body's default keypoint weights where none are set.
        """
        return self.lm.with_default_weights(measured_body=self.measured_body)

    @property
    def measured_body(self) -> bool:
        """Whether the solve's body is measured from a recording.

        `body="data"`, or a template that is a measured body (one from an earlier `--body data`
        output, its name "data:<file>"), which then solves as it did there (weights and floor).
        """
        return self.body == "data" or bodyfit.is_measured(self.template)

    def record(self) -> dict[str, Any]:
        """The options as an output records them (`metadata["ik"]`), JSON-able.

        `lm` is None for the seqik solver (unused), else `solve_lm` (the keypoint weights
        solved with, whether set or the body's default); `keypoint_weights_set` says whether
        the user set them. `template` is the template body's `BodyConfig.to_dict()`.
        """
        lm = self.solver == "lm"
        return {"solver": self.solver, "body": self.body, "align": self.align,
                "frame": self.frame, "up": None if self.up is None else list(self.up),
                "chunk_frames": self.chunk_frames, "overlap_frames": self.overlap_frames,
                "lm": dataclasses.asdict(self.solve_lm) if lm else None,
                "keypoint_weights_set": self.lm.keypoint_weights is not None if lm else None,
                "template": self.template.to_dict()}

    def differences(self, recorded: Mapping[str, Any]) -> list[str]:
        """What an output made with `recorded` (its `metadata["ik"]`) was made with otherwise.

        Only the options that decide the result (`RESULT_OPTIONS`) count, and only those the
        output records (outputs of older flyenv versions lack some).

        Returns:
            One "name X, now Y" per option that differs; empty when the result would be the
            same.
        """
        mine = json.loads(json.dumps(self.record()))  # tuples as lists, as the record holds
        differ = []
        for name in RESULT_OPTIONS:
            if name not in recorded or recorded[name] == mine[name]:
                continue
            if name == "template" and self._same_template(recorded[name]):
                continue  # an older schema's record of this body (version 1: no tilt)
            if name == "template":
                then = recorded[name].get("name") if isinstance(recorded[name], dict) else None
                differ.append(f"template body {then!r}, now {self.template.name!r}"
                              + (" (other measurements)" if then == self.template.name else ""))
            elif name == "lm":
                if not (isinstance(recorded[name], dict) and isinstance(mine[name], dict)):
                    continue  # one solver is seqik: the solver's difference says it
                changed = sorted(k for k in set(recorded[name]) | set(mine[name])
                                 if recorded[name].get(k) != mine[name].get(k))
                differ.extend(f"lm.{k} {recorded[name].get(k)!r}, now {mine[name].get(k)!r}"
                              + (self._weights_note(recorded) if k == "keypoint_weights" else "")
                              for k in changed)
            else:
                differ.append(f"{name} {_show(recorded[name])}, now {_show(mine[name])}")
        return differ

    def _weights_note(self, recorded: Mapping[str, Any]) -> str:
        """How to keep an older `--body data` output whose weights differ ("" if not one).

        Outputs made before the measured body had its own default weights record no
        `keypoint_weights_set` and solved with the template body's.
        """
        former = list(solvers.TEMPLATE_BODY_WEIGHTS)
        if (self.body != "data" or recorded.get("body") != "data" or self.lm.keypoint_weights
                is not None or "keypoint_weights_set" in recorded
                or recorded["lm"].get("keypoint_weights") != former):
            return ""
        shown = " ".join(f"{w:g}" for w in former)
        return (f" (--body data's default weights were {shown} before this version; "
                f"--keypoint-weights {shown} keeps this output)")

    def _same_template(self, recorded: Any) -> bool:
        """Whether a recorded template (any schema version) is this template body."""
        try:
            return BodyConfig.from_dict(recorded, source="recorded template") == self.template
        except ValueError:
            return False


def _show(value: Any) -> str:
    """An option's value as a message shows it: text bare, the rest as Python writes it."""
    return value if isinstance(value, str) else repr(value)
