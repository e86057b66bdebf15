"""Time DICOM in and out on the bundled sample case at full size (240x240x155, four series of 155 files).

    .venv/bin/python Testing/benchmark_dicom.py [--segment]

Prints: writing the study (test helper), finding and classifying its series (headers), reading the four
volumes, writing and reading the DICOM SEG of the consensus label, writing the TID 1500 report, and with
--segment the shipped model's whole run from the DICOM study against the same run from the NIfTI files.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "Testing"), str(ROOT / "BrainTumorSeg")]

import SimpleITK as sitk  # noqa: E402
from dicom_samples import SAMPLE_SPECS, Study, write_series  # noqa: E402

from braintumorseg.dicom_seg import read_dicom_seg, write_dicom_seg, write_volume_report  # noqa: E402
from braintumorseg.dicom_series import DicomStudy, choose_series, find_series  # noqa: E402
from braintumorseg.resources import sample_case  # noqa: E402


def timed(what: str, function, *args):
    start = time.perf_counter()
    result = function(*args)
    print(f"{what:<48} {time.perf_counter() - start:7.2f} s")
    return result


def main() -> None:
    sample = sample_case()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "study"
        study = Study()

        def write_all():
            for modality, spec in SAMPLE_SPECS.items():
                write_series(sitk.ReadImage(str(sample[modality])), folder / spec.description, spec, study)
        timed("write 4 series x 155 files (pydicom, test helper)", write_all)
        series = timed("find + classify series (620 headers)", find_series, folder)
        chosen, _ = choose_series(series)
        dicom = DicomStudy(folder)
        images = timed("find, choose and read 4 volumes (SimpleITK)", dicom.read_images)
        labels = sitk.Resample(sitk.ReadImage(str(sample["label"])), images["t1c"], sitk.Transform(),
                               sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        seg = Path(temporary) / "seg.dcm"
        timed("write DICOM SEG (155 source slices)", write_dicom_seg, labels, chosen["t1c"], seg)
        timed("read DICOM SEG back onto the source slices", read_dicom_seg, seg, chosen["t1c"])
        timed("write TID 1500 volume report", write_volume_report, seg, chosen["t1c"], Path(temporary) / "sr.dcm")
        print(f"{'DICOM SEG size':<48} {seg.stat().st_size / 1024:7.0f} KiB")
        if "--segment" in sys.argv:
            from braintumorseg.cli import main as cli
            out = Path(temporary) / "out"
            timed("segment from NIfTI files (shipped model)", cli, [
                "segment", *[a for m in ("t1", "t1c", "t2", "flair") for a in (f"--{m}", str(sample[m]))],
                "-o", str(out / "nifti.nii.gz")])
            timed("segment --dicom --dicom-seg --dicom-sr", cli, [
                "segment", "--dicom", str(folder), "-o", str(out / "dicom.nii.gz"), "--dicom-seg",
                str(out / "seg.dcm"), "--dicom-sr", str(out / "sr.dcm")])
            differ = (sitk.GetArrayFromImage(sitk.ReadImage(str(out / "nifti.nii.gz")))
                      != sitk.GetArrayFromImage(sitk.ReadImage(str(out / "dicom.nii.gz")))).sum()
            print(f"{'voxels that differ, NIfTI vs DICOM input':<48} {differ:7d}")


if __name__ == "__main__":
    main()
