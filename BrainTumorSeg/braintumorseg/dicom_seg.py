"""DICOM SEG out (highdicom): the label map as a segmentation that references its source MR series.

Segment names, SNOMED CT category and type codes and colours come from the extension's Slicer terminology file,
so that Slicer (QuantitativeReporting, dcmqi) shows the segments as the module does. One frame per source slice
that holds tumour, each referencing its source image, as dcmqi writes them. Optionally a TID 1500 structured
report (highdicom.sr) with the volume of each segment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__
from .dicom_series import MR_IMAGE, Series
from .errors import InputError
from .images import same_grid, write_bytes_atomic
from .labels import SEGMENTS, to_internal
from .resources import RESOURCES

TERMINOLOGY_FILE = RESOURCES / "Terminology" / "SegmentationCategoryTypeModifier-BrainTumorSeg.term.json"
SERIES_NUMBER_OFFSET = 1000  # the SEG's series number: the source's plus this
SR_SERIES_NUMBER_OFFSET = 2000


@dataclass(frozen=True)
class SegmentTerm:
    """One segment as the terminology file describes it; `label` is the engine's internal class."""

    label: int
    name: str
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    rgb: tuple[int, int, int]


def segment_terms(path: str | os.PathLike = TERMINOLOGY_FILE) -> list[SegmentTerm]:
    """The segments of the Slicer terminology file (its 3dSlicerLabel names the segment), in label order."""
    labels = {s.name: s.label for s in SEGMENTS}
    context = json.loads(Path(path).read_text())
    terms = []
    for category in context["SegmentationCodes"]["Category"]:
        for entry in category["Type"]:
            terms.append(SegmentTerm(
                labels[entry["3dSlicerLabel"]], entry["3dSlicerLabel"],
                (category["CodingSchemeDesignator"], category["CodeValue"], category["CodeMeaning"]),
                (entry["CodingSchemeDesignator"], entry["CodeValue"], entry["CodeMeaning"]),
                tuple(entry["recommendedDisplayRGBValue"])))
    return sorted(terms, key=lambda t: t.label)


def _source_datasets(series: Series) -> list:
    import pydicom
    if series.sop_class != MR_IMAGE or series.frames > 1:
        raise InputError(f"DICOM SEG output needs a single-frame MR source series; {series.label} is multi-frame. "
                         "Write the label map (-o) instead, or convert the series to single-frame files.")
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in series.files]


def source_grid(datasets: list) -> sitk.Image:
    """An empty image with the source series' grid (slices in the given order), from the headers."""
    first = datasets[0]
    row, column = np.asarray(first.ImageOrientationPatient[:3], float), np.asarray(first.ImageOrientationPatient[3:],
                                                                                       float)
    normal = np.cross(row, column)
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
    step = float(np.median(np.diff(positions @ normal))) if len(datasets) > 1 else float(first.SliceThickness)
    grid = sitk.Image([int(first.Columns), int(first.Rows), len(datasets)], sitk.sitkUInt8)
    grid.SetSpacing((float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), step))
    grid.SetOrigin(tuple(positions[0]))
    grid.SetDirection(tuple(np.column_stack([row, column, normal]).flatten()))
    return grid


def build_dicom_seg(labels: sitk.Image, series: Series, convention: str = "brats2021",
                    algorithm: tuple[str, str] = ("BrainTumorSeg", __version__)):
    """The highdicom Segmentation of a label map that lies on the source series' grid."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid
    datasets = _source_datasets(series)
    if not same_grid(labels, source_grid(datasets)):
        raise InputError(f"the label map is not on the grid of {series.label} (size {labels.GetSize()}); a DICOM "
                         "SEG must lie on its source series.")
    classes = to_internal(sitk.GetArrayFromImage(labels), convention)
    identification = hd.AlgorithmIdentificationSequence(name=algorithm[0], version=algorithm[1],
                                                        family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=term.label, segment_label=term.name,
        segmented_property_category=hd.sr.CodedConcept(term.category[1], term.category[0], term.category[2]),
        segmented_property_type=hd.sr.CodedConcept(term.type[1], term.type[0], term.type[2]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=identification,
        tracking_uid=generate_uid(), tracking_id=term.name,
        display_color=hd.color.CIELabColor.from_rgb(*term.rgb)) for term in segment_terms()]
    number = (series.number or 0) + SERIES_NUMBER_OFFSET
    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=classes, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="BrainTumorSeg",
        manufacturer_model_name=algorithm[0], software_versions=f"braintumorseg {__version__}",
        device_serial_number="0", content_label="TUMOUR", content_description="Brain tumour segmentation",
        series_description=f"BrainTumorSeg {algorithm[0]} {algorithm[1]}"[:64],
        omit_empty_frames=bool(classes.any()))


def write_dicom_seg(labels: sitk.Image, series: Series, path: str | os.PathLike, convention: str = "brats2021",
                    algorithm: tuple[str, str] = ("BrainTumorSeg", __version__)) -> None:
    """Write the DICOM SEG of a label map atomically."""
    import io
    segmentation = build_dicom_seg(labels, series, convention, algorithm)
    buffer = io.BytesIO()
    segmentation.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(buffer.getvalue(), path)


def read_dicom_seg(path: str | os.PathLike, series: Series) -> np.ndarray:
    """The internal classes (slice, row, column) of a DICOM SEG on its source series' slices, in their order."""
    import highdicom as hd
    import pydicom
    segmentation = hd.seg.segread(str(path))
    uids = [pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID
            for p in series.files]
    return segmentation.get_pixels_by_source_instance(uids, combine_segments=True, dtype=np.uint8)
