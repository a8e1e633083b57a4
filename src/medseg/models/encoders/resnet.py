"""ResNet with BasicBlocks (He et al., CVPR 2016), laid out with torchvision's module and parameter names.

The names (``conv1``, ``bn1``, ``layer1`` .. ``layer4`` with blocks ``conv1/bn1/conv2/bn2/downsample.0/.1``, ``fc``)
follow ``torchvision.models.resnet`` so that a torchvision-format ``.pth`` state dict (for example the ImageNet
ResNet-34 weights) loads through :func:`load_torchvision_resnet_weights` without torchvision installed. UTANet
(Luo et al., AAAI 2025; official code AshleyLuo001/UTANet) uses ResNet-34 ``layer1`` .. ``layer4`` as its encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from medseg.errors import MedsegError

__all__ = ["BasicBlock", "EncoderWeightsError", "ResNet", "load_torchvision_resnet_weights", "resnet34"]

_OPTIONAL_PREFIXES = ("conv1.", "bn1.", "fc.")
"""Top-level parts of a torchvision ResNet that a headless or stemless :class:`ResNet` does not register."""


class EncoderWeightsError(MedsegError, ValueError):
    """A weights file that is missing, unreadable or does not match the encoder."""


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (torchvision ``BasicBlock`` names).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first convolution; a 1x1 projection (``downsample``) is added when the stride or the
            width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """BasicBlock ResNet with torchvision names; the ImageNet stem and the classifier are optional.

    Args:
        layers: number of blocks in ``layer1`` .. ``layer4`` (``(3, 4, 6, 3)`` is ResNet-34).
        in_channels: image channels of the stem (used only when ``stem`` is true).
        num_classes: width of the ``fc`` classifier; ``None`` registers no ``avgpool``/``fc``.
        stem: register the ImageNet stem ``conv1`` (7x7 s2) + ``bn1`` + ReLU + ``maxpool`` (3x3 s2).

    Random initialisation follows torchvision: Kaiming-normal (fan-out) convolutions, BatchNorm weight 1 and bias 0.
    """

    widths = (64, 128, 256, 512)

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        in_channels: int = 3,
        num_classes: int | None = 1000,
        stem: bool = True,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet needs four stage depths, got {list(layers)}")
        self.has_stem = stem
        if stem:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        previous = 64
        for index, (depth, width) in enumerate(zip(layers, self.widths, strict=True), start=1):
            first_stride = 1 if index == 1 else 2
            blocks = [BasicBlock(previous, width, first_stride)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            previous = width
        self.fc: nn.Linear | None = None
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(previous, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def stages(self) -> list[nn.Sequential]:
        """``[layer1, layer2, layer3, layer4]``."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the registered parts in order: stem (if any), ``layer1`` .. ``layer4``, pooled classifier (if any).

        Args:
            x: image batch (with a stem) or a 64-channel feature map (without one).

        Returns:
            Class logits ``(B, num_classes)`` with a classifier, else the ``layer4`` feature map.
        """
        if self.has_stem:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        if self.fc is not None:
            x = self.fc(torch.flatten(self.avgpool(x), 1))
        return x


def resnet34(in_channels: int = 3, num_classes: int | None = 1000, stem: bool = True) -> ResNet:
    """Build a randomly initialised ResNet-34 (``layers=(3, 4, 6, 3)``); see :class:`ResNet` for the arguments."""
    return ResNet((3, 4, 6, 3), in_channels=in_channels, num_classes=num_classes, stem=stem)


def _describe(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_torchvision_resnet_weights(module: ResNet, path: str | Path) -> None:
    """Load a torchvision-format ResNet state dict from a local file into ``module``.

    Keys of parts that ``module`` does not register (the ``conv1``/``bn1`` stem, the ``fc`` classifier) are dropped;
    BatchNorm ``num_batches_tracked`` buffers absent from old checkpoints are tolerated. Every other key must match
    by name and shape.

    Args:
        module: the ResNet to fill in place.
        path: ``.pth`` file holding a plain state dict (tensor per key), e.g. torchvision's ``resnet34-*.pth``.

    Raises:
        EncoderWeightsError: the file is missing or unreadable, is not a state dict, or its keys or shapes do not
            match ``module``; the message names the offending keys.
    """
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"ResNet weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise EncoderWeightsError(f"cannot read ResNet weights from {path}: {error}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderWeightsError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")

    expected = module.state_dict()
    unexpected = [k for k in state if k not in expected and not k.startswith(_OPTIONAL_PREFIXES)]
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        problems = []
        if missing:
            problems.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_describe(unexpected)}")
        raise EncoderWeightsError(
            f"{path} is not a torchvision-format ResNet state dict for this encoder; {'; '.join(problems)}"
        )
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if mismatched:
        raise EncoderWeightsError(f"{path} has tensors of the wrong shape (file != model): {_describe(mismatched)}")
    module.load_state_dict({k: state.get(k, v) for k, v in expected.items()})
