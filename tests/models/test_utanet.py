"""UTANet (AAAI 2025) and its ResNet-34 U-Net stage 1, plus the torchvision-named ResNet-34 encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.models import UTANet, create_model
from medseg.models.encoders import EncoderWeightsError, ResNet, load_torchvision_resnet_weights, resnet34
from tests.models.contract import ModelContract

STAGE1 = 23.55e6
STAGE2 = 23.75e6
NAIVE_EXTRA = 522_536  # torchvision conv1 + bn1 + fc, registered but unused by the official model


class TestUTANet(ModelContract):
    model_name = "utanet"
    reference_configs = [
        ({"in_channels": 3, "num_classes": 1}, STAGE2),
        ({"in_channels": 3, "num_classes": 1, "use_tamosc": False}, STAGE1),
        ({"in_channels": 3, "num_classes": 1, "keep_unused_resnet_layers": True}, 24.28e6),
    ]


class TestResNet34UNet(ModelContract):
    model_name = "resnet34_unet"
    reference_configs = [
        ({"in_channels": 3, "num_classes": 1}, STAGE1),
        ({"in_channels": 3, "num_classes": 1, "keep_unused_resnet_layers": True}, 24.08e6),
    ]


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_exact_parameter_counts() -> None:
    with torch.device("meta"):
        stage1, stage2 = UTANet(use_tamosc=False), UTANet()
        naive = UTANet(keep_unused_resnet_layers=True)
    assert (count(stage1), count(stage2), count(naive)) == (23_552_769, 23_754_433, 23_754_433 + NAIVE_EXTRA)


def test_feature_shapes_for_an_input_divisible_by_16() -> None:
    model = UTANet(num_classes=3).eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 3, 48, 80))
    assert [tuple(f.shape[1:]) for f in out.encoder] == [(64, 48, 80), (64, 24, 40), (128, 12, 20), (256, 6, 10)]
    assert tuple(out.bottleneck.shape[1:]) == (512, 3, 5)
    assert [tuple(f.shape[1:]) for f in out.decoder] == [(256, 6, 10), (128, 12, 20), (64, 24, 40), (32, 48, 80)]
    assert out.logits.shape == (1, 3, 48, 80)


def test_balance_loss_is_reported_in_training_only() -> None:
    x = torch.randn(2, 3, 32, 32)
    model = UTANet().train()
    loss = model.forward_features(x).aux_losses["tamosc_balance"]
    assert loss.ndim == 0 and loss.requires_grad and 0 <= loss.item() <= 0.01 * 16
    with torch.no_grad():
        assert model.eval().forward_features(x).aux_losses == {}
    assert create_model("resnet34_unet").train().forward_features(x).aux_losses == {}
    assert create_model("utanet", balance_weight=0.5).tamosc.balance_weight == 0.5


def test_stage1_state_dict_loads_into_stage2() -> None:
    torch.manual_seed(0)
    stage1 = create_model("resnet34_unet")
    stage2 = create_model("utanet")
    result = stage2.load_state_dict(stage1.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("tamosc.") for k in result.missing_keys)


def save_resnet(module: torch.nn.Module, path: Path) -> Path:
    torch.save(module.state_dict(), path)
    return path


def test_resnet34_has_torchvision_names_and_size() -> None:
    state = resnet34().state_dict()
    assert count(resnet34()) == 21_797_672
    assert len(state) == 218
    assert tuple(state["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert "layer4.2.bn2.num_batches_tracked" in state and "layer1.0.downsample.0.weight" not in state
    assert tuple(state["fc.weight"].shape) == (1000, 512)
    assert count(resnet34(num_classes=None, stem=False)) == 21_797_672 - NAIVE_EXTRA


def test_resnet_weights_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = resnet34().eval()
    path = save_resnet(source, tmp_path / "resnet34.pth")
    torch.manual_seed(1)
    target = resnet34().eval()
    x = torch.randn(1, 3, 64, 64)
    assert not torch.equal(source(x), target(x))
    load_torchvision_resnet_weights(target, path)
    torch.testing.assert_close(target(x), source(x), atol=0, rtol=0)


def test_resnet_weights_tolerate_old_checkpoints_and_drop_the_stem(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = resnet34()
    old = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(old, path)
    headless = resnet34(num_classes=None, stem=False)
    load_torchvision_resnet_weights(headless, path)
    torch.testing.assert_close(headless.layer3[2].conv2.weight, source.layer3[2].conv2.weight, atol=0, rtol=0)


def test_utanet_loads_a_pretrained_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = resnet34()
    path = save_resnet(source, tmp_path / "resnet34.pth")
    model = UTANet(pretrained_encoder=str(path))
    torch.testing.assert_close(model.encoder.layer4[0].conv1.weight, source.layer4[0].conv1.weight, atol=0, rtol=0)
    full = create_model("resnet34_unet", pretrained_encoder=str(path), keep_unused_resnet_layers=True)
    torch.testing.assert_close(full.encoder.fc.weight, source.fc.weight, atol=0, rtol=0)


def test_resnet_weights_errors(tmp_path: Path) -> None:
    model = resnet34()
    with pytest.raises(EncoderWeightsError, match="not found"):
        load_torchvision_resnet_weights(model, tmp_path / "absent.pth")

    renamed = {k.replace("layer1.", "block1."): v for k, v in model.state_dict().items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(EncoderWeightsError, match=r"missing keys: layer1\.0\.conv1\.weight.*unexpected keys: block1"):
        load_torchvision_resnet_weights(model, tmp_path / "renamed.pth")

    save_resnet(ResNet(in_channels=1), tmp_path / "gray.pth")
    with pytest.raises(EncoderWeightsError, match=r"wrong shape.*conv1\.weight \(64, 1, 7, 7\) != \(64, 3, 7, 7\)"):
        load_torchvision_resnet_weights(model, tmp_path / "gray.pth")

    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(EncoderWeightsError, match="state dict"):
        load_torchvision_resnet_weights(model, tmp_path / "list.pth")

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderWeightsError, match="cannot read"):
        load_torchvision_resnet_weights(model, tmp_path / "junk.pth")

    with pytest.raises(EncoderWeightsError, match="not found"):
        UTANet(pretrained_encoder=str(tmp_path / "absent.pth"))
