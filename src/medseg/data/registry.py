"""Reader registry: ``data.dataset`` name -> reader class; ``auto`` detects the format of ``data.root``.

Readers register with :func:`register_reader`: the built-in ones when their modules are imported (at the first
look-up), those of installed packages through the ``medseg.readers`` entry-point group (each entry point's name is
the reader name, its value a :class:`~medseg.data.readers.DatasetReader` subclass).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint
from typing import TypeVar

from medseg.config import ConfigError, DataConfig, resolve_path
from medseg.data.errors import DataError
from medseg.data.readers import DatasetReader
from medseg.registry import Registry

__all__ = ["AUTO", "READERS", "build_reader", "check_reader_name", "register_reader"]

AUTO = "auto"

_BUILTIN_MODULES = tuple(
    f"medseg.data.{module}"
    for module in (
        "acdc",
        "busi",
        "cvc",
        "glas",
        "image_folder",
        "isic",
        "kvasir",
        "monuseg",
        "nnunet",
        "ph2",
        "synapse",
        "synthetic",
    )
)

R = TypeVar("R", bound=type[DatasetReader])


def _named(cls: object, name: str, detect_priority: int | None) -> type[DatasetReader]:
    """``cls`` with its registry ``name`` and ``detect_priority`` set."""
    if not (isinstance(cls, type) and issubclass(cls, DatasetReader)):
        raise TypeError(f"{cls!r} is not a subclass of medseg.data.DatasetReader")
    cls.name = name
    cls.detect_priority = detect_priority
    return cls


def _from_entry_point(entry_point: EntryPoint, cls: object) -> type[DatasetReader]:
    """A reader class an entry point names; only a ``detect_priority`` its own body sets takes it into detection."""
    return _named(cls, entry_point.name, vars(cls).get("detect_priority") if isinstance(cls, type) else None)


READERS: Registry[type[DatasetReader]] = Registry(
    "dataset", "medseg.readers", modules=_BUILTIN_MODULES, from_entry_point=_from_entry_point, error=ConfigError
)
"""Every registered reader class."""


def register_reader(name: str, *, detect_priority: int | None = None) -> Callable[[R], R]:
    """Class decorator registering a :class:`~medseg.data.readers.DatasetReader` subclass under ``name``.

    Args:
        name: the reader name (``data.dataset``, ``medseg data check --format``); it becomes the class's ``name``.
        detect_priority: where ``data.dataset: auto`` tries the reader's :meth:`~DatasetReader.matches`: readers
            with a higher number first (the most specific layouts; ``image_folder``, which any ``images/`` +
            ``masks/`` folder matches, has 0); ``None``: never detected. It becomes the class's
            ``detect_priority`` (not inherited by a registered subclass).

    Returns:
        The decorator, which returns the class.
    """

    def decorator(cls: R) -> R:
        READERS.add(name, _named(cls, name, detect_priority))
        return cls

    return decorator


def check_reader_name(name: str, what: str) -> None:
    """Refuse a name that is neither ``auto`` nor a registered reader (installed packages' ones included).

    Args:
        name: the reader name.
        what: how the message names it, e.g. ``"dataset 'x' (data.dataset)"``.

    Raises:
        ConfigError: ``unknown <what>; valid: auto, ...`` listing every registered reader.
    """
    if name != AUTO and name not in READERS:
        raise ConfigError(f"unknown {what}; valid: {', '.join([AUTO, *READERS.names()])}")


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
    from medseg.data.detect import detect_format  # detect reads the registry

    name = data_cfg.dataset
    check_reader_name(name, f"dataset {name!r} (data.dataset)")
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
