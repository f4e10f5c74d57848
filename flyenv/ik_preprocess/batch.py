"""A batch's bookkeeping: the files' jobs out, their results in, finished files written.

`_Batch` hands the dispatcher one `PrepareJob` per recording (reading it, the thorax estimate and
the body measurement run in a worker: `prepare_safely`), plans a recording's solve jobs as soon
as its prepared data returns and hands those out first, stitches results as they arrive, writes
each file once its last job returns (locked, atomically) and reports one `FileResult` per input;
`ErrorStats` keeps the fit-error summary over the written files.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flyenv.body.config import BodyConfig
from flyenv.ik_preprocess.io import input_problem
from flyenv.ik_preprocess.jobs import Job, JobResult, Solution, plan_jobs, stitch
from flyenv.ik_preprocess.locks import OutputLock
from flyenv.ik_preprocess.options import IkOptions
from flyenv.ik_preprocess.outputs import _check_existing, _message, _remove_stale_temporaries
from flyenv.ik_preprocess.prepare import Prepared, assemble, prepare
from flyenv.motion import io as motion_io
from flyenv.motion.format import ReferenceMotion

# Bins of the error histogram behind the batch summary's p95 [mm].
_HIST_EDGES = np.linspace(0.0, 5.0, 5001)


@dataclasses.dataclass
class FileResult:
    """What happened to one recording.

    Attributes:
        path: the input.
        output: the ReferenceMotion file (written, or found and skipped).
        status: "written", "skipped" (an output of the same bytes and options existed) or
            "failed".
        message: the error, for failed files; for written ones, why an existing output was
            redone (it did not load).
        num_frames: frames in the recording.
        fps: its frame rate [Hz].
        missing_legs: legs the recording lacks (NaN angles in the output).
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
    fps: float | None = None
    missing_legs: tuple[str, ...] = ()
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


@dataclasses.dataclass(frozen=True)
class PrepareJob:
    """Reading one recording and bringing it into the body frame (`prepare`), in a worker."""

    file_id: int
    path: Path
    options: IkOptions


@dataclasses.dataclass(eq=False)
class PrepareResult:
    """A `PrepareJob`'s outcome: the prepared recording, or why it could not be prepared."""

    file_id: int
    prepared: Prepared | None
    failure: str | None = None  # the reason, naming the file; `prepared` is then None


Task = Job | PrepareJob
Result = JobResult | PrepareResult


def prepare_safely(job: PrepareJob) -> PrepareResult:
    """`prepare`, with any exception returned as the result's `failure` (runs in a worker).

    A recording that cannot be read or prepared fails its file, not the batch.
    """
    try:
        return PrepareResult(job.file_id, prepare(job.path, job.options))
    except Exception as err:  # noqa: BLE001 - one file's failure, reported by name
        return PrepareResult(job.file_id, None, _message(job.path, err))


def _plan(file_id: int, prepared: Prepared, options: IkOptions) -> list[Job]:
    """The jobs of a prepared recording (`jobs.plan_jobs`)."""
    return plan_jobs(file_id, prepared.filled, prepared.tracked, prepared.legs, prepared.body,
                     options.solver, prepared.lm, options.chunk_frames, options.overlap_frames)


class ErrorStats:
    """Fit error per keypoint (CTr, FTi, TiTa, Claw) over the written files: mean and p95.

    The p95 comes from a histogram (0-5 mm in 1 um bins), so memory stays flat in the number of
    frames.
    """

    def __init__(self) -> None:
        self.sums = np.zeros(4)
        self.counts = np.zeros(4)
        self.hist = np.zeros((4, len(_HIST_EDGES) - 1))
        self.leg_frames = 0

    def add(self, motion: ReferenceMotion) -> tuple[np.ndarray, np.ndarray]:
        """Counts one file; returns its own (4,) mean and p95 [mm]."""
        errors = motion.ik_error[:, :, 1:]
        mean, p95 = np.empty(4), np.empty(4)
        for k in range(4):
            values = errors[..., k][np.isfinite(errors[..., k])]
            mean[k], p95[k] = values.mean(), np.percentile(values, 95)
            self.sums[k] += values.sum()
            self.counts[k] += values.size
            self.hist[k] += np.histogram(np.minimum(values, _HIST_EDGES[-1]), _HIST_EDGES)[0]
        self.leg_frames += motion.num_frames * int(motion.leg_mask.sum())
        return mean, p95

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        """(4,) mean and p95 over every file counted (NaN where none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums / self.counts
        p95 = np.full(4, np.nan)
        for k in range(4):
            if self.counts[k]:
                cdf = np.cumsum(self.hist[k]) / self.counts[k]
                p95[k] = _HIST_EDGES[1:][np.searchsorted(cdf, 0.95)]
        return mean, p95


@dataclasses.dataclass(eq=False)
class _Pending:
    """A recording whose jobs are in flight."""

    prepared: Prepared
    solution: Solution
    expected: int
    received: int = 0
    failure: str | None = None  # the first job failure; the file then fails
    note: str = ""  # why an existing output is being redone


class _Batch:
    """Hands out the recordings' tasks and turns finished recordings into files.

    `queue` sets the files to do; `next_task` gives the dispatcher the next task: a solve job of
    a prepared file first (so a file is written as soon as it can be), else the next file's
    `PrepareJob`, else None (nothing to do until a result comes in, or nothing left). At most
    `max_files` files are being prepared or solved at once, so memory stays flat in the number
    of files. `next_task` may run in a pool's dispatch thread while `add` runs in the caller's:
    both hold the batch's lock.
    """

    def __init__(self, paths: list[Path], outputs: list[Path], options: IkOptions,
                 overwrite: bool, plot: bool,
                 progress: Callable[[FileResult], None] | None) -> None:
        self.paths, self.outputs, self.options = paths, outputs, options
        self.overwrite, self.plot, self.progress = overwrite, plot, progress
        self.preparing: dict[int, str] = {}  # file id -> why an existing output is redone
        self.pending: dict[int, _Pending] = {}
        self.ready: deque[Job] = deque()  # solve jobs of prepared files, not yet handed out
        self.files: dict[int, FileResult] = {}
        self.stats = ErrorStats()
        self.unwritable: str | None = None
        self.removed: list[Path] = []
        self.locks: dict[int, OutputLock] = {}
        self.deferred: list[int] = []  # outputs another run held the lock of
        self._todo: Iterator[int] = iter(())
        self._wait = False
        self._max_files = 1
        self._lock = threading.RLock()

    def queue(self, file_ids: Iterable[int], *, wait: bool = False, max_files: int = 1) -> None:
        """The files `next_task` hands out next; `wait`: wait for outputs another run holds."""
        with self._lock:
            self._todo, self._wait, self._max_files = iter(file_ids), wait, max(max_files, 1)

    def run(self, results: Iterable[Result]) -> None:
        """Takes every result in, then finishes the files whose jobs never all returned."""
        for result in results:
            self.add(result)
        self.flush()

    def release_locks(self) -> None:
        for file_id in list(self.locks):
            self.locks.pop(file_id).release()

    def _lock_output(self, file_id: int, wait: bool) -> bool:
        """Takes the output's lock (and clears its stale temporaries); False: deferred/failed."""
        path, out = self.paths[file_id], self.outputs[file_id]
        lock = OutputLock(out)
        try:
            if not lock.acquire(wait):
                self.deferred.append(file_id)
                return False
        except OSError as err:
            self._done(file_id, FileResult(path, out, "failed", f"{path}: cannot lock its output "
                                                                f"({lock.path}): {err}"))
            return False
        self.locks[file_id] = lock
        # Only now: a temporary of another live run's output is that run's, not stale.
        self.removed += _remove_stale_temporaries(out, self.plot)
        return True

    def next_task(self) -> Task | None:
        """The next task to dispatch, or None for now (see the class docstring)."""
        with self._lock:
            if self.ready:
                return self.ready.popleft()
            while len(self.preparing) + len(self.pending) < self._max_files:
                file_id = next(self._todo, None)
                if file_id is None:
                    return None
                note = self._admit(file_id)
                if note is not None:
                    self.preparing[file_id] = note
                    return PrepareJob(file_id, self.paths[file_id], self.options)
            return None

    def _admit(self, file_id: int) -> str | None:
        """Whether a file is to be prepared: "" or why its output is redone.

        None: its result is settled (failed or skipped), or it is deferred to another run.
        """
        path, out = self.paths[file_id], self.outputs[file_id]
        if self.unwritable is not None:
            self._done(file_id, FileResult(path, out, "failed", f"{path}: {self.unwritable}"))
            return None
        _, problem = input_problem(path)
        if problem is not None:  # the same report whether or not its output exists
            self._done(file_id, FileResult(path, out, "failed", f"{path}: {problem}"))
            return None
        if not self._lock_output(file_id, self._wait):
            return None
        try:
            note = "" if self.overwrite else _check_existing(out, path, self.options)
        except (ValueError, OSError) as err:  # another recording's output, or unreadable
            self._done(file_id, FileResult(path, out, "failed", _message(path, err)))
            return None
        if note is None:
            self._done(file_id, FileResult(path, out, "skipped"))
        return note

    def add(self, result: Result) -> None:
        with self._lock:
            if isinstance(result, PrepareResult):
                self._prepared(result)
                return
            pending = self.pending[result.file_id]
            if result.failure is not None or pending.failure is not None:
                # The file fails; its other jobs are still counted so it finishes once.
                pending.failure = pending.failure or result.failure
            else:
                stitch(pending.solution, result)
            pending.received += 1
            if pending.received == pending.expected:
                self._finish(result.file_id)

    def _prepared(self, result: PrepareResult) -> None:
        file_id = result.file_id
        note = self.preparing.pop(file_id)
        prepared = result.prepared
        if prepared is None:
            path, out = self.paths[file_id], self.outputs[file_id]
            self._done(file_id, FileResult(path, out, "failed", result.failure or ""))
            return
        jobs = _plan(file_id, prepared, self.options)
        self.pending[file_id] = _Pending(prepared, Solution.empty(len(prepared.filled)),
                                         len(jobs), note=note)
        self.ready.extend(jobs)
        if not jobs:
            self._finish(file_id)

    def flush(self) -> None:
        with self._lock:
            self.ready.clear()  # a file whose jobs were never handed out fails below
            for file_id in list(self.preparing):
                self.preparing.pop(file_id)
                path, out = self.paths[file_id], self.outputs[file_id]
                self._done(file_id, FileResult(path, out, "failed",
                                               f"{path}: its preparation never returned"))
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
            motion = assemble(pending.prepared, pending.solution, self.options)
            if self.plot:  # before the .npz, so a resumed batch never lacks a figure
                from flyenv.ik_preprocess.report import plot_ik

                plot_ik(motion, out.with_suffix(".png"))
            # Replaces an output only found corrupt (note) or when overwriting.
            motion_io.save(motion, out, overwrite=self.overwrite or bool(pending.note),
                           compress=False)
        except Exception as err:  # noqa: BLE001 - one file's failure, reported by name
            self._done(file_id, FileResult(path, out, "failed", _message(path, err)))
            return
        mean, p95 = self.stats.add(motion)
        prepared = pending.prepared
        thorax = None if prepared.thorax is None else motion.metadata["thorax"]
        self._done(file_id, FileResult(path, out, "written", pending.note,
                                       num_frames=motion.num_frames, fps=motion.fps,
                                       missing_legs=tuple(motion.missing_legs),
                                       error_mean_mm=mean,
                                       error_p95_mm=p95, thorax=thorax, body=prepared.body))

    def _done(self, file_id: int, result: FileResult) -> None:
        lock = self.locks.pop(file_id, None)
        if lock is not None:
            lock.release()
        self.files[file_id] = result
        if self.progress is not None:
            self.progress(result)

    def report(self, seconds: float) -> IkReport:
        mean, p95 = self.stats.summary()
        files = [self.files[i] for i in range(len(self.paths))]
        return IkReport(files, mean, p95, self.stats.leg_frames, seconds, self.removed)
