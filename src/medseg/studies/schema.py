"""The study file: a base recipe, named arms, datasets, seeds and the reference arm.

A study file is YAML::

    name: cpu-glas
    base: ../configs/unet-glas.yaml      # recipe of the arms that name none (relative to this file)
    output_dir: ../runs/studies          # the study folder is <output_dir>/<name>
    seeds: [0, 1, 2]                     # train.seed of each run; the split (data.split_seed) stays fixed
    folds: []                            # optional: data.fold of each run (cross-validation)
    reference: unet                      # every other arm is compared with this one
    overrides: {data.image_size: 128}    # dotted overrides of every run
    datasets:                            # optional; default: the base recipe's dataset
      glas: {overrides: {}}              # a dataset may name its own recipe as well
    arms:
      unet: {}
      resunetpp: {overrides: {model.name: resunetpp, model.params: {}}}
      utanet: {recipe: ../configs/utanet-glas.yaml}

Each run's configuration is built from a recipe (the arm's, else the dataset's, else ``base``) with the dotted
overrides of the dataset, then the study, then the arm (``medseg train`` semantics: in a multi-stage recipe they
go into every stage too), then ``data.fold`` and ``train.seed``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.errors import MedsegError

__all__ = ["ArmSpec", "DatasetSpec", "StudyConfig", "StudyError", "load_study"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class StudyError(MedsegError):
    """A study file that cannot be read or is not valid, or a study folder that cannot be used."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArmSpec(_Spec):
    """One method of the study.

    Attributes:
        recipe: the arm's own recipe (e.g. a multi-stage one); ``None`` uses the dataset's or the study's base.
        overrides: dotted overrides (``model.name``, ``model.params.skip``, ``loss.terms``, ``stages`` ...).
        label: the name shown in the report (the arm's key when empty).
    """

    recipe: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    label: str = ""


class DatasetSpec(_Spec):
    """One dataset of the study.

    Attributes:
        recipe: recipe of this dataset's arms that name none (the study's base when ``None``).
        overrides: dotted overrides of every run on this dataset (``data.root``, ``eval.protocol`` ...).
    """

    recipe: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)


class StudyConfig(_Spec):
    """A whole study.

    Attributes:
        name: the study's name; its folder is ``<output_dir>/<name>``.
        description: one paragraph for the report.
        base: default recipe (relative to the study file).
        output_dir: parent of the study folder (relative to the study file).
        seeds: the ``train.seed`` of each run.
        folds: cross-validation folds (``data.fold`` of each run, with ``data.folds`` from the recipe or the
            overrides, or the dataset's published folds); empty: no fold axis. Each case is tested in one fold, so
            the report pools the folds: one per-case score per case, mean ± sd over all runs (folds x seeds).
        reference: the arm every other arm is compared with.
        compare_metric: the per-case metric of the paired comparison (``dice``; ``hd95``/``assd`` are lower-better).
        overrides: dotted overrides of every run.
        datasets: the datasets; empty: one, the base recipe's.
        arms: the methods (at least two: the reference and one more).
    """

    name: str
    description: str = ""
    base: str
    output_dir: str = "../runs/studies"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    folds: list[int] = Field(default_factory=list)
    reference: str
    compare_metric: str = "dice"
    overrides: dict[str, Any] = Field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    arms: dict[str, ArmSpec] = Field(min_length=2)
    _folder: Path = Path(".")

    @field_validator("name")
    @classmethod
    def _safe(cls, value: str) -> str:
        if not _SAFE_NAME.match(value):
            raise ValueError(f"{value!r} is not a safe folder name (letters, digits, _ . + -)")
        return value

    @field_validator("seeds", "folds")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"values repeat: {value}")
        return value

    @model_validator(mode="after")
    def _names_fit(self) -> StudyConfig:
        for name in [*self.arms, *self.datasets]:
            if not _SAFE_NAME.match(name) or "--" in name:
                raise ValueError(f"arm or dataset name {name!r}: letters, digits, _ . + - only, no '--'")
        if self.reference not in self.arms:
            raise ValueError(f"reference {self.reference!r} is not one of the arms ({', '.join(self.arms)})")
        return self

    @property
    def folder(self) -> Path:
        """The folder of the study file (relative paths of the file resolve against it)."""
        return self._folder

    def path(self, text: str) -> Path:
        """A path of the study file, absolute (``~`` and ``${VAR:-default}`` expanded).

        Args:
            text: the text as written in the study file.

        Returns:
            The absolute path.
        """
        from medseg.config import resolve_path

        return resolve_path(text, self._folder)

    @property
    def study_dir(self) -> Path:
        """The study folder: ``<output_dir>/<name>``."""
        return self.path(self.output_dir) / self.name

    def label(self, arm: str) -> str:
        """The report name of an arm."""
        return self.arms[arm].label or arm


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file.

    Args:
        path: the YAML study file.

    Returns:
        The study, its relative paths resolving against the file's folder.

    Raises:
        StudyError: missing or unreadable file, unknown key or invalid value (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise StudyError(f"study file {path} cannot be read: {' '.join(str(error).split())}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"study file {path} must hold a mapping (name, base, seeds, reference, arms ...)")
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'study'}: {item['msg']}" for item in error.errors()
        )
        raise StudyError(f"study file {path}: {problems}") from None
    study._folder = path.resolve().parent
    return study
