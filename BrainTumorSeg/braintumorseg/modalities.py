"""The four MRI modalities, their aliases in file and volume names, and the reference choice."""

from __future__ import annotations

import re

MODALITIES = ("t1", "t1c", "t2", "flair")

DISPLAY_NAMES = {"t1": "T1", "t1c": "T1Gd (T1ce)", "t2": "T2", "flair": "FLAIR"}
SHORT_NAMES = {"t1": "T1", "t1c": "T1Gd", "t2": "T2", "flair": "FLAIR"}

# Order matters: more specific patterns first (t1ce before t1, t2f/flair before t2).
_ALIASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("flair", ("flair", "t2f", "fla", "t2-flair", "t2_flair", "t2flair")),
    ("t1c", ("t1ce", "t1c", "t1gd", "t1-gd", "t1_gd", "t1+c", "t1post", "t1 post", "t1_post",
             "t1-post", "t1 gd", "t1 c", "t1-ce", "t1_ce", "t1 contrast", "t1+gd", "t1wce", "ce-t1",
             "t1 ce")),
    ("t2", ("t2w", "t2")),
    ("t1", ("t1n", "t1w", "t1", "t1 pre", "t1_pre", "t1-pre")),
)

_SEPARATORS = r"[\s_\-.]"


def modality_from_name(name: str) -> str | None:
    """Guess the modality from a file or volume name (case-insensitive), or None.

    The alias must stand as its own token: "Brats18_x_t1ce.nii.gz" is t1c, "t1" is t1,
    "T1 post" is t1c; "Brats18_2013_t1" is t1 because "2013" is not an alias.
    """
    stem = re.sub(r"\.(nii\.gz|nii|nrrd|nhdr|mha|mhd|gz)$", "", name.strip().lower())
    for modality, aliases in _ALIASES:
        for alias in aliases:
            pattern = rf"(^|{_SEPARATORS}){re.escape(alias)}({_SEPARATORS}|$)"
            if re.search(pattern, stem):
                return modality
    return None


def subset_modalities(name: str) -> tuple[str, ...]:
    """Modality names joined by '+' ("flair+t1c", "FLAIR + T1c") → those modalities in engine order;
    () when one is not a modality name. ("all" is the caller's to resolve.)"""
    parts = [p.strip().lower() for p in name.split("+") if p.strip()]
    if not parts or any(p not in MODALITIES for p in parts):
        return ()
    return tuple(m for m in MODALITIES if m in parts)


def is_label_name(name: str) -> bool:
    """True for file names that hold a segmentation, not an image (seg, label, truth, mask)."""
    stem = name.lower()
    return bool(re.search(r"(^|[_\-.])(seg|label|labels|truth|gt|mask|brainmask|otmulticlass|mav)([_\-.]|$)", stem))


def reference_modality(available: list[str] | tuple[str, ...]) -> str:
    """The input whose grid is the output grid: t1c if given, else flair, else the first given."""
    if not available:
        raise ValueError("no modality given")
    for preferred in ("t1c", "flair"):
        if preferred in available:
            return preferred
    return sorted(available, key=MODALITIES.index)[0]
