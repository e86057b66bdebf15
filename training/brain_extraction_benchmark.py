"""Brain extraction measured on skull-on MRI with a known brain: each method's Dice and the tumour it keeps.

    python -m training.brain_extraction_benchmark [--threads 2] [--methods deepbet template] [--json OUT.json]

Cases:
- the raw exam ../shared/data/clinical_raw/TCGA-FG-6692_raw_native (skull on, 5.5 mm slices, series not
  aligned), its sequences registered onto its T1Gd as `--register` does. The known brain is the bundled
  sample's (the same patient skull-stripped by BraTS-Toolkit), its nonzero region carried back onto the
  exam's T1Gd grid by a rigid registration fitted inside that brain; the tumour is the sample's consensus
  label carried back the same way.
- the bundled sample given back a head (CSF rim, dark bone, bright scalp, noise), turned 13 degrees and
  moved, on a 1.2 mm grid: the brain and tumour are known exactly.
- the two clinical MRI of pyradiomics (skull on, 6.5 mm slices, no brain mask): the tumour ROI kept only.
Each method runs on the T1 (as the engine does when one is given), else the first of T1Gd, T2, FLAIR.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from braintumorseg.brain_extraction import BRAIN_EXTRACTION_METHODS, BrainExtractionSettings, brain_extractor
from braintumorseg.errors import InputError
from braintumorseg.metrics import dice
from braintumorseg.modalities import MODALITIES
from braintumorseg.preprocessing import TEMPLATE_LIKE, Preprocessor, PreprocessSettings
from braintumorseg.resources import sample_case

from .clinical_like import HEAD_SHELLS, distance_outside, with_head
from .native_exam import RAW_EXAM, SHARED_DATA, raw_exam_files, registered_onto

PYRADIOMICS = SHARED_DATA / "other_mri" / "pyradiomics_brain_tumor"


def raw_exam_case() -> dict:
    """The raw exam on its T1Gd grid (sequences registered), with the sample's brain and tumour carried back."""
    sample = sample_case()
    files = {m: str(path) for m, path in raw_exam_files().items()}
    images = {m: sitk.ReadImage(p, sitk.sitkFloat32) for m, p in files.items()}
    grid, arrays, *_ = Preprocessor(PreprocessSettings(register="on")).align(images)
    stripped = sitk.ReadImage(str(sample["t1c"]), sitk.sitkFloat32)
    raw_to_sample = registered_onto(stripped, images["t1c"], stripped != 0, sampling_fraction=0.1).GetInverse()
    brain = sitk.Resample(stripped != 0, grid, raw_to_sample, sitk.sitkNearestNeighbor, 0)
    label = sitk.Resample(sitk.ReadImage(str(sample["label"])), grid, raw_to_sample, sitk.sitkNearestNeighbor, 0)
    return {"name": "raw exam TCGA-FG-6692 (5.5 mm, skull on)", "grid": grid, "arrays": arrays, "images": images,
            "brain": sitk.GetArrayFromImage(brain) > 0, "tumour": sitk.GetArrayFromImage(label) > 0, "label": label}


def sample_head_case(modalities: tuple[str, ...] = MODALITIES) -> dict:
    """The bundled sample with a synthetic head, turned and moved onto a 1.2 mm grid."""
    sample = sample_case()
    images = {m: sitk.Cast(sitk.ReadImage(str(sample[m])), sitk.sitkFloat32) for m in modalities}
    brain = sitk.ReadImage(str(sample["t1"])) > 0
    centre = brain.TransformContinuousIndexToPhysicalPoint([s / 2 for s in brain.GetSize()])
    motion = sitk.Euler3DTransform(centre, 0.2, 0.0, 0.1, (4.0, -6.0, 3.0))
    grid = sitk.Image([200, 200, 130], sitk.sitkFloat32)
    grid.SetSpacing((1.2, 1.2, 1.2))
    grid.SetOrigin(brain.GetOrigin())
    grid.SetDirection(brain.GetDirection())
    distance = distance_outside(brain)
    arrays = {m: sitk.GetArrayFromImage(sitk.Resample(
        with_head(image, distance, HEAD_SHELLS[m], np.random.default_rng(seed)), grid, motion, sitk.sitkLinear, 0.0))
        for seed, (m, image) in enumerate(images.items())}
    truth = sitk.Resample(brain, grid, motion, sitk.sitkNearestNeighbor, 0)
    label = sitk.Resample(sitk.ReadImage(str(sample["label"])), grid, motion, sitk.sitkNearestNeighbor, 0)
    return {"name": "sample with a synthetic head (1.2 mm, turned)", "grid": grid, "arrays": arrays,
            "brain": sitk.GetArrayFromImage(truth) > 0, "tumour": sitk.GetArrayFromImage(label) > 0,
            "label": label}


def pyradiomics_cases() -> list[dict]:
    """Two clinical MRI with skull and a tumour ROI (no brain mask)."""
    cases = []
    for number in (1, 2):
        image = sitk.ReadImage(str(PYRADIOMICS / f"brain{number}_image.nrrd"), sitk.sitkFloat32)
        label = sitk.ReadImage(str(PYRADIOMICS / f"brain{number}_label.nrrd"))
        cases.append({"name": f"pyradiomics brain{number} (6.5 mm, skull on)", "grid": image,
                      "arrays": {"t1": sitk.GetArrayFromImage(image)}, "brain": None,
                      "tumour": sitk.GetArrayFromImage(label) > 0})
    return cases


def measure(case: dict, method: str, margin_mm: float | None = None) -> dict:
    """One method on one case: brain Dice (when the brain is known), tumour kept, mask volume, seconds."""
    modality = next(m for m in TEMPLATE_LIKE if m in case["arrays"])
    image = sitk.GetImageFromArray(case["arrays"][modality])
    image.CopyInformation(case["grid"])
    start = time.perf_counter()
    try:
        settings = BrainExtractionSettings(method=method)
        if margin_mm is not None:
            settings = replace(settings, deepbet_margin_mm=margin_mm)
        extractor = brain_extractor(settings)
        mask = extractor.mask(image)
        failure = ""
    except InputError as error:
        mask, failure = np.zeros(case["tumour"].shape, bool), str(error)
    seconds = time.perf_counter() - start
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    tumour = case["tumour"]
    label = method if margin_mm is None else f"{method}+{margin_mm:g}mm"
    return {"case": case["name"], "method": label, "sequence": modality, "seconds": round(seconds, 2),
            "brain_ml": round(float(mask.sum()) * voxel_ml, 1),
            "truth_ml": round(float(case["brain"].sum()) * voxel_ml, 1) if case["brain"] is not None else None,
            "dice": round(dice(mask, case["brain"]), 4) if case["brain"] is not None else None,
            "tumour_kept": round(float((mask & tumour).sum() / max(1, tumour.sum())), 4),
            "tumour_ml": round(float(tumour.sum()) * voxel_ml, 1), "failure": failure}


def print_table(rows: list[dict]) -> None:
    print(f"{'case':<48} {'method':<12} {'seq':<5} {'Dice':>6} {'tumour kept':>11} {'mask mL':>8} "
          f"{'brain mL':>8} {'s':>6}")
    for r in rows:
        dice_text = f"{r['dice']:.3f}" if r["dice"] is not None else "-"
        truth = f"{r['truth_ml']:.0f}" if r["truth_ml"] is not None else "-"
        print(f"{r['case']:<48} {r['method']:<12} {r['sequence']:<5} {dice_text:>6} {r['tumour_kept']:>11.1%} "
              f"{r['brain_ml']:>8.0f} {truth:>8} {r['seconds']:>6.1f}" + (f"  FAILED: {r['failure']}"
                                                                            if r["failure"] else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.brain_extraction_benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ITK (default 2)")
    parser.add_argument("--methods", nargs="+", choices=BRAIN_EXTRACTION_METHODS,
                        default=list(BRAIN_EXTRACTION_METHODS), help="methods with their default settings")
    parser.add_argument("--deepbet-margins", nargs="*", type=float, default=[], metavar="MM",
                        help="also deepbet with these margins (mm) instead of the default")
    parser.add_argument("--json", metavar="OUT.json", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    cases = [sample_head_case()]
    if RAW_EXAM.is_dir():
        cases.insert(0, raw_exam_case())
    if PYRADIOMICS.is_dir():
        cases.extend(pyradiomics_cases())
    rows = []
    for case in cases:
        rows.extend(measure(case, method) for method in args.methods)
        rows.extend(measure(case, "deepbet", margin) for margin in args.deepbet_margins)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
