"""Parameter counts: the true count and the count ``thop`` reports.

Papers in this field report ``thop.profile`` parameter counts (ASC-Seg's comparison table,
docs/methods/asc_seg.md#published-numbers), and thop does not count every parameter. :func:`thop_style_count` reproduces
thop's rule (``thop.profile``, 0.1.x) without depending on thop:

1. Only modules whose **exact** type (not a subclass) has a rule in thop's table count: the
   :data:`THOP_COUNTED_TYPES` (convolutions, transposed convolutions, BatchNorm, SyncBatchNorm, LayerNorm,
   InstanceNorm, PReLU, Linear, the RNN family, and parameter-free activations, pooling, dropout, upsampling).
   Such a module counts with all its parameters, and the walk does not look inside it.
2. Every other module counts nothing itself; the walk descends into its children. So parameters held directly by a
   custom module are skipped: Mamba's ``A_log`` and ``D``, SS2D's ``x_proj_weight``, ``dt_projs_weight``,
   ``dt_projs_bias``, ``A_logs`` and ``Ds``, a deformable convolution's ``weight`` (medseg's or torchvision's
   ``DeformConv2d``). So are GroupNorm, Embedding, MultiheadAttention and Linear subclasses, which have no rule.
   ``nn.Sequential`` has a (zero) rule but is always descended into.
3. A module counts only if it runs during the profiled forward pass (thop reads the parameters in a forward hook).
   Modules that are never called (dead branches) count 0. ``mamba_ssm.Mamba`` on its fused CUDA path reads the
   weights of ``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj`` and ``out_proj`` directly and calls none of them, so
   a whole Mamba block counts 0: :data:`THOP_OPAQUE_TYPES` lists the medseg modules treated that way.
4. The walk starts at the children of the model: the model object itself never counts (thop reports 0 for a bare
   ``nn.Linear``). A module reachable under two different parents counts twice.

Check against docs/methods/asc_seg.md#parameter-counts: ASC-Seg's [8, 16, 24, 32] model has 0.2224 M parameters and a
thop count of 218,688 (the paper's "0.2186 M"); the 3,720 in between are its Mamba blocks (252 + 552 + 900 + 1296) and
its depthwise deformable-conv weights (9 · (8 + 16 + 24 + 32)). VM-UNet's 27.43 M less its SS2D raw parameters (5.39 M)
is the table's 22.04 M.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.models.layers.mamba import Mamba

__all__ = ["THOP_COUNTED_TYPES", "THOP_OPAQUE_TYPES", "count_parameters", "thop_style_count"]

THOP_COUNTED_TYPES: frozenset[type[nn.Module]] = frozenset(
    {
        nn.ZeroPad2d,
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.SyncBatchNorm,
        nn.LayerNorm,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
        nn.PReLU,
        nn.Softmax,
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.AdaptiveMaxPool1d,
        nn.AdaptiveMaxPool2d,
        nn.AdaptiveMaxPool3d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
        nn.Linear,
        nn.Dropout,
        nn.Upsample,
        nn.UpsamplingBilinear2d,
        nn.UpsamplingNearest2d,
        nn.RNNCell,
        nn.GRUCell,
        nn.LSTMCell,
        nn.RNN,
        nn.GRU,
        nn.LSTM,
        nn.PixelShuffle,
    }
)
"""Module types with a rule in thop's table (``thop.profile.register_hooks``), less ``nn.Sequential``."""

THOP_OPAQUE_TYPES: tuple[type[nn.Module], ...] = (Mamba,)
"""Module types counted as 0 with everything inside them: their reference implementation runs fused kernels that
call none of their sublayers, so thop's hooks never fire (``mamba_ssm.Mamba``, reproduced by medseg's Mamba)."""


def count_parameters(model: nn.Module) -> int:
    """Return the true number of parameters, ``sum(p.numel())`` over shared-once parameters, trainable or not.

    Args:
        model: any module.

    Returns:
        The parameter count.
    """
    return sum(p.numel() for p in model.parameters())


def _called_modules(model: nn.Module, example_input: torch.Tensor) -> set[nn.Module]:
    """Run ``model`` once (eval mode, no grad) and return the modules of counted types that were called."""
    called: set[nn.Module] = set()
    hooks = [
        module.register_forward_hook(lambda module, _args, _output: called.add(module))
        for module in model.modules()
        if type(module) in THOP_COUNTED_TYPES
    ]
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    return called


def _walk(module: nn.Module, called: set[nn.Module] | None) -> int:
    total = 0
    for child in module.children():
        if isinstance(child, THOP_OPAQUE_TYPES):
            continue
        if type(child) in THOP_COUNTED_TYPES:
            if called is None or child in called:
                total += count_parameters(child)
        else:
            total += _walk(child, called)
    return total


def thop_style_count(model: nn.Module, example_input: torch.Tensor | None = None) -> int:
    """Count parameters the way ``thop.profile`` does (the rule is in the module docstring).

    Args:
        model: the model (works on the meta device when ``example_input`` is ``None``).
        example_input: when given, the model is run once on it (eval mode, no grad, modes restored afterwards) and
            modules that are not called count 0, exactly as in thop. When ``None``, every module is assumed to run.

    Returns:
        The thop-style parameter count.
    """
    called = None if example_input is None else _called_modules(model, example_input)
    return _walk(model, called)
