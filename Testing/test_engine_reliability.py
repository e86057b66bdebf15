"""Warnings from the model card's own validation: weak regions for the sequences given, unvalidated subsets."""

from __future__ import annotations

import json

import pytest

from braintumorseg.reliability import subset_warnings, validated_subsets
from braintumorseg.resources import default_model_card

FOUR = ["t1", "t1c", "t2", "flair"]


def region(dice: float) -> dict[str, float]:
    return {"dice_mean": dice, "dice_median": dice, "hd95_mean": 5.0, "hd95_median": 5.0, "cases": 8}


def metrics(**means) -> dict:
    """A card's metrics with these evaluation means, "flair_t1c" standing for the key "flair+t1c"."""
    return {"evaluation": {"means": {key.replace("_", "+"): value for key, value in means.items()}}}


# Four validated subsets: the core needs T1Gd, the enhancing tumour needs T1Gd and T2.
MEANS = dict(all={"WT": region(0.84), "TC": region(0.84), "ET": region(0.70)},
             flair_t1c={"WT": region(0.83), "TC": region(0.80), "ET": region(0.50)},
             flair_t1c_t2={"WT": region(0.84), "TC": region(0.82), "ET": region(0.60)},
             flair={"WT": region(0.83), "TC": region(0.50), "ET": region(0.30)})


def test_all_sequences_and_subsets_that_hold_up_say_nothing():
    assert subset_warnings(FOUR, metrics(**MEANS), FOUR) == []
    assert validated_subsets(FOUR, metrics(**MEANS))[frozenset({"t1c", "t2", "flair"})] == {
        "WT": 0.84, "TC": 0.82, "ET": 0.60}


def test_weak_regions_are_named_with_their_dice_and_the_fewest_sequences_that_restore_them():
    assert subset_warnings(FOUR, metrics(**MEANS), ["flair"]) == [
        "from FLAIR alone the tumour core and enhancing tumour are much less reliable than from all four "
        "sequences (validation Dice 0.50 and 0.30 against 0.84 and 0.70). Add T1Gd and T2 for them."]
    # 0.50 < 0.8 x 0.70: only ET is weak, and FLAIR+T1Gd+T2 (0.60) restores it.
    assert subset_warnings(FOUR, metrics(**MEANS), ["flair", "t1c"]) == [
        "from T1Gd+FLAIR the enhancing tumour is much less reliable than from all four sequences (validation "
        "Dice 0.50 against 0.70). Add T2 for it."]


def test_without_a_smaller_validated_subset_that_restores_it_the_advice_is_every_missing_sequence():
    means = dict(MEANS, flair_t1c_t2={"WT": region(0.84), "TC": region(0.82), "ET": region(0.55)})
    assert subset_warnings(FOUR, metrics(**means), ["flair", "t1c"]) == [
        "from T1Gd+FLAIR the enhancing tumour is much less reliable than from all four sequences (validation "
        "Dice 0.50 against 0.70). Add T1 and T2 for it."]


def test_of_equally_few_sequences_the_advice_names_those_that_validated_best():
    means = dict(MEANS, flair_t1_t1c={"WT": region(0.84), "TC": region(0.81), "ET": region(0.66)})
    assert subset_warnings(FOUR, metrics(**means), ["flair", "t1c"])[0].endswith(" Add T1 for it.")


def test_a_subset_never_validated_is_said_so():
    assert subset_warnings(FOUR, metrics(**MEANS), ["t2"]) == [
        "the model's accuracy was measured with T1+T1Gd+T2+FLAIR, T1Gd+T2+FLAIR, T1Gd+FLAIR and FLAIR alone, "
        "not with T2 alone: check this result closely."]
    assert subset_warnings(FOUR, metrics(**MEANS), ["t1", "flair"])[0].endswith(
        "not with T1+FLAIR: check this result closely.")
    unknown = metrics(all={"WT": {"dice_mean": 0.8}}, flair_dwi={"WT": {"dice_mean": 0.1}})  # dwi: not a channel
    assert subset_warnings(FOUR, unknown, ["flair"]) == [
        "the model's accuracy was measured with T1+T1Gd+T2+FLAIR, not with FLAIR alone: check this result closely."]


@pytest.mark.parametrize("card_metrics", [
    {}, "none", {"evaluation": "none"}, {"evaluation": {"means": ["all"]}},
    metrics(flair={"WT": {"dice_mean": 0.8}}),  # nothing with all sequences to compare with
    metrics(all={"WT": {"dice_mean": "high"}, "TC": 0.8}),
])
def test_cards_without_a_usable_evaluation_give_no_warning(card_metrics):
    assert subset_warnings(FOUR, card_metrics, ["flair"]) == []


def test_the_shipped_card_flags_core_and_enhancing_tumour_without_t1gd():
    """Its evaluation covers every subset of the four sequences: each without T1Gd loses the core, and
    FLAIR alone is told to add T1Gd."""
    card = json.loads(default_model_card().read_text())
    subsets = validated_subsets(card["channels"], card["metrics"])
    assert len(subsets) == 15
    for channels in subsets:
        warnings = subset_warnings(card["channels"], card["metrics"], sorted(channels))
        if "t1c" not in channels:
            assert len(warnings) == 1 and "tumour core" in warnings[0], (channels, warnings)
    assert subset_warnings(card["channels"], card["metrics"], ["flair"])[0].endswith(" Add T1Gd for them.")
    assert subset_warnings(card["channels"], card["metrics"], FOUR) == []
