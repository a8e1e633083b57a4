"""Shared fixtures: where the real datasets live (``$MEDSEG_DATA``, default ``<repo>/../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the real datasets (``$MEDSEG_DATA`` or ``<repo>/../shared/data``)."""
    return Path(os.environ.get("MEDSEG_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def kvasir_root(data_root: Path) -> Path:
    """The Kvasir-SEG folder; skips the test when it is absent."""
    root = data_root / "kvasir-seg"
    if not (root / "images").is_dir():
        pytest.skip(f"Kvasir-SEG not found at {root} (set MEDSEG_DATA to the folder holding kvasir-seg/)")
    return root
