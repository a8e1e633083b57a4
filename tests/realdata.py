"""Where the real datasets live under ``$MEDSEG_DATA``, and skipping a test when one is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

# folder under $MEDSEG_DATA -> a file or folder that must exist in it
REAL_DATASETS = {
    "kvasir-seg": "images",
    "glas": "images",
    "monuseg": "Train_Folder",
    "acdc-h5": "data",
    "busi-sample": "images",
    "ph2-sample": "PH2 Dataset images",
}


def real_dataset(data_root: Path, folder: str) -> Path:
    """The folder of a real dataset, skipping the test when it is absent.

    Args:
        data_root: the folder holding the datasets.
        folder: one of :data:`REAL_DATASETS`.

    Returns:
        The dataset folder.
    """
    root = data_root / folder
    if not (root / REAL_DATASETS[folder]).exists():
        pytest.skip(f"{folder} not found at {root} (set MEDSEG_DATA to the folder holding {folder}/)")
    return root
