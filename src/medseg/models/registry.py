"""Model registry: register architectures by name and build them from configs.

Built-in models register themselves when :mod:`medseg.models` is imported. External packages add models through
the ``medseg.models`` entry-point group: each entry point's name is the model name and its value a
:class:`~medseg.models.base.SegmentationModel` subclass or factory function (registered by
:func:`register_model` when its module is imported, or as it is).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any, TypeVar

from medseg.errors import ModelArgumentError, UnknownModelError
from medseg.models.base import SegmentationModel
from medseg.registry import Registry

__all__ = ["MODELS", "ModelInfo", "create_model", "list_models", "model_info", "register_model"]

ENTRY_POINT_GROUP = "medseg.models"

Factory = TypeVar("Factory", bound=Callable[..., SegmentationModel])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture.

    Attributes:
        name: registry name.
        factory: class or function that builds the model.
        paper: short citation of the source paper or code.
        default_kwargs: keyword arguments used for the reference configuration (``medseg models``).
        reference_params: parameter count of the reference configuration stated by the paper or official code.
    """

    name: str
    factory: Callable[..., SegmentationModel]
    paper: str = ""
    default_kwargs: dict[str, Any] | None = None
    reference_params: int | None = None


def _from_entry_point(entry_point: EntryPoint, factory: object) -> ModelInfo:
    """The :class:`ModelInfo` of a model an entry point names (its value stands for the citation)."""
    if not callable(factory):
        raise TypeError(f"{entry_point.value} is not a model class or factory function")
    return ModelInfo(entry_point.name, factory, paper=entry_point.value)


MODELS: Registry[ModelInfo] = Registry(
    "model",
    ENTRY_POINT_GROUP,
    from_entry_point=_from_entry_point,
    error=UnknownModelError,
    listing="registered models",
)
"""Every registered model (built-in ones register when :mod:`medseg.models` is imported)."""


def register_model(
    name: str,
    *,
    paper: str = "",
    default_kwargs: dict[str, Any] | None = None,
    reference_params: int | None = None,
) -> Callable[[Factory], Factory]:
    """Class or function decorator that registers a model under ``name``.

    Args:
        name: unique registry name (lower case, underscores).
        paper: short citation shown by ``medseg models``.
        default_kwargs: keyword arguments of the reference configuration.
        reference_params: official parameter count of that configuration.

    Returns:
        The decorator, which returns the factory unchanged.
    """

    def decorator(factory: Factory) -> Factory:
        MODELS.add(name, ModelInfo(name, factory, paper, default_kwargs, reference_params))
        return factory

    return decorator


def list_models() -> list[str]:
    """Return the sorted names of every registered model, entry points included."""
    return MODELS.names()


def model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of ``name``.

    Raises:
        UnknownModelError: with the list of valid names when ``name`` is unknown.
    """
    return MODELS.get(name)


def create_model(name: str, **kwargs: Any) -> SegmentationModel:
    """Build a registered model.

    Args:
        name: registry name, see :func:`list_models`.
        **kwargs: constructor arguments (``in_channels``, ``num_classes`` and model-specific options).

    Returns:
        The model, randomly initialised.

    Raises:
        UnknownModelError: unknown model name.
        ModelArgumentError: an argument the model does not accept; the message lists the accepted ones.
    """
    factory = model_info(name).factory
    signature = inspect.signature(factory)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown and not accepts_any:
        valid = ", ".join(p for p in signature.parameters if p != "self")
        raise ModelArgumentError(
            f"model {name!r} got unknown argument(s) {', '.join(unknown)}; valid arguments: {valid}"
        )
    return factory(**kwargs)
