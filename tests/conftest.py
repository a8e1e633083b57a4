"""Shared fixtures: where the real datasets live (``$MEDSEG_DATA``, default ``<repo>/../shared/data``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.realdata import real_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def preprocessed_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the preprocessed caches the tests build in a temporary folder (``$MEDSEG_CACHE``), not in the home."""
    folder = tmp_path_factory.mktemp("medseg-cache")
    previous = os.environ.get("MEDSEG_CACHE")
    os.environ["MEDSEG_CACHE"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["MEDSEG_CACHE"]
    else:
        os.environ["MEDSEG_CACHE"] = previous


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test with one torch thread: tiny computations are dominated by thread synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the real datasets (``$MEDSEG_DATA`` or ``<repo>/../shared/data``)."""
    return Path(os.environ.get("MEDSEG_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def kvasir_root(data_root: Path) -> Path:
    """The Kvasir-SEG folder."""
    return real_dataset(data_root, "kvasir-seg")


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
