"""Two loaded studies of one patient compared in the panel, without Qt: which segmentations can be compared, the
pair offered first, the comparison (the engine's, on the segments and their T1Gd as the scene holds them) with
the reader's line corrections and clinical findings, and its one-page report.

A segmentation can be compared when BrainTumorSeg made it (it carries the engine's RANO measurements) and its
reference volume is still in the scene. The imaging libraries are imported when a comparison runs: the panel opens
before they are installed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import slicer
import vtk
from braintumorseg.errors import InputError
from braintumorseg.labels import SEGMENT_CONVENTION, SEGMENTS
from braintumorseg.rano_response import NOT_ENTERED_WEEKS, ClinicalFindings
from braintumorseg.rano_results import CRITERIA

from .rano_markups import RANO_ATTRIBUTE, lesion_rows
from .segments import SEGMENT_IDS, holds_user_work
from .volume_files import write_volume


@dataclass
class StudyComparison:
    comparison: object  # braintumorseg.compare.Comparison
    baseline: object  # braintumorseg.compare.Exam
    follow_up: object
    notes: list[str]
    key: tuple  # what was compared: comparison_key(...)

    def is_for(self, baseline, follow_up, criteria: str) -> bool:
        """True while the panel still shows the pair and the criteria this comparison was made for."""
        return self.key == comparison_key(baseline, follow_up, criteria)

    def text(self) -> str:
        from braintumorseg.compare import comparison_lines
        return "\n".join([comparison_lines(self.comparison), *self.notes])

    def reassess(self, findings: ClinicalFindings) -> None:
        """The responses again with changed findings (the measurements stay)."""
        from braintumorseg.compare import assess
        assess(self.comparison, findings)


def reference_volume(segmentation_node):
    return segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole())


def comparison_key(baseline, follow_up, criteria: str) -> tuple:
    return (baseline.GetID() if baseline else None, follow_up.GetID() if follow_up else None, criteria)


def comparable(segmentation_node) -> bool:
    return (segmentation_node is not None and bool(segmentation_node.GetAttribute(RANO_ATTRIBUTE))
            and reference_volume(segmentation_node) is not None)


def default_pair(scene) -> tuple[object, object]:
    """The two comparable segmentations offered first, one per study volume (the newest made on it): the older
    study's as baseline, the newer as follow-up. Older means an earlier DICOM study date of the volume when every
    study has one, else made earlier."""
    newest = {}
    for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode", scene):
        if comparable(node):
            newest[reference_volume(node).GetID()] = node  # the scene lists nodes in the order they were added
    nodes = list(newest.values())
    if len(nodes) < 2:
        return None, None
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)

    def study_date(node) -> str:
        item = hierarchy.GetItemByDataNode(reference_volume(node))
        parent = hierarchy.GetItemParent(item) if item else 0
        return hierarchy.GetItemAttribute(parent, "DICOM.StudyDate") if parent else ""

    dates = [study_date(node) for node in nodes]
    if all(dates):
        nodes = [node for _, _, node in sorted(zip(dates, range(len(nodes)), nodes))]
    return nodes[-2], nodes[-1]


def problems(baseline, follow_up) -> list[str]:
    """What keeps the two from being compared, each as one sentence (empty when they can be)."""
    if baseline is None or follow_up is None:
        return ["Select the baseline and the follow-up segmentations (both made by BrainTumorSeg)."]
    if baseline is follow_up:
        return ["The baseline and the follow-up are the same segmentation; select the other study's."]
    found = []
    for what, node in (("baseline", baseline), ("follow-up", follow_up)):
        if not node.GetAttribute(RANO_ATTRIBUTE):
            found.append(f"The {what} '{node.GetName()}' was not made by BrainTumorSeg; segment that study first.")
        elif reference_volume(node) is None:
            found.append(f"The {what} '{node.GetName()}' has lost the volume it was made on; load the study again.")
    if not found and reference_volume(baseline) is reference_volume(follow_up):
        found.append(f"The baseline and the follow-up were both made on '{reference_volume(baseline).GetName()}'; "
                     "select the other study's segmentation.")
    return found


def findings_from_panel(steroids: str, clinical_status: str, weeks: float, confirmation: str) -> ClinicalFindings:
    return ClinicalFindings(steroids, clinical_status, None if weeks <= NOT_ENTERED_WEEKS else weeks, confirmation)


def exam_of(segmentation_node, folder: Path, what: str):
    """The segmentation's segments as the engine's label map (a compare.Exam) on its reference volume's grid,
    with that volume."""
    from braintumorseg.compare import load_exam
    ordered = vtk.vtkStringArray()  # exported as 1, 2, 3...: the segments' labels in SEGMENT_CONVENTION
    for segment in sorted(SEGMENTS, key=lambda s: s.label):
        ordered.InsertNextValue(SEGMENT_IDS[segment.label])
    volume, scene = reference_volume(segmentation_node), segmentation_node.GetScene()
    labels, image = folder / f"{what}-labels.nrrd", folder / f"{what}-t1c.nrrd"
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")  # the export needs it in the scene
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ordered,
                                                                                     labelmap, volume):
            raise InputError(f"The {what} segmentation '{segmentation_node.GetName()}' could not be read; "
                             "segment the study again.")
        write_volume(labelmap, labels)
    finally:
        scene.RemoveNode(labelmap)
    write_volume(volume, image)
    exam = load_exam(labels, image, SEGMENT_CONVENTION, what)
    exam.name = segmentation_node.GetName()
    return exam


def reader_products(segmentation_node) -> dict[int, float]:
    """The products of the lesions whose lines the reader moved (lesion id → mm²)."""
    return {row["lesion"]: row["product"] for row in lesion_rows(segmentation_node) if row["edited"]}


def compare_segmentations(baseline, follow_up, findings: ClinicalFindings, criteria: str = "2.0",
                          register: bool = True) -> StudyComparison:
    """Compare two studies; raises InputError with one sentence for the reader when they cannot be."""
    from braintumorseg.compare import CompareSettings, compare_exams
    found = problems(baseline, follow_up) or findings.problems()
    if found:
        raise InputError(found[0])
    folder = Path(tempfile.mkdtemp(prefix="BrainTumorSeg-compare-"))
    try:
        exams = [exam_of(node, folder, what) for node, what in ((baseline, "baseline"), (follow_up, "follow-up"))]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    corrections, notes = [], []
    for node, what in ((baseline, "baseline"), (follow_up, "follow-up")):
        products = reader_products(node)
        if products and holds_user_work(node):
            notes.append(f"The {what} segments were edited after the lines were drawn: its lesions were measured "
                         "again and the moved lines were not used.")
            products = {}
        elif products:
            notes.append(f"The {what} uses the reader's lines for lesion(s) {', '.join(map(str, sorted(products)))}.")
        corrections.append(products)
    settings = CompareSettings(register=register, criteria=CRITERIA[criteria])
    comparison = compare_exams(exams[0], exams[1], settings, findings, tuple(corrections))
    return StudyComparison(comparison, exams[0], exams[1], notes, comparison_key(baseline, follow_up, criteria))


def save_report(result: StudyComparison, path: str | Path) -> Path:
    """Write the comparison's one-page HTML report (key slices, lines, lesion table, volumes, category)."""
    from braintumorseg.output_paths import check_output_path, write_text_atomic
    from braintumorseg.rano_report import comparison_report_html
    path = Path(path)
    target = check_output_path(path if path.suffix else path.with_suffix(".html"), "HTML report", (".html", ".htm"))
    write_text_atomic(comparison_report_html(result.baseline, result.follow_up, result.comparison), target)
    return target
