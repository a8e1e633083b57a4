from __future__ import annotations

import torch

from medseg.models import UNetPlusPlus
from tests.models.contract import ModelContract

SMALL_FILTERS = (4, 8, 8, 16, 16)


class TestUNetPlusPlus(ModelContract):
    model_name = "unetpp"
    small_kwargs = {"filters": SMALL_FILTERS}
    reference_configs = [
        ({"in_channels": 3, "num_classes": 1}, 9.16e6),
        ({"in_channels": 3, "num_classes": 1, "deep_supervision": True}, 9.16e6),
    ]


class TestUNetPlusPlusDeepSupervision(TestUNetPlusPlus):
    small_kwargs = {"filters": SMALL_FILTERS, "deep_supervision": True}


def test_deep_supervision_gives_three_full_resolution_aux_logits() -> None:
    model = UNetPlusPlus(in_channels=3, num_classes=2, filters=SMALL_FILTERS, deep_supervision=True).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        out = model.forward_features(x)
        plain = UNetPlusPlus(in_channels=3, num_classes=2, filters=SMALL_FILTERS).forward_features(x)
    assert len(out.aux_logits) == 3
    assert all(aux.shape == (1, 2, 32, 48) for aux in out.aux_logits)
    assert plain.aux_logits == []


def test_nested_nodes_and_decoder_diagonal() -> None:
    model = UNetPlusPlus(filters=SMALL_FILTERS).eval()
    assert sorted(model.nodes) == sorted(f"{i}_{j}" for i in range(5) for j in range(5 - i))
    assert model.nodes["0_4"][0].in_channels == 4 * 4 + 8
    with torch.no_grad():
        out = model.forward_features(torch.zeros(1, 3, 32, 32))
    assert [f.shape[1:] for f in out.decoder] == [(16, 4, 4), (8, 8, 8), (8, 16, 16), (4, 32, 32)]
    assert out.final is out.decoder[-1]
