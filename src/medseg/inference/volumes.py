"""Volumes to predict slice by slice: NIfTI and HDF5 files in, NIfTI label volumes out (numpy, nibabel, h5py).

Volumes are held in the order medseg's volume readers give them: ``(z, y, x)`` (the NIfTI array ``(x, y, z)``
transposed; an HDF5 ``image`` dataset ``(D, H, W)`` as it is stored), channels last when there are several
(a 4D NIfTI ``(x, y, z, c)``). A slice along the NIfTI voxel axis ``k`` (``slice_axis: 2``, what the readers slice
for training) is then the ``(y, x)`` image the model was trained on.

A label volume is written as NIfTI with the input's affine and header (voxel spacing, origin, orientation codes),
its data type set to an integer type; an HDF5 input, which stores no geometry, gets the identity affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError

__all__ = [
    "H5_SUFFIXES",
    "VOLUME_SUFFIXES",
    "Volume",
    "is_volume",
    "output_stem",
    "read_h5_image",
    "read_volume",
    "stack_slices",
    "volume_slices",
    "volume_stem",
    "write_label_volume",
]

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy.h5", ".h5", ".hdf5")
"""File endings read as volumes (``.npy.h5`` is the TransUNet Synapse layout's)."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")
"""File endings of NIfTI volumes."""

H5_SUFFIXES = (".h5", ".hdf5")
"""File endings of HDF5 files: a 2D image or a volume, by the rank of their ``image`` dataset."""


def volume_stem(path: Path) -> str | None:
    """The name of a volume file without its ending, or ``None`` for another file.

    Args:
        path: a file.

    Returns:
        E.g. ``case_01`` for ``case_01.nii.gz`` or ``case0001.npy.h5``.
    """
    name = path.name
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def output_stem(path: Path) -> tuple[str, str]:
    """The name an input's outputs start from, and the ending it drops.

    Args:
        path: an input file (image or volume).

    Returns:
        ``(stem, ending)``, e.g. ``("case_01", ".nii.gz")`` or ``("x", ".png")``.
    """
    stem = volume_stem(path)
    if stem is not None:
        return stem, path.name[len(stem) :]
    return path.stem, path.suffix


@dataclass
class Volume:
    """A volume read for prediction.

    Attributes:
        array: ``(z, y, x)`` or ``(z, y, x, C)`` intensities as stored.
        affine: the 4x4 voxel-to-world matrix (the identity for HDF5).
        header: the NIfTI header, ``None`` for HDF5.
        source: the file.
    """

    array: np.ndarray
    affine: np.ndarray
    header: Any
    source: Path


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel, gzip and zlib raise many types for damaged files
        text = str(error).strip()
        raise MedsegError(f"cannot read {path}: {text.splitlines()[0] if text else type(error).__name__}") from None
    if data.ndim == 3:
        array = data.T
    elif data.ndim == 4:
        array = data.transpose(2, 1, 0, 3)
    else:
        raise MedsegError(f"{path} has shape {data.shape}; expected a 3D (x, y, z) or 4D (x, y, z, channels) volume")
    return Volume(np.ascontiguousarray(array), np.asarray(image.affine, dtype=np.float64), image.header, path)


def read_h5_image(path: Path) -> np.ndarray:
    """The ``image`` dataset of an HDF5 file in medseg's layouts: ``(H, W)`` for a slice, ``(D, H, W)`` for a
    volume.

    Args:
        path: the file.

    Returns:
        The array as stored.

    Raises:
        MedsegError: an unreadable file or no ``image`` dataset.
    """
    import h5py

    try:
        with h5py.File(path, "r") as file:
            dataset = file.get("image")
            if not isinstance(dataset, h5py.Dataset):
                raise MedsegError(f"{path} has no 'image' dataset (it has {', '.join(sorted(file)) or 'nothing'})")
            return np.asarray(dataset[()])
    except OSError as error:
        raise MedsegError(f"cannot read {path}: {error}") from None


def is_volume(path: Path) -> bool:
    """Whether a file is predicted as a volume: NIfTI, or HDF5 whose ``image`` dataset is 3D.

    Args:
        path: an input file.

    Returns:
        ``True`` for a volume; an unreadable HDF5 file counts as a 2D image (its error is reported when read).
    """
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        return True
    if path.suffix.lower() not in H5_SUFFIXES:
        return False
    try:
        return read_h5_image(path).ndim == 3
    except MedsegError:
        return False


def read_volume(path: Path) -> Volume:
    """Read a NIfTI or HDF5 volume.

    Args:
        path: ``.nii``/``.nii.gz`` (3D, or 4D with channels last) or ``.h5``/``.hdf5`` with an ``image``
            dataset ``(D, H, W)``.

    Returns:
        The volume in ``(z, y, x)`` order.

    Raises:
        MedsegError: an unreadable file or an array of another rank.
    """
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        return _read_nifti(path)
    array = read_h5_image(path)
    if array.ndim != 3:
        raise MedsegError(f"{path}: its 'image' dataset has shape {array.shape}; expected a (D, H, W) volume")
    return Volume(array, np.eye(4), None, path)


def _internal_axis(slice_axis: int) -> int:
    """The axis of a ``(z, y, x)`` array that the NIfTI voxel axis ``slice_axis`` (i, j, k) is."""
    if slice_axis not in (0, 1, 2):
        raise MedsegError(f"the slice axis must be 0, 1 or 2, got {slice_axis}")
    return 2 - slice_axis


def volume_slices(array: np.ndarray, slice_axis: int) -> np.ndarray:
    """The 2D slices of a volume along a voxel axis.

    Args:
        array: ``(z, y, x)`` or ``(z, y, x, C)``.
        slice_axis: NIfTI voxel axis (0, 1 or 2) to slice along.

    Returns:
        ``(n, rows, columns)`` or ``(n, rows, columns, C)`` (a view where possible).
    """
    return np.moveaxis(array, _internal_axis(slice_axis), 0)


def stack_slices(slices: np.ndarray, slice_axis: int) -> np.ndarray:
    """Put predicted slices back together: the inverse of :func:`volume_slices` (without channels).

    Args:
        slices: ``(n, rows, columns)``.
        slice_axis: the axis they were taken along.

    Returns:
        ``(z, y, x)``.
    """
    return np.ascontiguousarray(np.moveaxis(slices, 0, _internal_axis(slice_axis)))


def write_label_volume(path: Path, labels: np.ndarray, volume: Volume) -> None:
    """Write a label volume as NIfTI with the geometry of the volume it was predicted from.

    Args:
        path: ``.nii.gz`` or ``.nii`` file.
        labels: ``(z, y, x)`` class indices.
        volume: the input (affine and header).
    """
    import nibabel as nib

    dtype = np.uint8 if labels.max(initial=0) < 256 else np.int16
    data = np.ascontiguousarray(labels.T.astype(dtype))
    header = volume.header.copy() if volume.header is not None else None
    image = nib.Nifti1Image(data, volume.affine, header=header)
    image.header.set_data_dtype(dtype)
    image.header.set_slope_inter(1.0, 0.0)
    if header is not None:
        sform, sform_code = volume.header.get_sform(coded=True)
        qform, qform_code = volume.header.get_qform(coded=True)
        if sform is not None:
            image.set_sform(sform, int(sform_code))
        if qform is not None:
            image.set_qform(qform, int(qform_code))
    nib.save(image, path)
