"""The scanner-native exam benchmark: the sample patient as acquired against its preprocessed copy, in one run.

    python -m training.native_exam [--variant NAME:key=value,...] [--threads 2] [--json OUT.json]

The raw exam (`clinical_raw/TCGA-FG-6692_raw_native`: T1, T1Gd, T2, FLAIR on their own grids, 5.5 mm slices,
skull on) is segmented with each variant's settings (default: the engine's defaults). Its labels, written on
the raw T1Gd grid, are carried onto the bundled sample's grid by one rigid registration of the raw T1Gd onto
the sample's skull-stripped T1Gd (mutual information measured inside the sample's brain only, so the skull does
not pull it) and scored (Dice, HD95) against the sample's consensus label, carried two ways: nearest neighbour, and "smooth"
(each region interpolated linearly and cut at one half, the surface between the 5.5 mm slices). The preprocessed copy (the bundled
sample) is segmented and scored in the same run. "ceiling" is the consensus label carried onto the raw T1Gd grid
and back: what the thick slices alone cost any result written on that grid.
It also prints how far the engine's registration puts each raw sequence from where registering it directly onto
the copy's same sequence does (`registration_errors`).

Variant keys are fields of `PreprocessSettings` (register, skull_strip, bias_correction, ...) and `tta`.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch
from braintumorseg.brain_extraction import BrainExtractionSettings
from braintumorseg.images import read_image
from braintumorseg.labels import REGIONS, from_internal, internal_from_regions, regions_from_internal, to_internal
from braintumorseg.metrics import region_scores
from braintumorseg.modalities import DISPLAY_NAMES, MODALITIES, reference_modality
from braintumorseg.modelcard import ModelCard
from braintumorseg.output_paths import write_text_atomic
from braintumorseg.pipeline import Pipeline, SegmentationSettings, models_for, models_in_words
from braintumorseg.preprocessing import PreprocessSettings, Preprocessor
from braintumorseg.registration import mutual_information_registration
from braintumorseg.resources import sample_case
from braintumorseg.run_summary import processing_summary

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RAW_EXAM = SHARED_DATA / "clinical_raw" / "TCGA-FG-6692_raw_native"
RAW_PATTERNS = {"t1": "T1_AX_*_t1.nii.gz", "t1c": "*POST_GAD*_t1c.nii.gz", "t2": "*_T2_AX_*_t2.nii.gz",
                "flair": "*FLAIR*_fla.nii.gz"}


def raw_exam_files(folder: Path = RAW_EXAM) -> dict[str, Path]:
    """The raw exam's four series by modality."""
    files = {}
    for modality, pattern in RAW_PATTERNS.items():
        found = sorted(glob.glob(str(folder / pattern)))
        if len(found) != 1:
            raise FileNotFoundError(f"expected one {pattern} in {folder}, found {len(found)}")
        files[modality] = Path(found[0])
    return files


def registered_onto(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image,
                    sampling_fraction: float = 0.2) -> sitk.Transform:
    """The rigid transform that maps `fixed` points onto `moving`, fitted inside `mask` (fine, slow settings)."""
    method = mutual_information_registration(32, sampling_fraction, 1, 300, (4, 2, 1), (2.0, 1.0, 0.0), gradient_tolerance=1e-7)
    method.SetMetricFixedMask(mask)
    fixed, moving = (sitk.Cast(i, sitk.sitkFloat32) for i in (fixed, moving))
    method.SetInitialTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY), inPlace=False)
    return method.Execute(fixed, moving)


def sample_to_raw(raw_t1c: sitk.Image, sample_t1c: sitk.Image) -> sitk.Transform:
    """The rigid transform that maps sample (BraTS space) points onto the raw T1Gd, fitted inside the sample's brain."""
    return registered_onto(sample_t1c, raw_t1c, sample_t1c != 0)


def registration_errors(raw_images: dict[str, sitk.Image], sample_images: dict[str, sitk.Image],
                        to_raw: sitk.Transform, settings: PreprocessSettings = PreprocessSettings()) -> dict:
    """How far the engine puts each raw sequence on the raw T1Gd (registered or left in place) from where that
    sequence registered directly onto the copy's same sequence puts it, through `to_raw`: the mean and largest
    distance in mm over points of the copy's brain (every 6th voxel)."""
    transforms = Preprocessor(settings).align(dict(raw_images))[3]
    brain = sample_images["t1c"] != 0
    points = [brain.TransformIndexToPhysicalPoint([int(v) for v in index[::-1] * 6])
              for index in np.argwhere(sitk.GetArrayViewFromImage(brain)[::6, ::6, ::6])]
    errors = {}
    reference = reference_modality(list(raw_images))
    for modality, image in raw_images.items():
        if modality == reference:
            continue
        engine = transforms.get(modality, sitk.Transform())
        direct = registered_onto(sample_images[modality], image, brain)
        distances = [np.linalg.norm(np.subtract(engine.TransformPoint(to_raw.TransformPoint(p)), direct.TransformPoint(p)))
                     for p in points]
        errors[modality] = {"mean_mm": round(float(np.mean(distances)), 2), "max_mm": round(float(np.max(distances)), 2)}
    return errors


def carried(labels: sitk.Image, grid: sitk.Image, transform: sitk.Transform, smooth: bool) -> sitk.Image:
    """A brats2021 label image carried onto a grid: nearest neighbour, or `smooth`: each region (WT, TC, ET)
    interpolated linearly and cut at one half (its surface between the thick slices, not a staircase)."""
    if not smooth:
        return sitk.Resample(labels, grid, transform, sitk.sitkNearestNeighbor, 0)
    classes = to_internal(sitk.GetArrayFromImage(labels).astype(np.int64), "brats2021")
    regions = []
    for region in regions_from_internal(classes):
        image = sitk.GetImageFromArray(region.astype(np.float32))
        image.CopyInformation(labels)
        regions.append(sitk.GetArrayFromImage(sitk.Resample(image, grid, transform, sitk.sitkLinear, 0.0)) > 0.5)
    out = sitk.GetImageFromArray(from_internal(internal_from_regions(np.stack(regions)), "brats2021"))
    out.CopyInformation(grid)
    return out


def scores_on(prediction: sitk.Image, reference: sitk.Image) -> dict[str, dict[str, float]]:
    """WT/TC/ET Dice and HD95 of two brats2021 label images on the same grid."""
    arrays = (to_internal(sitk.GetArrayFromImage(i).astype(np.int64), "brats2021") for i in (prediction, reference))
    return region_scores(*arrays, reference.GetSpacing()[::-1])


@dataclass
class Variant:
    name: str
    settings: SegmentationSettings


def parse_variant(text: str) -> Variant:
    """'NAME:key=value,key=value' (or 'NAME' for the defaults) → the run settings it describes."""
    name, _, assignments = text.partition(":")
    preprocess, inference = PreprocessSettings(), SegmentationSettings().inference
    known = {f.name: f for f in fields(PreprocessSettings)}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        if key == "tta":
            inference = replace(inference, tta=value.lower() in ("1", "true", "on", "yes"))
        elif key == "one_pass_up_to":
            inference = replace(inference, one_pass_up_to=float(value))
        elif key == "brain_extraction":
            preprocess = replace(preprocess, brain_extraction=BrainExtractionSettings(method=value))
        elif key in known:
            default = getattr(preprocess, key)
            if isinstance(default, bool):
                parsed: object = value.lower() in ("1", "true", "on", "yes")
            elif isinstance(default, float):
                parsed = float(value)
            else:
                parsed = value
            preprocess = replace(preprocess, **{key: parsed})
        else:
            raise SystemExit(f"unknown variant key '{key}'")
    return Variant(name, SegmentationSettings(preprocess=preprocess, inference=inference))


def run(variants: Sequence[Variant], card: ModelCard, copy: bool = True, native_card: ModelCard | None = None) -> dict:
    """Segment the raw exam with each variant and (`copy`) the preprocessed copy with the defaults; score all, and
    measure the first variant's registration (`registration_errors`). `native_card`: the model for scanner-native
    exams beside `card`, as the engine's shipped pair."""
    sample = sample_case()
    raw_files = raw_exam_files()
    sample_images = {m: read_image(sample[m], m) for m in MODALITIES}
    consensus = sitk.ReadImage(str(sample["label"]))
    raw_images = {m: read_image(raw_files[m], m) for m in MODALITIES}
    to_raw = sample_to_raw(raw_images["t1c"], sample_images["t1c"])
    results: dict = {"model": models_in_words(card, native_card), "runs": {},
                     "registration_errors": registration_errors(raw_images, sample_images, to_raw,
                                                                variants[0].settings.preprocess)}

    for smooth, how in ((False, "nearest"), (True, "smooth")):
        on_raw = carried(consensus, raw_images["t1c"], to_raw.GetInverse(), smooth)
        results["runs"][f"ceiling, {how}"] = {"scores": scores_on(carried(on_raw, consensus, to_raw, smooth),
                                                                  consensus), "seconds": 0.0, "warnings": []}

    for variant in variants:
        start, cpu = time.perf_counter(), time.process_time()
        labels, report = Pipeline(card, variant.settings, native_card=native_card).segment_images(dict(raw_images))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        for smooth, how in ((False, "nearest"), (True, "smooth")):
            results["runs"][f"raw {variant.name}, {how}"] = {
                "scores": scores_on(carried(labels, consensus, to_raw, smooth), consensus),
                "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                "stage_seconds": report.stage_seconds, "warnings": report.warnings if smooth else [],
                "volumes_ml": report.volumes_ml, **extra_report_fields(report)}
    if not copy:
        return results
    start, cpu = time.perf_counter(), time.process_time()
    labels, report = Pipeline(card, SegmentationSettings(inference=variants[0].settings.inference),
                              native_card=native_card).segment_images(sample_images)
    results["runs"]["preprocessed copy"] = {"scores": scores_on(labels, consensus),
                                            "seconds": round(time.perf_counter() - start, 2),
                                            "cpu_seconds": round(time.process_time() - cpu, 2),
                                            "stage_seconds": report.stage_seconds, "warnings": report.warnings,
                                            **extra_report_fields(report)}
    return results


def extra_report_fields(report) -> dict:
    """What the report says about the model, registration and skull stripping, when it says it."""
    return {key: getattr(report, key) for key in ("model", "registration", "skull_stripping", "network_space",
                                                  "thick_slices", "n4_without_tumour_ml") if hasattr(report, key)}


def print_table(results: dict) -> None:
    print(f"Scanner-native exam TCGA-FG-6692, model {results['model']}, torch threads {torch.get_num_threads()}")
    print(f"  {'run':<28}" + "".join(f" {r + ' Dice':>8} {r + ' HD95':>8}" for r in REGIONS) + f" {'wall s':>7} {'CPU s':>7}")
    for name, run_ in results["runs"].items():
        scores = run_["scores"]
        print(f"  {name:<28}" + "".join(f" {scores[r]['dice']:8.3f} {scores[r]['hd95']:8.1f}" for r in REGIONS)
              + f" {run_['seconds']:7.1f} {run_.get('cpu_seconds', 0.0):7.1f}")
    errors = ", ".join(f"{DISPLAY_NAMES[m]} {e['mean_mm']:.2f} / {e['max_mm']:.2f}"
                       for m, e in results["registration_errors"].items())
    print(f"  registration onto the raw T1Gd against each sequence registered onto the copy's, mean / max mm: {errors}")
    if "preprocessed copy" not in results["runs"]:
        return
    copy = results["runs"]["preprocessed copy"]["scores"]
    for name, run_ in results["runs"].items():
        if name.startswith("raw "):
            gaps = ", ".join(f"{r} {run_['scores'][r]['dice'] - copy[r]['dice']:+.3f}" for r in REGIONS)
            print(f"  {name}: Dice minus the preprocessed copy's: {gaps}")
            if "network_space" in run_ and run_["warnings"]:
                summary = processing_summary({**run_, "reference": "t1c"})
                print(f"    {summary}")
            for warning in run_["warnings"]:
                print(f"    warning: {warning}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.native_exam", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", metavar="NAME:key=value,...",
                        help="settings of one raw-exam run (repeatable; default: the engine's defaults)")
    parser.add_argument("--model", metavar="CARD.json",
                        help="one model card for every input (default: the shipped pair, the default model and the one "
                             "for scanner-native exams)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ITK (default 2)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    variants = [parse_variant(v) for v in (args.variant or ["defaults"])]
    card, native_card = models_for(args.model)
    results = run(variants, card, native_card=native_card)
    print_table(results)
    if args.json:
        write_text_atomic(json.dumps(results, indent=2) + "\n", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
