"""SegmentationDataset and build_datasets, with DataLoader in the main process and in workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medseg.config import DataConfig
from medseg.data import (
    CaseRecord,
    DataError,
    DatasetReader,
    LoadedCase,
    SegmentationDataset,
    build_datasets,
    build_reader,
    build_transforms,
    make_splits,
)
from tests.data.folders import folder_config, square_mask, write_binary_folder, write_image


class RampReader(DatasetReader):
    """Every case: a left-to-right ramp image and a mask of its left quarter (to see flips)."""

    name = "ramp"
    needs_root = False

    def list_cases(self) -> list[CaseRecord]:
        return [CaseRecord(f"c{index:02d}", None, None) for index in range(32)]

    def load(self, case_id: str) -> LoadedCase:
        image = np.tile(np.arange(16, dtype=np.uint8)[None, :, None] * 10, (16, 1, 3))
        mask = np.zeros((16, 16), np.int64)
        mask[:, :4] = 1
        return LoadedCase(case_id=case_id, image=image, mask=mask, image_path=Path(f"{case_id}.png"))


def flipped(batch: dict[str, torch.Tensor]) -> list[bool]:
    return [bool(image[0, 0, 0] > image[0, 0, -1]) for image in batch["image"]]


def test_items_and_build_datasets() -> None:
    cfg = DataConfig(image_size=64, synthetic={"num_train": 8, "num_val": 2, "num_test": 3})
    reader = build_reader(cfg)
    datasets = build_datasets(reader, make_splits(reader, cfg), cfg)
    assert {name: len(dataset) for name, dataset in datasets.items()} == {"train": 8, "val": 2, "test": 3}
    item = datasets["val"][1]
    assert set(item) == {"image", "mask", "case_id"} and item["case_id"] == "val_0001"
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.int64
    assert set(item["mask"].unique().tolist()) <= {0, 1}
    torch.testing.assert_close(datasets["test"][0]["image"], datasets["test"][0]["image"])


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_serves_every_case(workers: int) -> None:
    cfg = DataConfig(image_size=32, synthetic={"num_train": 10, "num_val": 1, "num_test": 1, "size": 32})
    reader = build_reader(cfg)
    dataset = build_datasets(reader, make_splits(reader, cfg), cfg)["train"]
    loader = DataLoader(dataset, batch_size=4, num_workers=workers)
    batches = list(loader)
    assert [len(batch["case_id"]) for batch in batches] == [4, 4, 2]
    assert sorted(case for batch in batches for case in batch["case_id"]) == dataset.case_ids
    assert batches[0]["image"].shape == (4, 3, 32, 32) and batches[0]["mask"].dtype == torch.int64


def test_items_are_not_augmented() -> None:
    cfg = DataConfig(image_size=16, transforms={"hflip": 1.0, "vflip": 1.0, "rot90": 1.0})
    reader = RampReader(cfg)
    dataset = SegmentationDataset(reader, reader.case_ids(), data_cfg=cfg)
    batches = list(DataLoader(dataset, batch_size=8))
    assert not any(flip for batch in batches for flip in flipped(batch))
    assert all(bool(batch["mask"][:, :, :4].all()) and not batch["mask"][:, :, 4:].any() for batch in batches)


def test_unknown_case_ids_are_an_error() -> None:
    reader = RampReader(DataConfig())
    with pytest.raises(DataError, match="not in the ramp dataset: zz"):
        SegmentationDataset(reader, ["c00", "zz"], build_transforms(DataConfig()))


def test_bad_masks_fail_when_the_datasets_are_built(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, 6, size=(8, 8))
    bad = square_mask((8, 8))
    bad[0] = 128
    write_image(tmp_path / "masks" / "case_04.png", bad)
    cfg = folder_config(tmp_path)
    reader = build_reader(cfg)
    with pytest.raises(DataError, match=r"case_04\.png has values 128"):
        build_datasets(reader, {"train": ["case_00"], "val": ["case_01"], "test": ["case_04"]}, cfg)
