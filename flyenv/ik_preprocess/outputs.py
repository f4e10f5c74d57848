"""Where a batch's outputs go, and what it does with the outputs already there.

`output_paths` names each recording's `ReferenceMotion` file; `expand_folders` turns folders into
their recordings; `_check_existing` decides whether an existing output is skipped, redone or
refused; a killed run's temporaries are removed and empty folders a batch created are not left.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from flyenv.ik_preprocess.io import SUFFIXES, find_recordings
from flyenv.ik_preprocess.options import IkOptions
from flyenv.ik_preprocess.prepare import source_sha256
from flyenv.motion import io as motion_io


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


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders (innermost first) this batch created, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()  # fails on a folder holding anything, which is then kept
        except OSError:
            return


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
