"""One extension mechanism for every axis: the generic registry, and a package outside medseg that adds a model, a
skip module, an objective term, a dataset reader and an evaluation protocol through the five entry-point groups,
then trains and evaluates with them (the example of docs/extending.md)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medseg.registry
from medseg.config import ConfigError, load_config
from medseg.data.detect import detection_order
from medseg.errors import ModelArgumentError
from medseg.models.skips import build_skips
from medseg.registry import EntryPointError, Registry, UnknownNameError

# The external package, one module per axis, as docs/extending.md shows it.
EXTENSION = {
    "model.py": """
        import torch
        from torch import nn

        from medseg.models import SegmentationModel, SegOutput, register_model
        from medseg.models.skips import build_skips


        @register_model("ext_tiny", paper="medseg_ext test model")
        class ExtTiny(SegmentationModel):
            output_stride = 2

            def __init__(self, in_channels=3, num_classes=1, skip="identity", skip_params=None):
                super().__init__()
                self.in_channels, self.num_classes = in_channels, num_classes
                self.encoder = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU())
                self.down = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
                self.skips = build_skips(skip, [8], skip_params)  # model.params.skip, any registered skip
                self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
                self.head = nn.Conv2d(16, num_classes, 1)

            def forward_features(self, x):
                feature = self.encoder(x)
                bottleneck = self.down(feature)
                (skip,), aux_losses = self.skips([feature])
                decoded = self.up(bottleneck)
                final = torch.cat([skip, decoded], dim=1)
                return SegOutput(
                    logits=self.head(final), encoder=[feature], bottleneck=bottleneck, decoder=[decoded],
                    final=final, aux_losses=aux_losses,
                )
    """,
    "skip.py": """
        import torch
        from torch import nn

        from medseg.models.skips import register_skip


        @register_skip("ext_gate")  # its loss goes to aux_losses["ext_gate"]
        class ChannelGate(nn.Module):
            def __init__(self, channels, weight=0.01):
                super().__init__()
                self.gates = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in channels)
                self.weight = weight

            def forward(self, features):
                gates = [torch.sigmoid(g).view(1, -1, 1, 1) for g in self.gates]
                loss = self.weight * sum(g.mean() for g in gates)
                return [f * g for f, g in zip(features, gates)], loss
    """,
    "term.py": """
        from medseg.objectives import ObjectiveTerm, register_term


        class LogitPenalty(ObjectiveTerm):
            def __init__(self, scale):
                super().__init__()
                self.scale = scale

            def forward(self, output, batch):
                return self.scale * output.logits.square().mean()


        @register_term("ext_logit_penalty")
        def logit_penalty(context, scale=0.001):
            return LogitPenalty(scale)
    """,
    "reader.py": """
        from medseg.data import register_reader
        from medseg.data.readers import CaseRecord, FileDatasetReader


        @register_reader("ext_cases", detect_priority=200)
        class CaseFolderReader(FileDatasetReader):
            signature = "ext_cases.txt + <case>/image.png + <case>/mask.png"

            @classmethod
            def matches(cls, root):
                return (root / "ext_cases.txt").is_file()

            def _scan(self):
                folders = sorted(path for path in self.root.iterdir() if path.is_dir())
                return [CaseRecord(f.name, f / "image.png", f / "mask.png") for f in folders]
    """,
    "protocol.py": """
        from medseg.protocols import register_protocol
        from medseg.protocols.perimage import PerImageBinaryProtocol


        @register_protocol("ext_dice")
        class DiceOnlyProtocol(PerImageBinaryProtocol):
            description = "per-image Dice only, mean over images"
            metrics = ("dice",)
    """,
}

# What pip writes into the installed package's dist-info from its pyproject.toml [project.entry-points."..."] tables.
ENTRY_POINTS = """\
[medseg.models]
ext_tiny = medseg_ext.model:ExtTiny

[medseg.skips]
ext_gate = medseg_ext.skip:ChannelGate

[medseg.objectives]
ext_logit_penalty = medseg_ext.term:logit_penalty

[medseg.readers]
ext_cases = medseg_ext.reader:CaseFolderReader

[medseg.protocols]
ext_dice = medseg_ext.protocol:DiceOnlyProtocol
"""


def install(site: Path, name: str, modules: dict[str, str], entry_points: str) -> Path:
    """``site/<name>/`` and the ``<name>-0.1.dist-info`` that makes ``importlib.metadata`` find its entry points
    when ``site`` is on the path (an installation without pip, removed with the temporary folder)."""
    package = site / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for file_name, source in modules.items():
        (package / file_name).write_text(textwrap.dedent(source))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return site


def write_cases(root: Path, count: int) -> Path:
    """The ``ext_cases`` layout: a marker file and one folder per case with a 32 x 32 image and its 0/255 mask."""
    root.mkdir(parents=True)
    (root / "ext_cases.txt").write_text("cases of the medseg_ext reader\n")
    rng = np.random.default_rng(0)
    for index in range(count):
        case = root / f"case{index}"
        case.mkdir()
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[8 + index % 4 : 20 + index % 4, 6:22] = 255
        image = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)
        image[mask > 0] += 100
        Image.fromarray(image).save(case / "image.png")
        Image.fromarray(mask).save(case / "mask.png")
    return root


def medseg_cli(site: Path, *args: str) -> str:
    """Run ``python -m medseg ARGS`` with ``site`` on the path; returns its output, asserting success."""
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "medseg", *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_an_external_package_extends_every_axis(tmp_path: Path) -> None:
    site = install(tmp_path / "site", "medseg_ext", EXTENSION, ENTRY_POINTS)
    data = write_cases(tmp_path / "cases", 8)

    assert "format        ext_cases (detected)" in medseg_cli(site, "data", "check", str(data))

    config = tmp_path / "ext.yaml"
    config.write_text(
        f"name: ext\noutput_dir: {tmp_path / 'runs'}\n"
        "model: {name: ext_tiny, params: {skip: ext_gate, skip_params: {weight: 0.01}}}\n"
        f"data: {{dataset: ext_cases, root: {data}, image_size: 32, batch_size: 2, num_workers: 0, "
        "val_fraction: 0.25, test_fraction: 0.25}\n"
        "loss: {terms: [{name: ext_logit_penalty, params: {scale: 0.001}}]}\n"
        "train: {epochs: 1, progress_bar: false}\n"
        "eval: {overlays: 1}\n"
    )
    medseg_cli(site, "train", str(config), "--no-evaluate")
    run = tmp_path / "runs" / "ext"
    saved = (run / "config.yaml").read_text()
    assert "ext_tiny" in saved and "ext_gate" in saved and "ext_cases" in saved and "ext_logit_penalty" in saved
    with (run / "metrics.csv").open() as handle:
        columns = set(next(csv.reader(handle)))
    assert {"train/ext_gate", "train/ext_logit_penalty"} <= columns  # the skip's and the term's losses were logged

    output = medseg_cli(site, "evaluate", str(run), "--protocol", "ext_dice")
    summary = json.loads((run / "evaluation" / "test-ext_dice" / "summary.json").read_text())
    assert summary["protocol"] == "ext_dice" and set(summary["metrics"]) == {"dice"}
    assert "ext_dice" in output


def test_unknown_names_list_the_registered_ones() -> None:
    widgets: Registry[int] = Registry("widget", "medseg_test.widgets")
    widgets.add("b", 2)
    widgets.add("a", 1)
    assert widgets.names() == ["a", "b"] and widgets["a"] == 1 and "b" in widgets and list(widgets) == ["a", "b"]
    with pytest.raises(UnknownNameError, match=r"^unknown widget 'c'; available: a, b$"):
        widgets.get("c")
    with pytest.raises(ValueError, match="a widget named 'a' is already registered"):
        widgets.add("a", 3)


def test_a_broken_entry_point_is_named_with_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = install(tmp_path, "medseg_broken", {"widgets.py": "import no_such_module_of_medseg_tests\n"}, "")
    (site / "medseg_broken-0.1.dist-info" / "entry_points.txt").write_text(
        "[medseg_test.widgets]\nbroken = medseg_broken.widgets:Widget\n"
    )
    monkeypatch.syspath_prepend(str(site))
    widgets: Registry[object] = Registry("widget", "medseg_test.widgets")
    with pytest.raises(EntryPointError) as error:
        widgets.names()
    assert str(error.value) == (
        "cannot load the entry point broken = medseg_broken.widgets:Widget of package medseg-broken "
        "(group medseg_test.widgets): ModuleNotFoundError: No module named 'no_such_module_of_medseg_tests'"
    )


def test_entry_points_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(medseg.registry, "entry_points", lambda group: calls.append(group) or [])
    widgets: Registry[int] = Registry("widget", "medseg_test.widgets")
    widgets.names()
    assert "x" not in widgets and len(widgets) == 0
    assert calls == ["medseg_test.widgets"]


def test_detection_tries_the_specific_layouts_first() -> None:
    assert [reader.name for reader in detection_order()] == [
        "nnunet",
        "synapse",
        "acdc",
        "isic2018",
        "isic2017",
        "isic2016",
        "cvc_clinicdb",
        "ph2",
        "monuseg",
        "glas",
        "busi",
        "kvasir",
        "image_folder",
    ]


def test_config_refuses_an_unknown_reader_when_loaded() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown dataset 'kvasr' \(data.dataset\); valid: auto, acdc, busi, .*kvasir"
    ):
        load_config(None, ["data.dataset=kvasr"])


def test_skip_parameters_are_checked_against_the_module() -> None:
    with pytest.raises(ModelArgumentError, match=r"skip kind 'tamosc' got unknown parameter\(s\) experts; valid: "):
        build_skips("tamosc", [4, 8], {"experts": 2})
    with pytest.raises(ModelArgumentError, match=r"skip kind 'identity' got unknown parameter\(s\) top_k; valid: none"):
        build_skips("identity", [4, 8], {"top_k": 1})
