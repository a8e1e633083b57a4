"""The error raised for bad input data."""

from __future__ import annotations

from medseg.errors import MedsegError

__all__ = ["DataError"]


class DataError(MedsegError, ValueError):
    """A problem with the data on disk (missing file or folder, unreadable image, bad mask values, ...).

    The message always names the offending file or folder and what is wrong with it.
    """
