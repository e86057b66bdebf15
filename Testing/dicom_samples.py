"""Real MR volumes written as DICOM MR series with full MR headers (pydicom), for the DICOM tests.

`EXAM` is the scanner-native TCGA-FG-6692 exam of ../shared/data/clinical_raw (a Siemens study): its series
descriptions, numbers and Siemens sequence names are the ones in its file names; TR, TE, TI are typical values for
those sequences (the NIfTI files do not keep them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class SeriesSpec:
    """What a written series says about itself."""

    number: int
    description: str
    tr: float | None = None
    te: float | None = None
    ti: float | None = None
    scanning_sequence: str = "SE"
    sequence_variant: str = "SK\\SP"
    sequence_name: str = ""
    agent: str = ""
    image_type: str = "ORIGINAL\\PRIMARY\\M\\ND"
    extra: dict = field(default_factory=dict)


# The clinical exam: its four series as the scanner named them (file names of clinical_raw).
EXAM = {
    "t1": ("T1_AX_*", SeriesSpec(10, "T1 AX SE", 550, 11, None, "SE", "SK\\SP", "*se2d1")),
    "t1c": ("MRHR_T1_AX_POST_GAD_*", SeriesSpec(13, "MRHR T1 AX POST GAD SE", 550, 11, None, "SE", "SK\\SP",
                                                "*se2d1r", "MAGNEVIST")),
    "t2": ("MRHR_T2_AX_*", SeriesSpec(2, "MRHR T2 AX SE", 4000, 98, None, "SE", "SK\\SP\\OSP", "*tse2d1_11")),
    "flair": ("MRHR_FLAIR_AX_*", SeriesSpec(5, "MRHR FLAIR AX SE IR", 9000, 94, 2500, "SE\\IR", "SK\\SP\\MP\\OSP",
                                            "*tir2d1_21")),
}


@dataclass
class Study:
    """One patient visit: shared identifiers for the series written into it."""

    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference: str = field(default_factory=generate_uid)
    patient: str = "TCGA-FG-6692"


def write_series(image: sitk.Image, folder: Path, spec: SeriesSpec, study: Study, manufacturer: str = "SIEMENS",
                 uid: str | None = None) -> list[Path]:
    """Write a 3D image as single-frame MR Image Storage files, one per slice, int16 with a rescale."""
    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    low, high = float(array.min()), float(array.max())
    slope = max((high - low) / 30000.0, 1e-6) if high - low > 30000 or not np.all(np.mod(array, 1) == 0) else 1.0
    stored = np.rint((array - low) / slope).astype(np.int16) if slope != 1.0 else (array - low).astype(np.int16)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    series_uid = uid or generate_uid()
    paths = []
    for k in range(array.shape[0]):
        ds = Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"{study.patient}^", study.patient, "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.StudyDate, ds.StudyTime = study.study_uid, "1", "20010101", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, spec.number, spec.description
        ds.ProtocolName = spec.description
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "MR", manufacturer, "test"
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = study.frame_of_reference, ""
        ds.InstanceNumber, ds.ImageType = k + 1, spec.image_type.split("\\")
        ds.ScanningSequence, ds.SequenceVariant = spec.scanning_sequence.split("\\"), spec.sequence_variant.split("\\")
        ds.ScanOptions, ds.MRAcquisitionType, ds.SequenceName = "", "2D", spec.sequence_name
        ds.SliceThickness, ds.SpacingBetweenSlices = f"{spacing[2]:.6g}", f"{spacing[2]:.6g}"
        if spec.tr is not None:
            ds.RepetitionTime = spec.tr
        if spec.te is not None:
            ds.EchoTime = spec.te
        if spec.ti is not None:
            ds.InversionTime = spec.ti
        ds.EchoTrainLength, ds.MagneticFieldStrength, ds.ImagingFrequency = 1, 1.5, 63.6
        ds.ContrastBolusAgent = spec.agent
        ds.ImagePositionPatient = [float(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{low:.6g}", f"{slope:.8g}", "US"
        for keyword, value in spec.extra.items():
            setattr(ds, keyword, value)
        ds.PixelData = stored[k].tobytes()
        path = folder / f"{spec.number:03d}_{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def small(image: sitk.Image, shrink: tuple[int, int, int]) -> sitk.Image:
    """A smaller copy (fewer voxels, same physical extent) so that the tests run fast."""
    return sitk.BinShrink(image, shrink)


# The bundled sample case's sequences as a GE-named study (2 mm in-plane, 5 mm slices: fast tests).
SAMPLE_SPECS = {
    "t1": SeriesSpec(3, "Ax T1 FSPGR", 8.2, 3.2, None, "GR", "SS\\SP", "efgre3d"),
    "t1c": SeriesSpec(7, "Ax T1 FSPGR +C", 8.2, 3.2, None, "GR", "SS\\SP", "efgre3d", "GADAVIST"),
    "t2": SeriesSpec(5, "Ax FRFSE T2", 4000, 100, None, "SE", "SK\\SP\\OSP", ""),
    "flair": SeriesSpec(4, "Ax T2 FLAIR ASSET", 9000, 120, 2500, "SE\\IR", "SK\\SP\\OSP", ""),
}
SAMPLE_SHRINK = (2, 2, 5)


def write_sample_study(folder: Path, sample: dict[str, Path], modalities=("t1c", "flair")) -> Study:
    """Write some of the sample case's sequences into `folder`, one sub-folder per series."""
    study = Study()
    for modality in modalities:
        spec = SAMPLE_SPECS[modality]
        write_series(small(sitk.ReadImage(str(sample[modality])), SAMPLE_SHRINK), folder / spec.description, spec,
                     study, manufacturer="GE MEDICAL SYSTEMS")
    return study
