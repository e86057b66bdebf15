"""Two exams of one patient, baseline and follow-up: lesions matched by place after a rigid registration of the
follow-up's T1Gd onto the baseline's, the change of the sum of products and of the volumes, and the imaging
category by the bidimensional rule and by the volumetric rule (RANO 2.0 numbers by default).

Each exam is measured on its own grid (as acquired); only the lesion maps are carried across for matching.
Imaging measurements only: the clinical parts of the criteria are the reader's.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError
from .images import check_file, read_image, same_grid
from .metrics import read_label_map
from .rano import measure_with_map
from .rano_results import (COMPLETE, DISCLAIMER, NOT_EVALUABLE, PARTIAL, PROGRESSION, RANO_2_0, STABLE, RanoCriteria,
                           RanoMeasurement)
from .rano_response import ClinicalFindings, Response, overall_response
from .registration import RegistrationSettings, register_rigid


@dataclass
class Exam:
    """One segmented exam: internal classes on the grid of its T1Gd, the T1Gd itself, and where they came from."""

    classes: np.ndarray
    labels: sitk.Image
    image: sitk.Image
    name: str


@dataclass(frozen=True)
class CompareSettings:
    register: bool = True
    match_margin_mm: float = 5.0  # a follow-up lesion this close to a baseline lesion (after registration) matches
    criteria: RanoCriteria = RANO_2_0
    # Two T1Gd of one head, registered on images subsampled by `registration_subsample` first: on the sample moved
    # by a known 4° (braintumorseg-rano-benchmark) 4.3 s against 16.0 s at full resolution under the same load,
    # the same transform within 0.05° and 0.05 mm.
    registration_subsample: int = 2
    # Own grids only: a baseline subsampled by 2 from 2.5 mm slices would otherwise cross the working-grid rule.
    registration: RegistrationSettings = RegistrationSettings(sampling_fraction=0.1, iterations=60,
                                                              shrink_factors=(4, 2), smoothing_sigmas=(4.0, 2.0),
                                                              working_spacing_mm=None)


@dataclass
class LesionMatch:
    """Baseline and follow-up lesions that overlap (within the margin), and what happened to them."""

    baseline: list[int]
    follow_up: list[int]
    kind: str  # matched, merged, split, merged and split, new, gone


@dataclass
class Category:
    category: str
    reason: str


@dataclass
class Comparison:
    baseline_name: str
    follow_up_name: str
    baseline: RanoMeasurement
    follow_up: RanoMeasurement
    matches: list[LesionMatch] = field(default_factory=list)
    new_lesions: list[int] = field(default_factory=list)
    new_measurable: list[int] = field(default_factory=list)
    baseline_targets: list[int] = field(default_factory=list)
    follow_up_of_targets: list[int] = field(default_factory=list)  # follow-up lesions that are the targets now
    baseline_sum_mm2: float = 0.0
    follow_up_sum_mm2: float = 0.0
    sum_change_percent: float | None = None
    enhancing_change_percent: float | None = None
    non_enhancing_change_percent: float | None = None
    bidimensional: Category = field(default_factory=lambda: Category(NOT_EVALUABLE, ""))
    volumetric: Category = field(default_factory=lambda: Category(NOT_EVALUABLE, ""))
    registration: dict = field(default_factory=dict)
    findings: ClinicalFindings = ClinicalFindings()  # the reader's: corticosteroids, clinical status, ...
    responses: dict[str, Response] = field(default_factory=dict)  # rule → the response with the reader's findings
    seconds: float = 0.0
    note: str = DISCLAIMER

    @property
    def agree(self) -> bool:
        return self.bidimensional.category == self.volumetric.category

    def summary(self) -> str:
        """One sentence: the category, or both when the rules disagree."""
        if self.agree:
            return f"Imaging category: {self.bidimensional.category} (bidimensional and volumetric rules agree)."
        return (f"The rules disagree: bidimensional {self.bidimensional.category}, volumetric "
                f"{self.volumetric.category}; both are shown.")

    def to_dict(self) -> dict:
        document = asdict(self)
        document["agree"], document["summary"] = self.agree, self.summary()
        return document


def load_exam(labels: str | os.PathLike, image: str | os.PathLike, convention: str = "brats2021",
              what: str = "exam") -> Exam:
    """Read a label map and the T1Gd it was segmented on; they must share one grid."""
    classes, label_image = read_label_map(labels, convention, f"{what} labels")
    t1c = read_image(image, f"{what} T1Gd")
    if not same_grid(label_image, t1c, tolerance=1e-3):
        raise InputError(f"{what}: the label map {labels} is not on the grid of the image {image}; give the T1Gd "
                         "the labels were made on (the engine writes them on its grid).")
    return Exam(classes, label_image, t1c, f"{Path(labels).name}")


def exam_from_report(report: str | os.PathLike, what: str = "exam") -> Exam:
    """The exam a segment report describes: its label map and its reference image (the T1Gd when given)."""
    path = check_file(report, f"{what} report", "a report file (JSON)")
    try:
        document = json.loads(path.read_text())
        output, inputs = document["output"], document["inputs"]
        convention = document.get("label_convention", "brats2021")
        reference = document.get("reference") or next(iter(inputs))
        image = inputs["t1c"] if "t1c" in inputs else inputs[reference]
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        raise InputError(f"{what}: {path} is not a report written by 'braintumorseg segment --report'.") from None
    return load_exam(_near(output, path), _near(image, path), convention, what)


def _near(name: str, report: Path) -> Path:
    """A path from a report: as written, else relative to the report's folder."""
    candidate = Path(name)
    if candidate.exists() or candidate.is_absolute():
        return candidate
    return report.parent / candidate


def register_follow_up(baseline: Exam, follow_up: Exam, settings: CompareSettings) -> tuple[sitk.Transform, dict]:
    """The rigid transform from baseline physical points to follow-up ones (identity when not registering)."""
    if not settings.register:
        return sitk.Euler3DTransform(), {"registered": False}
    start = time.perf_counter()
    try:
        factors = [settings.registration_subsample] * 3
        transform = register_rigid(sitk.Shrink(follow_up.image, factors), sitk.Shrink(baseline.image, factors),
                                   settings.registration)
    except InputError:
        raise InputError("the follow-up T1Gd could not be registered onto the baseline T1Gd; check that both are "
                         "T1Gd images of the same patient, or give --no-register when they are aligned.") from None
    parameters = transform.GetParameters()  # the Euler transform's: 3 angles (radians), then the translation
    return transform, {"registered": True, "rotation_degrees": [round(math.degrees(a), 2) for a in parameters[:3]],
                       "translation_mm": [round(t, 2) for t in parameters[3:]],
                       "seconds": round(time.perf_counter() - start, 2)}


def match_lesions(baseline_map: sitk.Image, follow_up_map: sitk.Image, transform: sitk.Transform,
                  margin_mm: float) -> list[LesionMatch]:
    """Match lesions by place: a follow-up lesion (resampled onto the baseline grid) matches each baseline lesion
    it overlaps, or that lies within `margin_mm` of it."""
    moved = sitk.Resample(follow_up_map, baseline_map, transform, sitk.sitkNearestNeighbor, 0,
                          follow_up_map.GetPixelID())
    base, follow = sitk.GetArrayFromImage(baseline_map), sitk.GetArrayFromImage(moved)
    edges: set[tuple[int, int]] = set()
    if base.any() and follow.any():
        spacing = baseline_map.GetSpacing()[::-1]
        box = _box(base | follow, [int(math.ceil(margin_mm / s)) + 1 for s in spacing])
        distance, nearest = ndimage.distance_transform_edt(base[box] == 0, sampling=spacing, return_indices=True)
        nearest_id = base[box][tuple(nearest)]
        near = (follow[box] > 0) & (distance <= margin_mm)
        edges = set(zip(nearest_id[near].tolist(), follow[box][near].tolist()))
        overlap = (follow[box] > 0) & (base[box] > 0)  # every baseline lesion a follow-up lesion touches
        edges |= set(zip(base[box][overlap].tolist(), follow[box][overlap].tolist()))
    baseline_ids = sorted(set(np.unique(base).tolist()) - {0})
    follow_ids = sorted(set(np.unique(sitk.GetArrayViewFromImage(follow_up_map)).tolist()) - {0})
    return _groups(baseline_ids, follow_ids, edges)


def _box(mask: np.ndarray, margin: list[int]) -> tuple[slice, ...]:
    where = np.argwhere(mask)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    return tuple(slice(max(0, l - m), min(n, h + m)) for l, h, m, n in zip(low, high, margin, mask.shape))


def _groups(baseline_ids: list[int], follow_ids: list[int], edges: set[tuple[int, int]]) -> list[LesionMatch]:
    """Connected groups of the bipartite overlap graph, each named by what happened."""
    parent = {("b", i): ("b", i) for i in baseline_ids} | {("f", j): ("f", j) for j in follow_ids}

    def root(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j in edges:
        parent[root(("b", i))] = root(("f", j))
    groups: dict = {}
    for node in parent:
        groups.setdefault(root(node), []).append(node)
    matches = []
    for members in groups.values():
        base = sorted(n for side, n in members if side == "b")
        follow = sorted(n for side, n in members if side == "f")
        if not base:
            kind = "new"
        elif not follow:
            kind = "gone"
        elif len(base) > 1 and len(follow) > 1:
            kind = "merged and split"
        else:
            kind = "merged" if len(base) > 1 else "split" if len(follow) > 1 else "matched"
        matches.append(LesionMatch(base, follow, kind))
    return sorted(matches, key=lambda m: (m.baseline[:1] or [10 ** 6], m.follow_up[:1] or [0]))


def percent_change(before: float, after: float) -> float | None:
    return None if before <= 0 else round(100.0 * (after - before) / before, 2)


def compare_exams(baseline: Exam, follow_up: Exam, settings: CompareSettings = CompareSettings(),
                  findings: ClinicalFindings = ClinicalFindings(),
                  corrections: tuple[dict[int, float], dict[int, float]] = ({}, {})) -> Comparison:
    """Measure both exams, register, match lesions, and give the changes, the two imaging categories and the
    responses they support with the reader's findings. `corrections` hold the products (mm², by lesion id) the
    reader measured on each exam; they replace the engine's."""
    start = time.perf_counter()
    before, before_map = measure_with_map(baseline.classes, baseline.labels, settings.criteria)
    after, after_map = measure_with_map(follow_up.classes, follow_up.labels, settings.criteria)
    before, after = before.with_products(corrections[0]), after.with_products(corrections[1])
    transform, registration = register_follow_up(baseline, follow_up, settings)
    matches = match_lesions(before_map, after_map, transform, settings.match_margin_mm)
    comparison = Comparison(baseline.name, follow_up.name, before, after, matches, registration=registration)
    comparison.baseline_targets = list(before.targets)
    now_targets = sorted({j for m in matches if set(m.baseline) & set(before.targets) for j in m.follow_up})
    comparison.follow_up_of_targets = now_targets
    products = {lesion.id: lesion.product_mm2 for lesion in after.lesions}
    comparison.baseline_sum_mm2 = before.sum_of_products_mm2
    comparison.follow_up_sum_mm2 = round(sum(products[j] for j in now_targets), 2)
    comparison.new_lesions = sorted(j for m in matches if m.kind == "new" for j in m.follow_up)
    measurable = {lesion.id for lesion in after.lesions if lesion.measurable}
    comparison.new_measurable = [j for j in comparison.new_lesions if j in measurable]
    progressing = comparison.new_lesions if settings.criteria.any_new_lesion_progresses else comparison.new_measurable
    comparison.sum_change_percent = percent_change(comparison.baseline_sum_mm2, comparison.follow_up_sum_mm2)
    comparison.enhancing_change_percent = percent_change(before.enhancing_ml, after.enhancing_ml)
    comparison.non_enhancing_change_percent = percent_change(before.non_enhancing_ml, after.non_enhancing_ml)
    comparison.bidimensional = categorize(comparison.sum_change_percent, before, after, progressing,
                                          settings.criteria.partial_response_decrease,
                                          settings.criteria.progression_increase, "sum of products")
    comparison.volumetric = categorize(comparison.enhancing_change_percent, before, after, progressing,
                                       settings.criteria.volume_partial_response_decrease,
                                       settings.criteria.volume_progression_increase, "enhancing volume")
    assess(comparison, findings)
    comparison.seconds = round(time.perf_counter() - start, 2)
    return comparison


def assess(comparison: Comparison, findings: ClinicalFindings) -> Comparison:
    """Set the reader's findings and the response each rule's imaging category supports with them."""
    comparison.findings = findings
    comparison.responses = {"bidimensional": overall_response(comparison.bidimensional.category, findings),
                            "volumetric": overall_response(comparison.volumetric.category, findings)}
    return comparison


def categorize(change: float | None, before: RanoMeasurement, after: RanoMeasurement, new_lesions: list[int],
               decrease: float, increase: float, measure: str) -> Category:
    """The imaging category one rule gives: CR when no enhancing disease is left, PD for a new lesion that counts
    (measurable, in RANO 2.0) or an increase of at least `increase` %, PR for a decrease of at least `decrease` %,
    else SD."""
    if before.enhancing_ml > 0 and after.enhancing_ml == 0:
        return Category(COMPLETE, "no enhancing disease on the follow-up")
    if new_lesions:
        listed = ", ".join(map(str, new_lesions))
        if all(lesion.measurable for lesion in after.lesions if lesion.id in new_lesions):
            return Category(PROGRESSION, f"new measurable lesion(s) {listed}")
        return Category(PROGRESSION, f"new lesion(s) {listed}, not all measurable (RANO 2010: any new lesion)")
    if change is None:
        return Category(NOT_EVALUABLE, f"no {measure} at baseline to compare with")
    if change >= increase:
        return Category(PROGRESSION, f"{measure} {change:+.1f} % (progression from +{increase:g} %)")
    if change <= -decrease:
        return Category(PARTIAL, f"{measure} {change:+.1f} % (partial response from -{decrease:g} %)")
    return Category(STABLE, f"{measure} {change:+.1f} % (between -{decrease:g} % and +{increase:g} %)")


def comparison_lines(comparison: Comparison) -> str:
    """The comparison as text for the command line."""
    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.1f} %"
    registration = comparison.registration
    lines = [f"baseline {comparison.baseline_name} → follow-up {comparison.follow_up_name}"
             + (f" (registered rigidly: rotation {registration['rotation_degrees']}°, translation "
                f"{registration['translation_mm']} mm, {registration['seconds']:.1f} s)"
                if registration.get("registered") else " (not registered)")]
    for match in comparison.matches:
        lines.append(f"  baseline {match.baseline or '-'} → follow-up {match.follow_up or '-'}: {match.kind}")
    lines.append(f"  sum of products of the targets {comparison.baseline_sum_mm2:.0f} → "
                 f"{comparison.follow_up_sum_mm2:.0f} mm² ({percent(comparison.sum_change_percent)})")
    lines.append(f"  enhancing {comparison.baseline.enhancing_ml:.2f} → {comparison.follow_up.enhancing_ml:.2f} mL "
                 f"({percent(comparison.enhancing_change_percent)}); non-enhancing (T2/FLAIR) "
                 f"{comparison.baseline.non_enhancing_ml:.2f} → {comparison.follow_up.non_enhancing_ml:.2f} mL "
                 f"({percent(comparison.non_enhancing_change_percent)})")
    lines.append(f"  bidimensional rule: {comparison.bidimensional.category} ({comparison.bidimensional.reason})")
    lines.append(f"  volumetric rule: {comparison.volumetric.category} ({comparison.volumetric.reason})")
    lines.append(f"  {comparison.summary()}")
    summaries = {rule: response.summary() for rule, response in comparison.responses.items()}
    if len(set(summaries.values())) == 1:
        lines.append(f"  Response with the reader's findings (both rules): {next(iter(summaries.values()))}")
    else:
        lines += [f"  Response with the reader's findings, {rule} rule: {text}" for rule, text in summaries.items()]
    lines.append(f"  {comparison.note}")
    return "\n".join(lines)
