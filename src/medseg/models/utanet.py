"""UTANet: Task-Adaptive Mixture of Skip Connections (Luo et al., AAAI 2025), and its ResNet-34 U-Net stage 1.

Official code: AshleyLuo001/UTANet (``utanet/UTANet.py``). A ResNet-34 encoder whose ImageNet stem is replaced by
a stride-1 Conv3x3 + BN + ReLU and a 2x2 max-pool, a light decoder (one transposed convolution and one 3x3
convolution per stage) and a two-layer 1x1 head. Stage 1 trains it with plain skips (registered here as
``resnet34_unet``); stage 2 adds TA-MoSC (:class:`medseg.models.skips.TaMoSC`) on the four skips (``utanet``).

Differences from the official module, all deliberate:
- ``forward`` returns logits; the official module applies a sigmoid when ``n_classes == 1``.
- The BEU loss (already multiplied by ``balance_weight``) goes to ``SegOutput.aux_losses["tamosc_balance"]`` in
  training mode instead of being returned next to the output.
- The torchvision ResNet's ``conv1``/``bn1``/``fc`` are not registered by default (see ``keep_unused_resnet_layers``).
- Resizes use explicit target sizes, so any input divisible by 16 works (the spec's "divisible by 32" is stricter
  than the network needs: the deepest feature is at 1/16 of the input).
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.encoders import load_torchvision_resnet_weights, resnet34
from medseg.models.registry import register_model
from medseg.models.skips import BALANCE_LOSS, TaMoSC, UnusedExpertPolicy, apply_skips

__all__ = ["UTANet", "resnet34_unet"]

_PAPER = "Luo et al., UTANet, AAAI 2025 (AshleyLuo001/UTANet)"
_SKIP_CHANNELS = (64, 64, 128, 256)


class _UpBlock(nn.Module):
    """ConvTranspose(k2 s2, in -> in/2) + BN + ReLU, concatenate ``[skip, up]``, one Conv3x3 + BN + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        half = in_channels // 2
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )
        self.conv = nn.Sequential(
            nn.Conv2d(half + skip_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))


@register_model(
    "utanet",
    paper=_PAPER,
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=23_750_000,
)
class UTANet(SegmentationModel):
    """UTANet with a ResNet-34 encoder and optional TA-MoSC skips.

    Feature maps for an ``H x W`` input: encoder ``e1`` (64, H), ``e2`` (64, H/2), ``e3`` (128, H/4), ``e4``
    (256, H/8), bottleneck ``e5`` (512, H/16); decoder 256, 128, 64, 32 channels at H/8 .. H.

    Parameter counts with 3 input channels and 1 class: 23,552,769 (stage 1) and 23,754,433 (with TA-MoSC), the
    "used" 23.55 M / 23.75 M of the specification. The official module also registers torchvision's ImageNet stem
    and classifier (522,536 parameters it never uses), hence its naive 24.08 M / 24.28 M.

    Args:
        in_channels: image channels.
        num_classes: logit channels (1 for a binary task; the official sigmoid is left to the loss/predictor).
        use_tamosc: replace the four skips by TA-MoSC (stage 2); ``False`` is the plain ResNet-34 U-Net (stage 1).
            Named ``pretrained`` in the official code.
        num_experts: TA-MoSC shared experts.
        top_k: experts mixed per image and skip.
        balance_weight: factor of the BEU loss reported in ``aux_losses["tamosc_balance"]`` (0.01 is an assumption;
            the official repository has no training code).
        unused_expert_policy: training-time handling of experts no image selected, see
            :class:`~medseg.models.skips.TaMoSC` (``"official"`` reproduces the official code).
        pretrained_encoder: local torchvision-format ResNet-34 ``.pth`` to initialise ``layer1`` .. ``layer4`` from
            (ImageNet weights in the official setting); random initialisation when ``None``. Nothing is downloaded.
        keep_unused_resnet_layers: also register the torchvision ResNet's ImageNet stem (``encoder.conv1``,
            ``encoder.bn1``) and classifier (``encoder.fc``) as the official model does. They never take part in the
            forward pass and get no gradient (DDP then needs ``find_unused_parameters``); the option only exists to
            reproduce the official naive parameter count and state-dict layout.
    """

    output_stride = 16

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        use_tamosc: bool = True,
        num_experts: int = 4,
        top_k: int = 2,
        balance_weight: float = 0.01,
        unused_expert_policy: UnusedExpertPolicy = "official",
        pretrained_encoder: str | None = None,
        keep_unused_resnet_layers: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder = resnet34(num_classes=1000 if keep_unused_resnet_layers else None, stem=keep_unused_resnet_layers)
        if pretrained_encoder is not None:
            load_torchvision_resnet_weights(self.encoder, pretrained_encoder)
        self.tamosc: TaMoSC | None = None
        if use_tamosc:
            self.tamosc = TaMoSC(
                _SKIP_CHANNELS,
                fuse_channels=64,
                num_experts=num_experts,
                top_k=top_k,
                reference_index=1,
                balance_weight=balance_weight,
                unused_expert_policy=unused_expert_policy,
            )
        self.up5 = _UpBlock(512, 256, 256)
        self.up4 = _UpBlock(256, 128, 128)
        self.up3 = _UpBlock(128, 64, 64)
        self.up2 = _UpBlock(64, 64, 32)
        self.head = nn.Sequential(
            nn.Conv2d(32, 16, kernel_size=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, num_classes, kernel_size=1),
        )

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run UTANet.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 16.

        Returns:
            Logits; encoder ``[e1, e2, e3, e4]`` (H .. H/8, the raw encoder features, not the TA-MoSC skips);
            bottleneck ``e5`` (H/16); decoder ``[d4, d3, d2, d1]`` (H/8 .. H); ``final`` = ``d1``. In training mode
            with TA-MoSC, ``aux_losses["tamosc_balance"]`` holds the weighted BEU loss.
        """
        e1 = self.stem(x)
        e2 = self.encoder.layer1(self.maxpool(e1))
        e3 = self.encoder.layer2(e2)
        e4 = self.encoder.layer3(e3)
        e5 = self.encoder.layer4(e4)
        encoder = [e1, e2, e3, e4]
        skips, aux_losses = (
            (encoder, {}) if self.tamosc is None else apply_skips(self.tamosc, encoder, BALANCE_LOSS, self.training)
        )
        d4 = self.up5(e5, skips[3])
        d3 = self.up4(d4, skips[2])
        d2 = self.up3(d3, skips[1])
        d1 = self.up2(d2, skips[0])
        return SegOutput(
            logits=self.head(d1),
            encoder=encoder,
            bottleneck=e5,
            decoder=[d4, d3, d2, d1],
            final=d1,
            aux_losses=aux_losses,
        )


@register_model(
    "resnet34_unet",
    paper=f"ResNet-34 U-Net, stage 1 of {_PAPER}",
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=23_550_000,
)
def resnet34_unet(
    in_channels: int = 3,
    num_classes: int = 1,
    pretrained_encoder: str | None = None,
    keep_unused_resnet_layers: bool = False,
) -> UTANet:
    """UTANet's stage-1 network: the ResNet-34 U-Net with plain skips (``UTANet(use_tamosc=False)``).

    Args:
        in_channels: image channels.
        num_classes: logit channels.
        pretrained_encoder: local torchvision-format ResNet-34 ``.pth`` for the encoder, or ``None``.
        keep_unused_resnet_layers: register the unused torchvision stem and classifier, see :class:`UTANet`.

    Returns:
        The model; its state dict loads non-strictly into ``utanet`` (only TA-MoSC is new there).
    """
    return UTANet(
        in_channels=in_channels,
        num_classes=num_classes,
        use_tamosc=False,
        pretrained_encoder=pretrained_encoder,
        keep_unused_resnet_layers=keep_unused_resnet_layers,
    )
