"""Reader registry: ``data.dataset`` name -> reader class."""

from __future__ import annotations

from medseg.config import ConfigError, DataConfig, resolve_path
from medseg.data.errors import DataError
from medseg.data.image_folder import ImageFolderReader
from medseg.data.kvasir import KvasirReader
from medseg.data.readers import DatasetReader
from medseg.data.synthetic import SyntheticReader

__all__ = ["READERS", "build_reader"]

READERS: dict[str, type[DatasetReader]] = {
    reader.name: reader for reader in (SyntheticReader, ImageFolderReader, KvasirReader)
}


def build_reader(data_cfg: DataConfig) -> DatasetReader:
    """Build the reader named by ``data.dataset`` over ``data.root``.

    Args:
        data_cfg: the data section of the experiment.

    Returns:
        The reader, its cases already listed.

    Raises:
        ConfigError: an unknown dataset name, or no ``data.root`` for a dataset that reads files.
        DataError: a missing data folder, or problems found while listing it.
    """
    name = data_cfg.dataset
    if name not in READERS:
        raise ConfigError(f"unknown dataset {name!r} (data.dataset); valid: {', '.join(sorted(READERS))}")
    reader_cls = READERS[name]
    if not reader_cls.needs_root:
        return reader_cls(data_cfg)
    if data_cfg.root is None:
        raise ConfigError(f"data.root is not set; the {name} dataset reads its files from a folder")
    root = resolve_path(data_cfg.root)
    if not root.is_dir():
        hint = (
            "set MEDSEG_DATA to the folder holding the datasets, or run from the repository root"
            if "MEDSEG_DATA" in data_cfg.root
            else "relative paths resolve against the current folder"
        )
        raise DataError(f"data folder {root} does not exist (data.root={data_cfg.root}); {hint}")
    return reader_cls(data_cfg, root)
