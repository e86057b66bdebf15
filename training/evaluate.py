"""`evaluate`: run the engine's whole pipeline on labelled cases and score WT/TC/ET (Dice, HD95) per subset."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from braintumorseg import __version__
from braintumorseg.errors import InputError
from braintumorseg.images import read_image, resample_to_reference, same_grid
from braintumorseg.labels import ED, REGIONS, to_internal
from braintumorseg.metrics import region_scores
from braintumorseg.modalities import DISPLAY_NAMES, MODALITIES, subset_modalities
from braintumorseg.modelcard import ModelCard
from braintumorseg.output_paths import check_output_folder, write_text_atomic
from braintumorseg.pipeline import Pipeline, SegmentationSettings

from .clinical_like import generate, settings_without
from .discovery import WHOLE_TUMOUR_ONLY, LabelledCase, labelled_cases
from .exam_steps import exams_folder_name

DEFAULT_SUBSETS = ("all", "flair+t1c", "flair+t1", "flair")
PRISTINE, CLINICAL_LIKE = "pristine", "clinical-like"
COLUMNS = ["condition", "case", "subset", "channels"] + [f"{r}_{m}" for r in REGIONS for m in ("dice", "hd95")] + ["seconds"]


def parse_subset(name: str) -> tuple[str, ...]:
    """'all' or modality names joined by '+' (t1, t1c, t2, flair) → modalities in model order."""
    if name == "all":
        return MODALITIES
    modalities = subset_modalities(name)
    if not modalities:
        raise InputError(f"modality subset '{name}' is not valid: join names from {', '.join(MODALITIES)} "
                         "with '+' (e.g. flair+t1c), or use 'all'.")
    return modalities


@dataclass(frozen=True)
class EvaluateSettings:
    """Which model, cases and modality subsets to evaluate, and where the tables go."""

    card: Path
    roots: list[Path]
    out: Path
    cases: tuple[str, ...] = ()
    subsets: tuple[str, ...] = DEFAULT_SUBSETS
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    clinical_like: int | None = None  # a seed: also score clinical-like exams of the same cases (clinical_like.py)
    native_card: Path | None = None  # the model for scanner-native exams beside `card`, as the engine's shipped pair
    clinical_like_with: tuple[str, ...] = ()  # generator options that make the exams harder (exam_steps.STEPS_ON)


def reference_classes(item: LabelledCase) -> tuple[np.ndarray, sitk.Image, tuple[str, ...]]:
    """The case's label as internal classes, its image, and the regions it is labelled for."""
    image = sitk.ReadImage(str(item.case.label))
    array = sitk.GetArrayFromImage(image)
    if item.convention == WHOLE_TUMOUR_ONLY:
        return np.where(array > 0, ED, 0).astype(np.uint8), image, ("WT",)
    return to_internal(array, item.convention), image, REGIONS


def score_case(pipeline: Pipeline, item: LabelledCase, modalities: tuple[str, ...]) -> dict[str, Any]:
    """Segment the case from the given modalities with the engine and score it against its label."""
    images = {m: read_image(item.case.inputs[m], DISPLAY_NAMES[m]) for m in modalities}
    start = time.perf_counter()
    labels, report = pipeline.segment_images(images)
    seconds = time.perf_counter() - start
    reference, reference_image, labelled = reference_classes(item)
    if not same_grid(reference_image, labels, tolerance=1e-3):
        reference = _resample_classes(reference, reference_image, labels)
    predicted = to_internal(sitk.GetArrayFromImage(labels), pipeline.settings.label_convention)
    scores = region_scores(predicted, reference, labels.GetSpacing()[::-1])
    return ({region: scores[region] if region in labelled else None for region in REGIONS}
            | {"seconds": seconds, "precision": report.precision})


def _resample_classes(classes: np.ndarray, grid: sitk.Image, target: sitk.Image) -> np.ndarray:
    image = sitk.GetImageFromArray(classes)
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(resample_to_reference(image, target, interpolator=sitk.sitkNearestNeighbor))


def summarize(rows: list[dict[str, Any]], subsets: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and median per subset and region over the cases labelled for that region."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for subset in (s for s in subsets if any(r["subset"] == s for r in rows)):
        table[subset] = {}
        for region in REGIONS:
            dice = [float(r[f"{region}_dice"]) for r in rows if r["subset"] == subset and r[f"{region}_dice"] != ""]
            hd = [float(r[f"{region}_hd95"]) for r in rows if r["subset"] == subset and r[f"{region}_hd95"] != ""]
            if dice:
                table[subset][region] = {"dice_mean": round(float(np.mean(dice)), 4),
                                         "dice_median": round(float(np.median(dice)), 4),
                                         "hd95_mean": round(float(np.mean(hd)), 2),
                                         "hd95_median": round(float(np.median(hd)), 2), "cases": len(dice)}
    return table


def markdown_table(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """The mean table as Markdown: one row per subset, Dice and HD95 per region."""
    lines = ["| subset | " + " | ".join(f"{r} Dice | {r} HD95 (mm)" for r in REGIONS) + " | cases |",
             "|---|" + "---|---|" * len(REGIONS) + "---|"]
    for subset, regions in table.items():
        cells = []
        for region in REGIONS:
            if region in regions:
                cells += [f"{regions[region]['dice_mean']:.3f}", f"{regions[region]['hd95_mean']:.1f}"]
            else:
                cells += ["–", "–"]
        count = max(r["cases"] for r in regions.values()) if regions else 0
        lines.append(f"| {subset} | " + " | ".join(cells) + f" | {count} |")
    return "\n".join(lines) + "\n"


def _score_items(pipeline: Pipeline, items: list[LabelledCase], subsets: dict[str, tuple[str, ...]],
                 condition: str, log, precisions: set[str]) -> list[dict[str, str]]:
    """One row per case and subset it has: Dice and HD95 per region."""
    rows = []
    for item in items:
        for name, modalities in subsets.items():
            usable = tuple(m for m in modalities if m in pipeline.card.channels)
            if not usable or not set(usable) <= set(item.case.inputs):
                continue
            result = score_case(pipeline, item, usable)
            precisions.add(result["precision"])
            row = {"condition": condition, "case": item.case.name, "subset": name, "channels": "+".join(usable),
                   "seconds": f"{result['seconds']:.1f}"}
            for region in REGIONS:
                scores = result[region]
                row[f"{region}_dice"] = "" if scores is None else f"{scores['dice']:.4f}"
                row[f"{region}_hd95"] = "" if scores is None else f"{scores['hd95']:.2f}"
            rows.append(row)
            log(f"{item.case.name} [{name}{'' if condition == PRISTINE else ', ' + condition}] " + ", ".join(
                f"{r} {row[f'{r}_dice']} / {row[f'{r}_hd95']} mm" for r in REGIONS if row[f"{r}_dice"])
                + f" ({row['seconds']} s)")
    return rows


def clinical_like_items(roots: list[Path], items: list[LabelledCase], folder: Path, seed: int,
                        log, extras: tuple[str, ...] = ()) -> list[LabelledCase]:
    """The clinical-like exams of the cases (seeded, with the generator's `extras`), made in `folder`; exams
    already there with this seed and these extras are kept (the generator is deterministic per seed and case)."""
    todo = []
    for item in items:
        record = folder / item.case.name / "exam.json"
        made = json.loads(record.read_text()) if record.is_file() else {}
        if not (made.get("seed") == seed and set(made.get("extras", [])) == set(extras)):
            todo.append(item.case.name)
    if todo:
        generate(roots, folder, seed, tuple(todo), settings_without((), extras=extras), log=log)
    return labelled_cases([folder], only={i.case.name for i in items})


def side_by_side(rows: list[dict[str, str]], subset: str = "all") -> dict[str, dict[str, dict[str, float | None]]]:
    """Per case: each condition's Dice and HD95 per region for one subset."""
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for row in (r for r in rows if r["subset"] == subset):
        cell = table.setdefault(row["case"], {}).setdefault(row["condition"], {})
        for region in REGIONS:
            for metric in ("dice", "hd95"):
                value = row[f"{region}_{metric}"]
                cell[f"{region}_{metric}"] = float(value) if value else None
    return table


def side_by_side_markdown(means: dict[str, dict], cases: dict[str, dict], subset: str = "all") -> str:
    """Means of both conditions, then one row per case: pristine against clinical-like Dice per region."""
    lines = ["| condition | " + " | ".join(f"{r} Dice | {r} HD95 (mm)" for r in REGIONS) + " |",
             "|---|" + "---|---|" * len(REGIONS)]
    for condition, table in means.items():
        regions = table.get(subset, {})
        cells = [f"{regions[r]['dice_mean']:.3f} | {regions[r]['hd95_mean']:.1f}" if r in regions else "– | –"
                 for r in REGIONS]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    lines += ["", "| case | " + " | ".join(f"{r} pristine | {r} clinical-like" for r in REGIONS) + " |",
              "|---|" + "---|---|" * len(REGIONS)]
    for case, conditions in cases.items():
        cells = []
        for region in REGIONS:
            for condition in (PRISTINE, CLINICAL_LIKE):
                value = conditions.get(condition, {}).get(f"{region}_dice")
                cells.append("–" if value is None else f"{value:.3f}")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate(settings: EvaluateSettings, log=print) -> dict[str, Any]:
    """Score every selected case with every subset it has (and, with a clinical-like seed, its clinical-like
    exam too); write cases.csv, means.json and means.md."""
    subsets = {name: parse_subset(name) for name in settings.subsets}
    if settings.clinical_like_with and settings.clinical_like is None:
        raise InputError("--clinical-like-with makes the clinical-like exams harder; give --clinical-like SEED too.")
    card = ModelCard.load(settings.card)
    if not subsets:
        raise InputError("no modality subset given; give --subsets such as all,flair+t1c,flair+t1,flair.")
    check_output_folder(settings.out, "--out")
    items = labelled_cases(settings.roots, only=set(settings.cases) if settings.cases else None)
    missing = set(settings.cases) - {i.case.name for i in items}
    if missing:
        raise InputError(f"cases not found under the given folders: {', '.join(sorted(missing))}.")
    if not items:
        raise InputError(f"no labelled case found under {', '.join(map(str, settings.roots))}.")
    native_card = ModelCard.load(settings.native_card) if settings.native_card else None
    pipeline = Pipeline(card, settings.segmentation, native_card=native_card)
    precisions: set[str] = set()
    rows = _score_items(pipeline, items, subsets, PRISTINE, log, precisions)
    if not rows:
        raise InputError("no case has all the modalities of any requested subset; choose other --subsets.")
    clinical_rows = []
    if settings.clinical_like is not None:
        exams = settings.out / exams_folder_name(settings.clinical_like, settings.clinical_like_with)
        clinical_rows = _score_items(pipeline, clinical_like_items(settings.roots, items, exams, settings.clinical_like,
                                                                   log, settings.clinical_like_with),
                                     subsets, CLINICAL_LIKE, log, precisions)
    settings.out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows + clinical_rows)
    write_text_atomic(buffer.getvalue(), settings.out / "cases.csv")
    table = summarize(rows, tuple(subsets))
    segmentation = settings.segmentation
    result = {"model": pipeline.models(), "sha256": card.sha256,
              "native_sha256": native_card.sha256 if native_card is not None else None, "means": table,
              "cases": sorted({r["case"] for r in rows}),
              "pipeline": {"engine": __version__, "bias_correction": segmentation.preprocess.bias_correction,
                           "register": segmentation.preprocess.register,
                           "tta": segmentation.inference.tta,
                           "min_cluster_ml": segmentation.postprocess.min_cluster_ml,
                           "precision": ", ".join(sorted(precisions))}}
    markdown = markdown_table(table)
    if settings.clinical_like is not None:
        both = {PRISTINE: table, CLINICAL_LIKE: summarize(clinical_rows, tuple(subsets))}
        per_case = side_by_side(rows + clinical_rows)
        result["clinical_like"] = {"seed": settings.clinical_like, "with": list(settings.clinical_like_with),
                                   "exams": str(exams), "means": both[CLINICAL_LIKE],
                                   "cases": per_case}
        markdown += "\n" + side_by_side_markdown(both, per_case)
    write_text_atomic(json.dumps(result, indent=2) + "\n", settings.out / "means.json")
    write_text_atomic(markdown, settings.out / "means.md")
    result["markdown"] = markdown
    return result
