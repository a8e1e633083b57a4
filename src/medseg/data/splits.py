"""Train/val/test splits: official where the dataset has one, seeded otherwise, persisted as JSON.

Rules of :func:`make_splits`, in order:

1. ``data.split_file`` set: the splits come from that file (see :func:`load_splits`).
2. The reader has an official split: it is used as is; a missing ``test`` and then a missing ``val`` are
   carved from its train cases (``test_fraction``, ``val_fraction``, seeded by ``split_seed``). Kvasir-SEG:
   880 -> 792 train + 88 val, test = the official 120.
3. No official split: all cases are split by ``val_fraction`` and ``test_fraction`` (seeded by
   ``split_seed``).

Cross-validation (``data.fold``, between rules 1 and 2): a dataset that publishes folds
(:meth:`DatasetReader.official_folds`, e.g. BUSI's CMUNeXt files) uses fold ``fold``'s train and test cases,
validation carved from its train cases as in rule 2; any other dataset without an official split is partitioned
into ``data.folds`` seeded groups of patients, fold ``fold``'s group is the test split and ``val_fraction`` of
the other patients the validation split.

Seeded shares are drawn by patient (:meth:`DatasetReader.patient_of`; each case is its own patient unless the
reader knows better, e.g. ACDC, Synapse, MoNuSeg), so the fractions count patients and a patient's cases
always stay together. Exact duplicate images (:meth:`DatasetReader.duplicate_groups`: identical decoded
pixels, e.g. BUSI's ``benign (433)`` and ``malignant (145)``) join their patients into one group, so duplicates
never straddle seeded splits; the images are hashed only when a seeded share is drawn, and only among the cases
it is drawn from. Official splits and split files are used as published (``medseg data check`` warns about
duplicates that an official split puts in different splits). A positive fraction always holds out at least
one group. Whatever the source, the final splits must be disjoint in cases and in patients. ``data.limit``
then keeps a seeded random ``limit`` of each split. Ids within a split are sorted; volumes stay volume ids (the
torch datasets expand them to slices).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from medseg.config import DataConfig, resolve_path
from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.readers import DatasetReader

__all__ = ["SPLIT_NAMES", "check_patients", "load_splits", "make_splits", "save_splits"]

SPLIT_NAMES = ("train", "val", "test")


def _share(total: int, fraction: float) -> int:
    """Cases for ``fraction`` of ``total``: rounded half up, at least one when the fraction is positive."""
    count = math.floor(total * fraction + 0.5)
    return max(count, 1) if fraction > 0 else count


def _shuffled(ids: list[str], seed: int | list[int]) -> list[str]:
    order = np.random.default_rng(seed).permutation(len(ids))
    return [ids[i] for i in order]


def _by_patient(ids: list[str], reader: DatasetReader, duplicates: bool) -> dict[str, list[str]]:
    """Case ids grouped by patient, groups sorted by name.

    With ``duplicates``, patients with identical images form one group, named after its first patient, so a
    dataset without duplicates gives exactly its patients.
    """
    groups: dict[str, list[str]] = {}
    for case in sorted(ids):
        groups.setdefault(reader.patient_of(case), []).append(case)
    group_of = {patient: patient for patient in groups}
    for same in reader.duplicate_groups(sorted(ids)) if duplicates else []:
        names = sorted({group_of[reader.patient_of(case)] for case in same})
        for name in names[1:]:
            moved = groups.pop(name)
            groups[names[0]] += moved
            for case in moved:
                group_of[reader.patient_of(case)] = names[0]
    return {name: sorted(cases) for name, cases in sorted(groups.items())}


def _cases(groups: dict[str, list[str]], patients: list[str]) -> list[str]:
    return sorted(case for patient in patients for case in groups[patient])


def check_patients(splits: dict[str, list[str]], reader: DatasetReader, where: str) -> None:
    """Check that no patient has cases in two splits.

    Args:
        splits: split name -> case ids.
        reader: the dataset (its :meth:`DatasetReader.patient_of`).
        where: what the splits are, for the message.

    Raises:
        DataError: patients found in more than one split.
    """
    seen: dict[str, str] = {}
    shared: set[str] = set()
    for name, ids in splits.items():
        for case in ids:
            patient = reader.patient_of(case)
            if seen.setdefault(patient, name) != name:
                shared.add(patient)
    if shared:
        raise DataError(f"{where} puts patient(s) in more than one split: {format_names(sorted(shared))}")


def _check_splits(splits: dict[str, list[str]], where: str) -> None:
    """Check split names and that no case is listed twice."""
    if set(splits) != set(SPLIT_NAMES):
        raise DataError(f"{where} has splits {sorted(splits)}; expected exactly {', '.join(SPLIT_NAMES)}")
    counts = Counter(case for ids in splits.values() for case in ids)
    repeated = sorted(case for case, count in counts.items() if count > 1)
    if repeated:
        raise DataError(f"{where} lists case(s) more than once (splits must be disjoint): {format_names(repeated)}")


def _from_official(official: dict[str, list[str]], reader: DatasetReader, data_cfg: DataConfig) -> dict[str, list[str]]:
    """Fill a missing ``test`` and ``val`` of an official split with seeded shares of its train cases."""
    where = f"the official split of the {reader.name} dataset"
    if "train" not in official or not set(official) <= set(SPLIT_NAMES):
        raise DataError(f"{where} has splits {sorted(official)}; expected train and optionally val, test")
    groups = _by_patient(official["train"], reader, duplicates=not {"val", "test"} <= set(official))
    train = _shuffled(list(groups), data_cfg.split_seed)
    total = len(train)
    splits = {"train": train}
    for name, fraction in (("test", data_cfg.test_fraction), ("val", data_cfg.val_fraction)):
        if name in official:
            splits[name] = list(official[name])
        else:
            count = _share(total, fraction)
            held_out, splits["train"] = splits["train"][:count], splits["train"][count:]
            splits[name] = _cases(groups, held_out)
    if not splits["train"]:
        raise DataError(f"{where}: no training cases are left after holding out validation/test cases")
    splits["train"] = _cases(groups, splits["train"])
    return {name: sorted(splits[name]) for name in SPLIT_NAMES}


def _random_split(reader: DatasetReader, data_cfg: DataConfig) -> dict[str, list[str]]:
    """Seeded split of all patients by ``val_fraction`` and ``test_fraction``."""
    groups = _by_patient(reader.case_ids(), reader, duplicates=True)
    shuffled = _shuffled(list(groups), data_cfg.split_seed)
    total = len(shuffled)
    n_test, n_val = _share(total, data_cfg.test_fraction), _share(total, data_cfg.val_fraction)
    if n_test + n_val >= total:
        what = "case(s)" if total == len(reader.case_ids()) else "group(s) of cases (patients, duplicate images)"
        raise DataError(
            f"{total} {what} are too few for data.val_fraction={data_cfg.val_fraction} and "
            f"data.test_fraction={data_cfg.test_fraction}: no training cases would be left"
        )
    test, val, train = shuffled[:n_test], shuffled[n_test : n_test + n_val], shuffled[n_test + n_val :]
    return {"train": _cases(groups, train), "val": _cases(groups, val), "test": _cases(groups, test)}


def _fold_split(reader: DatasetReader, data_cfg: DataConfig) -> dict[str, list[str]]:
    """The splits of cross-validation fold ``data.fold`` (rules in the module docstring)."""
    fold = data_cfg.fold
    assert fold is not None
    published = reader.official_folds()
    if published is not None:
        if data_cfg.folds not in (None, len(published)) or fold > len(published):
            raise DataError(
                f"the {reader.name} dataset publishes {len(published)} folds; got data.fold={fold}"
                + (f", data.folds={data_cfg.folds}" if data_cfg.folds is not None else "")
            )
        where = f"official fold {fold} of the {reader.name} dataset"
        known = set(reader.case_ids())
        unknown = sorted(case for ids in published[fold - 1].values() for case in ids if case not in known)
        if unknown:
            raise DataError(f"{where} lists case(s) that are not in the dataset: {format_names(unknown)}")
        splits = _from_official(published[fold - 1], reader, data_cfg)
        _check_splits(splits, where)
        check_patients(splits, reader, where)
        return splits
    if data_cfg.folds is None or fold > data_cfg.folds:
        raise DataError(
            f"data.fold={fold} needs data.folds (the number of folds, at least {fold}): the {reader.name} dataset "
            "publishes no folds"
        )
    if reader.official_split() is not None:
        raise DataError(
            f"the {reader.name} dataset has an official split; data.fold / data.folds are for datasets without one"
        )
    groups = _by_patient(reader.case_ids(), reader, duplicates=True)
    shuffled = _shuffled(list(groups), data_cfg.split_seed)
    if len(shuffled) < data_cfg.folds + 1:
        raise DataError(f"{len(shuffled)} patient group(s) are too few for data.folds={data_cfg.folds}")
    parts = np.array_split(np.arange(len(shuffled)), data_cfg.folds)
    held = set(parts[fold - 1].tolist())
    test = [shuffled[index] for index in sorted(held)]
    rest = [group for index, group in enumerate(shuffled) if index not in held]
    n_val = _share(len(rest), data_cfg.val_fraction)
    if n_val >= len(rest):
        raise DataError(f"no training cases are left in fold {fold} after holding out data.val_fraction")
    return {"train": _cases(groups, rest[n_val:]), "val": _cases(groups, rest[:n_val]), "test": _cases(groups, test)}


def make_splits(reader: DatasetReader, data_cfg: DataConfig) -> dict[str, list[str]]:
    """Make the disjoint train/val/test splits of a dataset (rules in the module docstring).

    Args:
        reader: the dataset.
        data_cfg: the data section of the experiment.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, ids sorted within each split.

    Raises:
        DataError: an invalid split file or official split, ids the reader does not know, patients in two
            splits, or too few cases.
    """
    if data_cfg.split_file is not None:
        path = resolve_path(data_cfg.split_file)
        splits = load_splits(path)
        known = set(reader.case_ids())
        unknown = sorted(case for ids in splits.values() for case in ids if case not in known)
        if unknown:
            raise DataError(
                f"split file {path} lists {len(unknown)} case(s) that are not in the {reader.name} dataset: "
                f"{format_names(unknown)}"
            )
        check_patients(splits, reader, f"split file {path}")
    elif data_cfg.fold is not None:
        splits = _fold_split(reader, data_cfg)
    else:
        official = reader.official_split()
        if official is None:
            splits = _random_split(reader, data_cfg)
        else:
            where = f"the official split of the {reader.name} dataset"
            splits = _from_official(official, reader, data_cfg)
            _check_splits(splits, where)
            check_patients(splits, reader, where)
    if data_cfg.limit is not None:
        limit = data_cfg.limit
        splits = {
            name: sorted(_shuffled(ids, [data_cfg.split_seed, index])[:limit])
            for index, (name, ids) in enumerate(splits.items())
        }
    return splits


def save_splits(splits: dict[str, list[str]], path: str | Path) -> None:
    """Write splits as JSON: ``{"counts": {name: n}, "splits": {name: [ids]}}``.

    Args:
        splits: split name -> case ids.
        path: destination file (parent folders are created).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"counts": {name: len(ids) for name, ids in splits.items()}, "splits": splits}
    path.write_text(json.dumps(payload, indent=1) + "\n")


def load_splits(path: str | Path) -> dict[str, list[str]]:
    """Read splits written by :func:`save_splits` (a bare ``{name: [ids]}`` mapping is accepted too).

    Args:
        path: the JSON file.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        DataError: a missing or invalid file, wrong split names, non-text ids or overlapping splits.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} does not exist")
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read split file {path}: {error}") from None
    splits = payload.get("splits", payload) if isinstance(payload, dict) else payload
    if not isinstance(splits, dict) or not all(
        isinstance(ids, list) and all(isinstance(case, str) for case in ids) for ids in splits.values()
    ):
        raise DataError(f"split file {path} must map each split name to a list of case ids")
    _check_splits(splits, f"split file {path}")
    return {name: list(splits[name]) for name in SPLIT_NAMES}
