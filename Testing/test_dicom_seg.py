"""DICOM SEG out: terminology from the Slicer file, voxel-for-voxel round trip, geometry, and dcmqi's reading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom", reason="the 'dicom' extra (pydicom, highdicom) is not installed")
pytest.importorskip("highdicom", reason="the 'dicom' extra (pydicom, highdicom) is not installed")

from dicom_samples import write_sample_study  # noqa: E402

from braintumorseg.dicom_seg import (TERMINOLOGY_FILE, read_dicom_seg, segment_terms, source_grid,  # noqa: E402
                                     write_dicom_seg, write_volume_report)
from braintumorseg.dicom_series import DicomStudy  # noqa: E402
from braintumorseg.errors import InputError  # noqa: E402
from braintumorseg.labels import SEGMENTS, from_internal, to_internal  # noqa: E402

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def dcmqi_tool(name: str) -> str | None:
    """A dcmqi command-line tool: installed beside this Python (the dcmqi wheel) or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


@pytest.fixture(scope="module")
def case(tmp_path_factory, sample):
    """The sample case's T1Gd series, and its consensus label (1/2/4) on that series' grid."""
    folder = tmp_path_factory.mktemp("seg-study")
    write_sample_study(folder, sample)
    study = DicomStudy(folder)
    t1c = study.read_images()["t1c"]
    consensus = sitk.ReadImage(str(sample["label"]))
    labels = sitk.Resample(consensus, t1c, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    assert set(np.unique(sitk.GetArrayViewFromImage(labels))) == {0, 1, 2, 4}
    return study, study.chosen["t1c"], labels


def test_segments_come_from_the_slicer_terminology_file():
    context = json.loads(TERMINOLOGY_FILE.read_text())
    types = context["SegmentationCodes"]["Category"][0]["Type"]
    terms = segment_terms()
    assert [t.name for t in terms] == [s.name for s in SEGMENTS] == [t["3dSlicerLabel"] for t in types]
    for term, segment, entry in zip(terms, SEGMENTS, types):
        assert term.label == segment.label
        assert term.type == segment.type == (entry["CodingSchemeDesignator"], entry["CodeValue"], entry["CodeMeaning"])
        assert term.rgb == tuple(entry["recommendedDisplayRGBValue"])
        assert np.allclose(np.asarray(term.rgb) / 255, segment.color, atol=0.003)


def test_seg_round_trip_is_voxel_for_voxel_with_the_source_geometry(case, tmp_path, capsys):
    study, series, labels = case
    path = tmp_path / "seg.dcm"
    start = time.perf_counter()
    write_dicom_seg(labels, series, path, "brats2021", ("brats-segresnet", "1.0.0"))
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[dicom] wrote a DICOM SEG of {len(series.files)} source slices in {seconds:.2f} s "
              f"({path.stat().st_size / 1024:.0f} KiB)")
    seg = pydicom.dcmread(path)
    assert seg.SOPClassUID == SEG_STORAGE and seg.SegmentationType == "BINARY"
    # labels back, voxel for voxel, in the source's slice order
    classes = read_dicom_seg(path, series)
    assert np.array_equal(classes, to_internal(sitk.GetArrayFromImage(labels), "brats2021"))
    assert np.array_equal(from_internal(classes, "brats2021"), sitk.GetArrayFromImage(labels))
    # segments as the terminology file says
    for item, term in zip(seg.SegmentSequence, segment_terms()):
        assert (item.SegmentNumber, item.SegmentLabel) == (term.label, term.name)
        code = item.SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning) == term.type
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue, category.CodeMeaning) == term.category
        assert item.SegmentAlgorithmType == "AUTOMATIC" and item.SegmentAlgorithmName == "brats-segresnet"
    # geometry and references: the source series, its frame of reference, each frame on its source slice
    sources = {d.SOPInstanceUID: d for d in (pydicom.dcmread(p, stop_before_pixels=True) for p in series.files)}
    first = next(iter(sources.values()))
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID and seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.uid
    assert seg.SeriesNumber == series.number + 1000
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert np.allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, first.ImageOrientationPatient)
    assert np.allclose(shared.PixelMeasuresSequence[0].PixelSpacing, first.PixelSpacing)
    assert (seg.Rows, seg.Columns) == (first.Rows, first.Columns)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = sources[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert np.allclose(frame.PlanePositionSequence[0].ImagePositionPatient, source.ImagePositionPatient)
    assert source_grid(list(sources.values())).GetSize() == labels.GetSize()


def test_dcmqi_reads_the_seg_as_slicer_would(case, tmp_path):
    """dcmqi (what Slicer's QuantitativeReporting uses) converts it back: same voxels, names, codes, colours."""
    tool = dcmqi_tool("segimage2itkimage")
    if tool is None:
        pytest.skip("dcmqi's segimage2itkimage is not installed (pip install dcmqi)")
    _, series, labels = case
    path = tmp_path / "seg.dcm"
    write_dicom_seg(labels, series, path)
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([tool, "--inputDICOM", str(path), "--outputDirectory", str(out), "-t", "nrrd"], check=True,
                   capture_output=True, timeout=120)
    meta = json.loads((out / "meta.json").read_text())
    attributes = [group[0] for group in meta["segmentAttributes"]]
    classes = to_internal(sitk.GetArrayFromImage(labels), "brats2021")
    for attribute, term in zip(attributes, segment_terms()):
        assert attribute["SegmentLabel"] == term.name
        assert attribute["recommendedDisplayRGBValue"] == list(term.rgb)
        code = attribute["SegmentedPropertyTypeCodeSequence"]
        assert (code["CodingSchemeDesignator"], code["CodeValue"], code["CodeMeaning"]) == term.type
        mask = sitk.ReadImage(str(out / f"{attribute['labelID']}.nrrd"))
        on_source = sitk.Resample(mask, labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        assert np.array_equal(sitk.GetArrayFromImage(on_source) > 0, classes == term.label), term.name


def test_a_label_map_off_the_source_grid_or_empty(case, tmp_path):
    _, series, labels = case
    shifted = sitk.Image(labels)
    shifted.SetOrigin(tuple(np.asarray(labels.GetOrigin()) + 3.0))
    with pytest.raises(InputError, match="is not on the grid of series 7"):
        write_dicom_seg(shifted, series, tmp_path / "shifted.dcm")
    assert not (tmp_path / "shifted.dcm").exists()
    empty = sitk.Image(labels.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(labels)
    write_dicom_seg(empty, series, tmp_path / "empty.dcm")
    assert not read_dicom_seg(tmp_path / "empty.dcm", series).any()
    import highdicom
    write_volume_report(tmp_path / "empty.dcm", series, tmp_path / "empty-sr.dcm")
    groups = highdicom.sr.srread(tmp_path / "empty-sr.dcm").content.get_volumetric_roi_measurement_groups()
    assert [g.get_measurements()[0].value for g in groups] == [0, 0, 0]


def test_tid1500_report_holds_each_segment_volume(case, tmp_path):
    import highdicom
    _, series, labels = case
    seg_path, sr_path = tmp_path / "seg.dcm", tmp_path / "sr.dcm"
    write_dicom_seg(labels, series, seg_path)
    write_volume_report(seg_path, series, sr_path, ("brats-segresnet", "1.0.0"))
    classes = to_internal(sitk.GetArrayFromImage(labels), "brats2021")
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    expected = {t.name: round(float(np.count_nonzero(classes == t.label)) * voxel_ml, 3) for t in segment_terms()}
    report = highdicom.sr.srread(sr_path)
    assert report.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert report.SeriesNumber == series.number + 2000
    groups = report.content.get_volumetric_roi_measurement_groups()
    found = {str(g.tracking_identifier): g.get_measurements()[0] for g in groups}
    assert {name: m.value for name, m in found.items()} == pytest.approx(expected, abs=1e-3)
    assert all(m.unit.value == "ml" and m.name.value == "118565006" for m in found.values())
    tool = dcmqi_tool("tid1500reader")
    if tool is None:
        pytest.skip("dcmqi's tid1500reader is not installed (pip install dcmqi)")
    subprocess.run([tool, "--inputDICOM", str(sr_path), "--outputMetadata", str(tmp_path / "sr.json")], check=True,
                   capture_output=True, timeout=120)
    measurements = json.loads((tmp_path / "sr.json").read_text())["Measurements"]
    assert {m["TrackingIdentifier"]: float(m["measurementItems"][0]["value"]) for m in measurements} == \
        pytest.approx(expected, abs=1e-3)
    assert {m["segmentationSOPInstanceUID"] for m in measurements} == {pydicom.dcmread(seg_path).SOPInstanceUID}
