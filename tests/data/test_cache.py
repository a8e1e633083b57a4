"""The preprocessed cache: cached items equal prepared ones, reuse, invalidation by settings and by files, atomic
entries, the cache folder and ``medseg data cache``."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import DataConfig
from medseg.data import (
    CaseRecord,
    DataError,
    DatasetReader,
    LoadedCase,
    PreparedCache,
    SegmentationDataset,
    build_datasets,
    build_reader,
    cache_root,
    make_splits,
)
from medseg.data.cache import CacheBuild
from tests.data import layouts
from tests.data.folders import folder_config, rgb_image, write_binary_folder, write_image
from tests.data.test_every_reader import LAYOUTS, config

FLOAT16_RTOL = 2.0**-11
"""float16 keeps 11 significant bits: a cached image is within this relative error of the prepared one."""
FLOAT16_ATOL = 2.0**-24
"""The spacing of float16's subnormal numbers, for values near zero."""


def items(dataset: SegmentationDataset) -> list[dict[str, object]]:
    return [dataset[index] for index in range(len(dataset))]


def assert_same_items(cached: SegmentationDataset, prepared: SegmentationDataset, exact: bool = False) -> None:
    assert cached.entries is not None and prepared.entries is None
    for got, want in zip(items(cached), items(prepared), strict=True):
        assert got["case_id"] == want["case_id"]
        assert got["image"].dtype == torch.float32 and got["mask"].dtype == torch.int64
        tolerance = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": FLOAT16_RTOL, "atol": FLOAT16_ATOL}
        torch.testing.assert_close(got["image"], want["image"], **tolerance)
        torch.testing.assert_close(got["mask"], want["mask"], rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["image_folder", "busi-original", "monuseg-uct", "acdc", "nnunet"])
def test_cached_items_equal_prepared_items_to_float16_precision(tmp_path: Path, layout: str) -> None:
    name, write, *_ = LAYOUTS[layout]
    root = write(tmp_path / layout)
    cfg = config(name, root, cache_dir=str(tmp_path / "cache"))
    reader = build_reader(cfg)
    splits = make_splits(reader, cfg)
    cached, prepared = build_datasets(reader, splits, cfg, cache=True), build_datasets(reader, splits, cfg, cache=False)
    for split in splits:
        assert_same_items(cached[split], prepared[split])
    if layout == "acdc":  # volumes are cached slice by slice
        assert any(":" in case for case in cached["val"].case_ids)


def test_images_that_uint8_holds_exactly_are_stored_as_uint8(tmp_path: Path) -> None:
    cfg = DataConfig(image_size=24, synthetic={"num_train": 3, "num_val": 1, "num_test": 1, "size": 24})
    reader = build_reader(cfg)
    cache = PreparedCache(reader, cfg, tmp_path)
    entries = cache.ensure(reader.case_ids()).entries
    assert {np.load(entry)["image"].dtype for entry in entries} == {np.dtype(np.uint8)}
    assert {np.load(entry)["mask"].dtype for entry in entries} == {np.dtype(np.uint8)}
    ids = reader.case_ids()
    assert_same_items(SegmentationDataset(reader, ids, cache=cache), SegmentationDataset(reader, ids), exact=True)

    resized = PreparedCache(reader, cfg.model_copy(update={"image_size": 16}), tmp_path)
    assert np.load(resized.ensure(ids[:1]).entries[0])["image"].dtype == np.float16


def test_same_settings_reuse_the_cache_without_reading_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_binary_folder(tmp_path / "data", 5)
    cfg = folder_config(root, image_size=16, cache_dir=str(tmp_path / "cache"))
    splits = {"train": ["case_00", "case_01", "case_02"], "val": ["case_03"], "test": ["case_04"]}
    first = build_datasets(build_reader(cfg), splits, cfg)["train"]
    assert first.entries is not None
    written = {entry: entry.stat().st_mtime_ns for entry in first.entries}

    reader = build_reader(cfg)
    loads: list[str] = []
    monkeypatch.setattr(reader, "load", lambda case_id: loads.append(case_id))
    other_run = cfg.model_copy(update={"batch_size": 2, "num_workers": 1, "split_seed": 3})
    again = build_datasets(reader, splits, other_run)
    assert loads == []
    assert again["train"].entries == first.entries
    assert {entry: entry.stat().st_mtime_ns for entry in first.entries} == written
    assert_same_items(again["train"], build_datasets(build_reader(cfg), splits, cfg, cache=False)["train"])


@pytest.mark.parametrize(
    "change",
    [{"image_size": 20}, {"in_channels": 1}, {"transforms": {"normalize": "imagenet"}}, {"mask_threshold": 100}],
)
def test_preprocessing_settings_select_another_cache(tmp_path: Path, change: dict[str, object]) -> None:
    root = write_binary_folder(tmp_path / "data", 2)
    cfg = folder_config(root, image_size=16)
    other = DataConfig.model_validate({**cfg.model_dump(), **change})
    assert PreparedCache(build_reader(other), other).folder != PreparedCache(build_reader(cfg), cfg).folder
    augmented = DataConfig.model_validate({**cfg.model_dump(), "transforms": {"hflip": 0.0, "rot90": 1.0}})
    assert PreparedCache(build_reader(augmented), augmented).folder == PreparedCache(build_reader(cfg), cfg).folder


def test_a_changed_image_file_invalidates_its_entry(tmp_path: Path) -> None:
    root = write_binary_folder(tmp_path / "data", 4)
    cfg = folder_config(root, image_size=16, cache_dir=str(tmp_path / "cache"))
    reader = build_reader(cfg)
    ids = reader.case_ids()
    cache = PreparedCache(reader, cfg)
    before = cache.ensure(ids)
    assert before.built == 4

    image = root / "images" / "case_01.png"
    stat = image.stat()
    write_image(image, rgb_image((24, 32), 99))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    after = cache.ensure(ids)
    assert after.built == 1
    assert [a == b for a, b in zip(before.entries, after.entries, strict=True)] == [True, False, True, True]
    assert_same_items(SegmentationDataset(reader, ids, cache=cache), SegmentationDataset(reader, ids))
    fresh = SegmentationDataset(reader, ["case_01"], cache=cache)[0]["image"]
    stale = SegmentationDataset(reader, ["case_01"], cache=cache)
    stale.entries = [before.entries[1]]
    assert not torch.allclose(fresh, stale[0]["image"], atol=0.01)


def test_a_rewritten_mask_with_the_same_size_and_a_new_time_invalidates_its_entry(tmp_path: Path) -> None:
    root = write_binary_folder(tmp_path / "data", 2)
    cfg = folder_config(root, image_size=16, cache_dir=str(tmp_path / "cache"))
    reader = build_reader(cfg)
    cache = PreparedCache(reader, cfg)
    before = cache.ensure(["case_00"]).entries
    mask = root / "masks" / "case_00.png"
    pixels = np.asarray(Image.open(mask))
    write_image(mask, 255 - pixels)
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 1))
    after = cache.ensure(["case_00"])
    assert after.built == 1 and after.entries != before
    cached = SegmentationDataset(reader, ["case_00"], cache=cache)[0]["mask"]
    torch.testing.assert_close(cached, SegmentationDataset(reader, ["case_00"])[0]["mask"])


def test_files_named_after_a_case_are_part_of_its_entry(tmp_path: Path) -> None:
    busi = layouts.write_busi_original(tmp_path / "busi")
    cfg = config("busi", busi, cache_dir=str(tmp_path / "cache"))
    reader = build_reader(cfg)
    cache = PreparedCache(reader, cfg)
    ids = ["benign (1)", "benign (2)"]
    before = cache.entries(ids)
    extra = busi / "benign" / "benign (2)_mask_1.png"  # the second lesion of benign (2)
    os.utime(extra, ns=(extra.stat().st_atime_ns, extra.stat().st_mtime_ns + 1))
    after = cache.entries(ids)
    assert after[0] == before[0] and after[1] != before[1]

    nnunet = layouts.write_nnunet(tmp_path / "nnunet", cases=2, channels=2)
    cfg = config("nnunet", nnunet, in_channels=2, cache_dir=str(tmp_path / "cache"))
    reader = build_reader(cfg)
    cache = PreparedCache(reader, cfg)
    slices = reader.slice_ids("liver_000") + reader.slice_ids("liver_001")
    before = cache.entries(slices)
    second_channel = nnunet / "imagesTr" / "liver_001_0001.nii.gz"
    os.utime(second_channel, ns=(second_channel.stat().st_atime_ns, second_channel.stat().st_mtime_ns + 1))
    after = cache.entries(slices)
    assert [a == b for a, b in zip(before, after, strict=True)] == ["liver_000" in case for case in slices]


def test_an_interrupted_build_leaves_no_entry_and_is_finished_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_binary_folder(tmp_path / "data", 4)
    cfg = folder_config(root, image_size=16, cache_dir=str(tmp_path / "cache"))
    reader = build_reader(cfg)
    ids = reader.case_ids()
    cache = PreparedCache(reader, cfg)
    save = np.save
    calls = []

    def killed_while_writing_the_second_entry(stream: BinaryIO, record: np.ndarray) -> None:
        calls.append(record)
        if len(calls) == 2:  # half the bytes reach the disk, then the build is interrupted
            stream.write(b"\x93NUMPY" + bytes(40))
            raise KeyboardInterrupt
        save(stream, record)

    monkeypatch.setattr(np, "save", killed_while_writing_the_second_entry)
    with pytest.raises(KeyboardInterrupt):
        cache.ensure(ids)
    monkeypatch.setattr(np, "save", save)
    entries = cache.entries(ids)
    assert [entry.is_file() for entry in entries] == [True, False, False, False]
    assert sorted(path.name for path in cache.folder.iterdir()) == sorted([entries[0].name, ".lock", "settings.json"])
    leftover = cache.folder / f".tmp-killed{entries[1].suffix}"  # what a kill -9 while writing leaves behind
    leftover.write_bytes(b"\x93NUMPY" + bytes(40))

    build = cache.ensure(ids)
    assert build.built == 3 and all(entry.is_file() for entry in build.entries)
    assert_same_items(SegmentationDataset(reader, ids, cache=cache), SegmentationDataset(reader, ids))


def test_concurrent_builders_of_one_entry_leave_one_complete_file(tmp_path: Path) -> None:
    root = write_binary_folder(tmp_path / "data", 1)
    cfg = folder_config(root, image_size=16)
    reader = build_reader(cfg)
    first, second = PreparedCache(reader, cfg, tmp_path / "cache"), PreparedCache(reader, cfg, tmp_path / "cache")
    entry = first.entries(["case_00"])[0]
    assert first.build_entry("case_00", entry) > 0
    content = entry.read_bytes()
    held = np.load(entry, mmap_mode="r")  # a training reading the first copy
    assert second.build_entry("case_00", entry) == len(content)  # the second rename replaces it by the same bytes
    assert entry.read_bytes() == content
    np.testing.assert_array_equal(held["mask"], np.load(entry)["mask"])
    assert [path.name for path in first.folder.iterdir()] == [entry.name]  # no temporary file left


def test_a_run_that_finds_another_building_waits_and_builds_only_what_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_binary_folder(tmp_path / "data", 3)
    cfg = folder_config(root, image_size=16, cache_dir=str(tmp_path / "cache"))
    reader = build_reader(cfg)
    ids = reader.case_ids()
    other, waiting = PreparedCache(reader, cfg), PreparedCache(reader, cfg)
    other.folder.mkdir(parents=True)
    builds: list[CacheBuild] = []
    with (other.folder / ".lock").open("a") as lock, caplog.at_level(logging.INFO, logger="medseg"):
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run is building this cache
        thread = threading.Thread(target=lambda: builds.append(waiting.ensure(ids)))
        thread.start()
        deadline = time.monotonic() + 60
        while "waiting for another process" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "waiting for another process" in caplog.text
        for case, entry in zip(ids[:2], other.entries(ids[:2]), strict=True):
            other.build_entry(case, entry)
        fcntl.flock(lock, fcntl.LOCK_UN)
        thread.join()
    assert [build.built for build in builds] == [1]
    assert all(entry.is_file() for entry in builds[0].entries)


def test_generated_data_of_another_reader_is_not_cached() -> None:
    class Generated(DatasetReader):
        name = "generated"
        needs_root = False

        def list_cases(self) -> list[CaseRecord]:
            return [CaseRecord("a", None, None), CaseRecord("b", None, None)]

        def load(self, case_id: str) -> LoadedCase:
            return LoadedCase(case_id, np.full((8, 8, 3), 7, np.uint8), np.zeros((8, 8), np.int64))

    cfg = DataConfig(image_size=8)
    datasets = build_datasets(Generated(cfg), {"train": ["a"], "val": ["b"]}, cfg)
    assert datasets["train"].entries is None and datasets["val"].entries is None
    assert build_datasets(build_reader(cfg), {"train": ["train_0000"]}, cfg)["train"].entries is not None


def test_bad_files_fail_when_the_cache_is_built_with_one_line(tmp_path: Path) -> None:
    root = write_binary_folder(tmp_path / "data", 3)
    write_image(root / "masks" / "case_02.png", np.full((24, 32), 128, np.uint8))
    cfg = folder_config(root, image_size=16)
    with pytest.raises(DataError, match=r"case_02\.png has values 128") as error:
        build_datasets(build_reader(cfg), {"train": ["case_00"], "val": ["case_01", "case_02"]}, cfg)
    assert "\n" not in str(error.value)


def test_an_unwritable_cache_folder_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cfg = DataConfig(image_size=16, cache_dir=str(tmp_path / "file" / "cache"), synthetic={"num_train": 2})
    reader = build_reader(cfg)
    with pytest.raises(DataError, match=r"cannot write the preprocessed cache .*data.cache=false"):
        build_datasets(reader, {"train": ["train_0000"]}, cfg)


def test_the_cache_folder_follows_the_setting_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "env"))
    assert cache_root(DataConfig(cache_dir=str(tmp_path / "set"))) == tmp_path / "set"
    assert cache_root(DataConfig()) == tmp_path / "env"
    monkeypatch.delenv("MEDSEG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(DataConfig()) == tmp_path / "xdg" / "medseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root(DataConfig()) == tmp_path / "home" / ".cache" / "medseg"


def test_data_cache_command_builds_once_and_reports_folder_and_size(tmp_path: Path) -> None:
    root = layouts.write_kvasir(tmp_path / "kvasir")
    runner = CliRunner()
    arguments = ["data", "cache", str(root), "data.image_size=16", f"data.cache_dir={tmp_path / 'cache'}"]
    first = runner.invoke(app, arguments)
    assert first.exit_code == 0, first.output
    cfg = DataConfig(dataset="kvasir", root=str(root), image_size=16, cache_dir=str(tmp_path / "cache"))
    folder = PreparedCache(build_reader(cfg), cfg).folder
    assert f"cache: {folder}" in first.output
    assert "kvasir: 7 train + 1 val + 3 test cases = 11 2D images or slices (11 built in" in first.output
    assert "MiB" in first.output
    second = runner.invoke(app, arguments)
    assert second.exit_code == 0 and "all already cached" in second.output

    config_file = tmp_path / "experiment.yaml"
    config_file.write_text(
        f"data: {{dataset: kvasir, root: {root}, image_size: 16, cache_dir: {tmp_path / 'cache'}}}\n"
    )
    from_config = runner.invoke(app, ["data", "cache", str(config_file)])
    assert from_config.exit_code == 0 and "all already cached" in from_config.output
    missing = runner.invoke(app, ["data", "cache", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "error:" in missing.output
