"""The command line with DICOM: segment --dicom (with overrides) and --dicom-seg, batch over DICOM studies."""

from __future__ import annotations

import glob
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom", reason="the 'dicom' extra (pydicom, highdicom) is not installed")
pytest.importorskip("highdicom", reason="the 'dicom' extra (pydicom, highdicom) is not installed")

from conftest import SHARED_DATA  # noqa: E402
from dicom_samples import EXAM, SeriesSpec, Study, small, write_sample_study, write_series  # noqa: E402

from braintumorseg.cli import main  # noqa: E402
from braintumorseg.dicom_seg import read_dicom_seg  # noqa: E402
from braintumorseg.dicom_series import find_series  # noqa: E402
from braintumorseg.labels import from_internal  # noqa: E402

FAST = ["--no-bias-correction", "--skull-strip", "off", "--no-tta"]
CLINICAL = SHARED_DATA / "clinical_raw" / "TCGA-FG-6692_raw_native"


@pytest.fixture(scope="module")
def study(tmp_path_factory, sample):
    folder = tmp_path_factory.mktemp("cli-study") / "TCGA-FG-6692"
    write_sample_study(folder, sample, ("t1", "t1c", "t2", "flair"))
    return folder


def tiny(tiny_card) -> list[str]:
    return ["--model", str(tiny_card.path)]


def same_study(folder) -> Study:
    """The identifiers of the study already in a folder, to add a series to it."""
    header = pydicom.dcmread(next(folder.rglob("*.dcm")), stop_before_pixels=True)
    return Study(header.StudyInstanceUID, header.FrameOfReferenceUID)


def left_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def run_failing(capsys, argv, out_folder) -> str:
    """Exit 2, one sentence on stderr, no traceback, nothing left in the output folder."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    assert left_files(out_folder) == []
    return lines[0]


def test_segment_a_dicom_study_writes_labels_and_a_seg_that_agree(study, tiny_card, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", "--dicom", str(study), "-o", str(out / "labels.nii.gz"), "--dicom-seg",
                 str(out / "seg.dcm"), "--dicom-sr", str(out / "sr.dcm"), "--report", str(out / "report.json"),
                 *tiny(tiny_card), *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.count("warning") == len(json.loads((out / "report.json").read_text())["warnings"])
    report = json.loads((out / "report.json").read_text())
    assert report["reference"] == "t1c"
    assert "series 7 'Ax T1 FSPGR +C'" in report["inputs"]["t1c"]
    assert "series 4 'Ax T2 FLAIR ASSET'" in report["inputs"]["flair"]
    labels = sitk.ReadImage(str(out / "labels.nii.gz"))
    t1c = next(s for s in find_series(study) if s.number == 7)
    classes = read_dicom_seg(out / "seg.dcm", t1c)
    assert np.array_equal(from_internal(classes, "brats2021"), sitk.GetArrayFromImage(labels))
    assert labels.GetSize() == (120, 120, 31)
    import highdicom
    volumes = {str(g.tracking_identifier): g.get_measurements()[0].value
               for g in highdicom.sr.srread(out / "sr.dcm").content.get_volumetric_roi_measurement_groups()}
    assert volumes == pytest.approx({"Necrotic tumor core": report["volumes_ml"]["necrotic_core"],
                                     "Peritumoral edema": report["volumes_ml"]["edema"],
                                     "Enhancing tumor": report["volumes_ml"]["enhancing"]}, abs=2e-3)


def test_an_override_picks_another_series(study, tiny_card, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", "--dicom", str(study), "--t1c", "3", "--t1", "7", "-o", str(out / "l.nii.gz"),
                 "--report", str(out / "r.json"), *tiny(tiny_card), *FAST])
    assert code == 0, capsys.readouterr().err
    inputs = json.loads((out / "r.json").read_text())["inputs"]
    assert "series 3 'Ax T1 FSPGR'" in inputs["t1c"] and "series 7" in inputs["t1"]


def test_ambiguous_study_is_one_sentence_listing_the_series(study, sample, tiny_card, tmp_path, capsys):
    folder = tmp_path / "study"
    shutil.copytree(study, folder)
    repeat = SeriesSpec(9, "Ax T2 FLAIR ASSET repeat", 9000, 120, 2500, "SE\\IR")
    write_series(small(sitk.ReadImage(str(sample["flair"])), (2, 2, 5)), folder / "repeat", repeat,
                 same_study(folder))
    out = tmp_path / "out"
    line = run_failing(capsys, ["segment", "--dicom", folder, "-o", out / "l.nii.gz", "--dicom-seg", out / "s.dcm",
                                *tiny(tiny_card), *FAST], out)
    assert line.startswith("braintumorseg: error: 2 series in ")
    assert "could be the FLAIR (series 4 'Ax T2 FLAIR ASSET', series 9 'Ax T2 FLAIR ASSET repeat')" in line
    assert "pick one with --flair SERIES_NUMBER_OR_UID" in line and "series 7 'Ax T1 FSPGR +C'" in line
    assert main(["segment", "--dicom", str(folder), "--flair", "9", "-o", str(out / "l.nii.gz"),
                 *tiny(tiny_card), *FAST]) == 0


@pytest.mark.parametrize("damage", ["corrupt", "incomplete"])
def test_corrupt_or_incomplete_series_exit_2_and_leave_nothing(study, tiny_card, tmp_path, capsys, damage):
    folder = tmp_path / "study"
    shutil.copytree(study, folder)
    files = sorted((folder / "Ax T1 FSPGR +C").iterdir())
    if damage == "corrupt":
        files[5].write_bytes(files[5].read_bytes()[:-5000])
    else:
        files[10].unlink()
    out = tmp_path / "out"
    line = run_failing(capsys, ["segment", "--dicom", folder, "-o", out / "l.nii.gz", "--dicom-seg", out / "s.dcm",
                                "--report", out / "r.json", *tiny(tiny_card), *FAST], out)
    expected = "cannot be read" if damage == "corrupt" else "is incomplete: the slice step varies"
    assert "series 7 'Ax T1 FSPGR +C'" in line and expected in line, line


def test_usage_errors_are_one_sentence(study, tiny_card, tmp_path, capsys):
    out = tmp_path / "out"
    line = run_failing(capsys, ["segment", "--t1c", study / "x.nii.gz", "-o", out / "l.nii.gz", "--dicom-seg",
                                out / "s.dcm"], out)
    assert "--dicom-seg needs a DICOM study" in line
    line = run_failing(capsys, ["segment", "--dicom", study, "-o", out / "l.nii.gz", "--dicom-sr", out / "r.dcm"],
                       out)
    assert "--dicom-sr needs --dicom-seg" in line
    line = run_failing(capsys, ["segment", "--dicom", tmp_path / "nowhere", "-o", out / "l.nii.gz"], out)
    assert "does not exist" in line
    line = run_failing(capsys, ["segment", "--dicom", study, "-o", out / "l.nii.gz", "--dicom-seg", out / "s.nii"],
                       out)
    assert "DICOM SEG" in line and ".dcm" in line
    line = run_failing(capsys, ["segment", "--dicom", study, "--t2", "42", "-o", out / "l.nii.gz",
                                *tiny(tiny_card), *FAST], out)
    assert "--t2 42: no series with that number or UID" in line


def test_batch_segments_each_study_and_reports_a_broken_one(sample, tiny_card, tmp_path, capsys):
    root = tmp_path / "cohort"  # three studies (each its own Study Instance UID), one per folder
    write_sample_study(root / "patient-a", sample, ("t1", "t1c", "t2", "flair"))
    write_sample_study(root / "patient-b", sample, ("flair",))  # FLAIR only: still segmented
    broken = root / "patient-c"
    write_sample_study(broken, sample, ("t1c", "flair"))
    sorted((broken / "Ax T1 FSPGR +C").iterdir())[12].unlink()
    out = tmp_path / "out"
    code = main(["batch", str(root), "-o", str(out), *tiny(tiny_card), *FAST])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    summary = json.loads((out / "summary.json").read_text())
    status = {r["case"]: r["status"] for r in summary["results"]}
    assert status == {"patient-a": "ok", "patient-b": "ok", "patient-c": "bad input"}
    warnings = next(r for r in summary["results"] if r["case"] == "patient-b")["warnings"]
    assert any("no T1, T1Gd, T2 series" in w for w in warnings)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["patient-a.nii.gz", "patient-b.nii.gz"]


def test_the_clinical_exam_as_dicom_end_to_end(tiny_card, tmp_path, capsys):
    """The scanner-native exam (Siemens names, oblique 5.5 mm slices) through the command line."""
    if not CLINICAL.is_dir():
        pytest.skip(f"the clinical exam is not here ({CLINICAL})")
    study = Study()
    for modality, (pattern, spec) in EXAM.items():
        image = small(sitk.ReadImage(glob.glob(str(CLINICAL / pattern))[0]), (4, 4, 1))
        write_series(image, tmp_path / "exam" / f"{spec.number:02d}", spec, study)
    out = tmp_path / "out"
    code = main(["segment", "--dicom", str(tmp_path / "exam"), "-o", str(out / "l.nii.gz"), "--dicom-seg",
                 str(out / "s.dcm"), "--report", str(out / "r.json"), *tiny(tiny_card), *FAST,
                 "--trust-sequences"])  # main's contrast check fails on this shrunk, unstripped exam (reported)
    assert code == 0, capsys.readouterr().err
    inputs = json.loads((out / "r.json").read_text())["inputs"]
    assert {m: v.split("'")[1] for m, v in inputs.items()} == {
        "t1": "T1 AX SE", "t1c": "MRHR T1 AX POST GAD SE", "t2": "MRHR T2 AX SE", "flair": "MRHR FLAIR AX SE IR"}
    t1c = next(s for s in find_series(tmp_path / "exam") if s.number == 13)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "l.nii.gz")))
    assert np.array_equal(from_internal(read_dicom_seg(out / "s.dcm", t1c)), labels)


def test_batch_finds_one_case_per_study_folder(sample, study, tmp_path):
    from braintumorseg.batch import find_batch_cases
    root = tmp_path / "cohort"
    write_sample_study(root / "patient-a", sample, ("t1c",))
    write_sample_study(root / "patient-b", sample, ("t1c",))
    (root / "README.txt").write_text("two exams")
    assert [(c.name, c.layout) for c in find_batch_cases(root)] == [("patient-a", "dicom"), ("patient-b", "dicom")]
    # a study folder of series folders, and a flat folder of files, are one case each
    assert [c.name for c in find_batch_cases(study)] == [study.name]
    flat = tmp_path / "flat"
    for path in study.rglob("*.dcm"):
        flat.mkdir(exist_ok=True)
        shutil.copy(path, flat / f"{path.parent.name}_{path.name}")
    assert [c.name for c in find_batch_cases(flat)] == ["flat"]
