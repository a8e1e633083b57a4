"""Format detection and ``data.dataset: auto``."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config import ConfigError, DataConfig
from medseg.data import DataError, build_reader, detect_format
from medseg.data.detect import detection_order
from medseg.data.glas import GlaSReader
from tests.data import layouts
from tests.data.folders import write_binary_folder


def test_unknown_layout_lists_every_signature(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match=r"cannot tell the dataset format of .*: it matches none") as error:
        detect_format(tmp_path)
    message = str(error.value)
    for reader in detection_order():
        assert f"{reader.name}: {reader.signature}" in message
    assert "PH2 Dataset images" in message and "Original/ + Ground Truth/" in message
    with pytest.raises(DataError, match=r"data folder .*absent does not exist"):
        detect_format(tmp_path / "absent")


def test_specific_layouts_win_over_image_folder(tmp_path: Path) -> None:
    assert detect_format(write_binary_folder(tmp_path / "plain", 2)) == "image_folder"
    assert detect_format(layouts.write_glas_folders(tmp_path / "glas")) == "glas"
    assert detect_format(layouts.write_busi_benchmark(tmp_path / "busi")) == "busi"
    kvasir = layouts.write_kvasir(tmp_path / "kvasir")
    assert detect_format(kvasir) == "kvasir"
    (kvasir / "kavsir_bboxes.json").unlink()
    assert detect_format(kvasir) == "kvasir"  # the split files suffice
    (kvasir / "splits" / "val.txt").unlink()
    assert detect_format(kvasir) == "image_folder"


def test_partial_releases_are_recognised(tmp_path: Path) -> None:
    assert detect_format(layouts.write_isic2018(tmp_path / "isic", train=0, val=2, test=0)) == "isic2018"
    monuseg_test = layouts.write_monuseg_original(tmp_path / "monuseg", train=0, test=2)
    assert detect_format(monuseg_test) == "monuseg"
    synapse = layouts.write_synapse(tmp_path / "synapse", test=())
    assert detect_format(synapse) == "synapse"
    assert not GlaSReader.matches(write_binary_folder(tmp_path / "train_only", 1))


def test_auto_dataset_builds_the_detected_reader(tmp_path: Path) -> None:
    root = layouts.write_ph2(tmp_path)
    reader = build_reader(DataConfig(dataset="auto", root=str(root)))
    assert reader.name == "ph2" and len(reader.case_ids()) == 5
    with pytest.raises(ConfigError, match=r"data\.root is not set; data\.dataset=auto detects the format"):
        build_reader(DataConfig(dataset="auto"))
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        build_reader(DataConfig(dataset="auto", root=str(root / "PH2 Dataset images" / "IMD003")))
