"""Loaders: ``data.num_workers: auto``, persistent prefetching workers, and training that reads train and
validation from one preprocessed cache."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from medseg.config import ConfigError, DataConfig, load_config
from medseg.data import PreparedCache, build_reader, make_splits, resolve_num_workers
from medseg.engine import train
from medseg.engine.trainer import PREFETCH_BATCHES, _loader
from tests.test_cli import TINY


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 0), (3, 2), (4, 3), (16, 8), (128, 8)])
def test_auto_workers_follow_the_available_cpus(cpus: int, workers: int) -> None:
    assert resolve_num_workers("auto", cpus) == workers


def test_num_workers_is_auto_by_default_and_a_count_is_kept() -> None:
    assert DataConfig().num_workers == "auto"
    assert resolve_num_workers(3, cpus=1) == 3
    assert load_config(None, ["data.num_workers=5"]).data.num_workers == 5
    with pytest.raises(ConfigError, match=r"data\.num_workers"):
        load_config(None, ["data.num_workers=-1"])
    with pytest.raises(ConfigError, match=r"data\.num_workers"):
        load_config(None, ["data.num_workers=many"])


def test_loaders_keep_their_workers_and_prefetch(tmp_path: Path) -> None:
    config = load_config(None, [*TINY, "data.num_workers=2", "train.accelerator=cpu"])
    dataset = torch.utils.data.TensorDataset(torch.zeros(10, 1))
    loader = _loader(dataset, config, train=True)
    assert loader.num_workers == 2 and loader.persistent_workers and loader.prefetch_factor == PREFETCH_BATCHES
    assert not loader.pin_memory  # only when training on CUDA
    serial = _loader(dataset, load_config(None, [*TINY, "data.num_workers=0"]), train=False)
    assert serial.num_workers == 0 and not serial.persistent_workers and serial.prefetch_factor is None


class _Datasets(pl.Callback):
    """Records the datasets the trainer's loaders serve."""

    def __init__(self) -> None:
        self.datasets: dict[str, object] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.datasets = {"train": trainer.train_dataloader.dataset, "val": trainer.val_dataloaders.dataset}


def test_training_reads_train_and_validation_from_one_cache(tmp_path: Path) -> None:
    own_cache = f"data.cache_dir={tmp_path / 'cache'}"
    config = load_config(None, [*TINY, "train.epochs=1", f"output_dir={tmp_path}", "data.num_workers=auto", own_cache])
    seen = _Datasets()
    train(config, tmp_path / "run", extra_callbacks=[seen])
    cache = PreparedCache(build_reader(config.data), config.data)
    train_set, val_set = seen.datasets["train"], seen.datasets["val"]
    assert train_set.cache is not None and val_set.cache is not None
    assert train_set.cache.folder == val_set.cache.folder == cache.folder
    assert train_set.entries == cache.entries(train_set.case_ids)
    assert val_set.entries == cache.entries(val_set.case_ids)
    assert all(entry.is_file() for entry in train_set.entries + val_set.entries)
    reader = build_reader(config.data)
    test_slices = [piece for case in make_splits(reader, config.data)["test"] for piece in reader.slice_ids(case)]
    built = sorted(cache.folder.glob("*.npy"))
    assert built == sorted(train_set.entries + val_set.entries + cache.entries(test_slices))  # checked before training


def test_training_without_cache_reads_the_files(tmp_path: Path) -> None:
    own_cache = f"data.cache_dir={tmp_path / 'cache'}"
    config = load_config(None, [*TINY, "train.epochs=1", f"output_dir={tmp_path}", "data.cache=false", own_cache])
    seen = _Datasets()
    train(config, tmp_path / "run", extra_callbacks=[seen])
    assert seen.datasets["train"].entries is None and seen.datasets["val"].entries is None
    assert not PreparedCache(build_reader(config.data), config.data).folder.exists()
