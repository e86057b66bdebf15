"""DICOM studies in: classification rules on public vendor series names and headers, discovery, choice, reading."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom", reason="the 'dicom' extra (pydicom, highdicom) is not installed")
pytest.importorskip("highdicom", reason="the 'dicom' extra (pydicom, highdicom) is not installed")

from conftest import SHARED_DATA  # noqa: E402
from dicom_samples import EXAM, SeriesSpec, Study, small, write_sample_study, write_series  # noqa: E402

from braintumorseg.dicom_series import (DicomStudy, choose_series, classify, find_series, header_fields,  # noqa: E402
                                        read_series)
from braintumorseg.errors import InputError  # noqa: E402

CLINICAL = SHARED_DATA / "clinical_raw" / "TCGA-FG-6692_raw_native"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Series names (and, where the source gives them, sequence parameters) found in public DICOM samples and
# sources, with what each must be taken for (None: not used). Sources, by key: see docs/dicom.md.
#   open-dicom   open-dicom/siemens_flair_0, open-dicom/siemens_mprage_0 (Siemens Prisma, full headers)
#   dhcp         HIIM-PERINEDO/zagreb_dhcp bids/README.md (a Siemens neonatal protocol's series list)
#   rhuh         TCIA RHUH-GBM series folder names quoted in a public parser (GE and Siemens, Spain/France)
#   mgmt         a public MGMT-prediction project's table of a French hospital's series names
#   heuristics   dcm2bids / heudiconv configuration files (Philips, Siemens, GE names)
#   clinical     the TCGA-FG-6692 exam in shared/data/clinical_raw (Siemens, names from its files)
#   pydicom      pydicom's test files (Philips MR localizers, angiography projection, Toshiba derived image)
VENDOR_NAMES = [
    # (source, vendor, SeriesDescription, extra header fields, expected)
    ("open-dicom", "Siemens", "t2_tirm_tra_dark-fluid_FLAIR",
     dict(ScanningSequence="SE\\IR", RepetitionTime="8000", EchoTime="81", InversionTime="2370"), "flair"),
    ("open-dicom", "Siemens", "MPRAGE_EnchancedContrast",
     dict(ScanningSequence="GR\\IR", RepetitionTime="2530", EchoTime="2.88", InversionTime="1100"), "t1"),
    ("dhcp", "Siemens", "AAHead_Scout_64ch-head-coil", {}, None),
    ("dhcp", "Siemens", "AAHead_Scout_64ch-head-coil_MPR_sag", {}, None),
    ("dhcp", "Siemens", "localizer", {}, None),
    ("dhcp", "Siemens", "t1_mprage_sag_iso", {}, "t1"),
    ("dhcp", "Siemens", "t2_space_sag_iso_edinburgh", {}, "t2"),
    ("dhcp", "Siemens", "t2_qtse_cor", {}, "t2"),
    ("dhcp", "Siemens", "t2_tse_tra_1mm_MCRIB_p2", {}, "t2"),
    ("dhcp", "Siemens", "t2_space_dark-fluid_sag_iso", {}, "flair"),
    ("dhcp", "Siemens", "SWI_Images", {}, None),
    ("dhcp", "Siemens", "mIP_Images(SW)", {}, None),
    ("dhcp", "Siemens", "SpinEchoFieldMap_AP", {}, None),
    ("dhcp", "Siemens", "rfMRI_REST_PA_SBRef", {}, None),
    ("dhcp", "Siemens", "dMRI_dir106_PA_2x2x2", {}, None),
    ("dhcp", "Siemens", "dMRI_dir106_AP_2x2x2_ADC", {}, None),
    ("dhcp", "Siemens", "dMRI_dir106_AP_2x2x2_ColFA", {}, None),
    ("dhcp", "Siemens", "ep2d_diff_4scan_trace_p2_TRACEW", {}, None),
    ("dhcp", "Siemens", "Mag_Images", dict(ScanningSequence="GR", RepetitionTime="27", EchoTime="20"), None),
    ("heuristics", "Siemens", "T1_p2_1mm_fov256_sag_TI_880",
     dict(ScanningSequence="GR\\IR", SequenceName="*tfl3d1_16ns"), "t1"),
    ("heuristics", "Siemens", "T1w_MPR", {}, "t1"),
    ("heuristics", "Siemens", "T2w_SPC", {}, "t2"),
    ("heuristics", "Siemens", "32_FLAIR_1mm_ipat2", {}, "flair"),
    ("heuristics", "Siemens", "MPRAGE GRAPPA2", {}, "t1"),
    ("heuristics", "Siemens", "SAG T1 3D MPRAGE", {}, "t1"),
    ("heuristics", "Philips", "T1W_3D_TFE", {}, "t1"),
    ("heuristics", "Philips", "sT1W_3D_TFE", {}, "t1"),
    ("heuristics", "Philips", "T1W_3D_TFE_sag_KM_1001", {}, "t1c"),
    ("heuristics", "Philips", "T2W_TSE", {}, "t2"),
    ("heuristics", "Philips", "T2W_FLAIR", {}, "flair"),
    ("heuristics", "Philips", "WIP AX T2 FLAIR MVXD", {}, "flair"),
    ("heuristics", "Philips", "WIP AX T2 MVXD", {}, "t2"),
    ("heuristics", "GE", "3Plane Loc SSFSE", {}, None),
    ("heuristics", "GE", "B AX T2 FLAIR", {}, "flair"),
    ("heuristics", "GE", "B Ax T2", {}, "t2"),
    ("heuristics", "GE", "Ax SWAN", {}, None),
    ("heuristics", "GE", "3D ASL", {}, None),
    ("heuristics", "GE", "B Ax DWI ASSET", {}, None),
    ("heuristics", "GE", "Sag T1 SE fs+C", {}, "t1c"),
    ("rhuh", "GE", "Obl T1 3D FSPGR IR IV", {}, "t1c"),
    ("rhuh", "GE", "Obl T1 3D FSPGR IR", {}, "t1"),
    ("rhuh", "GE", "Ax FRFSE T2", {}, "t2"),
    ("rhuh", "GE", "Ax T2 FLAIR ASSET", {}, "flair"),
    ("rhuh", "GE", "AX DIFUSION B 1500", {}, None),
    ("rhuh", "Siemens", "T1 3D VIBE AXIAL FS  GADO", {}, "t1c"),
    ("rhuh", "Siemens", "T1 3D VIBE AXIAL  avant gado ", {}, "t1"),
    ("rhuh", "Siemens", "T2 FLAIR 3D SAG 1.25 FS", {}, "flair"),
    ("rhuh", "Siemens", "DIFFUSION EPI 3bTRACEWDFC", {}, None),
    ("rhuh", "Siemens", "T2 EG TRA 256 NEW", {}, None),
    ("mgmt", "?", "Ax 3D T1 Gado", {}, "t1c"),
    ("mgmt", "?", "T1 Gado post op", {}, "t1c"),
    ("mgmt", "?", "Flair Long", {}, "flair"),
    ("mgmt", "?", "T2 Flair Ax", {}, "flair"),
    ("clinical", "Siemens", "T1 AX SE", {}, "t1"),
    ("clinical", "Siemens", "MRHR T1 AX POST GAD SE", {}, "t1c"),
    ("clinical", "Siemens", "MRHR T2 AX SE", {}, "t2"),
    ("clinical", "Siemens", "MRHR FLAIR AX SE IR", {}, "flair"),
]

# Rules that need no name: the sequence parameters and the contrast agent attributes decide.
PARAMETER_CASES = [
    (dict(RepetitionTime="550", EchoTime="11", ScanningSequence="SE"), "t1"),
    (dict(RepetitionTime="550", EchoTime="11", ScanningSequence="SE", ContrastBolusAgent="Gadovist"), "t1c"),
    (dict(RepetitionTime="4000", EchoTime="98", ScanningSequence="SE"), "t2"),
    (dict(RepetitionTime="9000", EchoTime="94", InversionTime="2500", ScanningSequence="SE\\IR"), "flair"),
    (dict(RepetitionTime="2300", EchoTime="2.9", InversionTime="900", ScanningSequence="GR\\IR"), "t1"),
    (dict(RepetitionTime="5000", EchoTime="40", InversionTime="150", ScanningSequence="SE\\IR"), None),  # STIR
    (dict(RepetitionTime="20", EchoTime="5", ScanningSequence="GR", ContrastBolusAgent="NONE"), "t1"),
    (dict(ScanningSequence="SE"), None),
    (dict(SeriesDescription="Ax T1 FLAIR"), "t1"),  # GE's T1-weighted FLAIR is a T1
    (dict(SeriesDescription="AX T1", ContrastBolusAgent="MAGNEVIST"), "t1c"),
    (dict(SeriesDescription="AX T1 PRE", ContrastBolusAgent=""), "t1"),
    (dict(SeriesDescription="T1 SE", ImageType="ORIGINAL\\PRIMARY\\LOCALIZER"), None),
    (dict(SeriesDescription="T1 MPR COR", ImageType="DERIVED\\PRIMARY\\MPR"), None),
]


@pytest.mark.parametrize("source, vendor, name, extra, expected", VENDOR_NAMES,
                         ids=[f"{v[0]}:{v[2].strip()}" for v in VENDOR_NAMES])
def test_public_vendor_series_names_are_taken_for_the_right_sequence(source, vendor, name, extra, expected):
    modality, reason = classify({"SeriesDescription": name, "ImageType": "ORIGINAL\\PRIMARY\\M\\ND", **extra})
    assert modality == expected, f"{vendor} '{name}' ({source}): {reason}"
    assert reason


@pytest.mark.parametrize("fields, expected", PARAMETER_CASES)
def test_parameters_and_contrast_attributes_decide_without_a_name(fields, expected):
    assert classify({"ImageType": "ORIGINAL\\PRIMARY", **fields})[0] == expected


def test_pydicom_sample_headers_localizers_and_derived_images_are_excluded_with_a_reason():
    found = find_series(PYDICOM_FILES / "dicomdirtests" / "98892003")
    assert [s.number for s in found] == [1, 1, 1, 2, 2, 2, 700]  # Philips: a series UID per localizer stack
    assert all(s.modality is None for s in found)
    assert all("localizer" in s.reason for s in found if s.number < 700)  # 'FAST LOCALIZER', 'T/S/C RF FAST PILOT'
    assert "DERIVED" in found[-1].reason  # 'ANGIO Projected from C'
    assert found[-1].problem == "not one volume: its images have several orientations or image sizes"
    with pytest.raises(InputError, match="no T1, T1Gd, T2 or FLAIR series found in the study.*'FAST LOCALIZER'"):
        choose_series(found)
    small_mr = header_fields(pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm", stop_before_pixels=True))
    assert small_mr["Manufacturer"] == "TOSHIBA_MEC"
    assert "derived" in classify(small_mr)[1]


def test_a_ct_series_and_non_dicom_files_are_not_mr(tmp_path):
    shutil.copytree(PYDICOM_FILES / "dicomdirtests" / "TINY_ALPHA", tmp_path / "ct")
    (tmp_path / "notes.txt").write_text("not DICOM")
    found = find_series(tmp_path)
    assert found and all(s.modality is None and "not an MR image series" in s.reason for s in found)
    with pytest.raises(InputError, match="no T1, T1Gd, T2 or FLAIR series"):
        choose_series(found)


@pytest.fixture(scope="module")
def exam(tmp_path_factory) -> tuple[Path, dict[str, sitk.Image]]:
    """The scanner-native clinical exam written as a Siemens DICOM study (in-plane shrunk 4x), all in one folder."""
    if not CLINICAL.is_dir():
        pytest.skip(f"the clinical exam is not here ({CLINICAL})")
    folder = tmp_path_factory.mktemp("exam")
    study, images = Study(), {}
    for modality, (pattern, spec) in EXAM.items():
        images[modality] = small(sitk.ReadImage(glob.glob(str(CLINICAL / pattern))[0]), (4, 4, 1))
        write_series(images[modality], folder / "all", spec, study)  # mixed series in one folder
    return folder, images


def test_clinical_exam_series_are_identified_and_read_exactly(exam):
    folder, images = exam
    found = find_series(folder)
    assert {s.number: s.modality for s in found} == {2: "t2", 5: "flair", 10: "t1", 13: "t1c"}
    chosen, warnings = choose_series(found)
    assert not warnings
    assert "MAGNEVIST" in chosen["t1c"].reason
    for modality, series in chosen.items():
        image = read_series(series, modality)
        source = images[modality]
        # the same voxels at the same physical points (oblique, 5.5 mm slices)
        on_source = sitk.Resample(image, source, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
        assert np.array_equal(sitk.GetArrayFromImage(on_source), sitk.GetArrayFromImage(source).astype(np.float32))


def test_a_missing_sequence_is_one_warning_listing_every_series(exam, tmp_path):
    folder, _ = exam
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    for path in partial.rglob("005_*.dcm"):
        path.unlink()
    chosen, warnings = choose_series(find_series(partial))
    assert set(chosen) == {"t1", "t1c", "t2"}
    assert len(warnings) == 1 and "no FLAIR series" in warnings[0]
    assert "series 13 'MRHR T1 AX POST GAD SE' (26 file(s)): T1Gd" in warnings[0]


@pytest.fixture(scope="module")
def sample_study(tmp_path_factory, sample) -> tuple[Path, Study]:
    """The bundled sample case's T1Gd and FLAIR as a GE-named study (2 mm in-plane, 5 mm slices)."""
    folder = tmp_path_factory.mktemp("sample-study")
    return folder, write_sample_study(folder, sample)


def test_two_candidates_are_ambiguous_and_an_override_by_number_or_uid_resolves_it(sample_study, sample, tmp_path):
    folder, study = sample_study
    again = tmp_path / "study"
    shutil.copytree(folder, again)
    repeat = SeriesSpec(8, "Ax T1 FSPGR +C repeat", 8.2, 3.2, None, "GR", "SS\\SP", "efgre3d", "GADAVIST")
    write_series(small(sitk.ReadImage(str(sample["t1c"])), (2, 2, 5)), again / "repeat", repeat, study)
    found = find_series(again)
    with pytest.raises(InputError) as error:
        choose_series(found, where="the study")
    message = str(error.value)
    assert message.startswith("2 series in the study could be the T1Gd")
    assert "--t1c SERIES_NUMBER_OR_UID" in message and "series 4 'Ax T2 FLAIR ASSET'" in message
    assert "\n" not in message
    chosen, _ = choose_series(found, {"t1c": "8"})
    assert chosen["t1c"].number == 8
    by_uid = next(s for s in found if s.number == 7).uid
    assert choose_series(found, {"t1c": by_uid})[0]["t1c"].number == 7
    # an override may take a series the rules put elsewhere; it is then not used twice
    chosen, _ = choose_series(found, {"t1c": "7", "t1": "8"})
    assert (chosen["t1c"].number, chosen["t1"].number) == (7, 8)
    with pytest.raises(InputError, match="no series with that number or UID"):
        choose_series(found, {"t2": "99"})


def test_incomplete_and_corrupt_series_are_one_sentence(sample_study, tmp_path):
    folder, _ = sample_study
    incomplete = tmp_path / "incomplete"
    shutil.copytree(folder, incomplete)
    files = sorted((incomplete / "Ax T2 FLAIR ASSET").iterdir())
    files[len(files) // 2].unlink()
    with pytest.raises(InputError, match=r"^the FLAIR series in .*, series 4 'Ax T2 FLAIR ASSET', is incomplete: "
                                         r"the slice step varies"):
        DicomStudy(incomplete).read_images()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(folder, corrupt)
    victim = sorted((corrupt / "Ax T1 FSPGR +C").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-4000])  # pixel data cut short
    with pytest.raises(InputError, match=r"^T1Gd: series 7 'Ax T1 FSPGR \+C' cannot be read .*corrupt or cut short"):
        DicomStudy(corrupt).read_images()


def test_a_multi_frame_enhanced_mr_series_is_read_with_its_geometry(sample_study, tmp_path):
    highdicom = pytest.importorskip("highdicom")
    folder, _ = sample_study
    flair = next(s for s in find_series(folder) if s.modality == "flair")
    datasets = [pydicom.dcmread(p) for p in flair.files]
    legacy = highdicom.legacy.LegacyConvertedEnhancedMRImage(
        datasets, series_instance_uid=pydicom.uid.generate_uid(), series_number=40,
        sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1)
    (tmp_path / "enhanced").mkdir()
    legacy.save_as(tmp_path / "enhanced" / "flair.dcm")
    found = find_series(tmp_path / "enhanced")
    assert len(found) == 1 and found[0].frames == len(datasets) and found[0].modality == "flair"
    image = read_series(found[0], "FLAIR")
    reference = read_series(flair, "FLAIR")
    on_reference = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
    assert np.array_equal(sitk.GetArrayFromImage(on_reference), sitk.GetArrayFromImage(reference))


def test_a_series_of_several_echoes_is_not_one_volume(sample_study, sample, tmp_path):
    folder, study = sample_study
    image = small(sitk.ReadImage(str(sample["t2"])), (2, 2, 5))
    uid = pydicom.uid.generate_uid()
    for number, te in ((3, 15.0), (3, 90.0)):
        write_series(image, tmp_path / f"echo{te:.0f}", SeriesSpec(number, "AX PD T2", 3000, te), study, uid=uid)
    (series,) = find_series(tmp_path)
    assert series.problem == "not one volume: its images have 2 echo times"
    with pytest.raises(InputError, match="is not one volume"):
        choose_series([series], {"t2": "3"})


def test_reading_a_study_is_timed(sample_study, capsys):
    import time
    folder, _ = sample_study
    start = time.perf_counter()
    images = DicomStudy(folder).read_images()
    seconds = time.perf_counter() - start
    files = sum(len(list(p.iterdir())) for p in folder.iterdir())
    with capsys.disabled():
        print(f"\n[dicom] read a {len(images)}-series study of {files} files in {seconds:.2f} s "
              f"({os.cpu_count()} CPUs)")
    assert set(images) == {"t1c", "flair"}
