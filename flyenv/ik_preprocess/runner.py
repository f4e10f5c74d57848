"""Recordings to `ReferenceMotion` files, in parallel over files x legs x time chunks.

The pieces, each readable and testable alone: `options` (IkOptions), `prepare` (a recording read
and brought into the body frame; its result assembled into a ReferenceMotion), `jobs` (planning,
solving and stitching jobs, pure functions), `outputs` (output names, existing outputs), `batch`
(bookkeeping, writing and the error statistics), and here the entry points and the dispatch of
tasks to workers. Each file is one `PrepareJob` (reading it, the thorax estimate, the body
measurement: `batch.prepare_safely`) and, once its prepared data is back, its solve jobs, which
are dispatched before any further file is prepared: files stream through the pool, a few at a
time, and are written as soon as their last job returns, so memory stays flat in the number of
files. Each result is stitched into its file's arrays as it arrives, so the stitching overlaps
the solving and the order jobs finish in does not matter; `n_jobs=1` runs the same tasks in a
plain loop. A joblib pool takes tasks until none is ready (the remaining files' preparations
are all in flight); the pool is then drained and a next one takes the jobs they gave.

Backends: joblib's "loky" (processes, the default), "threading", "multiprocessing", or "dask":
the same jobs on a `distributed` cluster (pass a `Client`, a scheduler address, or let a
`LocalCluster` with `n_jobs` workers be started), at most 2 jobs per worker in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from flyenv.ik_preprocess.batch import FileResult as FileResult
from flyenv.ik_preprocess.batch import IkReport as IkReport
from flyenv.ik_preprocess.batch import PrepareJob, PrepareResult, Result, Task, _Batch, _plan
from flyenv.ik_preprocess.batch import prepare_safely as prepare_safely
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
    and a fresh pool takes the rest (loky, dask; joblib's "multiprocessing" pool never notices a
    killed worker and waits for its task forever). Each output is locked while it is made
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
    # Files prepared or solved at once: enough to keep every worker busy (a pool's look-ahead
    # is 2 tasks per worker) and few enough that memory stays flat in the number of files.
    max_files = 1 if n_jobs == 1 and backend != "dask" else 4 * _workers(n_jobs)
    try:
        batch.queue(range(len(paths)), max_files=max_files)
        batch.run(_execute(batch.next_task, n_jobs, backend, client))
        # Outputs another run was writing: wait for each in turn (holding no other lock, so
        # two runs never wait on each other), then skip it if that run wrote it, or do it.
        while batch.deferred:
            batch.queue([batch.deferred.pop(0)], wait=True)
            batch.run(_execute(batch.next_task, n_jobs, backend, client))
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
        source = iter(jobs)
        for result in _execute(lambda: next(source, None), n_jobs, backend, client):
            if result.failure is not None:
                raise RuntimeError(f"{path}: {result.failure}")
            stitch(solution, result)
    return assemble(prepared, solution, options)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


# -- dispatch ----------------------------------------------------------------------------------


def _workers(n_jobs: int) -> int:
    return joblib.cpu_count() if n_jobs < 1 else n_jobs


def _function(task: Task) -> Callable[[Any], Result]:
    """What runs a task in a worker (looked up at dispatch, so tests can stand in for it)."""
    return prepare_safely if isinstance(task, PrepareJob) else solve_job_safely


def _run_here(task: Task) -> Result:
    return _function(task)(task)


def _key(task: Task | Result) -> tuple[int, str, int]:
    """A task's identity, shared by its result."""
    if isinstance(task, PrepareJob | PrepareResult):
        return task.file_id, "", -1
    return task.file_id, task.leg, task.start


def _execute(source: Callable[[], Task | None], n_jobs: int, backend: str, client: Any,
             ) -> Iterator[Result]:
    """The results of the tasks `source()` gives, until it gives None with none in flight.

    `source` is asked again after each result has been taken in by the caller (a prepared
    file's jobs become available then).
    """
    if backend == "dask":
        yield from _execute_dask(source, n_jobs, client)
    elif n_jobs == 1:
        yield from map(_run_here, iter(source, None))
    else:
        yield from _execute_pool(source, n_jobs, backend)


class _Dispatched:
    """The tasks as a pool takes them, remembering those whose results have not come back.

    Iterating stops when `source` has nothing ready (a pool is then drained, and a next one
    takes what has become ready). Tasks of a file marked `lost` (one of its tasks
    killed its worker) are held back from the pool and kept in `held_back`: that file fails
    whatever they give.
    """

    def __init__(self, source: Callable[[], Task | None]) -> None:
        self.source = source
        self.unanswered: dict[tuple[int, str, int], Task] = {}
        self.lost: set[int] = set()
        self.held_back: list[Task] = []
        self.given = 0  # tasks handed to the pool in all
        self.lock = threading.Lock()  # joblib may dispatch from its callback thread

    def __iter__(self) -> _Dispatched:
        return self

    def __next__(self) -> Task:
        with self.lock:
            while True:
                task = self.source()
                if task is None:
                    raise StopIteration
                if task.file_id not in self.lost:
                    self.unanswered[_key(task)] = task
                    self.given += 1
                    return task
                self.held_back.append(task)

    def answered(self, result: Result) -> None:
        with self.lock:
            self.unanswered.pop(_key(result), None)

    def take(self, name: str) -> list[Task]:
        """Empties and returns `unanswered` or `held_back`."""
        with self.lock:
            store = getattr(self, name)
            tasks = list(store.values() if isinstance(store, dict) else store)
            store.clear()
            return tasks


def _execute_pool(source: Callable[[], Task | None], n_jobs: int, backend: str,
                  ) -> Iterator[Result]:
    """The tasks in joblib pools; a worker that dies (killed, out of memory) costs one file.

    A pool takes tasks until `source` has none ready; when it has finished them, a next pool
    takes those that became ready meanwhile, until a pool is given none. When a worker dies,
    joblib abandons the pool. Each task that was in flight is then run alone in a fresh
    worker: one whose worker dies again comes back as a failure naming its file (and the leg
    and frames; its file fails, and its other tasks are not tried), the others as results; the
    remaining tasks go to a fresh pool.
    """
    dispatched = _Dispatched(source)
    while True:
        # joblib's multiprocessing backend returns only lists: a round's results come at its
        # end, and the next round takes the jobs they made ready.
        order = "list" if backend == "multiprocessing" else "generator_unordered"
        parallel = joblib.Parallel(n_jobs=n_jobs, backend=backend, return_as=order,
                                   pre_dispatch="2*n_jobs")
        given, answered = dispatched.given, 0
        try:
            for result in parallel(joblib.delayed(_function(task))(task)
                                   for task in dispatched):
                dispatched.answered(result)
                answered += 1
                yield result
                yield from map(_not_tried, dispatched.take("held_back"))
            held_back = dispatched.take("held_back")
            yield from map(_not_tried, held_back)
            # Only results change what `source` has: a pool given nothing, with no result
            # since, means nothing is left.
            if dispatched.given == given and answered == 0 and not held_back:
                return
        except BrokenExecutor:
            for task in dispatched.take("unanswered"):
                if task.file_id in dispatched.lost:
                    yield _not_tried(task)
                    continue
                result = _run_alone(task, backend)
                if result.failure is not None and "died" in result.failure:
                    dispatched.lost.add(task.file_id)
                yield result


def _failed(task: Task, reason: str) -> Result:
    if isinstance(task, PrepareJob):
        return PrepareResult(task.file_id, None, failure=f"{task.path}: {reason}")
    empty = np.empty((0,))
    return JobResult(task.file_id, task.leg, task.start, empty, empty, empty, failure=reason)


def _what(task: Task) -> str:
    if isinstance(task, PrepareJob):
        return "preparing the recording"
    return f"solving leg {task.leg}, frames {task.start}-{task.stop}"


def _not_tried(task: Task) -> Result:
    return _failed(task, f"{_what(task)} not tried: another task of this file killed its "
                         f"worker")


def _run_alone(task: Task, backend: str) -> Result:
    """One task in a fresh single-worker pool; a failure result if that worker dies too."""
    try:
        return joblib.Parallel(n_jobs=1 if backend == "threading" else 2, backend=backend)(
            [joblib.delayed(_function(task))(task)])[0]
    except BrokenExecutor as err:
        return _failed(task, f"the worker {_what(task)} died (killed, or out of memory): "
                             f"{type(err).__name__}")


def _execute_dask(source: Callable[[], Task | None], n_jobs: int, client: Any,
                  ) -> Iterator[Result]:
    try:
        import distributed
    except ImportError as err:
        raise ValueError("the dask backend needs the optional extra: "
                         "pip install 'flyenv[dask]'") from err
    own_cluster = None
    if client is None:
        own_cluster = distributed.LocalCluster(n_workers=_workers(n_jobs), threads_per_worker=1,
                                               processes=True, dashboard_address=None)
        client = distributed.Client(own_cluster)
    elif isinstance(client, str):
        client = distributed.Client(client)
    try:
        window = 2 * max(sum(client.nthreads().values()), 1)
        queue = distributed.as_completed()
        submitted: dict[Any, Task] = {}

        def fill() -> None:
            """Submits ready tasks until `window` are in flight."""
            while queue.count() < window:
                task = source()
                if task is None:
                    return
                future = client.submit(_function(task), task, pure=False)
                submitted[future] = task
                queue.add(future)

        fill()
        while queue.count():
            for future in queue:
                task = submitted.pop(future)
                try:
                    yield future.result()
                except distributed.KilledWorker as err:  # dask gave up after its own retries
                    yield _failed(task, f"the worker {_what(task)} died (killed, or out of "
                                        f"memory): {err}")
                fill()
            fill()
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()
