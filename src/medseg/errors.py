"""Exceptions that the command line reports as one clear line instead of a traceback."""

from __future__ import annotations

__all__ = ["MedsegError", "ModelArgumentError", "UnknownModelError"]


class MedsegError(Exception):
    """Base class of every user-facing medseg error: bad config, bad data, unknown model, missing file."""


class UnknownModelError(MedsegError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelArgumentError(MedsegError, TypeError):
    """A constructor argument that the chosen model does not accept."""
