"""One extension mechanism for every axis: the generic registry, and a package outside medseg (the example of
docs/extending.md, read from the page) that adds a model, a skip module, an objective term, a dataset reader and an
evaluation protocol through the five entry-point groups, then trains and evaluates with them."""

from __future__ import annotations

import csv
import json
import os
import re
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

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def documented_package() -> tuple[dict[str, str], str]:
    """The example package of docs/extending.md: its modules (each Python block that starts with
    ``# medseg_ext/<module>.py``) and its entry points (the ``[project.entry-points."<group>"]`` tables of its
    pyproject.toml, written as pip writes them into the installed package's ``entry_points.txt``)."""
    modules: dict[str, str] = {}
    groups: list[str] = []
    for language, body in re.findall(r"```(python|toml)\n(.*?)```", DOCS_PAGE.read_text(), flags=re.S):
        first, _, rest = body.partition("\n")
        if language == "python" and (module := re.fullmatch(r"# medseg_ext/(\w+\.py)", first)):
            modules[module.group(1)] = rest
        elif language == "toml" and (group := re.fullmatch(r'\[project\.entry-points\."([\w.]+)"\]', first)):
            groups.append(f"[{group.group(1)}]\n{rest.replace(chr(34), '')}")
    return modules, "\n".join(groups)


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
    modules, entry_points = documented_package()
    assert sorted(modules) == ["model.py", "protocol.py", "reader.py", "skip.py", "term.py"]
    assert re.findall(r"^\[(.+)\]$", entry_points, flags=re.M) == [
        "medseg.models",
        "medseg.skips",
        "medseg.objectives",
        "medseg.readers",
        "medseg.protocols",
    ]
    site = install(tmp_path / "site", "medseg_ext", modules, entry_points)
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
    entry_points = "[medseg_test.widgets]\nbroken = medseg_broken.widgets:Widget\n"
    site = install(tmp_path, "medseg_broken", {"widgets.py": "import no_such_module_of_medseg_tests\n"}, entry_points)
    monkeypatch.syspath_prepend(str(site))
    widgets: Registry[object] = Registry("widget", "medseg_test.widgets")
    for _ in range(2):  # every look-up reports it, not only the first
        with pytest.raises(EntryPointError) as error:
            widgets.get("broken")
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
