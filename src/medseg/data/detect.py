"""Recognise a dataset's format from its folder layout."""

from __future__ import annotations

from pathlib import Path

from medseg.data.errors import DataError
from medseg.data.readers import DatasetReader
from medseg.data.registry import READERS

__all__ = ["detect_format", "detection_order"]


def detection_order() -> list[type[DatasetReader]]:
    """The readers :func:`detect_format` tries: every registered reader with a ``detect_priority``, highest first
    (the most specific layouts; ``image_folder`` matches any ``images/`` + ``masks/`` folder, so it comes last),
    ties in name order.

    Returns:
        The reader classes, in the order they are tried.
    """
    readers = [cls for _, cls in READERS.items() if cls.detect_priority is not None]
    return sorted(readers, key=lambda cls: (-(cls.detect_priority or 0), cls.name))


def detect_format(path: Path) -> str:
    """The reader name of the dataset in a folder, from the signature files of each layout.

    Args:
        path: the dataset folder.

    Returns:
        The name of the first reader of :func:`detection_order` whose layout matches.

    Raises:
        DataError: a missing or empty folder, or a folder that matches no layout (the message lists what was
            looked for).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"data folder {path} does not exist")
    if all(entry.name.startswith(".") for entry in path.iterdir()):  # nothing, or hidden files only
        raise DataError(f"data folder {path} is empty")
    readers = detection_order()
    for reader in readers:
        if reader.matches(path):
            return reader.name
    looked_for = "\n".join(f"  {reader.name}: {reader.signature}" for reader in readers)
    raise DataError(
        f"cannot tell the dataset format of {path}: it matches none of these layouts\n{looked_for}\n"
        "set data.dataset (or --format) to the reader name if the layout differs"
    )
