"""Choose a model's skip connections by name (``model.params.skip`` in a config): the skip-module registry.

A skip module is built by a registered factory ``factory(channels, **params)`` from the channels of the skip
features (shallow to deep) and ``model.params.skip_params``; its ``forward(features)`` returns the new skips (same
shapes) and an auxiliary loss, or ``None``. Built-in modules register themselves when :mod:`medseg.models.skips`
is imported; external packages add theirs through the ``medseg.skips`` entry-point group.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any, TypeVar

import torch
from torch import nn

from medseg.errors import ModelArgumentError
from medseg.registry import Registry

__all__ = [
    "SKIPS",
    "IdentitySkips",
    "SkipConnections",
    "SkipInfo",
    "apply_skips",
    "build_skips",
    "identity_skips",
    "register_skip",
]

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class SkipInfo:
    """A registered skip module.

    Attributes:
        factory: builds the module from the skip channels and ``skip_params``.
        loss_name: key of the module's auxiliary loss in ``SegOutput.aux_losses``.
    """

    factory: Callable[..., nn.Module]
    loss_name: str


def _from_entry_point(entry_point: EntryPoint, factory: object) -> SkipInfo:
    """The :class:`SkipInfo` of a factory an entry point names; its loss is reported under the skip's name."""
    if not callable(factory):
        raise TypeError(f"{entry_point.value} is not a skip module class or factory function")
    return SkipInfo(factory, entry_point.name)


SKIPS: Registry[SkipInfo] = Registry("skip kind", "medseg.skips", from_entry_point=_from_entry_point, listing="valid")
"""Every registered skip module."""


def register_skip(name: str, *, loss_name: str | None = None) -> Callable[[Factory], Factory]:
    """Class or function decorator registering a skip module factory under ``name`` (``model.params.skip``).

    Args:
        name: the registry name.
        loss_name: key of the module's auxiliary loss in ``SegOutput.aux_losses``; the skip's name when unset.

    Returns:
        The decorator, which returns the factory unchanged.
    """

    def decorator(factory: Factory) -> Factory:
        SKIPS.add(name, SkipInfo(factory, name if loss_name is None else loss_name))
        return factory

    return decorator


class IdentitySkips(nn.Module):
    """Plain skips: the encoder features go to the decoder unchanged."""

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        return list(features), None


@register_skip("identity")
def identity_skips(channels: Sequence[int]) -> IdentitySkips:
    """The plain skips (``model.params.skip: identity``, the default).

    Args:
        channels: channels of the skip features (unused: the features pass unchanged).

    Returns:
        The module.
    """
    del channels  # the features pass unchanged
    return IdentitySkips()


def apply_skips(
    module: nn.Module, features: Sequence[torch.Tensor], loss_name: str, training: bool
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Run a skip module and gate its auxiliary loss: reported in training only, when the module has one.

    Args:
        module: a skip module, ``forward(features) -> (skips, loss or None)``.
        features: the encoder skip features, shallow to deep.
        loss_name: key of the loss in ``SegOutput.aux_losses``.
        training: whether the model is in training mode.

    Returns:
        The new skips and ``{loss_name: loss}`` (empty in evaluation mode or without a loss).
    """
    skips, loss = module(features)
    return skips, ({loss_name: loss} if loss is not None and training else {})


class SkipConnections(nn.Module):
    """Wraps a skip module so models share one call: new skips plus the auxiliary losses to report.

    Args:
        module: the skip module (:class:`IdentitySkips`, :class:`~medseg.models.skips.tamosc.TaMoSC` ...).
        loss_name: key of the module's loss in ``SegOutput.aux_losses``.
    """

    def __init__(self, module: nn.Module, loss_name: str) -> None:
        super().__init__()
        self.module = module
        self.loss_name = loss_name

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Transform the skip features.

        Args:
            features: the encoder skip features, shallow to deep.

        Returns:
            The new skips (same shapes) and ``{loss_name: loss}`` in training mode when the module has a loss.
        """
        return apply_skips(self.module, features, self.loss_name, self.training)


def build_skips(kind: str, channels: Sequence[int], params: dict[str, Any] | None = None) -> SkipConnections:
    """Build the skip connections of a model.

    Args:
        kind: a registered skip name: ``identity`` (plain concatenation skips), ``tamosc`` (UTANet's mixture of
            skip experts) or one an installed package adds.
        channels: channels of the skip features, shallow to deep.
        params: keyword arguments of the skip module (e.g. ``num_experts``, ``top_k``, ``balance_weight``).

    Returns:
        The skip module.

    Raises:
        UnknownNameError: unknown kind (the message lists the registered ones).
        ModelArgumentError: a parameter the skip module does not accept (the message lists the accepted ones).
    """
    info = SKIPS.get(kind)
    params = dict(params or {})
    parameters = list(inspect.signature(info.factory).parameters.values())[1:]  # the first takes the channels
    accepted = [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(set(params) - set(accepted))
    if unknown and len(accepted) == len(parameters):
        raise ModelArgumentError(
            f"skip kind {kind!r} got unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(accepted) or 'none'}"
        )
    return SkipConnections(info.factory(list(channels), **params), info.loss_name)
