from __future__ import annotations

import torch

from medseg.models import AttentionUNet
from medseg.models.layers.attention import AdditiveAttentionGate
from tests.models.contract import ModelContract


class TestAttentionUNet(ModelContract):
    model_name = "attention_unet"
    small_kwargs = {"base_channels": 4}
    reference_configs = [({"in_channels": 3, "num_classes": 1}, 34.88e6)]


def test_a_gate_on_every_skip() -> None:
    model = AttentionUNet(base_channels=4)
    gates = [m for m in model.modules() if isinstance(m, AdditiveAttentionGate)]
    assert [gate.skip[0].in_channels for gate in gates] == [32, 16, 8, 4]


def test_gate_coefficients_lie_in_unit_interval_and_scale_the_skip() -> None:
    torch.manual_seed(0)
    gate = AdditiveAttentionGate(gate_channels=6, skip_channels=4, inter_channels=3).eval()
    g, skip = torch.randn(2, 6, 8, 8), torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        alpha = gate.coefficients(g, skip)
        out = gate(g, skip)
    assert alpha.shape == (2, 1, 8, 8)
    assert ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(out, skip * alpha)
