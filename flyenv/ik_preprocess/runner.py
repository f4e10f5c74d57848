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
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from flyenv.body.config import BodyConfig
from flyenv.ik_preprocess.io import SUFFIXES, find_recordings, input_problem
from flyenv.ik_preprocess.jobs import Job as Job
from flyenv.ik_preprocess.jobs import JobResult as JobResult
from flyenv.ik_preprocess.jobs import Solution, plan_jobs, stitch
from flyenv.ik_preprocess.jobs import chunks as chunks
from flyenv.ik_preprocess.jobs import solve_job as solve_job
from flyenv.ik_preprocess.jobs import solve_job_safely as solve_job_safely
from flyenv.ik_preprocess.locks import OutputLock
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


def output_path(path: str | Path, out_dir: str | Path) -> Path:
    """Where the ReferenceMotion of a recording goes: `out_dir/<input stem>.npz`."""
    return Path(out_dir) / f"{Path(path).stem}.npz"


def output_paths(paths: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """The outputs of a batch: `out_dir/<input stem>.npz`, made unique by parent folders.

    Inputs that share a stem (SeqIKPy names every file `pose3d_aligned.pkl`) are told apart by
    as many of their parent folders as it takes, joined by "__":
    `fly1/trial2/pose3d_aligned.pkl` -> `trial2__pose3d_aligned.npz` next to
    `fly1/trial1/pose3d_aligned.pkl`, or `fly1__trial2__pose3d_aligned.npz` when another fly
    has a `trial2` too. Files of one folder that share a stem (`x.pkl`, `x.csv`), or the same
    file given twice, share a name (`run` refuses them).
    """
    paths = [Path(p) for p in paths]
    names = [p.stem for p in paths]
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(name, []).append(index)
    for stem, members in groups.items():
        if len(members) == 1:
            continue
        folders = [_real(paths[i]).parent.parts[1:] for i in members]  # without the root
        distinct = set(folders)  # files of one folder sharing a stem keep sharing a name
        if len(distinct) == 1:
            continue
        depth = next(d for d in range(1, max(map(len, distinct)) + 1)
                     if len({f[-d:] for f in distinct}) == len(distinct))
        for i, parents in zip(members, folders, strict=True):
            names[i] = "__".join((*parents[-depth:], stem))
    return [Path(out_dir) / f"{name}.npz" for name in names]


def _real(path: Path) -> Path:
    """`path` with links and `..` resolved, as far as they resolve (a link loop does not)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # a link loop: the batch reports it by name
        return Path(os.path.abspath(path))


def expand_folders(paths: Sequence[str | Path], out_dir: str | Path, *,
                   on_folder: Callable[[Path, list[Path], list[Path]], None] | None = None,
                   ) -> list[Path]:
    """The inputs with each folder replaced by its recordings (`io.find_recordings`, sorted).

    A folder without recordings stays in the list, so that the batch reports it by name and
    goes on with the other inputs; only when no input holds a recording at all is it an error.

    Args:
        paths: recordings and folders.
        out_dir: the output folder (never searched).
        on_folder: called with each folder, its recordings and the files left out of it (outputs
            of SeqIKPy or flyenv), e.g. to say what it holds, before any error.

    Raises:
        ValueError: the inputs are folders only, and none holds a recording.
    """
    expanded, empty = [], []
    for path in map(Path, paths):
        if not path.is_dir():
            expanded.append(path)
            continue
        found, ignored = find_recordings(path, exclude=out_dir)
        if on_folder is not None:
            on_folder(path, found, ignored)
        if not found:
            also = (f" (only outputs of SeqIKPy or flyenv: {ignored[0].name}, ...)" if ignored
                    else "")
            empty.append(f"{path}: no recording ({', '.join(SUFFIXES)}) in this folder or "
                         f"below{also}")
            expanded.append(path)  # fails by name in the batch
        expanded.extend(found)
    if empty and len(empty) == len(expanded):
        raise ValueError("; ".join(empty))
    return expanded


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


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders (innermost first) this batch created, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()  # fails on a folder holding anything, which is then kept
        except OSError:
            return


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


def _plan(file_id: int, prepared: Prepared, options: IkOptions) -> list[Job]:
    """The jobs of a prepared recording (`jobs.plan_jobs`)."""
    return plan_jobs(file_id, prepared.filled, prepared.tracked, prepared.legs, prepared.body,
                     options.solver, prepared.lm, options.chunk_frames, options.overlap_frames)


def _remove_stale_temporaries(out: Path, plot: bool) -> list[Path]:
    """Removes the temporaries a killed run left for one output (and its plot); returns them."""
    removed = []
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
        self.locks: dict[int, OutputLock] = {}
        self.deferred: list[int] = []  # outputs another run held the lock of

    def run(self, results: Iterable[JobResult]) -> None:
        """Takes every result in, then finishes the files whose jobs never all returned."""
        for result in results:
            self.add(result)
        self.flush()

    def release_locks(self) -> None:
        for file_id in list(self.locks):
            self.locks.pop(file_id).release()

    def _lock(self, file_id: int, wait: bool) -> bool:
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

    def jobs(self, file_ids: Iterable[int], wait: bool = False) -> Iterator[Job]:
        """The files' jobs; a file whose output another run holds is deferred (or awaited)."""
        options = self.options
        for file_id in file_ids:
            path, out = self.paths[file_id], self.outputs[file_id]
            if self.unwritable is not None:
                self._done(file_id, FileResult(path, out, "failed", f"{path}: "
                                               f"{self.unwritable}"))
                continue
            _, problem = input_problem(path)
            if problem is not None:  # the same report whether or not its output exists
                self._done(file_id, FileResult(path, out, "failed", f"{path}: {problem}"))
                continue
            if not self._lock(file_id, wait):
                continue
            try:
                note = "" if self.overwrite else _check_existing(out, path, options)
            except (ValueError, OSError) as err:  # another recording's output, or unreadable
                self._done(file_id, FileResult(path, out, "failed", _message(path, err)))
                continue
            if note is None:
                self._done(file_id, FileResult(path, out, "skipped"))
                continue
            try:
                prepared = prepare(path, options)
            except Exception as err:  # noqa: BLE001 - one file's failure, reported by name
                self._done(file_id, FileResult(path, out, "failed", _message(path, err)))
                continue
            jobs = _plan(file_id, prepared, options)
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


def _check_existing(out: Path, source: Path, options: IkOptions) -> str | None:
    """Whether an existing output is skipped (None) or (re)done (the reason, or "").

    An output is skipped only if it loads, was made from these very bytes (the SHA-256 it
    records; outputs of older flyenv versions record only the source path) and with options
    that give the same result (`IkOptions.differences`, and the frame rate when one is given).

    Raises:
        ValueError: `out` was made from another recording (a file of the same name from another
            folder), from an earlier version of this one, or with other options: it is neither
            skipped nor overwritten.
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
    recorded = motion.metadata.get("ik")
    differ = options.differences(recorded) if isinstance(recorded, dict) else []
    if options.fps is not None and abs(motion.fps - options.fps) > 1e-9 * options.fps:
        differ.append(f"fps {motion.fps:.6g}, now {options.fps:.6g}")
    if differ:
        raise ValueError(f"{source}: {out} exists and was made from this recording with other "
                         f"options ({'; '.join(differ)}); refusing to skip or overwrite it: "
                         f"write to another folder, or pass --overwrite to redo it")
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
