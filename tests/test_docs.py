"""The documentation: the generated configuration reference, and the links from code and recipes into docs/.

The site build itself (``make docs``, MkDocs with ``--strict``) checks the links between pages; these tests check
what it cannot see: that the configuration reference lists every key of the schema, refuses an undocumented one, and
that every ``docs/<page>.md#<anchor>`` cited in the code, the recipes, the tests, the benchmarks and the README
points at an existing page and heading.
"""

from __future__ import annotations

import importlib.util
import re
import typing
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from medseg.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_LINK = re.compile(r"docs/([\w./-]+\.md)(?:#([\w-]+))?")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*(?:\{#([\w-]+)\})?\s*$")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of a pydantic schema, ``[]`` marking lists of sections."""
    keys = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        annotation = info.annotation
        if typing.get_origin(annotation) is list:
            (annotation,) = typing.get_args(annotation)
            key += "[]"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{key}.")
    return keys


def _slug(text: str) -> str:
    """Python-Markdown's default heading id."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    anchors = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        match = None if in_code else _HEADING.match(line)
        if match:
            anchors.add(match.group(2) or _slug(match.group(1)))
    return anchors


def test_config_reference_lists_every_key() -> None:
    """Each key of the experiment schema has a row (key, type, default, description) in the reference page."""
    page = _load("gen_config_reference").config_reference()
    missing = [key for key in _keys(ExperimentConfig) if f"| `{key}` |" not in page]
    assert not missing
    assert "| `data.transforms.hflip` | `float` (≥ 0, ≤ 1) | `0.5` | probability of a horizontal flip. |" in page


def test_config_reference_refuses_an_undocumented_key() -> None:
    """A key without a description in its class's Attributes section stops the documentation build."""
    module = _load("gen_config_reference")

    class Tiny(BaseModel):
        """A schema.

        Attributes:
            documented: a documented key.
        """

        documented: int = 1

    assert "| `documented` | `int` | `1` | a documented key. |" in module.config_reference(Tiny)

    class Forgetful(BaseModel):
        """A schema.

        Attributes:
            documented: a documented key.
        """

        documented: int = 1
        forgotten: int = 2
        nested: Tiny = Tiny()

    with pytest.raises(module.ConfigReferenceError, match=r"Forgetful\.forgotten \(forgotten\) has no description"):
        module.config_reference(Forgetful)


def test_links_into_docs_resolve() -> None:
    """Every ``docs/<page>.md[#anchor]`` cited outside docs/ names an existing page and one of its headings."""
    sources = [
        ROOT / "README.md",
        *(p for d in ("src", "configs", "tests", "benchmarks") for p in (ROOT / d).rglob("*")),
    ]
    broken = []
    for source in sources:
        if source.suffix not in {".py", ".yaml", ".md"} or not source.is_file():
            continue
        for match in _LINK.finditer(source.read_text(encoding="utf-8")):
            page, anchor = DOCS / match.group(1), match.group(2)
            if not page.is_file() or (anchor is not None and anchor not in _anchors(page)):
                broken.append(f"{source.relative_to(ROOT)}: {match.group(0)}")
    assert not broken


def test_method_pages_have_the_anchors_code_cites() -> None:
    """The sections the code refers to exist (the anchors are stable: explicit ids in the headings)."""
    expected = {
        "utanet.md": {"ta-mosc", "beu-loss", "known-bugs", "parameter-counts", "recipe"},
        "asc_seg.md": {"architecture", "loss", "recipe", "published-numbers", "known-bugs", "parameter-counts"},
        "reseg_unet.md": {"stage-1", "stage-2", "other-backbones", "bridge", "known-bugs"},
        "selfreg_unet.md": {"instrumented-networks", "losses", "ifd", "scr", "weights", "recipes"},
        "settings.md": {"p-syn", "p-acdc", "p-uct", "p-vmu"},
    }
    for page, anchors in expected.items():
        assert anchors <= _anchors(DOCS / "methods" / page), page
