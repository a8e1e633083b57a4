"""SelfReg and ReSeg stage 2 train on every registered model: two optimisation steps each, on a tiny configuration."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medseg.models import SegmentationModel, create_model, list_models
from medseg.objectives import DiceCELoss, ObjectiveTerm
from medseg.objectives.reseg import ReSegTerm, alignment_pairs
from medseg.objectives.selfreg import SelfRegTerm

# Small constructor arguments per model (the same as the models' contract tests where they have one); a model added
# to the registry without an entry here is skipped with a message asking for one.
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "asc_seg": {"channels": (4, 8, 12, 16)},
    "attention_unet": {"base_channels": 4},
    "resnet34_unet": {},  # no width setting: the full ResNet-34 U-Net, cheap at 64 px
    "resunetpp": {"filters": (8, 8, 16, 16, 32)},
    "swin_unet": {"img_size": 64, "embed_dim": 24, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4), "window_size": 4},
    "transunet": {
        "img_size": 32,
        "resnet_units": (1, 1, 1),
        "resnet_width": 32,
        "hidden_size": 48,
        "num_layers": 2,
        "num_heads": 4,
        "mlp_dim": 96,
        "head_channels": 64,
        "decoder_channels": (32, 16, 16, 8),
    },
    "unet": {"base_channels": 4},
    "unet_uct": {"base_channels": 4},
    "unetpp": {"filters": (4, 8, 8, 16, 16)},
    "utanet": {},  # idem
    "vmunet": {"dims": (8, 16, 32, 64), "depths": (1, 1, 1, 1), "depths_decoder": (1, 1, 1, 1), "d_state": 4},
}
CLASSES = 4


pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str, seed: int) -> SegmentationModel:
    if name not in TINY_KWARGS:
        pytest.skip(f"no tiny configuration for model {name!r}: add one to TINY_KWARGS in {__name__}")
    torch.manual_seed(seed)
    return create_model(name, in_channels=3, num_classes=CLASSES, **TINY_KWARGS[name])


def input_size(model: SegmentationModel, name: str) -> int:
    return TINY_KWARGS[name].get("img_size", max(32, model.output_stride))


def two_steps(model: SegmentationModel, term: ObjectiveTerm, size: int) -> list[float]:
    seg_loss = DiceCELoss(binary=False)
    optimizer = torch.optim.SGD([*model.parameters(), *term.parameters()], lr=0.01)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.rand(2, 3, size, size, generator=generator),
        "mask": torch.randint(0, CLASSES, (2, size, size), generator=generator),
    }
    model.train()
    term.train()
    values = []
    for _ in range(2):
        output = model.forward_features(batch["image"])
        value = term(output, batch)
        loss = seg_loss(output.logits, batch["mask"]) + value + sum(output.aux_losses.values(), torch.zeros(()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(value.item())
    return values


@pytest.mark.parametrize("name", list_models())
def test_selfreg_trains(name: str) -> None:
    model = build(name, 0)
    values = two_steps(model, SelfRegTerm(seed=0), input_size(model, name))
    assert all(v > 0 and torch.isfinite(torch.tensor(v)) for v in values), values


@pytest.mark.parametrize("name", list_models())
def test_reseg_stage_two_trains(name: str) -> None:
    teacher = build(name, 1)
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = build(name, 0)
    size = input_size(model, name)
    term = ReSegTerm(teacher, probe_size=size)
    with torch.no_grad():
        probe = model.eval().forward_features(torch.zeros(1, 3, size, size))
    assert len(alignment_pairs(probe, probe)) >= 3, "at least one resolution matched both ways, plus the bridge"
    values = two_steps(model, term, size)
    assert all(v > 0 and torch.isfinite(torch.tensor(v)) for v in values), values
    assert all(torch.equal(frozen[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
