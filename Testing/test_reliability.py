"""Warnings from the model card's own validation: weak regions for the sequences given, unvalidated subsets."""

from __future__ import annotations

import json

import pytest

from braintumorseg.reliability import subset_warnings, validated_subsets
from braintumorseg.resources import default_model_card

FOUR = ["t1", "t1c", "t2", "flair"]


def region(dice: float) -> dict[str, float]:
    return {"dice_mean": dice, "dice_median": dice, "hd95_mean": 5.0, "hd95_median": 5.0, "cases": 8}


def metrics(means: dict) -> dict:
    return {"evaluation": {"means": means}}


# Four validated subsets: the core needs T1Gd, the enhancing tumour needs T1Gd and T2.
MEANS = {"all": {"WT": region(0.84), "TC": region(0.84), "ET": region(0.70)},
         "flair+t1c": {"WT": region(0.83), "TC": region(0.80), "ET": region(0.50)},
         "flair+t1c+t2": {"WT": region(0.84), "TC": region(0.82), "ET": region(0.60)},
         "flair": {"WT": region(0.83), "TC": region(0.50), "ET": region(0.30)}}


def test_all_sequences_and_subsets_that_hold_up_say_nothing():
    assert subset_warnings(FOUR, metrics(MEANS), FOUR) == []
    assert validated_subsets(FOUR, metrics(MEANS))[frozenset({"t1c", "t2", "flair"})] == {
        "WT": 0.84, "TC": 0.82, "ET": 0.60}


def test_weak_regions_are_named_with_their_dice_and_the_fewest_sequences_that_restore_them():
    assert subset_warnings(FOUR, metrics(MEANS), ["flair"]) == [
        "from FLAIR alone the tumour core and enhancing tumour are less reliable than from all four sequences "
        "(validation Dice 0.50 and 0.30 against 0.84 and 0.70); adding T1Gd and T2 restored them in validation."]
    # 0.50 < 0.8 x 0.70: only ET is weak, and FLAIR+T1Gd+T2 (0.60) restores it.
    assert subset_warnings(FOUR, metrics(MEANS), ["flair", "t1c"]) == [
        "from T1Gd+FLAIR the enhancing tumour is less reliable than from all four sequences (validation Dice "
        "0.50 against 0.70); adding T2 restored it in validation."]


def test_without_a_smaller_validated_subset_that_restores_it_the_advice_is_every_missing_sequence():
    means = dict(MEANS, **{"flair+t1c+t2": {"WT": region(0.84), "TC": region(0.82), "ET": region(0.55)}})
    assert subset_warnings(FOUR, metrics(means), ["flair", "t1c"])[0].endswith(
        "; adding T1 and T2 restored it in validation.")


def test_of_equally_few_sequences_the_advice_names_those_that_validated_best():
    means = dict(MEANS, **{"flair+t1+t1c": {"WT": region(0.84), "TC": region(0.81), "ET": region(0.66)}})
    assert subset_warnings(FOUR, metrics(means), ["flair", "t1c"])[0].endswith(
        "; adding T1 restored it in validation.")


def test_keys_are_read_as_evaluate_reads_its_subsets_and_the_first_of_two_alike_counts():
    means = {"all": MEANS["all"], "T1c + FLAIR": MEANS["flair+t1c"],
             "flair+t1c": {"WT": region(0.84), "TC": region(0.84), "ET": region(0.70)}}
    assert validated_subsets(FOUR, metrics(means))[frozenset({"t1c", "flair"})]["ET"] == 0.50
    assert "enhancing tumour is less reliable" in subset_warnings(FOUR, metrics(means), ["t1c", "flair"])[0]


def test_a_card_with_fewer_sequences_speaks_of_them():
    channels = ["t1c", "flair"]
    means = {"all": MEANS["all"], "flair": MEANS["flair"]}
    assert subset_warnings(channels, metrics(means), ["flair", "t2"]) == [
        "from FLAIR alone the tumour core and enhancing tumour are less reliable than from both sequences "
        "(validation Dice 0.50 and 0.30 against 0.84 and 0.70); adding T1Gd restored them in validation."]
    assert subset_warnings(channels, metrics(means), ["t1c"]) == [
        "the model's accuracy was measured with T1Gd+FLAIR and FLAIR alone, not with T1Gd alone: check this "
        "result closely."]


def test_a_subset_never_validated_is_said_so():
    assert subset_warnings(FOUR, metrics(MEANS), ["t2"]) == [
        "the model's accuracy was measured with T1+T1Gd+T2+FLAIR, T1Gd+T2+FLAIR, T1Gd+FLAIR and FLAIR alone, "
        "not with T2 alone: check this result closely."]
    assert subset_warnings(FOUR, metrics(MEANS), ["t1", "flair"])[0].endswith(
        "not with T1+FLAIR: check this result closely.")
    unknown = metrics({"all": {"WT": {"dice_mean": 0.8}}, "flair+dwi": {"WT": {"dice_mean": 0.1}}})
    assert subset_warnings(FOUR, unknown, ["flair"]) == [
        "the model's accuracy was measured with T1+T1Gd+T2+FLAIR, not with FLAIR alone: check this result closely."]


@pytest.mark.parametrize("channels, card_metrics", [
    (FOUR, {}), (FOUR, "none"), (FOUR, {"evaluation": "none"}), (FOUR, {"evaluation": {"means": ["all"]}}),
    (FOUR, metrics({"flair": {"WT": {"dice_mean": 0.8}}})),  # nothing with all sequences to compare with
    (FOUR, metrics({"all": {"WT": {"dice_mean": "high"}, "TC": 0.8}})),
    (["t1c", "dwi"], metrics(MEANS)),  # a channel the engine does not know: the card is refused at load
    ("flair", metrics(MEANS)),
])
def test_cards_without_a_usable_evaluation_give_no_warning(channels, card_metrics):
    assert subset_warnings(channels, card_metrics, ["flair"]) == []


# What README says of the shipped card: the regions flagged for each subset and the sequences to add.
SHIPPED = {"flair": ("tumour core and enhancing tumour", "T1Gd"),
           "t1": ("whole tumour, tumour core and enhancing tumour", "T1Gd and FLAIR"),
           "t1c": ("whole tumour and tumour core", "FLAIR"),
           "t2": ("tumour core and enhancing tumour", "T1Gd"),
           "t1+t1c": ("whole tumour, tumour core and enhancing tumour", "FLAIR"),
           "t1+t2": ("tumour core and enhancing tumour", "T1Gd"),
           "t1+flair": ("tumour core and enhancing tumour", "T1Gd"),
           "t2+flair": ("tumour core and enhancing tumour", "T1Gd"),
           "t1+t2+flair": ("tumour core and enhancing tumour", "T1Gd")}


def test_the_shipped_card_flags_what_readme_says():
    card = json.loads(default_model_card().read_text())
    subsets = validated_subsets(card["channels"], card["metrics"])
    assert len(subsets) == 15
    flagged = {}
    for channels in subsets:
        warnings = subset_warnings(card["channels"], card["metrics"], sorted(channels))
        if warnings:
            assert len(warnings) == 1
            key = "+".join(m for m in FOUR if m in channels)
            flagged[key] = (warnings[0].split(" the ", 1)[1].split(" are less")[0],
                            warnings[0].split("; adding ")[1].split(" restored")[0])
    assert flagged == SHIPPED
