"""Tiny synthetic datasets written in the exact public layouts of the datasets we cannot ship.

Every writer creates small images (a few pixels) with binary or multi-class masks, named and nested exactly as
the public release (or the common benchmark layout) does, and returns the dataset root. The images of a layout
are all different (identical ones are duplicates that seeded splits keep together and ``data check`` lists).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from tests.data.folders import rgb_image, square_mask, write_image

SIZE = (12, 16)


def isic_names(start: int, count: int) -> list[str]:
    """``ISIC_<7 digits>`` names."""
    return [f"ISIC_{start + index:07d}" for index in range(count)]


def _write_isic_split(root: Path, images: str, masks: str, names: list[str], suffix: str) -> None:
    for name in names:
        write_image(root / images / f"{name}.jpg", rgb_image(SIZE, int(name.removeprefix("ISIC_"))))
        write_image(root / masks / f"{name}{suffix}.png", square_mask(SIZE))
    (root / images / "LICENSE.txt").write_text("CC-BY-NC\n")
    (root / masks / "ATTRIBUTION.txt").write_text("ISIC Archive\n")


def write_isic2018(root: Path, train: int = 4, val: int = 2, test: int = 3) -> Path:
    """ISIC 2018 Task 1: ``ISIC2018_Task1-2_<Split>_Input/`` + ``ISIC2018_Task1_<Split>_GroundTruth/``."""
    start = 0
    for split, count in (("Training", train), ("Validation", val), ("Test", test)):
        if count:
            names = isic_names(start, count)
            images, masks = f"ISIC2018_Task1-2_{split}_Input", f"ISIC2018_Task1_{split}_GroundTruth"
            _write_isic_split(root, images, masks, names, "_segmentation")
        start += 100
    return root


def write_isic2017(root: Path, train: int = 4, val: int = 2, test: int = 3) -> Path:
    """ISIC 2017 Part 1, with the superpixel maps and metadata CSVs the image folders also hold."""
    start = 0
    for split, count in (("Training", train), ("Validation", val), ("Test_v2", test)):
        names = isic_names(start, count)
        images = f"ISIC-2017_{split}_Data"
        _write_isic_split(root, images, f"ISIC-2017_{split}_Part1_GroundTruth", names, "_segmentation")
        for name in names:
            write_image(root / images / f"{name}_superpixels.png", rgb_image(SIZE, 99))
        (root / images / f"ISIC-2017_{split}_Data_metadata.csv").write_text("image_id,age_approximate,sex\n")
        start += 100
    return root


def write_isic2016(root: Path, train: int = 4, test: int = 3) -> Path:
    """ISIC 2016 (ISBI 2016) Part 1: training and test, masks ``_Segmentation.png``."""
    for split, names in (("Training", isic_names(0, train)), ("Test", isic_names(100, test))):
        images, masks = f"ISBI2016_ISIC_Part1_{split}_Data", f"ISBI2016_ISIC_Part1_{split}_GroundTruth"
        _write_isic_split(root, images, masks, names, "_Segmentation")
    return root


def write_cvc(root: Path, count: int = 12) -> Path:
    """CVC-ClinicDB: ``Original/<n>.tif`` + ``Ground Truth/<n>.tif``, numbered from 1."""
    for number in range(1, count + 1):
        write_image(root / "Original" / f"{number}.tif", rgb_image(SIZE, number))
        write_image(root / "Ground Truth" / f"{number}.tif", square_mask(SIZE))
    return root


def write_ph2(root: Path, names: tuple[str, ...] = ("IMD002", "IMD003", "IMD009", "IMD016", "IMD022")) -> Path:
    """PH2: ``PH2 Dataset images/IMDxxx/...``; 1-bit lesion masks, except IMD002 as RGB 0/255 (as in PH2)."""
    base = root / "PH2 Dataset images"
    for index, name in enumerate(names):
        write_image(base / name / f"{name}_Dermoscopic_Image" / f"{name}.bmp", rgb_image(SIZE, index))
        mask = square_mask(SIZE)
        lesion = np.repeat(mask[..., None], 3, axis=-1) if name == "IMD002" else mask > 0
        write_image(base / name / f"{name}_lesion" / f"{name}_lesion.bmp", lesion)
        write_image(base / name / f"{name}_roi" / f"{name}_R1_Label4.bmp", mask > 0)
    (root / "PH2_dataset.txt").write_text("Name | Clinical Diagnosis\n")
    return root


def write_busi_original(root: Path, benign: int = 4, malignant: int = 3, normal: int = 2) -> Path:
    """BUSI release: ``benign/``, ``malignant/``, ``normal/`` with ``_mask.png``; ``benign (2)`` has two lesions
    (``_mask.png`` left half, ``_mask_1.png`` right half)."""
    for seed, (name, count) in enumerate((("benign", benign), ("malignant", malignant), ("normal", normal))):
        for number in range(1, count + 1):
            case = f"{name} ({number})"
            write_image(root / name / f"{case}.png", rgb_image(SIZE, [seed, number]))
            empty = np.zeros(SIZE, np.uint8)
            write_image(root / name / f"{case}_mask.png", empty if name == "normal" else square_mask(SIZE))
    left, right = np.zeros(SIZE, np.uint8), np.zeros(SIZE, np.uint8)
    left[:, :4], right[:, -4:] = 255, 255
    write_image(root / "benign" / "benign (2)_mask.png", left)
    write_image(root / "benign" / "benign (2)_mask_1.png", right)
    return root


def write_busi_benchmark(root: Path, names: tuple[str, ...] = ("benign (1)", "benign (7)", "malignant (3)")) -> Path:
    """BUSI benchmark layout (UNeXt / CMUNeXt): ``images/<name>.png`` + ``masks/0/<name>.png``."""
    for index, name in enumerate(names):
        write_image(root / "images" / f"{name}.png", rgb_image(SIZE, index))
        write_image(root / "masks" / "0" / f"{name}.png", square_mask(SIZE))
    return root


def glas_names(train: int, test_a: int, test_b: int) -> list[str]:
    """GlaS case names, numbered from 1 per prefix."""
    return [
        f"{prefix}_{number}"
        for prefix, count in (("train", train), ("testA", test_a), ("testB", test_b))
        for number in range(1, count + 1)
    ]


def write_glas_original(root: Path, train: int = 5, test_a: int = 3, test_b: int = 2) -> Path:
    """GlaS release: flat ``<name>.bmp`` + ``<name>_anno.bmp`` (instance labels 0, 1, 2) and ``Grade.csv``."""
    for index, name in enumerate(glas_names(train, test_a, test_b)):
        write_image(root / f"{name}.bmp", rgb_image(SIZE, index))
        instances = np.zeros(SIZE, np.uint8)
        instances[2:5, 2:6], instances[7:10, 8:14] = 1, 2
        write_image(root / f"{name}_anno.bmp", instances)
    (root / "Grade.csv").write_text("name,patient ID,GlaS,grade (Sirinukunwattana et al. 2015)\n")
    return root


def write_glas_folders(root: Path, train: int = 5, test_a: int = 3, test_b: int = 2, val: int = 0) -> Path:
    """GlaS as ``images/`` + ``masks/`` (0/255); with ``val``, ``splits/uagland_{train,val}.txt`` too."""
    names = glas_names(train, test_a, test_b)
    for index, name in enumerate(names):
        write_image(root / "images" / f"{name}.png", rgb_image(SIZE, index))
        write_image(root / "masks" / f"{name}.png", square_mask(SIZE))
    if val:
        train_names = [f"{name}.png" for name in names if name.startswith("train_")]
        (root / "splits").mkdir()
        (root / "splits" / "uagland_train.txt").write_text("\n".join(train_names[val:]) + "\n")
        (root / "splits" / "uagland_val.txt").write_text("\n".join(train_names[:val]) + "\n")
    return root


def tcga_names(count: int, first: int = 0) -> list[str]:
    """TCGA image names, one patient each."""
    return [f"TCGA-A{index}-{1000 + index}-01Z-00-DX1" for index in range(first, first + count)]


def write_monuseg_uct(root: Path, counts: tuple[int, int, int] = (3, 2, 2)) -> Path:
    """MoNuSeg in the UCTransNet layout: PNG images (TIF for test) in ``img/``, 0/255 PNGs in ``labelcol/``."""
    first = 0
    for folder, count in zip(("Train_Folder", "Val_Folder", "Test_Folder"), counts, strict=True):
        ext = ".tif" if folder == "Test_Folder" else ".png"
        for index, name in enumerate(tcga_names(count, first)):
            write_image(root / folder / "img" / f"{name}{ext}", rgb_image(SIZE, first + index))
            write_image(root / folder / "labelcol" / f"{name}.png", square_mask(SIZE))
        first += count
    return root


NUCLEI = ([(1.0, 1.0), (4.0, 1.0), (4.0, 4.0), (1.0, 4.0)], [(8.0, 6.0), (13.0, 6.0), (13.0, 10.0)])


def aperio_xml(polygons: tuple[list[tuple[float, float]], ...] = NUCLEI) -> str:
    """An Aperio ImageScope annotation file, one ``Region`` per polygon (as MoNuSeg ships them)."""
    regions = "".join(
        f'<Region Id="{index + 1}" Type="0"><Attributes/><Vertices>'
        + "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in polygon)
        + "</Vertices></Region>"
        for index, polygon in enumerate(polygons)
    )
    return (
        '<?xml version="1.0"?>\n<Annotations MicronsPerPixel="0.252100"><Annotation Id="1"><Attributes/>'
        f"<Regions><RegionAttributeHeaders/>{regions}</Regions><Plots/></Annotation></Annotations>\n"
    )


def write_monuseg_original(root: Path, train: int = 4, test: int = 2) -> Path:
    """MoNuSeg release: ``MoNuSeg 2018 Training Data/{Tissue Images,Annotations}`` + flat ``MoNuSegTestData``."""
    training = root / "MoNuSeg 2018 Training Data"
    for index, name in enumerate(tcga_names(train)):
        write_image(training / "Tissue Images" / f"{name}.tif", rgb_image(SIZE, index))
        (training / "Annotations").mkdir(parents=True, exist_ok=True)
        (training / "Annotations" / f"{name}.xml").write_text(aperio_xml())
    for index, name in enumerate(tcga_names(test, first=train)):
        write_image(root / "MoNuSegTestData" / f"{name}.tif", rgb_image(SIZE, train + index))
        (root / "MoNuSegTestData" / f"{name}.xml").write_text(aperio_xml())
    return root


def labels_volume(depth: int, size: tuple[int, int], classes: int) -> np.ndarray:
    """A ``(D, H, W)`` uint8 label volume with each foreground class ``c`` in row ``c``, columns 1..3."""
    labels = np.zeros((depth, *size), np.uint8)
    for cls in range(1, classes):
        labels[:, cls, 1:4] = cls
    return labels


def write_h5(path: Path, image: np.ndarray, label: np.ndarray) -> Path:
    """An HDF5 file with ``image`` and ``label`` datasets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file["image"] = image
        file["label"] = label
    return path


def write_acdc(
    root: Path,
    train: tuple[int, ...] = (1, 2, 3),
    val: tuple[int, ...] = (4,),
    test: tuple[int, ...] = (5, 6),
    depth: int = 3,
) -> Path:
    """ACDC in the SSL4MIS layout: training patients as slice files, val/test patients as volumes; two frames
    per patient; lists ``train_slices.list``, ``train.list``, ``val.list``, ``test.list``."""
    rng = np.random.default_rng(0)
    lists: dict[str, list[str]] = {"train_slices": [], "train": [], "val": [], "test": []}
    for patients, name in ((train, "train"), (val, "val"), (test, "test")):
        for patient in patients:
            for frame in (1, 12):
                case = f"patient{patient:03d}_frame{frame:02d}"
                size = (10 + patient, 9)
                image = rng.random((depth, *size), dtype=np.float32)
                labels = labels_volume(depth, size, 4)
                lists[name].append(case)
                if name == "train":
                    for index in range(depth):
                        write_h5(root / "data" / f"{case}_slice_{index + 1}.h5", image[index], labels[index])
                        lists["train_slices"].append(f"{case}_slice_{index + 1}")
                else:
                    write_h5(root / "data" / f"{case}.h5", image, labels)
    for name, ids in lists.items():
        (root / f"{name}.list").write_text("\n".join(ids) + "\n")
    return root


def write_synapse(
    root: Path, train: tuple[int, ...] = (5, 6, 7, 9, 10), test: tuple[int, ...] = (1, 2), depth: int = 3
) -> Path:
    """Synapse in the TransUNet layout: ``train_npz/caseXXXX_sliceYYY.npz`` (float labels, as shipped),
    ``test_vol_h5/caseXXXX.npy.h5`` and ``lists/lists_Synapse/{train.txt,test_vol.txt}``."""
    rng = np.random.default_rng(1)
    (root / "train_npz").mkdir(parents=True)
    slices = []
    for case in train:
        labels = labels_volume(depth, SIZE, 9).astype(np.float32)
        for index in range(depth):
            name = f"case{case:04d}_slice{index:03d}"
            np.savez(root / "train_npz" / f"{name}.npz", image=rng.random(SIZE, dtype=np.float32), label=labels[index])
            slices.append(name)
    for case in test:
        image = rng.random((depth, *SIZE), dtype=np.float32)
        write_h5(root / "test_vol_h5" / f"case{case:04d}.npy.h5", image, labels_volume(depth, SIZE, 9))
    lists = root / "lists" / "lists_Synapse"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(slices) + "\n")
    (lists / "test_vol.txt").write_text("\n".join(f"case{case:04d}" for case in test) + "\n")
    return root


def nifti(array: np.ndarray, spacing: tuple[float, float, float]) -> nib.Nifti1Image:
    """A NIfTI image of an ``(x, y, z)`` array with voxel size ``spacing`` (x, y, z)."""
    return nib.Nifti1Image(array, np.diag([*spacing, 1.0]))


def write_nnunet(
    root: Path,
    cases: int = 5,
    channels: int = 1,
    shape: tuple[int, int, int] = (16, 12, 4),
    spacing: tuple[float, float, float] = (0.8, 0.7, 2.5),
) -> Path:
    """nnU-Net v2 raw dataset: ``imagesTr/<case>_<channel:04d>.nii.gz``, ``labelsTr/<case>.nii.gz`` (x, y, z),
    ``dataset.json`` with three classes."""
    rng = np.random.default_rng(2)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for index in range(cases):
        case = f"liver_{index:03d}"
        for channel in range(channels):
            image = rng.normal(40, 100, shape).astype(np.float32)
            nib.save(nifti(image, spacing), root / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        labels = labels_volume(shape[2], shape[:2], 3).transpose(1, 2, 0)
        nib.save(nifti(labels, spacing), root / "labelsTr" / f"{case}.nii.gz")
    meta = {
        "channel_names": {str(channel): f"CT{channel}" for channel in range(channels)},
        "labels": {"background": 0, "liver": 1, "tumour": 2},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def write_kvasir(root: Path, train: int = 8, test: int = 3) -> Path:
    """Kvasir-SEG: ``images/*.jpg``, ``masks/*.jpg``, ``kavsir_bboxes.json``, ``splits/{train,val}.txt``."""
    names = [f"cju{index:04d}ab" for index in range(train + test)]
    for index, name in enumerate(names):
        write_image(root / "images" / f"{name}.jpg", rgb_image(SIZE, index))
        write_image(root / "masks" / f"{name}.jpg", square_mask(SIZE))
    (root / "kavsir_bboxes.json").write_text("{}")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(names[:train]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(names[train:]) + "\n")
    return root
