"""Registry of objective terms that a config can add to the supervised loss (``loss.terms``).

Built-in terms register themselves when :mod:`medseg.objectives` is imported; external packages add terms through
the ``medseg.objectives`` entry-point group (each entry point's name is the term name, its value the factory).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from medseg.errors import MedsegError
from medseg.objectives.base import ObjectiveTerm
from medseg.registry import Registry

__all__ = ["TERMS", "TermContext", "build_term", "list_terms", "register_term"]


@dataclass(frozen=True)
class TermContext:
    """What a term may need to know about the run.

    Attributes:
        binary: whether the task has one sigmoid logit channel.
        seg_loss: the run's supervised loss ``(logits, target) -> scalar`` (deep supervision reuses it).
        seed: the run's seed, for terms that draw random numbers (a dedicated generator keeps runs reproducible).
        num_classes: classes including background.
        teacher_checkpoint: ``loss.teacher_checkpoint``, for terms that learn from a frozen teacher network.
    """

    binary: bool
    seg_loss: nn.Module
    seed: int
    num_classes: int
    teacher_checkpoint: str | None = None


Factory = TypeVar("Factory", bound=Callable[..., ObjectiveTerm])
TERMS: Registry[Callable[..., ObjectiveTerm]] = Registry(
    "objective term", "medseg.objectives", error=MedsegError, listing="available"
)
"""Every registered objective term factory."""


def register_term(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering a term factory ``factory(context: TermContext, **params) -> ObjectiveTerm``.

    Args:
        name: the name used in ``loss.terms[].name``.

    Returns:
        The decorator.
    """

    def decorator(factory: Factory) -> Factory:
        TERMS.add(name, factory)
        return factory

    return decorator


def list_terms() -> list[str]:
    """Names of the registered objective terms, entry points included."""
    return TERMS.names()


def build_term(name: str, context: TermContext, params: dict[str, Any]) -> ObjectiveTerm:
    """Build a registered term.

    Args:
        name: term name.
        context: the run's context.
        params: the term's keyword arguments from the config.

    Returns:
        The term.

    Raises:
        MedsegError: unknown term or parameter (the message lists the valid ones).
    """
    factory = TERMS.get(name)
    accepted = [p for p in inspect.signature(factory).parameters if p != "context"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise MedsegError(
            f"objective term {name!r} got unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(accepted)}"
        )
    return factory(context, **params)
