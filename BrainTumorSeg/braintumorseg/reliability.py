"""How far to trust each region for the sequences given, read from the model card's own validation.

Plain data in (the card's channels and metrics), so the Slicer panel can use it before PyTorch is installed.
"""

from __future__ import annotations

from typing import Any, Sequence

from .labels import REGION_NAMES
from .modalities import MODALITIES, SHORT_NAMES, subset_modalities

# A region is flagged when its validation Dice with the given sequences is below this share of its
# Dice with all of the model's sequences (the card's "all" subset).
RELATIVE_FLOOR = 0.8
# With one sequence nothing can be missing, so no warning names its count.
ALL_OF = {2: "both sequences", 3: "all three sequences", 4: "all four sequences"}


def subset_name(channels: frozenset[str]) -> str:
    """"T1Gd+FLAIR" style name of a set of sequences, in the engine's modality order."""
    names = [SHORT_NAMES[m] for m in MODALITIES if m in channels]
    return names[0] + " alone" if len(names) == 1 else "+".join(names)


def spoken_list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def validated_subsets(channels: Sequence[str], metrics: dict[str, Any]) -> dict[frozenset[str], dict[str, float]]:
    """Mean validation Dice per region for each sequence subset the card's evaluation covers.

    Reads `metrics.evaluation.means` as `python -m training evaluate` writes it (keys "all", "flair+t1c",
    ... as its --subsets were typed); entries in another form give nothing, and of two keys naming the same
    sequences the first counts.
    """
    evaluation = metrics.get("evaluation") if isinstance(metrics, dict) else None
    means = evaluation.get("means") if isinstance(evaluation, dict) else None
    subsets: dict[frozenset[str], dict[str, float]] = {}
    for key, regions in (means.items() if isinstance(means, dict) else ()):
        subset = frozenset(channels if key == "all" else subset_modalities(key))
        dice = {r: float(regions[r]["dice_mean"]) for r in REGION_NAMES
                if isinstance(regions, dict) and isinstance(regions.get(r), dict)
                and isinstance(regions[r].get("dice_mean"), (int, float))}
        if dice and subset and subset <= set(channels):
            subsets.setdefault(subset, dice)
    return subsets


def subset_warnings(channels: Sequence[str], metrics: dict[str, Any], given: Sequence[str]) -> list[str]:
    """What a card's validation (its `channels` and `metrics`) says about a run from the sequences `given`.

    Names the regions whose validation Dice falls below RELATIVE_FLOOR of their Dice with all sequences,
    and the fewest sequences whose validation restores them (of equally few, those with the highest Dice
    there); or says the model was never validated on this subset. Nothing when the card holds no
    validation with all its sequences, or names channels that are not modalities.
    """
    if not isinstance(channels, (list, tuple)) or not set(channels) <= set(MODALITIES):
        return []
    subsets = validated_subsets(channels, metrics)
    full = frozenset(channels)
    used = frozenset(given) & full
    if full not in subsets or not used:
        return []
    if used not in subsets:
        ordered = sorted(subsets, key=lambda s: (-len(s), sorted(MODALITIES.index(m) for m in s)))
        return [f"the model's accuracy was measured with {spoken_list([subset_name(s) for s in ordered])}, not with "
                f"{subset_name(used)}: check this result closely."]
    weak = [r for r, d in subsets[used].items() if r in subsets[full] and d < RELATIVE_FLOOR * subsets[full][r]]
    if not weak:
        return []
    restoring = [s for s, dice in subsets.items() if s > used and all(  # all sequences always restore
        dice.get(r, 0.0) >= RELATIVE_FLOOR * subsets[full][r] for r in weak)]
    best = min(restoring, key=lambda s: (len(s), -sum(subsets[s][r] for r in weak)))  # fewest, then best
    added = spoken_list([SHORT_NAMES[m] for m in MODALITIES if m in best - used])
    return [f"from {subset_name(used)} the {spoken_list([REGION_NAMES[r] for r in weak])} "
            f"{'is' if len(weak) == 1 else 'are'} less reliable than from {ALL_OF[len(full)]} (validation Dice "
            f"{spoken_list([f'{subsets[used][r]:.2f}' for r in weak])} against "
            f"{spoken_list([f'{subsets[full][r]:.2f}' for r in weak])}); adding {added} restored "
            f"{'it' if len(weak) == 1 else 'them'} in validation."]
