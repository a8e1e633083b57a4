"""Swin-UNet (Cao et al. 2021): contract, reference size and features, window layout, Swin-T weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.models import SwinUNet, create_model
from medseg.models.encoders import EncoderWeightsError
from medseg.models.swin_unet import load_swin_pretrained
from medseg.models.swin_unet.blocks import _partition, _shift_mask
from tests.models.contract import ModelContract

TINY = {"img_size": 64, "embed_dim": 24, "depths": (2, 1, 1, 1), "num_heads": (1, 2, 2, 4), "window_size": 4}


class TestSwinUNet(ModelContract):
    model_name = "swin_unet"
    small_kwargs = TINY
    reference_configs = [({"in_channels": 3, "num_classes": 9}, 27.17e6)]


def test_reference_features_at_224() -> None:
    """The resolution-matched features of docs/methods/reseg_unet.md#other-backbones /
    docs/methods/selfreg_unet.md#instrumented-networks, shapes only (meta device)."""
    with torch.device("meta"):
        model = create_model("swin_unet", in_channels=1, num_classes=9).eval()
        out = model.forward_features(torch.empty(2, 1, 224, 224))
    assert model.output_stride == 32
    assert [tuple(f.shape[1:]) for f in out.encoder] == [(96, 56, 56), (192, 28, 28), (384, 14, 14)]
    assert tuple(out.bottleneck.shape[1:]) == (768, 7, 7)
    assert [tuple(f.shape[1:]) for f in out.decoder] == [(384, 14, 14), (192, 28, 28), (96, 56, 56)]
    assert tuple(out.final.shape[1:]) == (96, 224, 224)
    assert tuple(out.logits.shape) == (2, 9, 224, 224)
    # every Swin block's output, as the official SelfReg model returns them (enc_feats / dec_feats)
    assert [[tuple(f.shape[1:]) for f in stage] for stage in out.encoder_blocks] == [
        [(96, 56, 56)] * 2,
        [(192, 28, 28)] * 2,
        [(384, 14, 14)] * 2,
        [(768, 7, 7)] * 2,
    ]
    assert [[tuple(f.shape[1:]) for f in stage] for stage in out.decoder_blocks] == [
        [(384, 14, 14)] * 2,
        [(192, 28, 28)] * 2,
        [(96, 56, 56)] * 2,
    ]


def test_stage_features_are_the_last_blocks() -> None:
    torch.manual_seed(0)
    out = create_model("swin_unet", in_channels=3, num_classes=2, **TINY).forward_features(torch.randn(1, 3, 64, 64))
    assert all(f is blocks[-1] for f, blocks in zip(out.encoder, out.encoder_blocks[:-1], strict=True))
    assert all(f is blocks[-1] for f, blocks in zip(out.decoder, out.decoder_blocks, strict=True))
    assert [len(blocks) for blocks in out.encoder_blocks] == [2, 1, 1, 1]
    assert not torch.equal(out.encoder_blocks[0][0], out.encoder_blocks[0][1])


def window_layout(model: SwinUNet) -> list[list[tuple[int, int]]]:
    return [[(b.window_size, b.shift_size) for b in stage.blocks] for stage in model.layers]


def test_window_layout_follows_the_official_rule() -> None:
    """A stage whose map is not larger than the window uses one unshifted window of the map's size."""
    with torch.device("meta"):
        reference = SwinUNet()
        tiny = SwinUNet(**TINY)
    assert window_layout(reference) == [[(7, 0), (7, 3)]] * 3 + [[(7, 0), (7, 0)]]
    assert window_layout(tiny) == [[(4, 0), (4, 2)], [(4, 0)], [(4, 0)], [(2, 0)]]
    assert [[(b.window_size, b.shift_size) for b in s.blocks] for s in tiny.layers_up[1:]] == window_layout(tiny)[
        -2::-1
    ]


@pytest.mark.parametrize(("height", "width", "window", "shift"), [(14, 14, 7, 3), (8, 12, 4, 2)])
def test_shift_mask_matches_the_region_construction(height: int, width: int, window: int, shift: int) -> None:
    """Swin's mask: label the 3 x 3 regions of the rolled map by slices, partition, -100 between labels."""
    labels = torch.zeros(1, height, width, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for index, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        labels[:, rows, cols] = index
    windows = _partition(labels, window)[0, :, :, 0]
    expected = (windows[:, None, :] - windows[:, :, None] != 0).float() * -100.0
    torch.testing.assert_close(_shift_mask(height, width, window, shift, torch.device("cpu")), expected)


def test_maps_not_divisible_by_the_window_are_padded() -> None:
    model = SwinUNet(num_classes=2, **{**TINY, "window_size": 3}).eval()
    assert window_layout(model)[0] == [(3, 0), (3, 1)]
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 3, 96, 64))
    assert out.logits.shape == (1, 2, 96, 64)
    assert [tuple(f.shape[-2:]) for f in out.encoder] == [(24, 16), (12, 8), (6, 4)]
    assert torch.isfinite(out.logits).all()


def test_one_channel_input_is_repeated() -> None:
    torch.manual_seed(0)
    gray = SwinUNet(in_channels=1, num_classes=2, **TINY).eval()
    rgb = SwinUNet(in_channels=3, num_classes=2, **TINY).eval()
    rgb.load_state_dict(gray.state_dict())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)))


def save_as_swin_checkpoint(model: SwinUNet, path: Path) -> dict[str, torch.Tensor]:
    """Write ``model``'s encoder as a Swin ImageNet checkpoint (official names, classifier and derived buffers)."""
    encoder = {
        k: v.clone() for k, v in model.state_dict().items() if k.startswith(("patch_embed.", "layers.", "norm."))
    }
    extras = {
        "head.weight": torch.randn(1000, model.norm.normalized_shape[0]),
        "head.bias": torch.zeros(1000),
        "layers.0.blocks.0.attn.relative_position_index": torch.zeros(16, 16, dtype=torch.long),
        "layers.0.blocks.1.attn_mask": torch.zeros(16, 16, 16),
    }
    torch.save({"model": {**encoder, **extras}}, path)
    return encoder


def test_pretrained_encoder_and_mirrored_decoder(tmp_path: Path) -> None:
    """Encoder tensors load by name; each decoder stage gets the blocks of its mirrored encoder stage."""
    torch.manual_seed(1)
    source = SwinUNet(num_classes=2, **TINY)
    encoder = save_as_swin_checkpoint(source, tmp_path / "swin.pth")
    torch.manual_seed(0)
    scratch = SwinUNet(num_classes=2, **TINY)
    torch.manual_seed(0)
    loaded = create_model("swin_unet", num_classes=2, pretrained=str(tmp_path / "swin.pth"), **TINY)
    state, fresh = loaded.state_dict(), scratch.state_dict()
    for key, value in encoder.items():
        torch.testing.assert_close(state[key], value)
    mirrored = 0
    for key, value in state.items():
        if key.startswith("layers_up.") and ".blocks." in key:
            stage, rest = key.removeprefix("layers_up.").split(".", 1)
            torch.testing.assert_close(value, encoder[f"layers.{3 - int(stage)}.{rest}"])
            mirrored += 1
        elif key not in encoder:
            torch.testing.assert_close(value, fresh[key])
    assert mirrored == sum(
        1 for k in encoder if k.startswith(("layers.0.blocks", "layers.1.blocks", "layers.2.blocks"))
    )


def test_pretrained_shape_mismatch_is_skipped_with_a_warning(tmp_path: Path) -> None:
    save_as_swin_checkpoint(SwinUNet(num_classes=2, **TINY), tmp_path / "swin.pth")
    model = SwinUNet(num_classes=2, **{**TINY, "window_size": 3})
    with pytest.warns(UserWarning, match="random initialisation"):
        skipped = load_swin_pretrained(model, tmp_path / "swin.pth")
    assert skipped and all(k.endswith("relative_position_bias_table") for k in skipped)
    assert "layers.0.blocks.0.attn.relative_position_bias_table" in skipped


def test_pretrained_errors_are_explicit(tmp_path: Path) -> None:
    model = SwinUNet(num_classes=2, **TINY)
    with pytest.raises(EncoderWeightsError, match="not found"):
        load_swin_pretrained(model, tmp_path / "missing.pth")
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    with pytest.raises(EncoderWeightsError, match="under the key 'model'"):
        load_swin_pretrained(model, tmp_path / "plain.pth")
    save_as_swin_checkpoint(SwinUNet(num_classes=2, **{**TINY, "depths": (2, 1, 2, 1)}), tmp_path / "deep.pth")
    with pytest.raises(EncoderWeightsError, match=r"unexpected keys: layers\.2\.blocks\.1"):
        load_swin_pretrained(model, tmp_path / "deep.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderWeightsError, match="cannot read"):
        load_swin_pretrained(model, tmp_path / "junk.pth")


def test_invalid_configurations_are_named() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SwinUNet(embed_dim=24, num_heads=(5, 2, 2, 4))
    with pytest.raises(ValueError, match="img_size must be divisible by 32"):
        SwinUNet(img_size=100)
