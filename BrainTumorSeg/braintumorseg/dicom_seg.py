"""DICOM SEG out (highdicom): the label map as a segmentation that references its source MR series.

Segment names, SNOMED CT category and type codes and colours come from the extension's Slicer terminology file,
so that Slicer (QuantitativeReporting, dcmqi) shows the segments as the module does. One frame per source slice
that holds tumour, each referencing its source image, as dcmqi writes them. Optionally a TID 1500 structured
report (highdicom.sr) with the volume of each segment.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__
from .dicom_series import MR_IMAGE, Series
from .errors import InputError
from .images import same_grid
from .output_paths import write_bytes_atomic
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
    with warnings.catch_warnings():  # highdicom's remarks on the source's attributes (e.g. person names)
        warnings.simplefilter("ignore", UserWarning)
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


MR_BRAIN = ("24590-2", "LN", "MR Brain")  # LOINC: the procedure the TID 1500 report is about


def segment_volumes_ml(segmentation) -> dict[int, float]:
    """The volume in mL of each segment of a DICOM SEG, from its frames and pixel measures."""
    shared = segmentation.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    step = float(shared.get("SpacingBetweenSlices") or shared.SliceThickness)
    voxel_ml = float(np.prod([float(v) for v in shared.PixelSpacing])) * step / 1000.0
    frames = segmentation.pixel_array.reshape(-1, segmentation.Rows, segmentation.Columns)
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
               for f in segmentation.PerFrameFunctionalGroupsSequence]
    counts = {item.SegmentNumber: 0 for item in segmentation.SegmentSequence}
    for number, frame in zip(numbers, frames):
        counts[number] += int(np.count_nonzero(frame))
    return {number: round(count * voxel_ml, 3) for number, count in counts.items()}


def _referenced_segment(segmentation, number: int, volume_ml: float, source_series_uid: str):
    """The SR's reference to one segment: with its frames, or (an empty segment has none) its source series."""
    import highdicom as hd
    if volume_ml > 0:
        return hd.sr.ReferencedSegment.from_segmentation(segmentation, number)
    return hd.sr.ReferencedSegment(segmentation.SOPClassUID, segmentation.SOPInstanceUID, number,
                                   source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid))


def build_volume_report(segmentation, source_datasets: list, algorithm: tuple[str, str]):
    """A TID 1500 measurement report (highdicom Comprehensive 3D SR): the volume of each segment of the SEG."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=algorithm[0], manufacturer_name="BrainTumorSeg", model_name=algorithm[1]))
    volumes = segment_volumes_ml(segmentation)
    groups = []
    for item in segmentation.SegmentSequence:
        code = item.SegmentedPropertyTypeCodeSequence[0]
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=item.SegmentLabel),
            referenced_segment=_referenced_segment(segmentation, item.SegmentNumber, volumes[item.SegmentNumber],
                                                   source_datasets[0].SeriesInstanceUID),
            finding_type=hd.sr.CodedConcept(code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning),
            measurements=[hd.sr.Measurement(
                name=codes.SCT.Volume, value=volumes[item.SegmentNumber],
                unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter"),
                algorithm_id=hd.sr.AlgorithmIdentification(name=algorithm[0], version=algorithm[1]))]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=hd.sr.CodedConcept(*MR_BRAIN), imaging_measurements=groups)
    source_number = int(source_datasets[0].get("SeriesNumber") or 0)
    return hd.sr.Comprehensive3DSR(
        evidence=[segmentation, *source_datasets], content=report[0], series_instance_uid=generate_uid(),
        series_number=source_number + SR_SERIES_NUMBER_OFFSET, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="BrainTumorSeg", is_complete=True,
        series_description=f"BrainTumorSeg volumes {algorithm[0]}"[:64])


def write_volume_report(seg_path: str | os.PathLike, series: Series, path: str | os.PathLike,
                        algorithm: tuple[str, str] = ("BrainTumorSeg", __version__)) -> None:
    """Write the TID 1500 volume report of a DICOM SEG written for `series`, atomically."""
    import io
    import pydicom
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = build_volume_report(pydicom.dcmread(seg_path), _source_datasets(series), algorithm)
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(buffer.getvalue(), path)
