"""One recording's serial ends of the IK: `prepare` it for the jobs, `assemble` the result.

`prepare` reads the file, finds the thorax frame (and root motion), fits or takes the body,
aligns and fills gaps; `assemble` turns the stitched `Solution` into a `ReferenceMotion` with its
metadata. Both are plain functions of their inputs, for the runner and for tests alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from flyenv._version import __version__
from flyenv.body import constants as c
from flyenv.body.config import BodyConfig
from flyenv.body.kinematics import leg_forward_kinematics
from flyenv.ik_preprocess import align as alignment
from flyenv.ik_preprocess import solver as solvers
from flyenv.ik_preprocess.bodyfit import MEASURED_PREFIX, BodyFit, fit_body, size_scale
from flyenv.ik_preprocess.io import Recording, load_recording
from flyenv.ik_preprocess.jobs import Solution
from flyenv.ik_preprocess.limits import RecordingError, check_fps
from flyenv.ik_preprocess.options import IkOptions
from flyenv.ik_preprocess.thorax import ThoraxPose, estimate_thorax_pose
from flyenv.motion.format import ReferenceMotion


@dataclasses.dataclass(eq=False)
class Prepared:
    """A recording ready for its jobs.

    Attributes:
        recording: what the file held.
        fps: its frame rate [Hz].
        body: the body the angles are solved for.
        keypoints: (T, 6, 5, 3) in the body frame, NaN where untracked [mm].
        filled: (T, 6, 5, 3) the same, gaps filled.
        tracked: (T, 6, 5) bool.
        scale: (6,) alignment scale per leg (NaN for missing legs).
        legs: indices into LEGS of the legs present.
        thorax: the thorax pose per frame (None with `frame="thorax"`).
        fit: the measured body and how it was measured (with `body="data"`).
        lm: the lm settings the jobs use: the options' (`IkOptions.solve_lm`: keypoint
            weights as set, else the body's default), with a measured body's `error_floor_mm`
            scaled by the fly's size (`BodyFit.scale`), so the angles do not depend on the
            size of the fly.
        source_sha256: hash of the file's bytes, recorded in the output (its identity).
    """

    recording: Recording
    fps: float
    body: BodyConfig
    keypoints: np.ndarray
    filled: np.ndarray
    tracked: np.ndarray
    scale: np.ndarray
    legs: list[int]
    thorax: ThoraxPose | None
    fit: BodyFit | None
    source_sha256: str
    lm: solvers.LmOptions


def source_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(path: Path, options: IkOptions) -> Prepared:
    """Reads a recording and brings its keypoints into the body frame of the body to fit.

    Raises:
        FileNotFoundError: no such file.
        RecordingError: (a ValueError) the file cannot be used, naming it and the field.
    """
    recording = load_recording(path, fps_range=options.fps_range)
    fps = frame_rate(recording, options)
    keypoints = recording.keypoints
    body, thorax, fit, lm = options.template, None, None, options.solve_lm
    if options.frame == "estimate":
        thorax = estimate_thorax_pose(keypoints, options.template.thc, fps, up=options.up,
                                      path=path)
        keypoints = thorax.to_thorax(keypoints)
    scale = np.where(np.isin(c.LEGS, recording.legs_present), 1.0, np.nan)
    _check_keypoints_tracked(path, keypoints, recording.legs_present)
    # The floor is an error [mm] for a template-sized fly: with a measured body it scales with
    # the fly (a body measured earlier and reused solves as it did where it was measured).
    if options.body == "data":
        fit = fit_body(keypoints, options.template, name=f"{MEASURED_PREFIX}{path.name}")
        body = fit.body
        lm = dataclasses.replace(lm, error_floor_mm=lm.error_floor_mm * fit.scale)
    elif options.measured_body:
        lm = dataclasses.replace(lm, error_floor_mm=lm.error_floor_mm * size_scale(body))
    if options.align:
        keypoints, scale = alignment.align_to_body(keypoints, body,
                                                   scale=options.body == "template")
    filled, tracked = solvers.fill_gaps(keypoints)
    legs = [c.LEGS.index(leg) for leg in recording.legs_present]
    return Prepared(recording, fps, body, keypoints, filled, tracked, scale, legs, thorax, fit,
                    source_sha256(path), lm)


def _check_keypoints_tracked(path: Path, keypoints: np.ndarray, legs: tuple[str, ...]) -> None:
    for leg in legs:
        legid = c.LEGS.index(leg)
        never = [c.KEYPOINTS[k] for k in range(c.NUM_KEYPOINTS)
                 if not np.isfinite(keypoints[:, legid, k]).all(-1).any()]
        if never:
            raise RecordingError(path, f"field '{leg}_leg': keypoint(s) {never} are NaN in "
                                       f"every frame; cannot fit that leg (drop the leg from the "
                                       f"file to treat it as missing)", f"{leg}_leg")


def frame_rate(recording: Recording, options: IkOptions) -> float:
    """The recording's frame rate [Hz], from the file or the options (they must agree)."""
    fps = options.fps
    if recording.fps is not None and fps is not None and abs(recording.fps - fps) > 1e-9:
        raise RecordingError(recording.path, f"field 'fps': the file says {recording.fps:.6g} "
                                             f"fps but {fps:.6g} was given; drop the option "
                                             f"(--fps / IkOptions.fps) or fix the file", "fps")
    rate = recording.fps if recording.fps is not None else fps
    if rate is None:
        raise RecordingError(recording.path, "the file carries no frame rate; pass one (--fps / "
                                             "IkOptions.fps)", "fps")
    return check_fps(recording.path, "fps", rate, options.fps_range)


def assemble(prepared: Prepared, solution: Solution, options: IkOptions) -> ReferenceMotion:
    """A recording's stitched job results as a ReferenceMotion.

    `solution`'s arrays are completed in place (undetermined angles interpolated, their fk and
    error recomputed) and frozen, so the motion adopts them instead of copying.
    """
    recording = prepared.recording
    num_frames = recording.num_frames
    angles, fk, error = solution.angles, solution.fk, solution.error
    # Angles the tracked keypoints of a frame cannot determine (a free angle would end anywhere
    # in its range, often on a bound) are interpolated from the frames where they were, and
    # the leg-frames affected are flagged in `underdetermined`.
    legs = prepared.legs
    present = np.isin(np.arange(c.NUM_LEGS), legs)
    undetermined = solvers.undetermined_angles(prepared.tracked) & present[None, :, None]
    bounds = prepared.body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    angles[:, legs] = solvers.interpolate_frames(angles[:, legs], undetermined[:, legs],
                                                 bounds[legs])
    underdetermined = undetermined.any(-1)
    unusable = undetermined.all(-1)  # nothing beyond the ThC tracked
    frames, legids = np.nonzero(underdetermined)
    fk[frames, legids] = leg_forward_kinematics(prepared.filled[frames, legids, 0],
                                                prepared.body.lengths[legids],
                                                angles[frames, legids],
                                                prepared.body.tarsus_tilt[legids])
    error[frames, legids] = np.linalg.norm(fk[frames, legids]
                                           - prepared.keypoints[frames, legids], axis=-1)
    metadata = {
        "source": str(recording.path),
        "source_sha256": prepared.source_sha256,
        "flyenv_version": __version__,
        # The options (a resumed batch compares them; keypoint weights as solved with, and
        # whether the user set them), and the lm settings the solve used (with a measured body
        # the error floor scales with the fly).
        "ik": {**options.record(),
               "lm_used": dataclasses.asdict(prepared.lm) if options.solver == "lm" else None},
        "body": prepared.body.to_dict(),
        "missing_legs": list(recording.missing_legs),
        "align_scale": {c.LEGS[i]: float(prepared.scale[i]) for i in legs},
        "interpolated_frames": {c.LEGS[i]: np.flatnonzero(unusable[:, i]).tolist()
                                for i in legs if unusable[:, i].any()},
        "frames_with_untracked_keypoints": {
            c.LEGS[i]: int((~prepared.tracked[:, i]).any(-1).sum()) for i in legs},
        "underdetermined_frames": {c.LEGS[i]: int(underdetermined[:, i].sum()) for i in legs},
    }
    root = {}
    if prepared.thorax is not None:
        metadata["thorax"] = prepared.thorax.summary()
        thorax = prepared.thorax
        if thorax.moving:
            root = {"root_pos": thorax.root_pos_w, "root_quat": thorax.root_quat_w,
                    "root_lin_vel": thorax.root_lin_vel_w, "root_ang_vel": thorax.root_ang_vel_w}
    if prepared.fit is not None:
        metadata["body_fit"] = prepared.fit.summary()
    for array in (fk, error):  # frozen, so the motion adopts them instead of copying
        array.setflags(write=False)
    return ReferenceMotion(fps=prepared.fps, joint_angles=angles.reshape(num_frames, c.NUM_DOFS),
                           keypoints=prepared.keypoints, fk_keypoints=fk, ik_error=error,
                           underdetermined=underdetermined, metadata=metadata, **root)
