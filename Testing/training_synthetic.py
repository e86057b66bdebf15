"""Tiny labelled cases on disk for the training tests: BraTS folders of any naming and label convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

# File names of each modality in the naming of a BraTS edition.
NAMINGS = {
    "brats2018": {"t1": "{case}_t1", "t1c": "{case}_t1ce", "t2": "{case}_t2", "flair": "{case}_flair"},
    "brats2023": {"t1": "{case}-t1n", "t1c": "{case}-t1c", "t2": "{case}-t2w", "flair": "{case}-t2f"},
    "brats2015": {"t1": "VSD.Brain.XX.O.MR_T1", "t1c": "VSD.Brain.XX.O.MR_T1c", "t2": "VSD.Brain.XX.O.MR_T2",
                  "flair": "VSD.Brain.XX.O.MR_Flair"},
    "gd": {"t1": "{case}_t1", "t1c": "{case}_t1gd", "t2": "{case}_t2", "flair": "{case}_fla"},
}
# Label values of necrotic core, edema and enhancing tumour in each convention.
LABEL_VALUES = {"brats2015": (1, 2, 4), "brats2021": (1, 2, 4), "brats2023": (1, 2, 3), "nnunet": (2, 1, 3)}


def phantom(shape=(22, 26, 24), seed: int = 0, shift: float = 0.0):
    """Brain ellipsoid, tumour (edema shell, necrotic centre, enhancing ring) and four modality arrays."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = z ** 2 + y ** 2 + x ** 2 < 0.8
    r2 = (z - 0.15) ** 2 + (y - shift) ** 2 + (x + 0.1) ** 2
    classes = np.select([r2 < 0.02, r2 < 0.06, r2 < 0.14], [1, 3, 2], 0).astype(np.uint8) * brain
    images = {}
    for index, modality in enumerate(("t1", "t1c", "t2", "flair")):
        contrast = {"t1": (0.8, 0.9, 0.7), "t1c": (0.8, 2.0, 1.0), "t2": (1.6, 1.2, 1.5),
                    "flair": (1.3, 1.4, 1.9)}[modality]
        array = np.where(brain, 300 + 60 * index + rng.normal(0, 15, shape), 0)
        for value, factor in zip((1, 3, 2), contrast):
            array = np.where(classes == value, array * factor, array)
        images[modality] = array.astype(np.float32)
    return images, classes


def write(array: np.ndarray, path: Path, spacing: float = 4.0) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing,) * 3)
    image.SetOrigin((-40.0, -50.0, -45.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def brats_case(root: Path, case: str, naming: str = "brats2018", convention: str = "brats2021",
               modalities=("t1", "t1c", "t2", "flair"), label_name: str = "{case}_seg", seed: int = 0,
               whole_tumour_only: bool = False) -> Path:
    """Write one case folder with the given file naming and label convention; returns the folder."""
    folder = root / case
    images, classes = phantom(seed=seed, shift=0.05 * (seed % 3))
    for modality in modalities:
        write(images[modality], folder / (NAMINGS[naming][modality].format(case=case) + ".nii.gz"))
    if whole_tumour_only:
        labels = (classes > 0).astype(np.uint8)
    else:
        ncr, ed, et = LABEL_VALUES[convention]
        labels = np.select([classes == 1, classes == 2, classes == 3], [ncr, ed, et], 0).astype(np.uint8)
        if convention == "brats2015":  # 2013–15 also label non-enhancing tumour (3) inside the core
            labels[(classes == 1) & (np.indices(classes.shape)[0] % 2 == 0)] = 3
    write(labels, folder / (label_name.format(case=case) + ".nii.gz"))
    return folder


def nnunet_dataset(root: Path, cases=("BRATS_001", "BRATS_002")) -> Path:
    """An nnU-Net raw dataset (dataset.json, imagesTr/CASE_000X, labelsTr) with labels 1 ED, 2 core, 3 ET."""
    import json
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}}))
    order = ("flair", "t1", "t1c", "t2")
    for seed, case in enumerate(cases):
        images, classes = phantom(seed=seed)
        for index, modality in enumerate(order):
            write(images[modality], root / "imagesTr" / f"{case}_{index:04d}.nii.gz")
        labels = np.select([classes == 1, classes == 2, classes == 3], [2, 1, 3], 0).astype(np.uint8)
        write(labels, root / "labelsTr" / f"{case}.nii.gz")
    return root


def small_training_set(root: Path) -> Path:
    """Three cases: complete (2018 names), whole-tumour-only FLAIR+T1, and FLAIR+T1c only (2023 names)."""
    brats_case(root, "Brats18_TCIA_001_1", seed=0)
    brats_case(root, "case_wt", naming="brats2018", modalities=("t1", "flair"), label_name="GT_W",
               whole_tumour_only=True, seed=1)
    brats_case(root, "BraTS-GLI-00002-000", naming="brats2023", convention="brats2023",
               modalities=("t1c", "flair"), label_name="{case}-seg", seed=2)
    return root
