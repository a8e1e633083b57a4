"""Fixtures of the real datasets under ``$MEDSEG_DATA``; each skips its test when its folder is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.realdata import real_dataset


@pytest.fixture(scope="session")
def glas_root(data_root: Path) -> Path:
    """The GlaS folder."""
    return real_dataset(data_root, "glas")


@pytest.fixture(scope="session")
def monuseg_root(data_root: Path) -> Path:
    """The MoNuSeg folder (UCTransNet layout)."""
    return real_dataset(data_root, "monuseg")


@pytest.fixture(scope="session")
def acdc_root(data_root: Path) -> Path:
    """The ACDC folder (SSL4MIS HDF5 layout)."""
    return real_dataset(data_root, "acdc-h5")


@pytest.fixture(scope="session")
def busi_root(data_root: Path) -> Path:
    """The BUSI sample (benchmark layout)."""
    return real_dataset(data_root, "busi-sample")


@pytest.fixture(scope="session")
def ph2_root(data_root: Path) -> Path:
    """The PH2 sample (original layout)."""
    return real_dataset(data_root, "ph2-sample")
