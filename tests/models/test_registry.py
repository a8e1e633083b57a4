from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import medseg.registry
from medseg.errors import UnknownModelError
from medseg.models import SegmentationModel, SegOutput, create_model, list_models, register_model, registry


class _Tiny(SegmentationModel):
    def __init__(self, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.conv = torch.nn.Conv2d(in_channels, num_classes, 1)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        return SegOutput(logits=self.conv(x))


def test_entry_point_models_are_listed_and_built(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(name="external_tiny", value="external_pkg:Tiny", load=lambda: _Tiny)
    monkeypatch.setattr(medseg.registry, "entry_points", lambda group: [fake] if group == "medseg.models" else [])
    monkeypatch.setattr(registry.MODELS, "_loaded", False)
    monkeypatch.setattr(registry.MODELS, "_entries", dict(registry.MODELS._entries))
    assert "external_tiny" in list_models()
    model = create_model("external_tiny", in_channels=2, num_classes=3)
    assert model(torch.zeros(1, 2, 4, 4)).shape == (1, 3, 4, 4)


def test_duplicate_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry.MODELS, "_entries", dict(registry.MODELS._entries))
    register_model("tiny_once", paper="test")(_Tiny)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_once")(type("Other", (_Tiny,), {}))


def test_unknown_model_error_is_user_facing() -> None:
    with pytest.raises(UnknownModelError) as info:
        create_model("no_such_model")
    assert str(info.value).startswith("unknown model 'no_such_model'; registered models:")
