"""Writing run-folder files so that a failed write (disk full, read-only folder) keeps the previous file intact and
is reported as one line naming the file."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from medseg.errors import MedsegError

__all__ = ["OutputWriteError", "atomic_write", "writing"]


class OutputWriteError(MedsegError):
    """A file of the run folder could not be written (no space left, no permission, read-only file system)."""


def _cause(error: OSError) -> str:
    """``[Errno 28] No space left on device``, without the temporary file name that ``str(error)`` may append."""
    if error.errno is not None and error.strerror:
        return f"[Errno {error.errno}] {error.strerror}"
    return str(error) or type(error).__name__


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Report an ``OSError`` raised inside the block as an :class:`OutputWriteError` naming ``path``.

    Args:
        path: the file the block writes.

    Raises:
        OutputWriteError: the block raised an ``OSError``.
    """
    try:
        yield
    except OSError as error:
        raise OutputWriteError(f"could not write {path}: {_cause(error)}") from error


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through a temporary file in the same folder that replaces it only once complete.

    The temporary file (``.<name>-<random>.tmp<suffix>``) is flushed to disk before :func:`os.replace` renames it,
    so a crash or a full disk leaves either the previous file or the new one, never a truncated file.

    Args:
        path: the destination file; its folder is created when missing.
        write: writes the content to the open binary file it is given.

    Raises:
        OutputWriteError: the folder, the temporary file or the rename could not be written.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}-{secrets.token_hex(4)}.tmp{path.suffix}")
        # os.open with mode 0o666 gives the permissions of a plainly created file (umask applied)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(handle, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
