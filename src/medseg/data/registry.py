"""Reader registry: ``data.dataset`` name -> reader class; ``auto`` detects the format of ``data.root``."""

from __future__ import annotations

from medseg.config import ConfigError, DataConfig, resolve_path
from medseg.data.detect import DETECTION_ORDER, detect_format
from medseg.data.errors import DataError
from medseg.data.readers import DatasetReader
from medseg.data.synthetic import SyntheticReader

__all__ = ["AUTO", "READERS", "build_reader"]

AUTO = "auto"

READERS: dict[str, type[DatasetReader]] = {
    reader.name: reader for reader in sorted((SyntheticReader, *DETECTION_ORDER), key=lambda r: r.name)
}


def build_reader(data_cfg: DataConfig) -> DatasetReader:
    """Build the reader named by ``data.dataset`` over ``data.root``.

    ``data.dataset: auto`` picks the reader with :func:`medseg.data.detect.detect_format`.

    Args:
        data_cfg: the data section of the experiment.

    Returns:
        The reader, its cases already listed.

    Raises:
        ConfigError: an unknown dataset name, or no ``data.root`` for a dataset that reads files.
        DataError: a missing data folder, a folder of no known layout (``auto``), or problems found while
            listing it.
    """
    name = data_cfg.dataset
    if name != AUTO and name not in READERS:
        raise ConfigError(f"unknown dataset {name!r} (data.dataset); valid: {', '.join([AUTO, *sorted(READERS)])}")
    if name != AUTO and not READERS[name].needs_root:
        return READERS[name](data_cfg)
    if data_cfg.root is None:
        what = (
            "data.dataset=auto detects the format of a folder"
            if name == AUTO
            else f"the {name} dataset reads its files from a folder"
        )
        raise ConfigError(f"data.root is not set; {what}")
    root = resolve_path(data_cfg.root)
    if not root.is_dir():
        hint = (
            "set MEDSEG_DATA to the folder holding the datasets, or run from the repository root"
            if "MEDSEG_DATA" in data_cfg.root
            else "relative paths resolve against the current folder"
        )
        raise DataError(f"data folder {root} does not exist (data.root={data_cfg.root}); {hint}")
    reader_cls = READERS[detect_format(root) if name == AUTO else name]
    return reader_cls(data_cfg, root)
