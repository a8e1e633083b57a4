"""The contract test every model's test class subclasses (like smp's BaseModelTester).

A subclass sets ``model_name``, the small configuration used for fast checks and, where the paper or the
official code states one, the parameter count of the reference configuration.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from medseg.models import SegmentationModel, SegOutput, create_model, list_models, model_info


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ModelContract:
    """Shapes, backward, feature lists, stride handling and parameter count of one registered model."""

    model_name: ClassVar[str]
    small_kwargs: ClassVar[dict[str, Any]] = {}
    """Keyword arguments of a small, fast configuration (in_channels/num_classes are added by the tests)."""
    reference_configs: ClassVar[list[tuple[dict[str, Any], float]]] = []
    """(kwargs, stated parameter count) pairs checked to within ``param_tolerance``."""
    param_tolerance: ClassVar[float] = 1e-3
    in_channels: ClassVar[int] = 3
    num_classes: ClassVar[int] = 2

    def build(self, **overrides: Any) -> SegmentationModel:
        torch.manual_seed(0)
        kwargs = {"in_channels": self.in_channels, "num_classes": self.num_classes, **self.small_kwargs}
        kwargs.update(overrides)
        return create_model(self.model_name, **kwargs)

    def sizes(self, model: SegmentationModel) -> list[tuple[int, int]]:
        stride = model.output_stride
        base = max(1, 64 // stride)
        return [(stride * base, stride * base), (stride * (base + 1), stride * base)]

    def test_registered(self) -> None:
        assert self.model_name in list_models()
        assert model_info(self.model_name).paper

    def test_is_segmentation_model(self) -> None:
        model = self.build()
        assert isinstance(model, SegmentationModel)
        assert model.in_channels == self.in_channels
        assert model.num_classes == self.num_classes
        assert model.output_stride >= 1

    @pytest.mark.parametrize("num_classes", [1, 4])
    def test_forward_shapes(self, num_classes: int) -> None:
        model = self.build(num_classes=num_classes).eval()
        for height, width in self.sizes(model):
            with torch.no_grad():
                logits = model(torch.randn(2, self.in_channels, height, width))
            assert logits.shape == (2, num_classes, height, width)
            assert torch.isfinite(logits).all()

    def test_forward_features_contract(self) -> None:
        model = self.build().eval()
        height, width = self.sizes(model)[1]
        x = torch.randn(2, self.in_channels, height, width)
        with torch.no_grad():
            out = model.forward_features(x)
            logits = model(x)
        assert isinstance(out, SegOutput)
        torch.testing.assert_close(out.logits, logits)
        assert out.encoder and out.decoder and out.bottleneck is not None and out.final is not None
        for feature in [*out.encoder, out.bottleneck, *out.decoder, out.final]:
            assert feature.ndim == 4 and feature.shape[0] == 2
        encoder_heights = [f.shape[-2] for f in out.encoder]
        decoder_heights = [f.shape[-2] for f in out.decoder]
        assert encoder_heights == sorted(encoder_heights, reverse=True), "encoder must go shallow -> deep"
        assert decoder_heights == sorted(decoder_heights), "decoder must go deep -> shallow"
        assert out.bottleneck.shape[-2] <= min(encoder_heights)
        assert out.final.shape[-2:] == (height, width)
        for name, loss in out.aux_losses.items():
            assert loss.ndim == 0, name

    def test_backward_reaches_every_parameter(self) -> None:
        model = self.build().train()
        height, width = self.sizes(model)[0]
        out = model.forward_features(torch.randn(2, self.in_channels, height, width))
        loss = out.logits.square().mean() + sum(out.aux_losses.values(), torch.zeros(()))
        loss = loss + sum((a.square().mean() for a in out.aux_logits), torch.zeros(()))
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters without gradient: {missing[:5]}"

    def test_rejects_wrong_input(self) -> None:
        model = self.build()
        with pytest.raises(ValueError, match="input channels"):
            model.check_input(torch.zeros(1, self.in_channels + 1, 64, 64))
        if model.output_stride > 1:
            with pytest.raises(ValueError, match="divisible"):
                model.check_input(torch.zeros(1, self.in_channels, model.output_stride + 1, 64))

    def test_reference_parameter_count(self) -> None:
        if not self.reference_configs:
            pytest.skip(f"{self.model_name} has no stated parameter count")
        for kwargs, stated in self.reference_configs:
            with torch.device("meta"):
                model = create_model(self.model_name, **kwargs)
            actual = count_parameters(model)
            assert abs(actual - stated) / stated <= self.param_tolerance, (kwargs, actual, stated)
