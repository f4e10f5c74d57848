"""Recordings to `ReferenceMotion` files, in parallel over files x legs x time chunks.

The pieces, each readable and testable alone: `options` (IkOptions), `prepare` (a recording read
and brought into the body frame; its result assembled into a ReferenceMotion), `jobs` (planning,
solving and stitching jobs, pure functions), `outputs` (output names, existing outputs), `batch`
(bookkeeping, writing and the error statistics), and here the entry points and the dispatch of
jobs to workers. Files are read one at a time as jobs are dispatched and written as soon
as their last job returns, so memory stays flat in the number of files. Each result is stitched
into its file's arrays as it arrives, so the stitching overlaps the solving and the order jobs
finish in does not matter; `n_jobs=1` runs the same jobs in a plain loop.

Backends: joblib's "loky" (processes, the default), "threading", "multiprocessing", or "dask":
the same jobs on a `distributed` cluster (pass a `Client`, a scheduler address, or let a
`LocalCluster` with `n_jobs` workers be started), at most 2 jobs per worker in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from flyenv.ik_preprocess.batch import FileResult as FileResult
from flyenv.ik_preprocess.batch import IkReport as IkReport
from flyenv.ik_preprocess.batch import _Batch, _plan
from flyenv.ik_preprocess.jobs import Job as Job
from flyenv.ik_preprocess.jobs import JobResult as JobResult
from flyenv.ik_preprocess.jobs import Solution, stitch
from flyenv.ik_preprocess.jobs import chunks as chunks
from flyenv.ik_preprocess.jobs import solve_job as solve_job
from flyenv.ik_preprocess.jobs import solve_job_safely as solve_job_safely
from flyenv.ik_preprocess.options import BODY_MODES as BODY_MODES
from flyenv.ik_preprocess.options import FRAMES as FRAMES
from flyenv.ik_preprocess.options import SOLVERS as SOLVERS
from flyenv.ik_preprocess.options import IkOptions as IkOptions
from flyenv.ik_preprocess.outputs import _remove_empty, expand_folders, output_paths
from flyenv.ik_preprocess.outputs import output_path as output_path
from flyenv.ik_preprocess.prepare import assemble, prepare
from flyenv.motion.format import ReferenceMotion

BACKENDS = ("loky", "threading", "multiprocessing", "dask")


def run(paths: Sequence[str | Path], out_dir: str | Path, options: IkOptions | None = None, *,
        n_jobs: int = 1, backend: str = "loky", overwrite: bool = False, plot: bool = False,
        client: Any = None, progress: Callable[[FileResult], None] | None = None) -> IkReport:
    """Solves IK for recordings and writes one `ReferenceMotion` per recording.

    Outputs are `out_dir/<input stem>.npz` (inputs sharing a stem get their parent folders'
    names too: `output_paths`), written atomically; existing outputs that load and
    were made from the same bytes with the same options are skipped unless `overwrite`, so an
    interrupted batch resumes where it stopped (one that does not load is redone, saying so in
    its `FileResult.message`; one made from other bytes or with other options fails by name,
    kept as it is), and temporary files a killed run left for these outputs are removed. A file
    that cannot be read, solved or written (bad data, a full disk, an output folder that cannot
    be created) is reported as failed with the reason and the batch goes on, with any number of
    workers and any backend; so does a worker that dies (killed, out of memory): its file fails
    and a fresh pool takes the rest. Each output is locked while it is made
    (`flyenv.ik_preprocess.locks`): a concurrent run on the same folder leaves it to the run that
    holds it, waits for it at the end and skips it if written.

    Args:
        paths: recordings (.pkl, .npz, .csv; see `flyenv.ik_preprocess.io`), or folders:
            their recordings and those below them, sorted (`io.find_recordings`).
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
        ValueError: on a bad backend, inputs that are only folders without recordings (one
            among other inputs fails by name), or a file given twice (nothing is done then).
    """
    options = options or IkOptions()
    _check_backend(backend)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    paths = expand_folders(paths, out_dir)
    outputs = output_paths(paths, out_dir)
    seen: dict[Path, Path] = {}
    for path, out in zip(paths, outputs, strict=True):
        if out in seen:
            raise ValueError(f"{seen[out]} and {path} would both write {out}; give each "
                             f"recording once, and recordings of one folder distinct names (or "
                             f"process them separately)")
        seen[out] = path
    batch = _Batch(paths, outputs, options, overwrite, plot, progress)
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]  # innermost first
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # every file fails with the reason; nothing is solved in vain
        batch.unwritable = f"cannot create the output folder {out_dir}: {err}"
    try:
        batch.run(_execute(batch.jobs(range(len(paths))), n_jobs, backend, client))
        # Outputs another run was writing: wait for each in turn (holding no other lock, so
        # two runs never wait on each other), then skip it if that run wrote it, or do it.
        while batch.deferred:
            file_id = batch.deferred.pop(0)
            batch.run(_execute(batch.jobs([file_id], wait=True), n_jobs, backend, client))
    finally:
        batch.release_locks()
        _remove_empty(created)  # a batch that wrote nothing leaves no trace
    return batch.report(time.perf_counter() - started)


def solve_recording(path: str | Path, options: IkOptions | None = None, *, n_jobs: int = 1,
                    backend: str = "loky", client: Any = None) -> ReferenceMotion:
    """Solves IK for one recording and returns its `ReferenceMotion` (nothing is written).

    The same IK as `run`, for one file, with errors raised rather than reported: a script goes
    on only with a result (save it with `flyenv.motion.io.save`). Long recordings can be split
    into jobs (`options.chunk_frames`) solved by `n_jobs` workers.

    Args:
        path: a recording (.pkl, .npz, .csv; see `flyenv.ik_preprocess.io`).
        options: what to do with it.
        n_jobs: parallel workers over legs x chunks (1: serial, -1: all cores).
        backend: "loky", "threading", "multiprocessing" or "dask" (as `run`).
        client: for the dask backend, a `distributed.Client` or a scheduler address.

    Returns:
        The motion: joint angles (T, 42) [rad], keypoints, their forward kinematics and fit
        error, with the options and the source recorded in its metadata.

    Raises:
        FileNotFoundError: no such file.
        RecordingError: (a ValueError) the file cannot be used: unreadable, implausible data, no
            frame rate or one that clashes with `options.fps`, a leg that cannot be fitted, a
            thorax layout that is no fly's; the message names the file and the field.
        RuntimeError: the IK of a leg failed (a solver error on odd data), naming the file,
            the leg and the frames.
        ValueError: bad options or backend.
    """
    options = options or IkOptions()
    _check_backend(backend)
    path = Path(path)
    prepared = prepare(path, options)
    jobs = _plan(0, prepared, options)
    solution = Solution.empty(len(prepared.filled))
    if n_jobs == 1 and backend != "dask":
        for job in jobs:  # in this process, so a solver's error keeps its traceback
            try:
                stitch(solution, solve_job(job))
            except Exception as err:
                raise RuntimeError(f"{path}: IK of leg {job.leg}, frames {job.start}-"
                                   f"{job.stop} failed: {type(err).__name__}: {err}") from err
    else:
        for result in _execute(jobs, n_jobs, backend, client):
            if result.failure is not None:
                raise RuntimeError(f"{path}: {result.failure}")
            stitch(solution, result)
    return assemble(prepared, solution, options)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


# -- dispatch ----------------------------------------------------------------------------------


def _execute(jobs: Iterable[Job], n_jobs: int, backend: str, client: Any,
             ) -> Iterator[JobResult]:
    if backend == "dask":
        yield from _execute_dask(jobs, n_jobs, client)
    elif n_jobs == 1:
        yield from map(solve_job_safely, jobs)
    else:
        yield from _execute_pool(jobs, n_jobs, backend)


class _Dispatched:
    """The jobs as a pool takes them, remembering those whose results have not come back.

    Jobs of a file marked `lost` (one of its jobs killed its worker) are held back from the
    pool and kept in `held_back`: that file fails whatever they give.
    """

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.source = iter(jobs)
        self.unanswered: dict[tuple[int, str, int], Job] = {}
        self.lost: set[int] = set()
        self.held_back: list[Job] = []
        self.lock = threading.Lock()  # joblib may dispatch from its callback thread

    def __iter__(self) -> _Dispatched:
        return self

    def __next__(self) -> Job:
        with self.lock:
            while True:
                job = next(self.source)
                if job.file_id not in self.lost:
                    self.unanswered[job.file_id, job.leg, job.start] = job
                    return job
                self.held_back.append(job)

    def answered(self, result: JobResult) -> None:
        with self.lock:
            self.unanswered.pop((result.file_id, result.leg, result.start), None)

    def take(self, name: str) -> list[Job]:
        """Empties and returns `unanswered` or `held_back`."""
        with self.lock:
            store = getattr(self, name)
            jobs = list(store.values() if isinstance(store, dict) else store)
            store.clear()
            return jobs


def _execute_pool(jobs: Iterable[Job], n_jobs: int, backend: str) -> Iterator[JobResult]:
    """The jobs in a joblib pool; a worker that dies (killed, out of memory) costs one file.

    When a worker dies, joblib abandons the pool. Each job that was in flight is then solved
    alone in a fresh worker: one whose worker dies again comes back as a failure naming its
    file's leg and frames (its file fails, and its other jobs are not tried), the others as
    results; the remaining jobs go to a fresh pool.
    """
    dispatched = _Dispatched(jobs)
    while True:
        parallel = joblib.Parallel(n_jobs=n_jobs, backend=backend,
                                   return_as="generator_unordered", pre_dispatch="2*n_jobs")
        try:
            for result in parallel(joblib.delayed(solve_job_safely)(job) for job in dispatched):
                dispatched.answered(result)
                yield result
                yield from map(_not_tried, dispatched.take("held_back"))
            yield from map(_not_tried, dispatched.take("held_back"))
            return
        except BrokenExecutor:
            for job in dispatched.take("unanswered"):
                if job.file_id in dispatched.lost:
                    yield _not_tried(job)
                    continue
                result = _solve_alone(job, backend)
                if result.failure is not None and "died" in result.failure:
                    dispatched.lost.add(job.file_id)
                yield result


def _failed(job: Job, reason: str) -> JobResult:
    empty = np.empty((0,))
    return JobResult(job.file_id, job.leg, job.start, empty, empty, empty, failure=reason)


def _not_tried(job: Job) -> JobResult:
    return _failed(job, f"leg {job.leg}, frames {job.start}-{job.stop} not solved: another "
                        f"job of this file killed its worker")


def _solve_alone(job: Job, backend: str) -> JobResult:
    """One job in a fresh single-worker pool; a failure result if that worker dies too."""
    try:
        return joblib.Parallel(n_jobs=1 if backend == "threading" else 2, backend=backend)(
            [joblib.delayed(solve_job_safely)(job)])[0]
    except BrokenExecutor as err:
        return _failed(job, f"the worker solving leg {job.leg}, frames {job.start}-{job.stop} "
                            f"died (killed, or out of memory): {type(err).__name__}")


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
        submitted: dict[Any, Job] = {}

        def submit(job: Job) -> None:
            future = client.submit(solve_job_safely, job, pure=False)
            submitted[future] = job
            queue.add(future)

        for job in source:
            submit(job)
            if queue.count() >= window:
                break
        for future in queue:
            job = submitted.pop(future)
            try:
                yield future.result()
            except distributed.KilledWorker as err:  # dask gave up after its own retries
                yield _failed(job, f"the worker solving leg {job.leg}, frames {job.start}-"
                                   f"{job.stop} died (killed, or out of memory): {err}")
            job = next(source, None)
            if job is not None:
                submit(job)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()
