"""The bad-input matrix: every bad input a user may give a ``medseg`` verb, one row each, on the real command line.

A row is an input, the verb given it, and the outcome:

* refused: the exit code (2; ``medseg data check`` and a skipped ``medseg predict`` image document 1), ONE line
  naming the file (or config key) and the problem (``error:`` on stderr; a ``problems`` entry of
  ``medseg data check --json``; ``skipped:`` for predict), no traceback, and for ``medseg train``, no training
  started;
* accepted as documented: exit code 0 and the documented result checked on values (masks predicted from a
  converted image equal those of the image it is documented to equal, mask sizes, label values).

The files are written per row in ``tmp_path``. ``evaluate`` and ``predict`` rows use one tiny model trained once
per module (``tiny_run``) and, to compare predictions of equivalent inputs, ``probe`` checkpoints: a seeded
untrained model of the same configuration whose ``eval.threshold`` splits a noise image's probabilities in half,
so a prediction changes with any change of the input.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner, Result

from medseg.cli import app
from medseg.config import config_from_dict
from medseg.engine import build_model
from medseg.engine.checkpoint import read_checkpoint
from medseg.inference import Predictor
from tests.data.folders import rgb_image, square_mask, write_image

runner = CliRunner()

STEM = "im2"  # the damaged case of a data check or train row
SIZE = (16, 16)  # images of a data check or train row
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # documented RGB -> grey weights (ITU-R 601)


# --- context: where a row writes, and the trained run and probes it may use ------------------------------------


@dataclass
class Ctx:
    """What a row's setup gets: its folder, the damaged case's stem, and the module's trained run on demand."""

    tmp: Path
    request: pytest.FixtureRequest
    stem: str = STEM
    marker: Path | None = None  # a file that must not exist after the command (a Python tag would create it)

    @property
    def run(self) -> Path:
        return self.request.getfixturevalue("tiny_run")

    @property
    def best(self) -> Path:
        return self.run / "checkpoints" / "best.ckpt"

    def probe(self, in_channels: int = 3) -> Path:
        return self.request.getfixturevalue("probes")[in_channels]


Damage = Callable[[Path, str], None]  # changes the files of case <stem> in a dataset folder
Setup = Callable[[Ctx], list[str]]  # writes a row's files and returns the command line
Check = Callable[[Ctx, Result], None]  # the documented result of an accepted row


@dataclass(frozen=True)
class Row:
    """One input given to one verb, refused (``says`` in the one line) or accepted (``check``).

    Attributes:
        name: the input.
        verb: the command.
        setup: writes the files and returns the command line.
        says: texts the one refusal line contains (``{stem}`` is the damaged case); ``None`` for an accepted row.
        code: the exit code of a refusal.
        check: what an accepted row's outcome must show.
        xfail: why a refusal is not yet one line, naming the module that owns the fix.
    """

    name: str
    verb: str
    setup: Setup
    says: tuple[str, ...] | None = None
    code: int = 2
    check: Check | None = None
    xfail: str | None = None

    @property
    def id(self) -> str:
        return f"{self.verb.replace(' ', '-')}:{self.name.replace(' ', '-')}"


def refused(name: str, verb: str, setup: Setup, *says: str, code: int = 2, xfail: str | None = None) -> Row:
    return Row(name, verb, setup, says, code, xfail=xfail)


def accepted(name: str, verb: str, setup: Setup, check: Check) -> Row:
    return Row(name, verb, setup, None, 0, check)


# --- dataset folders and their damages ---------------------------------------------------------------------------


def write_folder(root: Path, count: int = 6, size: tuple[int, int] = SIZE) -> Path:
    """``root/images`` (distinct RGB images) + ``root/masks`` (0/255 squares), cases ``im0``..."""
    for index in range(count):
        write_image(root / "images" / f"im{index}.png", rgb_image(size, index))
        write_image(root / "masks" / f"im{index}.png", square_mask(size))
    return root


def image_of(root: Path, stem: str) -> Path:
    return next((root / "images").glob(f"{stem}.*"))


def replace_image(root: Path, stem: str, name: str, array: np.ndarray) -> Path:
    """Put ``array`` as the image of case ``stem`` (any former file removed) and give it a fitting mask."""
    image_of(root, stem).unlink()
    write_image(root / "masks" / f"{stem}.png", square_mask(array.shape[:2]))
    return write_image(root / "images" / name, array)


def truncated(suffix: str) -> Damage:
    """The image cut short (its last third missing), at a size no other image has (no duplicate check reads it)."""

    def damage(root: Path, stem: str) -> None:
        path = replace_image(root, stem, f"{stem}{suffix}", rgb_image((21, 27), 99))
        data = path.read_bytes()
        path.write_bytes(data[: 2 * len(data) // 3])

    return damage


def not_an_image(root: Path, stem: str) -> None:
    image_of(root, stem).write_bytes(b"this is not an image\n")


def nan_tiff(root: Path, stem: str) -> None:
    height, width = np.asarray(Image.open(root / "masks" / f"{stem}.png")).shape
    pixels = np.full((height, width), 100.0, np.float32)
    pixels[2, 3] = np.nan
    replace_image(root, stem, f"{stem}.tif", pixels)


def mask_too_small(root: Path, stem: str) -> None:
    height, width = np.asarray(Image.open(root / "masks" / f"{stem}.png")).shape
    write_image(root / "masks" / f"{stem}.png", square_mask((height - 4, width)))


def mask_value_128(root: Path, stem: str) -> None:
    mask = np.asarray(Image.open(root / "masks" / f"{stem}.png")).copy()
    mask[-3:] = 128
    write_image(root / "masks" / f"{stem}.png", mask)


def no_mask(root: Path, stem: str) -> None:
    (root / "masks" / f"{stem}.png").unlink()


def no_image(root: Path, stem: str) -> None:
    image_of(root, stem).unlink()


def sixteen_bit(root: Path, stem: str) -> None:
    grey = rgb_image(SIZE, 7)[..., 0]
    replace_image(root, stem, f"{stem}.png", grey.astype(np.uint16) * 257)


def palette_mask(root: Path, stem: str) -> None:
    """Palette indices 0/1 whose colours (black, dark red) would read 0/38 if converted to grey."""
    mask = Image.fromarray((square_mask(SIZE) > 0).astype(np.uint8), mode="L").convert("P")
    mask.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)
    mask.save(root / "masks" / f"{stem}.png")


def rgba_copy(root: Path, stem: str) -> None:
    """Case ``stem`` becomes the RGB pixels of case ``im0`` with a varying alpha channel."""
    alpha = np.random.default_rng(5).integers(0, 256, (*SIZE, 1), dtype=np.uint8)
    replace_image(root, stem, f"{stem}.png", np.concatenate([rgb_image(SIZE, 0), alpha], axis=2))


def grey_copy(root: Path, stem: str) -> None:
    """Case ``stem`` becomes a grey image; case ``im0`` the same picture stored as RGB."""
    grey = rgb_image(SIZE, 8)[..., 0]
    replace_image(root, stem, f"{stem}.png", grey)
    write_image(root / "images" / "im0.png", np.repeat(grey[..., None], 3, axis=2))


def unchanged(root: Path, stem: str) -> None:
    del root, stem  # the folder as written


def no_files(root: Path, stem: str) -> None:
    del stem  # every image and mask
    for path in root.rglob("*.png"):
        path.unlink()


def removed(root: Path, stem: str) -> None:
    del stem  # the whole folder
    shutil.rmtree(root)


def all_grey(root: Path, stem: str) -> None:
    del stem  # every image
    for index, path in enumerate(sorted((root / "images").iterdir())):
        write_image(path, rgb_image(SIZE, 20 + index)[..., 0])


# --- command lines -----------------------------------------------------------------------------------------------


def write_config(ctx: Ctx, root: Path | str, text: str = "") -> Path:
    """A tiny image_folder training config (16 px, base_channels 2, 1 epoch) reading ``root``."""
    config = ctx.tmp / "config.yaml"
    config.write_text(
        f"name: x\noutput_dir: {ctx.tmp / 'runs'}\n"
        f"data: {{dataset: image_folder, root: {root}, image_size: 16, val_fraction: 0.2, test_fraction: 0.2, "
        "batch_size: 2, num_workers: 0}\n"
        "train: {epochs: 1, progress_bar: false}\nmodel: {params: {base_channels: 2}}\n" + text
    )
    return config


def check_folder(damage: Damage) -> Setup:
    def setup(ctx: Ctx) -> list[str]:
        root = write_folder(ctx.tmp / "data")
        damage(root, ctx.stem)
        return ["data", "check", str(root), "--json"]

    return setup


def train_folder(damage: Damage, *overrides: str) -> Setup:
    def setup(ctx: Ctx) -> list[str]:
        root = write_folder(ctx.tmp / "data")
        damage(root, ctx.stem)
        return ["train", str(write_config(ctx, root)), "--no-evaluate", *overrides]

    return setup


def train_config(text: str, *overrides: str) -> Setup:
    """Train on a good folder with ``text`` added to the config file and ``overrides`` (``{tmp}`` in them is the
    row's folder, which holds an empty folder ``empty``)."""

    def setup(ctx: Ctx) -> list[str]:
        root = write_folder(ctx.tmp / "data")
        (ctx.tmp / "empty").mkdir()
        ctx.marker = ctx.tmp / "executed"
        config = write_config(ctx, root, text.replace("{tmp}", str(ctx.tmp)))
        return ["train", str(config), "--no-evaluate", *(o.replace("{tmp}", str(ctx.tmp)) for o in overrides)]

    return setup


def evaluate_damaged(damage: Damage) -> Setup:
    """Evaluate a copy of the trained run whose data folder (a copy too) has one test case damaged."""

    def setup(ctx: Ctx) -> list[str]:
        run, data = ctx.tmp / "run", ctx.tmp / "data"
        shutil.copytree(ctx.run, run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        shutil.copytree(config["data"]["root"], data)
        config["data"]["root"] = str(data)
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        ctx.stem = json.loads((run / "splits.json").read_text())["splits"]["test"][0]
        damage(data, ctx.stem)
        return ["evaluate", str(run)]

    return setup


def predict_inputs(
    images: dict[str, np.ndarray | Image.Image], checkpoint: Callable[[Ctx], Path] = lambda ctx: ctx.best
) -> Setup:
    """Predict a folder of images (name -> pixels, or a Pillow image saved as it is) into ``<tmp>/out``."""

    def setup(ctx: Ctx) -> list[str]:
        (ctx.tmp / "in").mkdir()
        for name, pixels in images.items():
            if isinstance(pixels, Image.Image):
                pixels.save(ctx.tmp / "in" / name)
            else:
                write_image(ctx.tmp / "in" / name, pixels)
        return ["predict", str(checkpoint(ctx)), str(ctx.tmp / "in"), str(ctx.tmp / "out")]

    return setup


def predict_damaged(damage: Damage) -> Setup:
    """Predict a good image and a damaged one (``im2``), as ``damage`` leaves it in a dataset folder."""

    def setup(ctx: Ctx) -> list[str]:
        root = write_folder(ctx.tmp / "data", count=3, size=(24, 30))
        damage(root, ctx.stem)
        shutil.copytree(root / "images", ctx.tmp / "in")
        (ctx.tmp / "in" / "im1.png").unlink()
        return ["predict", str(ctx.best), str(ctx.tmp / "in"), str(ctx.tmp / "out")]

    return setup


def empty_folder(verb: str) -> Setup:
    """Give ``verb`` an empty folder: the dataset of ``data check``, the input of ``predict``."""

    def setup(ctx: Ctx) -> list[str]:
        (ctx.tmp / "empty").mkdir()
        if verb == "predict":
            return ["predict", str(ctx.best), str(ctx.tmp / "empty"), str(ctx.tmp / "out")]
        return ["data", "check", str(ctx.tmp / "empty"), "--json"]

    return setup


def binary_config(ctx: Ctx) -> list[str]:
    """A config file holding a PNG's bytes."""
    config = write_config(ctx, ctx.tmp)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(config, format="PNG")
    return ["train", str(config)]


def with_checkpoint(verb: str, make: Callable[[Ctx], Path]) -> Setup:
    """Give ``verb`` a checkpoint made by ``make``: ``evaluate --checkpoint``, ``predict`` or train's
    ``model.checkpoint``."""

    def setup(ctx: Ctx) -> list[str]:
        checkpoint = make(ctx)
        if verb == "evaluate":
            return ["evaluate", str(ctx.run), "--checkpoint", str(checkpoint)]
        if verb == "predict":
            write_image(ctx.tmp / "in" / "a.png", rgb_image((20, 24)))
            return ["predict", str(checkpoint), str(ctx.tmp / "in"), str(ctx.tmp / "out")]
        return train_config("", f"model.checkpoint={checkpoint}")(ctx)

    return setup


# --- checkpoints -------------------------------------------------------------------------------------------------


def run_config(ctx: Ctx) -> dict[str, Any]:
    return read_checkpoint(ctx.best)["hyper_parameters"]["config"]


def save_model(path: Path, config: dict[str, Any], weights_of: dict[str, Any] | None = None) -> Path:
    """A medseg-style checkpoint: the state of a fresh model of ``weights_of`` (default: ``config``) and
    ``config``."""
    torch.manual_seed(0)
    model = build_model(config_from_dict(weights_of or config))
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"config": config}}, path)
    return path


def smaller_unet(ctx: Ctx) -> Path:
    config = run_config(ctx)
    config["model"]["params"]["base_channels"] = 2
    return save_model(ctx.tmp / "small.ckpt", config)


def attention_unet(ctx: Ctx) -> Path:
    config = run_config(ctx)
    config["model"] = {**config["model"], "name": "attention_unet", "params": {"base_channels": 4}}
    return save_model(ctx.tmp / "attention.ckpt", config)


def weights_unlike_config(ctx: Ctx) -> Path:
    """A checkpoint whose weights are a smaller U-Net than the configuration stored with them."""
    config = run_config(ctx)
    smaller = json.loads(json.dumps(config))
    smaller["model"]["params"]["base_channels"] = 2
    return save_model(ctx.tmp / "mixed.ckpt", config, weights_of=smaller)


def plain_state_dict(ctx: Ctx) -> Path:
    torch.save(torch.nn.Conv2d(3, 1, 3).state_dict(), ctx.tmp / "other.pt")
    return ctx.tmp / "other.pt"


def truncated_checkpoint(ctx: Ctx) -> Path:
    data = ctx.best.read_bytes()
    (ctx.tmp / "cut.ckpt").write_bytes(data[: len(data) // 2])
    return ctx.tmp / "cut.ckpt"


def missing_checkpoint(ctx: Ctx) -> Path:
    return ctx.tmp / "nowhere.ckpt"


# --- documented results of accepted rows -------------------------------------------------------------------------


def check_report(**expected: Any) -> Check:
    """``medseg data check --json`` found no problem and reports ``expected`` (e.g. label values)."""

    def check(ctx: Ctx, result: Result) -> None:
        del ctx
        report = json.loads(result.stdout)
        assert report["ok"] and report["problems"] == [], report
        for key, value in expected.items():
            assert report[key] == value, (key, report[key])

    return check


def trained(ctx: Ctx, result: Result) -> None:
    del result
    assert (ctx.tmp / "runs" / "x" / "checkpoints" / "last.ckpt").is_file()


def mask(ctx: Ctx, name: str) -> np.ndarray:
    return np.asarray(Image.open(ctx.tmp / "out" / f"{name}.png"))


def same_masks(same: str, control: str) -> Check:
    """``ref`` and ``same`` get the same mask, ``control`` (what a wrong reading would give) another one."""

    def check(ctx: Ctx, result: Result) -> None:
        assert f"wrote {len(list((ctx.tmp / 'in').iterdir()))} mask(s)" in result.stdout
        reference = mask(ctx, "ref")
        assert 0 < np.count_nonzero(reference) < reference.size  # the probe's mask depends on the input
        np.testing.assert_array_equal(mask(ctx, same), reference)
        assert not np.array_equal(mask(ctx, control), reference)

    return check


def mask_sizes(**sizes: tuple[int, int]) -> Check:
    def check(ctx: Ctx, result: Result) -> None:
        del result
        for name, size in sizes.items():
            labels = mask(ctx, name)
            assert labels.shape == size and set(np.unique(labels).tolist()) <= {0, 255}

    return check


NOISE = rgb_image((24, 30), 11)
GREY = NOISE[..., 0]
ALPHA = np.random.default_rng(12).integers(0, 256, (24, 30, 1), dtype=np.uint8)
LUMINANCE = NOISE.astype(np.float32) @ LUMA
PALETTE = Image.fromarray(NOISE).quantize(64)  # a P-mode image


def probe(in_channels: int) -> Callable[[Ctx], Path]:
    return lambda ctx: ctx.probe(in_channels)


# --- the matrix --------------------------------------------------------------------------------------------------

ROWS = [
    # corrupt / unreadable image
    refused("truncated PNG", "data check", check_folder(truncated(".png")), "{stem}.png", "truncated", code=1),
    refused("truncated PNG", "train", train_folder(truncated(".png")), "{stem}.png", "truncated"),
    refused(
        "truncated PNG no cache",
        "train",
        train_folder(truncated(".png"), "data.cache=false"),
        "{stem}.png",
        "truncated",
    ),
    refused(
        "truncated JPEG no cache",
        "train",
        train_folder(truncated(".jpg"), "data.cache=false"),
        "{stem}.jpg",
        "truncated",
    ),
    refused("not an image", "data check", check_folder(not_an_image), "{stem}.png", "cannot read image", code=1),
    refused("not an image", "train", train_folder(not_an_image), "{stem}.png", "cannot read image"),
    refused("truncated PNG", "evaluate", evaluate_damaged(truncated(".png")), "{stem}.png", "truncated"),
    refused("truncated PNG", "predict", predict_damaged(truncated(".png")), "{stem}.png", "truncated", code=1),
    refused("binary config file", "train", binary_config, "config.yaml", "UTF-8"),
    # image/mask size mismatch
    refused("size mismatch", "data check", check_folder(mask_too_small), "{stem}.png", "16x12", code=1),
    refused("size mismatch", "train", train_folder(mask_too_small), "{stem}.png", "16x12"),
    refused("size mismatch", "evaluate", evaluate_damaged(mask_too_small), "{stem}.png", "40x36"),
    # unexpected mask values
    refused("mask value 128", "data check", check_folder(mask_value_128), "{stem}.png", "128", code=1),
    refused("mask value 128", "train", train_folder(mask_value_128), "{stem}.png", "128", "data.label_map"),
    refused("mask value 128", "evaluate", evaluate_damaged(mask_value_128), "{stem}.png", "128"),
    # 16-bit PNG: divided by 257 onto the 8-bit scale
    accepted("16-bit PNG", "data check", check_folder(sixteen_bit), check_report(label_values=[0, 255])),
    accepted("16-bit PNG", "train", train_folder(sixteen_bit), trained),
    accepted(
        "16-bit PNG = its 8-bit values",
        "predict",
        predict_inputs(
            {"ref.png": GREY, "sixteen.png": GREY.astype(np.uint16) * 257, "clipped.png": np.full_like(GREY, 255)},
            probe(3),
        ),
        same_masks("sixteen", "clipped"),
    ),
    # palette (P-mode) mask: its palette indices are the values
    accepted("palette mask", "data check", check_folder(palette_mask), check_report(label_values=[0, 1, 255])),
    accepted("palette mask", "train", train_folder(palette_mask), trained),
    accepted(
        "palette image = its colours",
        "predict",
        predict_inputs(
            {
                "ref.png": np.asarray(PALETTE.convert("RGB")),
                "palette.png": PALETTE,
                "indices.png": np.asarray(PALETTE),
            },
            probe(3),
        ),
        same_masks("palette", "indices"),
    ),
    # RGBA image: alpha dropped
    accepted("RGBA image", "data check", check_folder(rgba_copy), check_report(duplicates=[["im0", STEM]])),
    accepted("RGBA image", "train", train_folder(rgba_copy), trained),
    accepted(
        "RGBA image = its RGB",
        "predict",
        predict_inputs(
            {
                "ref.png": NOISE,
                "rgba.png": np.concatenate([NOISE, ALPHA], axis=2),
                "blended.png": (NOISE * (ALPHA / 255.0)).astype(np.uint8),
            },
            probe(3),
        ),
        same_masks("rgba", "blended"),
    ),
    # grey where RGB is expected: repeated to 3 channels; RGB where grey is expected: luminance
    accepted("grey image", "data check", check_folder(grey_copy), check_report(duplicates=[["im0", STEM]])),
    accepted("grey images, RGB model", "train", train_folder(all_grey), trained),
    accepted(
        "grey image, RGB model = grey RGB",
        "predict",
        predict_inputs(
            {
                "ref.png": np.repeat(GREY[..., None], 3, axis=2),
                "grey.png": GREY,
                "red.png": np.stack([GREY, 0 * GREY, 0 * GREY], axis=2),
            },
            probe(3),
        ),
        same_masks("grey", "red"),
    ),
    accepted("RGB images, grey model", "train", train_folder(unchanged, "data.in_channels=1"), trained),
    accepted(
        "RGB image, grey model = luminance",
        "predict",
        predict_inputs(
            {"ref.png": NOISE, "luminance.tif": LUMINANCE, "red.tif": NOISE[..., 0].astype(np.float32)},
            probe(1),
        ),
        same_masks("luminance", "red"),
    ),
    # float TIFF with NaN
    refused("float TIFF with NaN", "data check", check_folder(nan_tiff), "{stem}.tif", "NaN", code=1),
    refused("float TIFF with NaN", "train", train_folder(nan_tiff), "{stem}.tif", "NaN"),
    refused("float TIFF with NaN", "evaluate", evaluate_damaged(nan_tiff), "{stem}.tif", "NaN"),
    refused("float TIFF with NaN", "predict", predict_damaged(nan_tiff), "{stem}.tif", "NaN", code=1),
    # empty folder
    refused("empty folder", "data check", empty_folder("data check"), "empty", "is empty", code=1),
    refused("empty folder", "train", train_config("", "data.dataset=auto", "data.root={tmp}/empty"), "is empty"),
    refused(
        "empty images/ and masks/",
        "train",
        train_folder(no_files),
        "data/images",
        "no image files",
    ),
    refused("empty folder", "predict", empty_folder("predict"), "empty", "no images"),
    # image without a mask, mask without an image
    refused("image without mask", "data check", check_folder(no_mask), "{stem}.png", "no mask", code=1),
    refused("image without mask", "train", train_folder(no_mask), "{stem}.png", "no mask"),
    refused("image without mask", "evaluate", evaluate_damaged(no_mask), "{stem}.png", "no mask"),
    refused("mask without image", "data check", check_folder(no_image), "{stem}.png", "no image", code=1),
    refused("mask without image", "train", train_folder(no_image), "{stem}.png", "no image"),
    # configuration
    refused("unknown key", "train", train_config("", "train.epochz=1"), "'train.epochz'", "train.epochs"),
    refused("unknown section", "train", train_config("trian: {epochs: 1}\n"), "'trian'", "train"),
    refused("unknown model parameter", "train", train_config("", "model.params.base_chanels=2"), "base_chanels"),
    refused("wrong type", "train", train_config("", "train.epochs=many"), "'train.epochs'", "'many'"),
    refused("section given a value", "train", train_config("eval: 5\n"), "'eval'", "(got 5)"),
    refused("invalid YAML", "train", train_config("loss: {name: dice\n"), "config.yaml", "not valid YAML"),
    refused(
        "!!python/object tag",
        "train",
        train_config("optim: !!python/object/apply:os.system ['touch {tmp}/executed']\n"),
        "config.yaml",
        "!!python/object/apply:os.system",
        "refused",
    ),
    refused(
        "!!python/object tag override",
        "train",
        train_config("", "name=!!python/object/apply:os.system ['touch {tmp}/executed']"),
        "name=",
        "!!python/object/apply:os.system",
        "refused",
    ),
    refused("unknown model", "train", train_config("", "model.name=unet9000"), "'unet9000'", "unet"),
    # a checkpoint of another model or architecture size
    refused("smaller U-Net checkpoint", "evaluate", with_checkpoint("evaluate", smaller_unet), "small.ckpt"),
    refused("attention U-Net checkpoint", "evaluate", with_checkpoint("evaluate", attention_unet), "attention.ckpt"),
    refused("larger U-Net checkpoint", "train", with_checkpoint("train", lambda ctx: ctx.best), "best.ckpt", "not fit"),
    refused(
        "attention U-Net checkpoint", "train", with_checkpoint("train", attention_unet), "attention.ckpt", "not fit"
    ),
    refused(
        "state dict of another model", "predict", with_checkpoint("predict", plain_state_dict), "other.pt", "medseg"
    ),
    refused(
        "weights unlike their config",
        "predict",
        with_checkpoint("predict", weights_unlike_config),
        "mixed.ckpt",
        "do not fit",
    ),
    refused(
        "weights unlike their config",
        "evaluate",
        with_checkpoint("evaluate", weights_unlike_config),
        "mixed.ckpt",
        "do not fit",
    ),
    # a truncated checkpoint
    refused("truncated checkpoint", "predict", with_checkpoint("predict", truncated_checkpoint), "cut.ckpt", "read"),
    refused("truncated checkpoint", "evaluate", with_checkpoint("evaluate", truncated_checkpoint), "cut.ckpt"),
    refused("truncated checkpoint", "train", with_checkpoint("train", truncated_checkpoint), "cut.ckpt", "read"),
    # a non-existent path
    refused(
        "missing folder",
        "data check",
        lambda ctx: ["data", "check", str(ctx.tmp / "nowhere"), "--json"],
        "nowhere",
        "does not exist",
        code=1,
    ),
    refused("missing config", "train", lambda ctx: ["train", str(ctx.tmp / "nowhere.yaml")], "nowhere.yaml"),
    refused("missing data root", "train", train_config("", "data.root={tmp}/nowhere"), "nowhere", "does not exist"),
    refused("missing checkpoint", "train", with_checkpoint("train", missing_checkpoint), "nowhere.ckpt", "not exist"),
    refused("data folder gone", "evaluate", evaluate_damaged(removed), "data folder", "does not exist"),
    refused("missing run folder", "evaluate", lambda ctx: ["evaluate", str(ctx.tmp / "nowhere")], "nowhere"),
    refused("missing checkpoint", "evaluate", with_checkpoint("evaluate", missing_checkpoint), "nowhere.ckpt"),
    refused("missing checkpoint", "predict", with_checkpoint("predict", missing_checkpoint), "nowhere.ckpt"),
    refused(
        "missing input",
        "predict",
        lambda ctx: ["predict", str(ctx.best), str(ctx.tmp / "nowhere.png"), str(ctx.tmp / "out")],
        "nowhere.png",
        "does not exist",
    ),
    # images far larger than the training size, and of odd size: a mask of the input's size
    accepted(
        "4000x3000 and 333x517 images",
        "predict",
        predict_inputs(
            {
                "large.bmp": np.broadcast_to(np.arange(4000, dtype=np.uint8)[None, :, None], (3000, 4000, 3)).copy(),
                "odd.png": rgb_image((517, 333), 3),
            }
        ),
        mask_sizes(large=(3000, 4000), odd=(517, 333)),
    ),
]


# --- fixtures and the test ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A U-Net (base_channels 4, 32 px, 1 epoch) trained on 10 images of 40x40 (6 train, 2 val, 2 test)."""
    out = tmp_path_factory.mktemp("bad-input-run")
    root = write_folder(out / "data", count=10, size=(40, 40))
    config = out / "tiny.yaml"
    config.write_text(
        f"name: tiny\noutput_dir: {out}\n"
        f"data: {{dataset: image_folder, root: {root}, image_size: 32, batch_size: 2, num_workers: 0, "
        "val_fraction: 0.2, test_fraction: 0.2}\ntrain: {epochs: 1, progress_bar: false}\n"
        "model: {params: {base_channels: 4}}\n"
    )
    result = runner.invoke(app, ["train", str(config), "--no-evaluate"])
    assert result.exit_code == 0, result.output
    return out / "tiny"


@pytest.fixture(scope="module")
def probes(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Probe checkpoints (3 and 1 input channels): the run's configuration, seeded untrained weights, and
    ``eval.threshold`` at the median probability of a noise image, so that masks follow any change of the input."""
    out = tmp_path_factory.mktemp("probes")
    paths = {}
    for channels in (3, 1):
        config = read_checkpoint(tiny_run / "checkpoints" / "best.ckpt")["hyper_parameters"]["config"]
        config["data"]["in_channels"] = channels
        path = save_model(out / f"probe{channels}.ckpt", config)
        noise = rgb_image((24, 30), 13)[..., :channels]
        config["eval"]["threshold"] = float(np.median(Predictor.from_checkpoint(path).predict_proba(noise)))
        paths[channels] = save_model(path, config)
    return paths


@pytest.mark.parametrize("row", [pytest.param(row, id=row.id) for row in ROWS])
def test_bad_input(row: Row, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ctx = Ctx(tmp_path, request)
    if row.xfail:
        request.applymarker(pytest.mark.xfail(strict=True, reason=row.xfail))
    args = row.setup(ctx)
    result = runner.invoke(app, args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert ctx.marker is None or not ctx.marker.exists(), "a YAML tag ran a command"
    if row.says is None:
        assert result.exit_code == 0, output
        assert row.check is not None
        row.check(ctx, result)
        return
    assert result.exit_code == row.code, output
    if row.verb == "data check":  # every problem is one entry of the report, and one line
        lines = json.loads(result.stdout)["problems"]
        assert len(lines) == 1 and "\n" not in lines[0], output
    else:
        prefix, after = ("skipped:", ["1 of 2 image(s) could not be predicted"]) if row.code == 1 else ("error:", [])
        stderr = [line for line in result.stderr.splitlines() if line.strip()]
        lines = [line for line in stderr if line.startswith(prefix)]
        assert len(lines) == 1 and stderr[stderr.index(lines[0]) + 1 :] == after, output  # nothing continues it
    for text in row.says:
        assert text.format(stem=ctx.stem) in lines[0], (text, lines[0])
    if row.verb == "train":
        assert not any(line.startswith("training ") for line in result.stderr.splitlines()), output
