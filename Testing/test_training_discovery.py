"""Discovery of training cases over every BraTS file naming, the nnU-Net layout and every label convention."""

from __future__ import annotations

import numpy as np
import pytest
from training_synthetic import brats_case, nnunet_dataset, phantom

from braintumorseg.labels import REGION_CLASSES, REGIONS
from training.discovery import labelled_cases
from training.prepare import PrepareSettings, prepare_case

ALL = {"t1", "t1c", "t2", "flair"}

# (folder, file naming, label values written in, label file name, modalities) → expected convention
CASES = [
    ("Brats18_CBICA_AAA_1", "brats2018", "brats2021", "{case}_seg", ALL, "brats2021"),
    ("BraTS2021_00001", "brats2018", "brats2021", "{case}_seg", ALL, "brats2021"),
    ("BraTS-GLI-00003-000", "brats2023", "brats2023", "{case}-seg", ALL, "brats2023"),
    ("brats_2013_pat0009_1", "brats2015", "brats2015", "OTMultiClass", {"t1c", "flair"}, "brats2015"),
    ("Brats17_2013_5_1", "gd", "brats2021", "{case}_seg", ALL, "brats2021"),
    ("DeepRad_Brats17_2013_1_1", "brats2018", "brats2021", "truth", {"flair"}, "brats2021"),
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("namings")
    for seed, (case, naming, convention, label, modalities, _) in enumerate(CASES):
        brats_case(root / "brats", case, naming, convention, sorted(modalities), label, seed=seed)
    brats_case(root / "wt", "case_3", modalities=("t1", "flair"), label_name="GT_W", whole_tumour_only=True)
    nnunet_dataset(root / "Dataset001_BraTS")
    return root


def test_every_naming_and_convention_is_recognised(dataset):
    found = {c.case.name: c for c in labelled_cases([dataset / "brats", dataset / "wt", dataset / "Dataset001_BraTS"])}
    assert set(found) == {c[0] for c in CASES} | {"case_3", "BRATS_001", "BRATS_002"}
    for case, _, _, _, modalities, convention in CASES:
        assert set(found[case].case.inputs) == modalities, case
        assert found[case].convention == convention, case
    assert found["case_3"].convention == "wt" and set(found["case_3"].case.inputs) == {"t1", "flair"}
    for name in ("BRATS_001", "BRATS_002"):
        assert found[name].convention == "nnunet" and set(found[name].case.inputs) == ALL
        assert found[name].case.label.name == f"{name}.nii.gz"


def test_exclude_leaves_cases_out(dataset):
    names = {c.case.name for c in labelled_cases([dataset / "brats"], {"Brats18_CBICA_AAA_1"})}
    assert "Brats18_CBICA_AAA_1" not in names and "BraTS2021_00001" in names


def test_prepared_regions_match_the_label_in_every_convention(dataset, tmp_path):
    """Whatever the file values, the cached WT/TC/ET targets are the phantom's regions."""
    settings = PrepareSettings(tmp_path, spacing=4.0, bias_correction=False, workers=1)
    items = labelled_cases([dataset / "brats", dataset / "wt", dataset / "Dataset001_BraTS"])
    seeds = {case: seed for seed, (case, *_rest) in enumerate(CASES)} | {"case_3": 0, "BRATS_001": 0,
                                                                        "BRATS_002": 1}
    for item in items:
        entry = prepare_case(item, settings)
        with np.load(tmp_path / entry["file"]) as data:
            regions, present, channels = data["regions"], data["regions_present"], data["channels"]
        seed = seeds[item.case.name]
        _, classes = phantom(seed=seed, shift=0.05 * (seed % 3)) if item.case.layout == "brats" else phantom(seed=seed)
        expected = [int(np.isin(classes, REGION_CLASSES[r]).sum()) for r in REGIONS]
        assert list(channels) == [m in item.case.inputs for m in ("t1", "t1c", "t2", "flair")]
        if item.convention == "wt":
            assert list(present) == [True, False, False] and entry["regions"] == ["WT"]
            assert int(regions[0].sum()) == expected[0] and not regions[1:].any()
        else:
            assert list(present) == [True, True, True], item.case.name
            assert [int(r.sum()) for r in regions] == expected, item.case.name
