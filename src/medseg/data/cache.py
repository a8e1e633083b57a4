"""The preprocessed cache: every 2D case decoded, converted and resized once, then read from memory-mapped files.

Preparing a case (decoding its files, :func:`~medseg.data.transforms.prepare_image` and the resize of
:func:`~medseg.data.transforms.build_transforms`) costs far more than reading the result: a Kvasir-SEG image takes
about 25 ms, its cached copy a fraction of a millisecond. Like nnU-Net's preprocessed folder, the cache keeps the
prepared arrays (before augmentation, which runs on batches) on disk, in

``<cache dir>/<reader>-<settings hash>/<case>-<entry hash>.npy``

* ``<cache dir>``: ``data.cache_dir``, else ``$MEDSEG_CACHE``, else ``$XDG_CACHE_HOME/medseg``, else
  ``~/.cache/medseg`` (:func:`cache_root`);
* the settings hash covers everything that changes the prepared arrays: the reader and its folder, ``image_size``,
  ``in_channels``, ``num_classes``, ``label_map``, ``mask_threshold``, the normalisation, the synthetic data
  settings and the cache format (:func:`preprocessing_settings`); augmentation settings do not change it;
* the entry hash covers the case id and the path, size and modification time of every file the case is read
  from (:func:`case_sources`), so a changed file gives its case a new entry, built on next use.

Images are stored as uint8 codes of ``k / 255`` when that is exact (8-bit images with ``unit`` normalisation at
their native size), else as float16, which keeps 11 significant bits (relative error at most ``2**-11``, about
``5e-4``: a few ten-thousandths on images in [0, 1], about ``1.3e-3`` on ImageNet-normalised ones), or float32
where float16 would overflow; masks as uint8 (int32 above 255 classes). Each entry is one ``.npy`` file holding
a record with an ``image`` and a ``mask`` field. Volumes are cached slice by slice.

An entry is written to a temporary file and renamed into place, so a killed build leaves no partial entry, and
two processes building the same entry at once write the same bytes: whichever rename comes last, readers only
ever see a complete file. Entries are opened with ``np.load(..., mmap_mode="r")`` when a case is served, in the
process serving it (each DataLoader worker), so the workers share the page cache and copy nothing but the batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

import medseg
from medseg.config import DataConfig, resolve_path
from medseg.data.errors import DataError
from medseg.data.readers import CaseRecord, DatasetReader
from medseg.data.synthetic import SyntheticReader
from medseg.data.transforms import build_transforms, prepare_image
from medseg.errors import MedsegError
from medseg.runtime import available_cpus

__all__ = [
    "CACHE_ENV",
    "CACHE_FORMAT",
    "CacheBuild",
    "PreparedCache",
    "cache_root",
    "cacheable",
    "case_sources",
    "decode_image",
    "encode_image",
    "preprocessing_settings",
    "read_entry",
]

log = logging.getLogger(__name__)

CACHE_ENV = "MEDSEG_CACHE"
"""The environment variable that moves the default cache folder."""

CACHE_FORMAT = 2
"""Version of the entry layout and of the preparation code; a new value starts new caches."""

ENTRY_SUFFIX = ".npy"
LOCK_FILE = ".lock"
_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_SECONDS = 3600.0
_CASES_PER_BUILD_WORKER = 32
_MAX_BUILD_WORKERS = 8
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_UNSAFE_NAME = re.compile(r"[^\w.-]")


def cache_root(data_cfg: DataConfig) -> Path:
    """The folder that holds the caches.

    Args:
        data_cfg: the data section; ``data.cache_dir`` wins when set.

    Returns:
        ``data.cache_dir``, else ``$MEDSEG_CACHE``, else ``$XDG_CACHE_HOME/medseg``, else ``~/.cache/medseg``.
    """
    if data_cfg.cache_dir:
        return resolve_path(data_cfg.cache_dir)
    if os.environ.get(CACHE_ENV):
        return resolve_path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return resolve_path(base) / "medseg"


def cacheable(reader: DatasetReader) -> bool:
    """Whether the cache can tell when a reader's cases change.

    Args:
        reader: the dataset.

    Returns:
        ``True`` for readers of a folder (each entry's key holds its files) and for the synthetic dataset (a
        function of its settings); other generated data (a reader without a folder) is served directly.
    """
    return reader.root is not None or isinstance(reader, SyntheticReader)


def preprocessing_settings(reader: DatasetReader, data_cfg: DataConfig) -> dict[str, Any]:
    """Everything that changes the prepared arrays of a dataset, as plain JSON values.

    Args:
        reader: the dataset (its own data section gives the label rules).
        data_cfg: the data section of :func:`~medseg.data.transforms.prepare_image` and the resize.

    Returns:
        The settings hashed into the cache key; augmentation, split and loader settings are not part of it.
    """
    labels = reader.data_cfg
    transforms = data_cfg.transforms
    return {
        "format": CACHE_FORMAT,
        "medseg": medseg.__version__,
        "reader": reader.name,
        "root": None if reader.root is None else str(reader.root),
        "image_size": data_cfg.image_size,
        "in_channels": data_cfg.in_channels,
        "normalize": transforms.normalize,
        "mean": transforms.mean,
        "std": transforms.std,
        "num_classes": labels.num_classes,
        "label_map": None if labels.label_map is None else sorted(labels.label_map.items()),
        "mask_threshold": labels.mask_threshold,
        "synthetic": labels.synthetic.model_dump(mode="json") if reader.root is None else None,
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class _Folders:
    """Sorted file names per folder, listed once, to find the files named after a case."""

    def __init__(self) -> None:
        self._names: dict[Path, list[str]] = {}

    def starting_with(self, folder: Path, prefix: str) -> Iterator[Path]:
        if folder not in self._names:
            try:
                self._names[folder] = sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
            except OSError:
                self._names[folder] = []
        names = self._names[folder]
        for index in range(bisect_left(names, prefix), len(names)):
            if not names[index].startswith(prefix):
                break
            yield folder / names[index]


def case_sources(record: CaseRecord, folders: _Folders | None = None) -> list[Path]:
    """The files a case is read from, found without decoding anything.

    Args:
        record: the case (for a slice ``<volume>:<index>``, its volume's record).
        folders: shared folder listings (one listing per folder for many cases).

    Returns:
        Its image and mask files and, beside them, every file named ``<case id>_*`` (the further channel files
        of an nnU-Net case, the extra lesion masks of a BUSI image), sorted; empty for generated data.
    """
    folders = folders or _Folders()
    paths = {path for path in (record.image_path, record.mask_path) if path is not None}
    for parent in {path.parent for path in paths}:
        paths.update(folders.starting_with(parent, f"{record.case_id}_"))
    return sorted(paths)


def encode_image(image: np.ndarray) -> np.ndarray:
    """The compact form of a prepared float32 image: uint8 codes of ``k / 255`` when exact, else float16, or
    float32 where float16 overflows.

    Args:
        image: ``(C, S, S)`` float32.

    Returns:
        The array to store; :func:`decode_image` gives the image back (exactly, except for float16 rounding).
    """
    codes = np.rint(image * 255)
    if np.all((codes >= 0) & (codes <= 255)):
        codes = codes.astype(np.uint8)
        if np.array_equal(decode_image(codes), image):
            return codes
    if np.abs(image).max(initial=0) <= _FLOAT16_MAX:
        return image.astype(np.float16)
    return image


def decode_image(stored: np.ndarray) -> np.ndarray:
    """A stored image back as float32.

    Args:
        stored: an array written by :func:`encode_image` (uint8 codes, float16 or float32).

    Returns:
        ``(C, S, S)`` float32 (a new array).
    """
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255.0)
    return np.array(stored, dtype=np.float32)


@dataclass
class CacheBuild:
    """What :meth:`PreparedCache.ensure` did.

    Attributes:
        entries: the entry file of each requested case, in order.
        built: how many entries it had to build.
        seconds: time spent building them.
    """

    entries: list[Path]
    built: int
    seconds: float


class _EntryBuilder(Dataset):
    """Builds one entry per item (in DataLoader workers to build in parallel); items are the bytes written, or the
    error that stopped a case."""

    def __init__(self, cache: PreparedCache, jobs: list[tuple[str, Path]]) -> None:
        self.cache = cache
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> int | MedsegError:
        case_id, entry = self.jobs[index]
        try:
            return self.cache.build_entry(case_id, entry)
        except MedsegError as error:
            return error


class PreparedCache:
    """The preprocessed cache of one dataset at one preprocessing (see the module docstring).

    Args:
        reader: the dataset.
        data_cfg: the data section (image size, channels, normalisation, cache folder); the reader's when
            ``None``.
        root: the folder holding the caches; :func:`cache_root` when ``None``.

    Attributes:
        folder: this dataset's cache folder, ``<root>/<reader>-<settings hash>``.
        settings: :func:`preprocessing_settings`.
    """

    def __init__(self, reader: DatasetReader, data_cfg: DataConfig | None = None, root: Path | None = None) -> None:
        self.reader = reader
        self.data_cfg = data_cfg or reader.data_cfg
        self.settings = preprocessing_settings(reader, self.data_cfg)
        self._settings_hash = _digest(self.settings)
        base = root if root is not None else cache_root(self.data_cfg)
        self.folder = base / f"{reader.name}-{self._settings_hash[:16]}"
        self._records: dict[str, CaseRecord] | None = None
        self._resize = build_transforms(self.data_cfg)

    def _record(self, case_id: str) -> CaseRecord:
        """The record of a case, or of the volume of a slice id ``<volume>:<index>``."""
        if self._records is None:
            self._records = {record.case_id: record for record in self.reader.list_cases()}
        record = self._records.get(case_id)
        if record is None:
            record = self._records[case_id.rpartition(":")[0]]
        return record

    def entries(self, case_ids: Iterable[str]) -> list[Path]:
        """The entry file of each case for its files as they are now (whether built or not).

        Args:
            case_ids: 2D case ids (slice ids ``<volume>:<index>`` included).

        Returns:
            One path per case, in order.
        """
        folders = _Folders()
        stats: dict[Path, list[Any]] = {}
        out = []
        for case_id in case_ids:
            sources = []
            for path in case_sources(self._record(case_id), folders):
                if path not in stats:
                    try:
                        info = path.stat()
                        stats[path] = [str(path), info.st_size, info.st_mtime_ns]
                    except OSError:
                        stats[path] = [str(path), None, None]
                sources.append(stats[path])
            digest = _digest([self._settings_hash, case_id, sources])
            out.append(self.folder / f"{_UNSAFE_NAME.sub('_', case_id)[:80]}-{digest[:20]}{ENTRY_SUFFIX}")
        return out

    def prepare(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Read, prepare and resize one case, as the dataset without cache serves it before augmentation.

        Args:
            case_id: a 2D case id.

        Returns:
            The image ``(C, S, S)`` float32 and the mask ``(S, S)`` int64.

        Raises:
            DataError: unreadable files or bad masks (as :meth:`DatasetReader.load`).
        """
        case = self.reader.load(case_id)
        image = prepare_image(case.image, self.data_cfg, case.image_path or case.case_id)
        out = self._resize({"image": image, "mask": case.mask})
        return out["image"].numpy(), out["mask"].numpy()

    def build_entry(self, case_id: str, entry: Path) -> int:
        """Prepare one case and write its entry atomically (temporary file, then rename).

        Args:
            case_id: a 2D case id.
            entry: its path from :meth:`entries`.

        Returns:
            The bytes written.
        """
        image, mask = self.prepare(case_id)
        stored = encode_image(image)
        mask = mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.int32)
        record = np.empty((), [("image", stored.dtype, stored.shape), ("mask", mask.dtype, mask.shape)])
        record["image"], record["mask"] = stored, mask
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=ENTRY_SUFFIX, dir=self.folder)
        except OSError as error:
            raise self._unwritable(error) from None
        temp = Path(name)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.save(stream, record)
            os.replace(temp, entry)
        except OSError as error:
            raise self._unwritable(error) from None
        finally:
            temp.unlink(missing_ok=True)
        return entry.stat().st_size

    def _unwritable(self, error: OSError) -> DataError:
        return DataError(
            f"cannot write the preprocessed cache {self.folder}: {error.strerror or error}; set data.cache_dir "
            f"or {CACHE_ENV} to a writable folder, or data.cache=false"
        )

    def _remove_stale_temps(self) -> None:
        """Delete the temporary files that killed builds left behind (older than an hour)."""
        if not self.folder.is_dir():
            return
        now = time.time()
        for path in self.folder.glob(f"{_TEMP_PREFIX}*"):
            try:
                if now - path.stat().st_mtime > _STALE_TEMP_SECONDS:
                    path.unlink()
            except OSError:
                continue

    def _write_settings(self) -> None:
        path = self.folder / "settings.json"
        if path.is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.folder)
        with os.fdopen(handle, "w") as stream:
            json.dump(self.settings, stream, indent=2)
        os.replace(temp, path)

    def ensure(self, case_ids: list[str], progress: bool | None = None) -> CacheBuild:
        """Build the entries that are missing (with a progress bar on a terminal) and return every entry.

        Many missing cases are built in parallel in worker processes (one per CPU, up to 8). A process that finds
        another one building the same cache waits for it and builds only what is still missing.

        Args:
            case_ids: 2D case ids (slice ids ``<volume>:<index>`` included).
            progress: draw a progress bar; ``None``: when stderr is a terminal. One log line tells what was built.

        Returns:
            The entries of ``case_ids``, in order, and what was built.

        Raises:
            DataError: a case that cannot be read (nothing is written for it).
        """
        entries = self.entries(case_ids)
        if all(entry.is_file() for entry in entries):
            return CacheBuild(entries, 0, 0.0)
        started = time.perf_counter()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()
            self._write_settings()
        except OSError as error:
            raise self._unwritable(error) from None
        with self._build_lock():  # what another process built meanwhile is not built again
            missing = {entry: case for case, entry in zip(case_ids, entries, strict=True) if not entry.is_file()}
            builder = _EntryBuilder(self, [(case, entry) for entry, case in missing.items()])
            workers = min(available_cpus(), _MAX_BUILD_WORKERS, len(missing) // _CASES_PER_BUILD_WORKER)
            loader = DataLoader(builder, batch_size=None, num_workers=workers if workers > 1 else 0)
            with _progress(progress, f"caching {len(missing)} {self.reader.name} cases", len(missing)) as advance:
                for result in loader:
                    if isinstance(result, MedsegError):  # raised here: worker exceptions come back as multi-line text
                        raise result
                    advance()
        seconds = time.perf_counter() - started
        if missing:
            log.info("cached %d %s cases in %.1f s (%s)", len(missing), self.reader.name, seconds, self.folder)
        return CacheBuild(entries, len(missing), seconds)

    @contextmanager
    def _build_lock(self) -> Iterator[None]:
        """Hold the folder's build lock (``flock`` of ``.lock``), so that runs starting together (the ranks of a
        multi-GPU run, two trainings) build each entry once; without file locks (another OS, some network file
        systems) entries are still written atomically, only perhaps twice."""
        try:
            import fcntl
        except ImportError:
            yield
            return
        try:
            stream = (self.folder / LOCK_FILE).open("a")
        except OSError as error:
            raise self._unwritable(error) from None
        with stream:
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process building the cache %s", self.folder)
                fcntl.flock(stream, fcntl.LOCK_EX)
            except OSError:
                pass  # a file system without locks
            yield

    def size_bytes(self, entries: Iterable[Path]) -> int:
        """Bytes the given entries take on disk.

        Args:
            entries: entry files from :meth:`entries` or :meth:`ensure`.

        Returns:
            Their total size.
        """
        return sum(entry.stat().st_size for entry in entries)


@contextmanager
def _progress(enabled: bool | None, description: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr when it is a terminal (or ``enabled``), else nothing (the caller logs one line
    when done); yields the function that advances it by one case."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not (console.is_terminal if enabled is None else enabled):
        yield lambda: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def read_entry(entry: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one cached case (memory-mapped; only the copy to float32/int64 touches the data).

    Args:
        entry: an entry file.

    Returns:
        The image ``(C, S, S)`` float32 and the mask ``(S, S)`` int64.
    """
    record = np.load(entry, mmap_mode="r")
    return decode_image(record["image"]), record["mask"].astype(np.int64)
