"""Recordings to `ReferenceMotion` files, in parallel over files x legs x time chunks.

The pieces, each readable and testable alone: `options` (IkOptions), `prepare` (a recording read
and brought into the body frame; its result assembled into a ReferenceMotion), `jobs` (planning,
solving and stitching jobs, pure functions), and here the batch: dispatch, bookkeeping, writing
and the error statistics. Files are read one at a time as jobs are dispatched and written as soon
as their last job returns, so memory stays flat in the number of files. Each result is stitched
into its file's arrays as it arrives, so the stitching overlaps the solving and the order jobs
finish in does not matter; `n_jobs=1` runs the same jobs in a plain loop.

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

from flyenv.body.config import BodyConfig
from flyenv.ik_preprocess.jobs import Job as Job
from flyenv.ik_preprocess.jobs import JobResult as JobResult
from flyenv.ik_preprocess.jobs import Solution, plan_jobs, stitch
from flyenv.ik_preprocess.jobs import chunks as chunks
from flyenv.ik_preprocess.jobs import solve_job as solve_job
from flyenv.ik_preprocess.jobs import solve_job_safely as solve_job_safely
from flyenv.ik_preprocess.options import BODY_MODES as BODY_MODES
from flyenv.ik_preprocess.options import FRAMES as FRAMES
from flyenv.ik_preprocess.options import SOLVERS as SOLVERS
from flyenv.ik_preprocess.options import IkOptions as IkOptions
from flyenv.ik_preprocess.prepare import Prepared, assemble, prepare, source_sha256
from flyenv.motion import io as motion_io
from flyenv.motion.format import ReferenceMotion

BACKENDS = ("loky", "threading", "multiprocessing", "dask")
# Bins of the error histogram behind the batch summary's p95 [mm].
_HIST_EDGES = np.linspace(0.0, 5.0, 5001)


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
    """Dispatches the recordings' jobs and turns finished recordings into files."""

    def __init__(self, paths: list[Path], outputs: list[Path], options: IkOptions,
                 overwrite: bool, plot: bool,
                 progress: Callable[[FileResult], None] | None) -> None:
        self.paths, self.outputs, self.options = paths, outputs, options
        self.overwrite, self.plot, self.progress = overwrite, plot, progress
        self.pending: dict[int, _Pending] = {}
        self.files: dict[int, FileResult] = {}
        self.stats = ErrorStats()
        self.unwritable: str | None = None
        self.removed: list[Path] = []

    def jobs(self) -> Iterator[Job]:
        options = self.options
        for file_id, (path, out) in enumerate(zip(self.paths, self.outputs, strict=True)):
            if self.unwritable is not None:
                self._done(file_id, FileResult(path, out, "failed", f"{path}: "
                                               f"{self.unwritable}"))
                continue
            try:
                note = "" if self.overwrite else _check_existing(out, path)
            except ValueError as err:  # an output of another recording: never overwritten
                self._done(file_id, FileResult(path, out, "failed", str(err)))
                continue
            if note is None:
                self._done(file_id, FileResult(path, out, "skipped"))
                continue
            try:
                prepared = prepare(path, options)
            except Exception as err:  # noqa: BLE001 - one file's failure, reported by name
                self._done(file_id, FileResult(path, out, "failed", _message(path, err)))
                continue
            jobs = plan_jobs(file_id, prepared.filled, prepared.tracked, prepared.legs,
                             prepared.body, options.solver, prepared.lm,
                             options.chunk_frames, options.overlap_frames)
            self.pending[file_id] = _Pending(prepared, Solution.empty(len(prepared.filled)),
                                             len(jobs), note=note)
            yield from jobs

    def add(self, result: JobResult) -> None:
        pending = self.pending[result.file_id]
        if result.failure is not None or pending.failure is not None:
            # The file fails; its other jobs are still counted so it finishes once.
            pending.failure = pending.failure or result.failure
        else:
            stitch(pending.solution, result)
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
                                       num_frames=motion.num_frames, error_mean_mm=mean,
                                       error_p95_mm=p95, thorax=thorax, body=prepared.body))

    def _done(self, file_id: int, result: FileResult) -> None:
        self.files[file_id] = result
        if self.progress is not None:
            self.progress(result)

    def report(self, seconds: float) -> IkReport:
        mean, p95 = self.stats.summary()
        files = [self.files[i] for i in range(len(self.paths))]
        return IkReport(files, mean, p95, self.stats.leg_frames, seconds, self.removed)


def _check_existing(out: Path, source: Path) -> str | None:
    """Whether an existing output is skipped (None) or (re)done (the reason, or "").

    An output is skipped only if it loads and was made from these very bytes (the SHA-256 it
    records; outputs of older flyenv versions record only the source path).

    Raises:
        ValueError: `out` was made from another recording (a file of the same name from another
            folder) or from an earlier version of this one: it is neither skipped nor
            overwritten.
    """
    if not out.exists():
        return ""
    try:
        motion = motion_io.load(out)
    except Exception as err:  # noqa: BLE001 - a corrupt output of a crash is redone
        return f"the existing output {out} did not load, so it was redone ({_message(out, err)})"
    made_from = motion.metadata.get("source")
    digest = motion.metadata.get("source_sha256")
    same = (digest == source_sha256(source) if digest is not None
            else made_from is not None and Path(made_from).resolve() == source.resolve())
    if not same:
        raise ValueError(f"{source}: {out} exists and was made from another recording, or from "
                         f"another version of this one ({made_from}); refusing to skip or "
                         f"overwrite it: write to another folder, rename the recording, or pass "
                         f"--overwrite")
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
