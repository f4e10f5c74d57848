"""The parallel part of the IK, as pure functions: plan a recording's jobs, solve one, stitch.

One `Job` is one leg of one recording over one time chunk, extended by `overlap_frames` on both
sides as warm-up (the solvers are frame-local except where an undetermined angle keeps the
previous frame's value, and the optional smoothness term, which both settle inside the overlap).
A job carries its own keypoints, so workers never read files. `stitch` writes a result into the
frames its job owns in a recording's `Solution`, so results can arrive in any order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flyenv.body import constants as c
from flyenv.body.config import BodyConfig
from flyenv.body.kinematics import leg_forward_kinematics
from flyenv.ik_preprocess import solver as solvers


@dataclasses.dataclass(frozen=True, eq=False)
class Job:
    """One leg of one recording over frames [start, stop), solved over [lo, hi)."""

    file_id: int
    leg: str
    start: int
    stop: int
    lo: int
    keypoints: np.ndarray  # (hi - lo, 5, 3) gaps filled [mm]
    tracked: np.ndarray  # (hi - lo, 5) bool
    lengths: np.ndarray  # (4,) [mm]
    bounds: np.ndarray  # (7, 2) [rad]
    seed: np.ndarray  # (7,) [rad]
    solver: str
    lm: solvers.LmOptions
    tarsus_tilt: float = 0.0  # [rad]


@dataclasses.dataclass(frozen=True)
class JobResult:
    """Angles (n, 7) [rad] of one job's frames, their keypoints (n, 5, 3) and error (n, 5) [mm].

    The error is NaN for untracked keypoints.
    """

    file_id: int
    leg: str
    start: int
    angles: np.ndarray
    fk: np.ndarray
    error: np.ndarray
    failure: str | None = None  # what went wrong in the worker; the arrays are then empty


def chunks(num_frames: int, chunk_frames: int | None, overlap: int,
           ) -> list[tuple[int, int, int, int]]:
    """(start, stop, lo, hi) of each chunk: owned frames [start, stop), solved [lo, hi)."""
    size = num_frames if chunk_frames is None else chunk_frames
    out = []
    for start in range(0, num_frames, size):
        stop = min(start + size, num_frames)
        out.append((start, stop, max(start - overlap, 0), min(stop + overlap, num_frames)))
    return out


def plan_jobs(file_id: int, filled: np.ndarray, tracked: np.ndarray, legs: list[int],
              body: BodyConfig, solver: str, lm: solvers.LmOptions,
              chunk_frames: int | None, overlap_frames: int) -> list[Job]:
    """The jobs of one recording: every present leg over every chunk.

    Args:
        file_id: the recording's index in the batch.
        filled: (T, 6, 5, 3) keypoints in the body frame, gaps filled [mm].
        tracked: (T, 6, 5) bool, keypoints the tracker had.
        legs: indices into LEGS of the legs present.
        body: the body the angles are for.
        solver: "lm" or "seqik".
        lm: the lm settings.
        chunk_frames: frames per job (None: the whole recording).
        overlap_frames: warm-up frames on each side of a chunk.
    """
    bounds = body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
    return [Job(file_id, c.LEGS[legid], start, stop, lo, filled[lo:hi, legid],
                tracked[lo:hi, legid], body.lengths[legid], bounds[legid],
                solvers.SEQIKPY_SEED_RAD[legid], solver, lm, float(body.tarsus_tilt[legid]))
            for start, stop, lo, hi in chunks(len(filled), chunk_frames, overlap_frames)
            for legid in legs]


@dataclasses.dataclass(eq=False)
class Solution:
    """A recording's solved arrays, NaN until the jobs that own their frames arrive.

    A result that never came stays visible as NaN, which ReferenceMotion refuses for a leg that
    is present; missing legs stay NaN on purpose.

    Attributes:
        angles: (T, 6, 7) [rad].
        fk: (T, 6, 5, 3) forward kinematics of the angles [mm].
        error: (T, 6, 5) distance of fk from the tracked keypoints [mm].
    """

    angles: np.ndarray
    fk: np.ndarray
    error: np.ndarray

    @classmethod
    def empty(cls, num_frames: int) -> Solution:
        """All NaN, for `num_frames` frames."""
        return cls(np.full((num_frames, c.NUM_LEGS, c.DOF_PER_LEG), np.nan),
                   np.full((num_frames, c.NUM_LEGS, c.NUM_KEYPOINTS, 3), np.nan),
                   np.full((num_frames, c.NUM_LEGS, c.NUM_KEYPOINTS), np.nan))


def stitch(solution: Solution, result: JobResult) -> None:
    """Writes a job's result into the frames of its leg that the job owns."""
    legid = c.LEGS.index(result.leg)
    frames = slice(result.start, result.start + len(result.angles))
    solution.angles[frames, legid] = result.angles
    solution.fk[frames, legid] = result.fk
    solution.error[frames, legid] = result.error


def solve_job_safely(job: Job) -> JobResult:
    """`solve_job`, with any exception returned as the result's `failure` (runs in a worker).

    A job that fails (odd data that breaks a solver) fails its file, not the batch.
    """
    try:
        return solve_job(job)
    except Exception as err:  # noqa: BLE001 - reported per file, the batch goes on
        empty = np.empty((0,))
        return JobResult(job.file_id, job.leg, job.start, empty, empty, empty,
                         failure=f"IK of leg {job.leg}, frames {job.start}-{job.stop} failed: "
                                 f"{type(err).__name__}: {err}")


def solve_job(job: Job) -> JobResult:
    """Solves one job (runs in a worker)."""
    keypoints = job.keypoints[:, None]
    args = (job.lengths[None], job.bounds[None])
    tilt = np.array([job.tarsus_tilt])
    angles = solvers.seqik(keypoints, *args, job.seed[None], tarsus_tilt_rad=tilt)
    if job.solver == "lm":
        # An untracked ThC is interpolated (it barely moves); untracked others get weight 0.
        mask = job.tracked[:, None, 1:]
        angles = solvers.lm(keypoints, *args, angles, keypoint_mask=mask, options=job.lm,
                            tarsus_tilt_rad=tilt)
    own = slice(job.start - job.lo, job.stop - job.lo)
    # Forward kinematics and errors here rather than in the main process, which stitches and
    # writes files serially.
    fk = leg_forward_kinematics(job.keypoints[own, 0], job.lengths, angles[own, 0],
                                job.tarsus_tilt)
    error = np.where(job.tracked[own], np.linalg.norm(fk - job.keypoints[own], axis=-1), np.nan)
    return JobResult(job.file_id, job.leg, job.start, angles[own, 0], fk, error)
