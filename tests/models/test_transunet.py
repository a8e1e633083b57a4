"""TransUNet R50-ViT-B/16 (Chen et al. 2021): contract, reference size and features, ``R50+ViT-B_16.npz`` loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.models import TransUNet, create_model
from medseg.models.encoders import EncoderWeightsError
from medseg.models.transunet import load_transunet_pretrained
from tests.models.contract import ModelContract

TINY = {
    "img_size": 64,
    "resnet_units": (1, 2, 1),
    "resnet_width": 32,
    "hidden_size": 48,
    "num_layers": 2,
    "num_heads": 4,
    "mlp_dim": 96,
    "head_channels": 64,
    "decoder_channels": (32, 16, 16, 8),
}


class TestTransUNet(ModelContract):
    model_name = "transunet"
    small_kwargs = TINY
    reference_configs = [({"in_channels": 3, "num_classes": 9}, 105.28e6)]


def test_reference_features_at_224() -> None:
    """The resolution-matched features of docs/methods/reseg_unet.md#other-backbones, shapes only (meta device)."""
    with torch.device("meta"):
        model = create_model("transunet", in_channels=1, num_classes=9).eval()
        out = model.forward_features(torch.empty(2, 1, 224, 224))
    assert model.output_stride == 16
    assert [tuple(f.shape[1:]) for f in out.encoder] == [(64, 112, 112), (256, 56, 56), (512, 28, 28)]
    assert tuple(out.bottleneck.shape[1:]) == (768, 14, 14)
    assert [tuple(f.shape[1:]) for f in out.decoder] == [(256, 28, 28), (128, 56, 56), (64, 112, 112), (16, 224, 224)]
    assert tuple(out.final.shape[1:]) == (16, 224, 224)
    assert tuple(out.logits.shape) == (2, 9, 224, 224)


def test_block1_skip_is_zero_padded() -> None:
    """The un-padded max-pool leaves H/4 - 1 rows; the skip gets one zero row and column at the bottom right."""
    model = TransUNet(num_classes=2, **TINY).eval()
    with torch.no_grad():
        skip = model.forward_features(torch.randn(1, 3, 64, 80)).encoder[1]
    assert skip.shape[-2:] == (16, 20)
    assert skip[..., -1, :].abs().sum() == 0 and skip[..., :, -1].abs().sum() == 0
    assert skip[..., :-1, :-1].abs().sum() > 0


def test_one_channel_input_is_repeated() -> None:
    torch.manual_seed(0)
    gray = TransUNet(in_channels=1, num_classes=2, **TINY).eval()
    rgb = TransUNet(in_channels=3, num_classes=2, **TINY).eval()
    rgb.load_state_dict(gray.state_dict())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)))


@pytest.mark.parametrize("n_skip", [0, 1, 2])
def test_fewer_skips(n_skip: int) -> None:
    model = TransUNet(num_classes=2, n_skip=n_skip, **TINY).eval()
    assert [b.conv1[0].in_channels for b in model.decoder.blocks] == [
        64 + (256 if n_skip > 0 else 0),
        32 + (128 if n_skip > 1 else 0),
        16 + (32 if n_skip > 2 else 0),
        16,
    ]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def to_npz_arrays(model: TransUNet, class_token: bool = True) -> dict[str, np.ndarray]:
    """The reverse of the official ``load_from``: ``model``'s encoder under the ``R50+ViT-B_16.npz`` key names."""
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    heads = model.transformer.encoder.layer[0].attn.num_heads
    arrays: dict[str, np.ndarray] = {}

    def conv(name: str, key: str) -> None:
        arrays[key] = state[name].transpose(2, 3, 1, 0)  # OIHW -> HWIO

    def norm(name: str, key: str) -> None:
        arrays[f"{key}/scale"], arrays[f"{key}/bias"] = state[f"{name}.weight"], state[f"{name}.bias"]

    resnet = "transformer.embeddings.hybrid_model."
    conv(resnet + "root.conv.weight", "conv_root/kernel")
    norm(resnet + "root.gn", "gn_root")
    for name in state:
        if name.startswith(resnet + "body.") and name.endswith(".weight"):
            block, unit, module = name.removeprefix(resnet + "body.").removesuffix(".weight").split(".")
            theirs = {"downsample": "conv_proj"}.get(module, module)
            if module.startswith(("conv", "downsample")):
                conv(name, f"{block}/{unit}/{theirs}/kernel")
            else:
                norm(name.removesuffix(".weight"), f"{block}/{unit}/{module}")
    conv("transformer.embeddings.patch_embeddings.weight", "embedding/kernel")
    arrays["embedding/bias"] = state["transformer.embeddings.patch_embeddings.bias"]
    position = state["transformer.embeddings.position_embeddings"]
    if class_token:
        position = np.concatenate([np.full_like(position[:, :1], 7.0), position], axis=1)
    arrays["Transformer/posembed_input/pos_embedding"] = position
    norm("transformer.encoder.encoder_norm", "Transformer/encoder_norm")
    for index in range(len(model.transformer.encoder.layer)):
        ours, theirs = f"transformer.encoder.layer.{index}.", f"Transformer/encoderblock_{index}/"
        hidden = state[ours + "attn.query.weight"].shape[0]
        for module in ("query", "key", "value"):
            key = f"{theirs}MultiHeadDotProductAttention_1/{module}"
            arrays[f"{key}/kernel"] = state[f"{ours}attn.{module}.weight"].T.reshape(hidden, heads, -1)
            arrays[f"{key}/bias"] = state[f"{ours}attn.{module}.bias"].reshape(heads, -1)
        key = f"{theirs}MultiHeadDotProductAttention_1/out"
        arrays[f"{key}/kernel"] = state[f"{ours}attn.out.weight"].T.reshape(heads, -1, hidden)
        arrays[f"{key}/bias"] = state[f"{ours}attn.out.bias"]
        for module, dense in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
            arrays[f"{theirs}MlpBlock_3/{dense}/kernel"] = state[f"{ours}ffn.{module}.weight"].T
            arrays[f"{theirs}MlpBlock_3/{dense}/bias"] = state[f"{ours}ffn.{module}.bias"]
        norm(ours + "attention_norm", f"{theirs}LayerNorm_0")
        norm(ours + "ffn_norm", f"{theirs}LayerNorm_2")
    arrays["cls"] = np.zeros((1, 1, hidden), dtype=np.float32)
    arrays["head/kernel"] = np.zeros((hidden, 10), dtype=np.float32)
    return arrays


def test_npz_round_trip(tmp_path: Path) -> None:
    """Every encoder tensor comes back; the decoder and the head keep their random initialisation."""
    torch.manual_seed(1)
    source = TransUNet(num_classes=2, **TINY)
    with torch.no_grad():
        source.transformer.embeddings.position_embeddings.normal_()
    np.savez(tmp_path / "r50_vit.npz", **to_npz_arrays(source))
    torch.manual_seed(0)
    scratch = TransUNet(num_classes=2, **TINY)
    torch.manual_seed(0)
    loaded = create_model("transunet", num_classes=2, pretrained=str(tmp_path / "r50_vit.npz"), **TINY)
    expected, fresh = source.state_dict(), scratch.state_dict()
    for key, value in loaded.state_dict().items():
        if key.startswith("transformer."):
            torch.testing.assert_close(value, expected[key], msg=key)
        else:
            torch.testing.assert_close(value, fresh[key], msg=key)
    source.eval()
    loaded.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x).bottleneck, source.forward_features(x).bottleneck)


def test_position_embeddings_are_resized_like_scipy_zoom(tmp_path: Path) -> None:
    """A 6x6 (+ class token) pre-training grid into a 4x4 model: linear ``ndimage.zoom`` as the official loader."""
    model = TransUNet(num_classes=2, **TINY)
    arrays = to_npz_arrays(model, class_token=False)
    grid = np.random.default_rng(0).standard_normal((6, 6, 48)).astype(np.float32)
    arrays["Transformer/posembed_input/pos_embedding"] = np.concatenate(
        [np.ones((1, 1, 48), np.float32), grid.reshape(1, 36, 48)], axis=1
    )
    np.savez(tmp_path / "grid6.npz", **arrays)
    load_transunet_pretrained(model, tmp_path / "grid6.npz")
    expected = ndimage.zoom(grid, (4 / 6, 4 / 6, 1), order=1).reshape(1, 16, 48)
    actual = model.transformer.embeddings.position_embeddings.detach().numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_npz_errors_are_explicit(tmp_path: Path) -> None:
    model = TransUNet(num_classes=2, **TINY)
    with pytest.raises(EncoderWeightsError, match="not found"):
        load_transunet_pretrained(model, tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    with pytest.raises(EncoderWeightsError, match="cannot read"):
        load_transunet_pretrained(model, tmp_path / "junk.npz")
    arrays = to_npz_arrays(model)
    del arrays["block2/unit1/conv_proj/kernel"], arrays["Transformer/encoderblock_1/LayerNorm_2/scale"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(EncoderWeightsError, match=r"missing keys: block2/unit1/conv_proj/kernel, Transformer/encoder"):
        load_transunet_pretrained(model, tmp_path / "partial.npz")
    np.savez(tmp_path / "wide.npz", **to_npz_arrays(TransUNet(num_classes=2, **{**TINY, "hidden_size": 64})))
    with pytest.raises(EncoderWeightsError, match="wrong size"):
        load_transunet_pretrained(model, tmp_path / "wide.npz")


def test_invalid_configurations_are_named() -> None:
    with pytest.raises(ValueError, match="n_skip"):
        TransUNet(n_skip=4)
    with pytest.raises(ValueError, match="img_size must be divisible by 16"):
        TransUNet(img_size=200)
