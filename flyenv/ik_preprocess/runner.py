"""Recordings to `ReferenceMotion` files, in parallel over files x legs x time chunks.

One `Job` is one leg of one recording over one time chunk, extended by `overlap_frames` on both
sides as warm-up (the solvers are frame-local except where an undetermined angle keeps the
previous frame's value, and the optional smoothness term, which both settle inside the overlap).
A job carries its own keypoints, so workers never read files. Files are read one at a time as
jobs are dispatched and written as soon as their last job returns, so memory stays flat in the
number of files. Each result is written into the frames it owns as soon as it arrives, so the
stitching overlaps the solving and the order jobs finish in does not matter; `n_jobs=1` runs the
same jobs in a plain loop.

Backends: joblib's "loky" (processes, the default), "threading", "multiprocessing", or "dask":
the same jobs on a `distributed` cluster (pass a `Client`, a scheduler address, or let a
`LocalCluster` with `n_jobs` workers be started), at most 2 jobs per worker in flight.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from flyenv._version import __version__
from flyenv.body import constants as c
from flyenv.body.config import BodyConfig
from flyenv.body.kinematics import leg_forward_kinematics
from flyenv.ik_preprocess import align as alignment
from flyenv.ik_preprocess import solver as solvers
from flyenv.ik_preprocess.bodyfit import BodyFit, fit_body
from flyenv.ik_preprocess.io import Recording, load_recording
from flyenv.ik_preprocess.limits import FPS_RANGE_HZ, RecordingError, check_fps
from flyenv.ik_preprocess.thorax import ThoraxPose, estimate_thorax_pose
from flyenv.motion import io as motion_io
from flyenv.motion.format import ReferenceMotion

SOLVERS = ("lm", "seqik")
BODY_MODES = ("template", "data")
FRAMES = ("estimate", "thorax")
BACKENDS = ("loky", "threading", "multiprocessing", "dask")
# Bins of the error histogram behind the batch summary's p95 [mm].
_HIST_EDGES = np.linspace(0.0, 5.0, 5001)


@dataclasses.dataclass(frozen=True)
class IkOptions:
    """What to do with each recording.

    Attributes:
        solver: "lm" (joint fit, default) or "seqik" (SeqIKPy's stages).
        body: "template" (the `template` body) or "data" (a body fitted to each recording
            with its joint angles, `flyenv.ik_preprocess.bodyfit`).
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


@dataclasses.dataclass
class FileResult:
    """What happened to one recording.

    Attributes:
        path: the input.
        output: the ReferenceMotion file (written, or found and skipped).
        status: "written", "skipped" (a valid output existed) or "failed".
        message: the error, for failed files; for written ones, why an existing output was
            redone (it did not load).
        num_frames: frames in the recording.
        error_mean_mm: (4,) mean fit error of CTr, FTi, TiTa, Claw over tracked keypoints.
        error_p95_mm: (4,) their 95th percentiles.
        thorax: the thorax estimate's summary (`ThoraxPose.summary()`: root motion found,
            travel, turn, ...), None when it was off.
        body: the body the file was solved for.
    """

    path: Path
    output: Path
    status: str
    message: str = ""
    num_frames: int = 0
    error_mean_mm: np.ndarray | None = None
    error_p95_mm: np.ndarray | None = None
    thorax: dict[str, Any] | None = None
    body: BodyConfig | None = None


@dataclasses.dataclass
class IkReport:
    """A batch: one `FileResult` per input, the error summary over all written files.

    `removed_temporaries` lists the `.<output>.XXXXXXXX.tmp` files of a killed earlier run that
    were deleted.
    """

    files: list[FileResult]
    error_mean_mm: np.ndarray  # (4,) CTr, FTi, TiTa, Claw
    error_p95_mm: np.ndarray  # (4,)
    leg_frames: int
    seconds: float
    removed_temporaries: list[Path] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        """The files that could not be processed."""
        return [f for f in self.files if f.status == "failed"]


def output_path(path: str | Path, out_dir: str | Path) -> Path:
    """Where the ReferenceMotion of a recording goes: `out_dir/<input stem>.npz`."""
    return Path(out_dir) / f"{Path(path).stem}.npz"


def chunks(num_frames: int, chunk_frames: int | None, overlap: int,
           ) -> list[tuple[int, int, int, int]]:
    """(start, stop, lo, hi) of each chunk: owned frames [start, stop), solved [lo, hi)."""
    size = num_frames if chunk_frames is None else chunk_frames
    out = []
    for start in range(0, num_frames, size):
        stop = min(start + size, num_frames)
        out.append((start, stop, max(start - overlap, 0), min(stop + overlap, num_frames)))
    return out


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
    angles = solvers.seqik(keypoints, *args, job.seed[None])
    if job.solver == "lm":
        # An untracked ThC is interpolated (it barely moves); untracked others get weight 0.
        mask = job.tracked[:, None, 1:]
        angles = solvers.lm(keypoints, *args, angles, keypoint_mask=mask, options=job.lm)
    own = slice(job.start - job.lo, job.stop - job.lo)
    # Forward kinematics and errors here rather than in the main process, which stitches and
    # writes files serially.
    fk = leg_forward_kinematics(job.keypoints[own, 0], job.lengths, angles[own, 0])
    error = np.where(job.tracked[own], np.linalg.norm(fk - job.keypoints[own], axis=-1), np.nan)
    return JobResult(job.file_id, job.leg, job.start, angles[own, 0], fk, error)


def run(paths: Sequence[str | Path], out_dir: str | Path, options: IkOptions | None = None, *,
        n_jobs: int = 1, backend: str = "loky", overwrite: bool = False, plot: bool = False,
        client: Any = None, progress: Callable[[FileResult], None] | None = None) -> IkReport:
    """Solves IK for recordings and writes one `ReferenceMotion` per recording.

    Outputs are `out_dir/<input stem>.npz`, written atomically; existing outputs that load are
    skipped unless `overwrite`, so an interrupted batch resumes where it stopped (one that does
    not load is redone, saying so in its `FileResult.message`), and temporary files a killed run
    left for these outputs are removed. A file that cannot be read, solved or written (bad data,
    a full disk, an output folder that cannot be created) is reported as failed with the reason
    and the batch goes on, with any number of workers and any backend.

    Args:
        paths: recordings (.pkl, .npz, .csv; see `flyenv.ik_preprocess.io`).
        out_dir: folder for the outputs (created if needed).
        options: what to do with each recording.
        n_jobs: parallel workers (1: serial, -1: all cores).
        backend: "loky", "threading", "multiprocessing" or "dask".
        overwrite: replace existing outputs.
        plot: also write `<stem>.png`: fit error per keypoint over time and the joint angles.
        client: for the dask backend, a `distributed.Client` or a scheduler address.
        progress: called with each file's result as it completes.

    Returns:
        The report, one `FileResult` per input in input order.

    Raises:
        ValueError: on bad options, or two inputs that would write the same output (nothing is
            done then).
    """
    options = options or IkOptions()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    outputs = [output_path(p, out_dir) for p in paths]
    seen: dict[Path, Path] = {}
    for path, out in zip(paths, outputs, strict=True):
        if out in seen:
            raise ValueError(f"{seen[out]} and {path} would both write {out}; give the "
                             f"recordings distinct file names or process them separately")
        seen[out] = path
    batch = _Batch(paths, outputs, options, overwrite, plot, progress)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # every file fails with the reason; nothing is solved in vain
        batch.unwritable = f"cannot create the output folder {out_dir}: {err}"
    else:
        batch.removed = _remove_stale_temporaries(outputs, plot)
    results = _execute(batch.jobs(), n_jobs, backend, client)
    for result in results:
        batch.add(result)
    batch.flush()
    return batch.report(time.perf_counter() - started)


def _remove_stale_temporaries(outputs: list[Path], plot: bool) -> list[Path]:
    removed = []
    for out in outputs:
        for target in (out, out.with_suffix(".png")) if plot else (out,):
            for tmp in motion_io.stale_temporaries(target):
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except OSError:
                    pass  # not ours to fight over; it is only clutter
    return removed


# -- internals ----------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Pending:
    """A recording whose jobs are in flight."""

    recording: Recording
    fps: float
    body: BodyConfig
    keypoints: np.ndarray  # (T, 6, 5, 3) in the body frame, NaN where untracked
    filled: np.ndarray  # (T, 6, 5, 3) gaps filled
    tracked: np.ndarray  # (T, 6, 5)
    scale: np.ndarray  # (6,)
    legs: list[int]  # indices into LEGS of the legs present
    expected: int
    # Job results are written here as they arrive (each owns its frames of one leg), so the
    # stitching overlaps the workers' solving instead of following it; missing legs stay NaN.
    angles: np.ndarray  # (T, 6, 7) [rad]
    fk: np.ndarray  # (T, 6, 5, 3) [mm]
    error: np.ndarray  # (T, 6, 5) [mm]
    received: int = 0
    failure: str | None = None  # the first job failure; the file then fails
    note: str = ""  # why an existing output is being redone
    thorax: ThoraxPose | None = None
    fit: BodyFit | None = None


class _Batch:
    """Turns recordings into jobs and finished jobs into files."""

    def __init__(self, paths: list[Path], outputs: list[Path], options: IkOptions,
                 overwrite: bool, plot: bool,
                 progress: Callable[[FileResult], None] | None) -> None:
        self.paths, self.outputs, self.options = paths, outputs, options
        self.overwrite, self.plot, self.progress = overwrite, plot, progress
        self.pending: dict[int, _Pending] = {}
        self.files: dict[int, FileResult] = {}
        self.sums = np.zeros(4)
        self.counts = np.zeros(4)
        self.hist = np.zeros((4, len(_HIST_EDGES) - 1))
        self.leg_frames = 0
        self.unwritable: str | None = None
        self.removed: list[Path] = []

    def jobs(self) -> Iterator[Job]:
        for file_id, (path, out) in enumerate(zip(self.paths, self.outputs, strict=True)):
            if self.unwritable is not None:
                self._done(file_id, FileResult(path, out, "failed", f"{path}: "
                                               f"{self.unwritable}"))
                continue
            note = "" if self.overwrite else _check_existing(out)
            if note is None:
                self._done(file_id, FileResult(path, out, "skipped"))
                continue
            try:
                pending, jobs = self._prepare(file_id, path)
            except Exception as err:  # noqa: BLE001 - one file's failure, reported by name
                self._done(file_id, FileResult(path, out, "failed", _message(path, err)))
                continue
            pending.note = note
            self.pending[file_id] = pending
            yield from jobs

    def _prepare(self, file_id: int, path: Path) -> tuple[_Pending, list[Job]]:
        options = self.options
        recording = load_recording(path, fps_range=options.fps_range)
        fps = _frame_rate(recording, options)
        keypoints = recording.keypoints
        body, thorax, fit = options.template, None, None
        if options.frame == "estimate":
            thorax = estimate_thorax_pose(keypoints, options.template.thc, fps,
                                          up=options.up, path=path)
            keypoints = thorax.to_thorax(keypoints)
        scale = np.where(np.isin(c.LEGS, recording.legs_present), 1.0, np.nan)
        _check_keypoints_tracked(path, keypoints, recording.legs_present)
        if options.body == "data":
            fit = fit_body(keypoints, options.template, name=f"data:{path.name}")
            body = fit.body
        if options.align:
            keypoints, scale = alignment.align_to_body(keypoints, body,
                                                       scale=options.body == "template")
        filled, tracked = solvers.fill_gaps(keypoints)
        legs = [c.LEGS.index(leg) for leg in recording.legs_present]
        bounds = body.bounds.reshape(c.NUM_LEGS, c.DOF_PER_LEG, 2)
        jobs = []
        for start, stop, lo, hi in chunks(recording.num_frames, options.chunk_frames,
                                           options.overlap_frames):
            for legid in legs:
                jobs.append(Job(file_id, c.LEGS[legid], start, stop, lo,
                                filled[lo:hi, legid], tracked[lo:hi, legid],
                                body.lengths[legid], bounds[legid], solvers.SEQIKPY_SEED_RAD[legid],
                                options.solver, options.lm if fit is None else fit.lm[legid]))
        # NaN until a job fills its frames: a result that never came stays visible as NaN,
        # which ReferenceMotion refuses for a leg that is present.
        num_frames = recording.num_frames
        angles = np.full((num_frames, c.NUM_LEGS, c.DOF_PER_LEG), np.nan)
        fk = np.full((num_frames, c.NUM_LEGS, c.NUM_KEYPOINTS, 3), np.nan)
        error = np.full((num_frames, c.NUM_LEGS, c.NUM_KEYPOINTS), np.nan)
        pending = _Pending(recording, fps, body, keypoints, filled, tracked, scale, legs,
                           len(jobs), angles, fk, error, thorax=thorax, fit=fit)
        return pending, jobs

    def add(self, result: JobResult) -> None:
        pending = self.pending[result.file_id]
        if result.failure is not None or pending.failure is not None:
            # The file fails; its other jobs are still counted so it finishes once.
            pending.failure = pending.failure or result.failure
        else:
            legid = c.LEGS.index(result.leg)
            frames = slice(result.start, result.start + len(result.angles))
            pending.angles[frames, legid], pending.fk[frames, legid] = result.angles, result.fk
            pending.error[frames, legid] = result.error
        pending.received += 1
        if pending.received == pending.expected:
            self._finish(result.file_id)

    def flush(self) -> None:
        for file_id in list(self.pending):
            self._finish(file_id)

    def _finish(self, file_id: int) -> None:
        pending = self.pending.pop(file_id)
        path, out = self.paths[file_id], self.outputs[file_id]
        if pending.failure is not None or pending.received < pending.expected:
            reason = pending.failure or "some IK jobs never returned"
            self._done(file_id, FileResult(path, out, "failed", f"{path}: {reason}"))
            return
        try:
            motion = _assemble(pending, self.options)
            if self.plot:  # before the .npz, so a resumed batch never lacks a figure
                from flyenv.ik_preprocess.report import plot_ik

                plot_ik(motion, out.with_suffix(".png"))
            # Replaces an output only found corrupt (note) or when overwriting.
            motion_io.save(motion, out, overwrite=self.overwrite or bool(pending.note),
                           compress=False)
        except Exception as err:  # noqa: BLE001 - one file's failure, reported by name
            self._done(file_id, FileResult(path, out, "failed", _message(path, err)))
            return
        errors = motion.ik_error[:, :, 1:]
        mean, p95 = np.empty(4), np.empty(4)
        for k in range(4):
            values = errors[..., k][np.isfinite(errors[..., k])]
            mean[k], p95[k] = values.mean(), np.percentile(values, 95)
            self.sums[k] += values.sum()
            self.counts[k] += values.size
            self.hist[k] += np.histogram(np.minimum(values, _HIST_EDGES[-1]), _HIST_EDGES)[0]
        self.leg_frames += motion.num_frames * int(motion.leg_mask.sum())
        thorax = None if pending.thorax is None else motion.metadata["thorax"]
        self._done(file_id, FileResult(path, out, "written", pending.note,
                                       num_frames=motion.num_frames, error_mean_mm=mean,
                                       error_p95_mm=p95, thorax=thorax, body=pending.body))

    def _done(self, file_id: int, result: FileResult) -> None:
        self.files[file_id] = result
        if self.progress is not None:
            self.progress(result)

    def report(self, seconds: float) -> IkReport:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums / self.counts
        p95 = np.full(4, np.nan)
        for k in range(4):
            if self.counts[k]:
                cdf = np.cumsum(self.hist[k]) / self.counts[k]
                p95[k] = _HIST_EDGES[1:][np.searchsorted(cdf, 0.95)]
        files = [self.files[i] for i in range(len(self.paths))]
        return IkReport(files, mean, p95, self.leg_frames, seconds, self.removed)


def _check_existing(out: Path) -> str | None:
    """None if `out` is a loadable ReferenceMotion (skip it), else why it is (re)done."""
    if not out.exists():
        return ""
    try:
        motion_io.load(out)
    except Exception as err:  # noqa: BLE001 - a corrupt output of a crash is redone
        return f"the existing output {out} did not load, so it was redone ({_message(out, err)})"
    return None


def _message(path: Path, err: BaseException) -> str:
    """The error as a message that names `path` (the file's reader usually did)."""
    text = str(err)
    if isinstance(err, OSError) and err.filename is not None:
        return f"{path}: {text}"
    if str(path) in text:
        return text
    if isinstance(err, ValueError | OSError):
        return f"{path}: {text}"
    return f"{path}: unexpected {type(err).__name__}: {text}"


def _check_keypoints_tracked(path: Path, keypoints: np.ndarray, legs: tuple[str, ...]) -> None:
    for leg in legs:
        legid = c.LEGS.index(leg)
        never = [c.KEYPOINTS[k] for k in range(c.NUM_KEYPOINTS)
                 if not np.isfinite(keypoints[:, legid, k]).all(-1).any()]
        if never:
            raise ValueError(f"{path}: leg {leg}: keypoint(s) {never} are NaN in every frame; "
                             f"cannot fit that leg (drop the leg from the file to treat it as "
                             f"missing)")


def _frame_rate(recording: Recording, options: IkOptions) -> float:
    fps = options.fps
    if recording.fps is not None and fps is not None and abs(recording.fps - fps) > 1e-9:
        raise ValueError(f"{recording.path}: the file says {recording.fps} fps but {fps} was "
                         f"given; drop the option or fix the file")
    rate = recording.fps if recording.fps is not None else fps
    if rate is None:
        raise RecordingError(recording.path, "the file carries no frame rate; pass one (--fps / "
                                             "IkOptions.fps)", "fps")
    return check_fps(recording.path, "fps", rate, options.fps_range)


def _assemble(pending: _Pending, options: IkOptions) -> ReferenceMotion:
    """A recording's stitched job results as a ReferenceMotion."""
    recording = pending.recording
    num_frames = recording.num_frames
    angles, fk, error = pending.angles, pending.fk, pending.error
    # Angles the tracked keypoints of a frame cannot determine (a free angle would end anywhere
    # in its range, often on a bound) are interpolated from the frames where they were, and
    # the leg-frames affected are flagged in `underdetermined`.
    legs = pending.legs
    present = np.isin(np.arange(c.NUM_LEGS), legs)
    undetermined = solvers.undetermined_angles(pending.tracked) & present[None, :, None]
    angles[:, legs] = solvers.interpolate_frames(angles[:, legs], undetermined[:, legs])
    underdetermined = undetermined.any(-1)
    unusable = undetermined.all(-1)  # nothing beyond the ThC tracked
    frames, legids = np.nonzero(underdetermined)
    fk[frames, legids] = leg_forward_kinematics(pending.filled[frames, legids, 0],
                                                pending.body.lengths[legids],
                                                angles[frames, legids])
    error[frames, legids] = np.linalg.norm(fk[frames, legids]
                                           - pending.keypoints[frames, legids], axis=-1)
    metadata = {
        "source": str(recording.path),
        "flyenv_version": __version__,
        "ik": {"solver": options.solver, "body": options.body, "align": options.align,
               "frame": options.frame, "up": None if options.up is None else list(options.up),
               "chunk_frames": options.chunk_frames, "overlap_frames": options.overlap_frames,
               "lm": dataclasses.asdict(options.lm) if options.solver == "lm" else None},
        "body": pending.body.to_dict(),
        "missing_legs": list(recording.missing_legs),
        "align_scale": {c.LEGS[i]: float(pending.scale[i]) for i in legs},
        "interpolated_frames": {c.LEGS[i]: np.flatnonzero(unusable[:, i]).tolist()
                                for i in legs if unusable[:, i].any()},
        "frames_with_untracked_keypoints": {
            c.LEGS[i]: int((~pending.tracked[:, i]).any(-1).sum()) for i in legs},
        "underdetermined_frames": {c.LEGS[i]: int(underdetermined[:, i].sum()) for i in legs},
    }
    root = {}
    if pending.thorax is not None:
        metadata["thorax"] = pending.thorax.summary()
        if pending.thorax.moving:
            root = {"root_pos": pending.thorax.root_pos_w, "root_quat": pending.thorax.root_quat_w,
                    "root_lin_vel": pending.thorax.root_lin_vel_w,
                    "root_ang_vel": pending.thorax.root_ang_vel_w}
    if pending.fit is not None:
        metadata["body_fit"] = pending.fit.summary()
    for array in (fk, error):  # frozen, so the motion adopts them instead of copying
        array.setflags(write=False)
    return ReferenceMotion(fps=pending.fps, joint_angles=angles.reshape(num_frames, c.NUM_DOFS),
                           keypoints=pending.keypoints, fk_keypoints=fk, ik_error=error,
                           underdetermined=underdetermined, metadata=metadata, **root)


def _execute(jobs: Iterable[Job], n_jobs: int, backend: str, client: Any,
             ) -> Iterator[JobResult]:
    if backend == "dask":
        yield from _execute_dask(jobs, n_jobs, client)
    elif n_jobs == 1:
        yield from map(solve_job_safely, jobs)
    else:
        parallel = joblib.Parallel(n_jobs=n_jobs, backend=backend,
                                   return_as="generator_unordered", pre_dispatch="2*n_jobs")
        yield from parallel(joblib.delayed(solve_job_safely)(job) for job in jobs)


def _execute_dask(jobs: Iterable[Job], n_jobs: int, client: Any) -> Iterator[JobResult]:
    try:
        import distributed
    except ImportError as err:
        raise ValueError("the dask backend needs the optional extra: "
                         "pip install 'flyenv[dask]'") from err
    own_cluster = None
    if client is None:
        workers = joblib.cpu_count() if n_jobs < 1 else n_jobs
        own_cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                               processes=True, dashboard_address=None)
        client = distributed.Client(own_cluster)
    elif isinstance(client, str):
        client = distributed.Client(client)
    try:
        window = 2 * max(sum(client.nthreads().values()), 1)
        queue = distributed.as_completed()
        source = iter(jobs)
        for job in source:
            queue.add(client.submit(solve_job_safely, job, pure=False))
            if queue.count() >= window:
                break
        for future in queue:
            yield future.result()
            job = next(source, None)
            if job is not None:
                queue.add(client.submit(solve_job_safely, job, pure=False))
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()
