"""``medseg data check``: recognise a dataset folder and report its contents and every problem in it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medseg.config import ConfigError, DataConfig
from medseg.data.detect import detect_format
from medseg.data.errors import DataError
from medseg.data.files import duplicate_groups, format_names
from medseg.data.readers import CaseCheck, DatasetReader
from medseg.data.registry import AUTO, READERS, check_reader_name
from medseg.data.splits import SPLIT_NAMES, check_patients

__all__ = ["DatasetCheck", "SplitCount", "check_dataset"]


@dataclass
class SplitCount:
    """The size of one split.

    Attributes:
        cases: case ids (2D cases and volumes).
        volumes: how many of them are volumes.
        slices: 2D slices in all (volumes counted slice by slice; unreadable cases count 0).
        patients: distinct patients (:meth:`DatasetReader.patient_of`).
    """

    cases: int
    volumes: int
    slices: int
    patients: int

    def describe(self) -> str:
        """The count as text, e.g. ``20 volumes (172 slices, 10 patients)``.

        Returns:
            The cases, with slices and patients where they differ from the cases.
        """
        if self.volumes == self.cases and self.cases:
            text = f"{self.cases} volumes"
        else:
            text = f"{self.cases} cases" + (f" ({self.volumes} volumes)" if self.volumes else "")
        details = [f"{self.slices} slices"] if self.slices != self.cases else []
        details += [f"{self.patients} patients"] if self.patients != self.cases else []
        return text + (f", {', '.join(details)}" if details else "")


@dataclass
class DatasetCheck:
    """The report of :func:`check_dataset`.

    Attributes:
        path: the checked folder.
        format: the reader name (``unknown`` when none matched).
        detected: whether the format was detected (``auto``) rather than given.
        num_classes: classes (with background) the masks were checked against.
        num_cases: cases listed (2D cases and volumes).
        official: whether the counts are the dataset's official split (else one ``all`` group).
        splits: split name -> its size.
        subsets: named subsets of the official split (e.g. GlaS ``testA``/``testB``) -> size.
        folds: the cross-validation folds the dataset publishes (``data.fold``): train and test cases of each.
        height_range: smallest and largest image height, ``None`` when no image was readable.
        width_range: smallest and largest image width.
        label_values: every raw mask value found (after the dataset's binarisation).
        duplicates: groups of cases whose images have identical pixels (:meth:`DatasetReader.duplicate_groups`),
            ``None`` when the reader hashes no image (volumes).
        problems: every problem found, each naming its file.
        warnings: things worth knowing that do not make the dataset unusable (duplicates in different splits
            of the official split, which training keeps as published).
        seconds: how long the check took.
    """

    path: Path
    format: str
    detected: bool
    num_classes: int | None = None
    num_cases: int = 0
    official: bool = False
    splits: dict[str, SplitCount] = field(default_factory=dict)
    subsets: dict[str, SplitCount] = field(default_factory=dict)
    folds: list[dict[str, int]] = field(default_factory=list)
    height_range: tuple[int, int] | None = None
    width_range: tuple[int, int] | None = None
    label_values: list[int] = field(default_factory=list)
    duplicates: list[list[str]] | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def to_text(self) -> str:
        """A readable multi-line report.

        Returns:
            The report, ending with the verdict.
        """
        how = "detected" if self.detected else "given"
        lines = [f"dataset check of {self.path}", f"  format        {self.format} ({how})"]
        if self.num_classes is not None:
            lines.append(f"  classes       {self.num_classes}")
            lines.append(f"  cases         {self.num_cases}")
            lines.append(f"  split         {'official' if self.official else 'none official (seeded at training)'}")
            lines += [f"    {name:<11} {count.describe()}" for name, count in self.splits.items()]
            lines += [f"    {name:<11} {count.describe()} (subset)" for name, count in self.subsets.items()]
            if self.folds:
                sizes = ", ".join(f"{fold['train']}/{fold['test']}" for fold in self.folds)
                lines.append(f"  folds         {len(self.folds)} published (train/test cases: {sizes}; data.fold)")
        if self.height_range is not None and self.width_range is not None:
            (h_min, h_max), (w_min, w_max) = self.height_range, self.width_range
            lines.append(f"  image size    height {h_min}..{h_max}, width {w_min}..{w_max}")
        if self.label_values:
            lines.append(f"  label values  {format_names(self.label_values, limit=20)}")
        if self.num_classes is not None:
            lines.append(f"  duplicates    {_describe_duplicates(self.duplicates)}")
        for title, items in (("problems", self.problems), ("warnings", self.warnings)):
            if items or title == "problems":
                lines.append(f"  {title:<13} {len(items) or 'none'}")
            lines += ["    - " + item.replace("\n", "\n      ") for item in items]
        verdict = "OK" if self.ok else f"NOT OK: {len(self.problems)} problem(s)"
        lines.append(f"{verdict} ({self.seconds:.1f} s)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field, plus ``ok``.

        Returns:
            The report as plain types.
        """
        return {
            "path": str(self.path),
            "format": self.format,
            "detected": self.detected,
            "ok": self.ok,
            "num_classes": self.num_classes,
            "num_cases": self.num_cases,
            "official": self.official,
            "splits": {name: asdict(count) for name, count in self.splits.items()},
            "subsets": {name: asdict(count) for name, count in self.subsets.items()},
            "folds": self.folds,
            "height_range": list(self.height_range) if self.height_range else None,
            "width_range": list(self.width_range) if self.width_range else None,
            "label_values": self.label_values,
            "duplicates": self.duplicates,
            "problems": self.problems,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


def _describe_duplicates(groups: list[list[str]] | None) -> str:
    """E.g. ``1 pair of identical images: benign (433) = malignant (145)``."""
    if groups is None:
        return "not checked (only 2D image files are compared)"
    if not groups:
        return "none"
    pairs = all(len(group) == 2 for group in groups)
    what = f"{len(groups)} {'pair' if pairs else 'group'}{'s' if len(groups) > 1 else ''} of identical images"
    if not pairs:
        what += f" ({sum(len(group) for group in groups)} images)"
    return f"{what}: {format_names(' = '.join(group) for group in groups)}"


def _straddling(groups: list[list[str]], split: dict[str, list[str]]) -> str | None:
    """A warning naming the duplicate groups that an official split puts in different splits, if any."""
    split_of = {case: name for name, ids in split.items() for case in ids}
    straddling = [group for group in groups if len({split_of.get(case) for case in group}) > 1]
    if not straddling:
        return None
    named = [" = ".join(f"{case} ({split_of.get(case, 'none')})" for case in group) for group in straddling]
    listed = format_names(named)
    return (
        f"the official split puts {len(straddling)} group(s) of identical images in different splits (used as "
        f"published; seeded splits keep duplicates together): {listed}"
    )


def _count(reader: DatasetReader, ids: list[str], checks: dict[str, CaseCheck]) -> SplitCount:
    return SplitCount(
        cases=len(ids),
        volumes=sum(reader.is_volume(case) for case in ids if case in checks),
        slices=sum(checks[case].slices for case in ids if case in checks),
        patients=len({reader.patient_of(case) for case in ids}),
    )


def _split_problems(reader: DatasetReader, split: dict[str, list[str]]) -> list[str]:
    """Cases in no split or in several, and patients in several."""
    problems = []
    listed = [case for ids in split.values() for case in ids]
    unlisted = sorted(set(reader.case_ids()) - set(listed))
    if unlisted:
        problems.append(f"{len(unlisted)} case(s) are in no split of the official split: {format_names(unlisted)}")
    repeated = sorted(case for case, count in Counter(listed).items() if count > 1)
    if repeated:
        problems.append(f"case(s) in more than one split of the official split: {format_names(repeated)}")
    try:
        check_patients(split, reader, "the official split")
    except DataError as error:
        problems.append(str(error))
    return problems


def _fill(report: DatasetCheck, data_cfg: DataConfig | None) -> None:
    """Detect, list, check every case and count the splits, adding to ``report``."""
    if report.detected:
        report.format = detect_format(report.path)
    reader_cls = READERS[report.format]
    if data_cfg is None:
        num_classes = reader_cls.default_num_classes(report.path)
        data_cfg = DataConfig(dataset=report.format, root=str(report.path), num_classes=num_classes)
    else:
        data_cfg = data_cfg.model_copy(update={"dataset": report.format, "root": str(report.path)})
    report.num_classes = data_cfg.num_classes
    reader = reader_cls(data_cfg, report.path, strict=False)
    report.problems += reader.problems
    checks = {case: reader.check_case(case) for case in reader.case_ids()}
    report.num_cases = len(checks)
    sizes = [check.size for check in checks.values() if check.size is not None]
    if sizes:
        heights, widths = [size[0] for size in sizes], [size[1] for size in sizes]
        report.height_range, report.width_range = (min(heights), max(heights)), (min(widths), max(widths))
    report.label_values = sorted(set().union(*(check.label_values for check in checks.values())))
    report.problems += [problem for check in checks.values() for problem in check.problems]
    hashes = {case: check.image_hash for case, check in checks.items() if check.image_hash is not None}
    report.duplicates = duplicate_groups(hashes) if hashes else None
    try:
        official = reader.official_split()
    except DataError as error:
        report.problems.append(str(error))
        official = None
    report.official = official is not None
    if official is None:
        groups = {"all": reader.case_ids()}
    else:
        report.problems += _split_problems(reader, official)
        warning = _straddling(report.duplicates or [], official)
        report.warnings += [warning] if warning else []
        order = {name: index for index, name in enumerate(SPLIT_NAMES)}
        groups = dict(sorted(official.items(), key=lambda item: order.get(item[0], len(order))))
    report.splits = {name: _count(reader, ids, checks) for name, ids in groups.items()}
    report.subsets = {name: _count(reader, ids, checks) for name, ids in reader.subsets().items()}
    try:
        folds = reader.official_folds() or []
    except DataError as error:
        report.problems.append(str(error))
        folds = []
    known = set(reader.case_ids())
    for index, fold in enumerate(folds, start=1):
        unknown = sorted(case for ids in fold.values() for case in ids if case not in known)
        if unknown:
            report.problems.append(
                f"published fold {index} lists case(s) that are not in the dataset: {format_names(unknown)}"
            )
    report.folds = [{name: len(ids) for name, ids in fold.items()} for fold in folds]


def check_dataset(path: Path, format: str = AUTO, data_cfg: DataConfig | None = None) -> DatasetCheck:
    """Check a dataset folder: its format, split counts, image sizes, mask values and every problem.

    Unlike training, which stops at the first bad file, the check reads every image completely, with the decoder
    training uses (:func:`medseg.data.files.read_image`), and every mask, and collects all problems: missing
    masks, unreadable (e.g. truncated) files, unsupported pixel formats, NaN or infinite pixels, image/mask size
    mismatches, unexpected mask values, split files naming unknown cases, patients in two splits. It also lists
    the images with identical pixels (:attr:`DatasetCheck.duplicates`, 2D image datasets only): seeded splits
    keep each such group in one split; duplicates that an official split puts in different splits are a
    warning, not a problem, since training uses the official split as published.

    Args:
        path: the dataset folder.
        format: a reader name, or ``auto`` to detect it (:func:`medseg.data.detect.detect_format`).
        data_cfg: settings to read the masks with (label map, threshold, classes); by default the format's:
            2 classes for the binary datasets, 4 for ACDC, 9 for Synapse, nnU-Net's from ``dataset.json``.

    Returns:
        The report (``ok`` when no problem was found; a folder of unknown layout is a problem too).

    Raises:
        ConfigError: an unknown format name, or one that reads no folder (``synthetic``).
    """
    check_reader_name(format, f"dataset format {format!r}")
    if format != AUTO and not READERS[format].needs_root:
        raise ConfigError(f"the {format} dataset is generated, not read from a folder: there is nothing to check")
    start = time.perf_counter()
    report = DatasetCheck(
        path=Path(path).expanduser().resolve(), format="unknown" if format == AUTO else format, detected=format == AUTO
    )
    try:
        _fill(report, data_cfg)
    except DataError as error:
        report.problems.append(str(error))
    report.seconds = time.perf_counter() - start
    return report
