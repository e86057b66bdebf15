"""How far to trust each region for the sequences given, read from the model card's own validation.

Plain data in (the card's channels and metrics), so the Slicer panel can use it before PyTorch is installed.
"""

from __future__ import annotations

from typing import Any

from .labels import REGION_NAMES
from .modalities import MODALITIES, SHORT_NAMES

# A region is flagged when its validation Dice with the given sequences is below this share of its
# Dice with all of the model's sequences (the card's "all" subset).
RELATIVE_FLOOR = 0.8
COUNTS = {1: "one", 2: "two", 3: "three", 4: "four"}  # a card's channels are among the four modalities


def subset_name(channels: frozenset[str]) -> str:
    """"T1Gd+FLAIR" style name of a set of sequences, in the engine's modality order."""
    names = [SHORT_NAMES[m] for m in MODALITIES if m in channels]
    return names[0] + " alone" if len(names) == 1 else "+".join(names)


def spoken_list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def validated_subsets(channels: list[str], metrics: dict[str, Any]) -> dict[frozenset[str], dict[str, float]]:
    """Mean validation Dice per region for each sequence subset the card's evaluation covers.

    Reads `metrics.evaluation.means` as `python -m training evaluate` writes it (keys "all",
    "flair+t1c", ...); a card without it, or entries in another form, give nothing.
    """
    evaluation = metrics.get("evaluation") if isinstance(metrics, dict) else None
    means = evaluation.get("means") if isinstance(evaluation, dict) else None
    subsets: dict[frozenset[str], dict[str, float]] = {}
    for key, regions in (means.items() if isinstance(means, dict) else ()):
        subset = frozenset(channels) if key == "all" else frozenset(key.split("+"))
        dice = {r: float(regions[r]["dice_mean"]) for r in REGION_NAMES
                if isinstance(regions, dict) and isinstance(regions.get(r), dict)
                and isinstance(regions[r].get("dice_mean"), (int, float))}
        if dice and subset <= set(channels):
            subsets[subset] = dice
    return subsets


def subset_warnings(channels: list[str], metrics: dict[str, Any], given: list[str] | tuple[str, ...]) -> list[str]:
    """What a card's validation (its `channels` and `metrics`) says about a run from the sequences `given`.

    Names the regions whose validation Dice falls below RELATIVE_FLOOR of their Dice with all sequences,
    and the fewest sequences to add that the validation shows restore them (of equally few, those with the
    highest Dice there); or says the model was never validated on this subset. Nothing when the card
    holds no validation with all sequences.
    """
    subsets = validated_subsets(channels, metrics)
    full = frozenset(channels)
    used = frozenset(given) & full
    if full not in subsets or not used:
        return []
    if used not in subsets:
        covered = spoken_list([subset_name(s) for s in sorted(subsets, key=len, reverse=True)])
        return [f"the model's accuracy was measured with {covered}, not with {subset_name(used)}: check this "
                "result closely."]
    weak = [r for r, d in subsets[used].items() if r in subsets[full] and d < RELATIVE_FLOOR * subsets[full][r]]
    if not weak:
        return []
    line = (f"from {subset_name(used)} the {spoken_list([REGION_NAMES[r] for r in weak])} "
            f"{'is' if len(weak) == 1 else 'are'} much less reliable than from all {COUNTS[len(full)]} sequences "
            f"(validation Dice {spoken_list([f'{subsets[used][r]:.2f}' for r in weak])} against "
            f"{spoken_list([f'{subsets[full][r]:.2f}' for r in weak])}).")
    restoring = [s for s, dice in subsets.items() if s > used and all(  # all sequences always restore
        dice.get(r, 0.0) >= RELATIVE_FLOOR * subsets[full][r] for r in weak)]
    best = min(restoring, key=lambda s: (len(s), -sum(subsets[s][r] for r in weak)))  # fewest, then best
    added = [SHORT_NAMES[m] for m in MODALITIES if m in best - used]
    return [line + f" Add {spoken_list(added)} for {'it' if len(weak) == 1 else 'them'}."]
