"""Filling the panel's input selectors from volume names, never over the user's choice."""

from __future__ import annotations

import pytest
from BrainTumorSegLib.autofill import autofill

EMPTY = {"t1": None, "t1c": None, "t2": None, "flair": None}


@pytest.mark.parametrize("names, expected", [
    # BraTS 2013-2015 (VSD names), 2017-2021, 2023 (t1n/t1c/t2w/t2f)
    (["VSD.Brain.XX.O.MR_T1.54512", "VSD.Brain.XX.O.MR_T1c.54513", "VSD.Brain.XX.O.MR_T2.54514",
      "VSD.Brain.XX.O.MR_Flair.54515"], ("t1", "t1c", "t2", "flair")),
    (["BraTS20_Training_001_t1", "BraTS20_Training_001_t1ce", "BraTS20_Training_001_t2",
      "BraTS20_Training_001_flair"], ("t1", "t1c", "t2", "flair")),
    (["BraTS-GLI-00000-000-t1n", "BraTS-GLI-00000-000-t1c", "BraTS-GLI-00000-000-t2w",
      "BraTS-GLI-00000-000-t2f"], ("t1", "t1c", "t2", "flair")),
    # clinical series names, any case
    (["Ax T1 pre", "AX T1 POST", "Ax T2 FSE", "Ax FLAIR"], ("t1", "t1c", "t2", "flair")),
    (["sag t1", "T1+C", "t2", "t2_flair"], ("t1", "t1c", "t2", "flair")),
    (["TCGA-FG-6692 T1", "TCGA-FG-6692 T1Gd", "TCGA-FG-6692 T2", "TCGA-FG-6692 FLAIR"],
     ("t1", "t1c", "t2", "flair")),
])
def test_autofill_recognises_brats_and_clinical_names(names, expected):
    volumes = [(f"id{i}", name) for i, name in enumerate(names)]
    selection = autofill(EMPTY, volumes)
    assert [selection[m] for m in ("t1", "t1c", "t2", "flair")] == [f"id{expected.index(m)}" for m in
                                                                    ("t1", "t1c", "t2", "flair")]


def test_autofill_skips_label_maps_and_unknown_names():
    volumes = [("a", "BraTS20_Training_001_seg"), ("b", "MRHead"), ("c", "case_flair")]
    assert autofill(EMPTY, volumes) == {"t1": None, "t1c": None, "t2": None, "flair": "c"}


def test_autofill_never_overrides_the_user():
    volumes = [("t1", "case_t1"), ("t1ce", "case_t1ce"), ("other", "my favourite")]
    # A selector already holding a volume keeps it, even a volume whose name says otherwise.
    chosen = autofill({**EMPTY, "t1c": "other"}, volumes)
    assert chosen["t1c"] == "other" and chosen["t1"] == "t1"
    # A selector the user cleared on purpose stays empty.
    assert autofill(EMPTY, volumes, user_chosen={"t1"})["t1"] is None
    # A volume already used elsewhere is not used twice.
    assert autofill({**EMPTY, "t2": "t1"}, volumes)["t1"] is None


def test_autofill_fills_new_volumes_as_they_arrive():
    selection = autofill(EMPTY, [("x", "case_t2")])
    selection = autofill(selection, [("x", "case_t2"), ("y", "case_flair")])
    assert selection == {"t1": None, "t1c": None, "t2": "x", "flair": "y"}
