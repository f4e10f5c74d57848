"""One lock per output file: concurrent `flyenv ik` runs on one folder never solve a file twice.

The lock is `fcntl.flock` on `.<output name>.lock` beside the output: the kernel releases it
when its process dies (kill -9 included), so a crashed run never leaves a lock behind. The lock
file is removed on release; a process that locked a file just removed by its holder sees that
the path no longer names its file and tries again. Where `fcntl` does not exist (Windows) no
lock is taken: concurrent runs there are not protected.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


class OutputLock:
    """An exclusive lock on one output file (see the module docstring)."""

    def __init__(self, output: str | os.PathLike) -> None:
        output = Path(output)
        self.path = output.parent / f".{output.name}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def acquire(self, wait: bool) -> bool:
        """Takes the lock; without `wait`, returns False at once if another process holds it.

        Raises:
            OSError: the lock file cannot be created (e.g. a read-only folder).
        """
        if fcntl is None:
            self._fd = -1
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # its holder removed that file on release: lock the new one

    def release(self) -> None:
        """Releases the lock (removing its file); nothing if not held."""
        if self._fd is None:
            return
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
        self._fd = None
