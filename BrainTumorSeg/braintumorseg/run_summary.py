"""One sentence on what preprocessing did to a case, from its report: for the command line and the panel (torch-free)."""

from __future__ import annotations

from typing import Sequence

from .modalities import SHORT_NAMES


def processing_summary(registration: Sequence[dict], skull_stripping: str, network_space: str,
                       reference: str = "", model: str = "", thick_slices: Sequence[str] = ()) -> str:
    """Which sequences were registered and how the check rated them, how the skull was stripped, the grid the
    network saw and the model that ran; "" when the report says none of it."""
    parts = []
    onto = f" onto the {SHORT_NAMES.get(reference, reference)}" if reference else ""
    registered = [r for r in registration if r.get("registered")]
    kept = [r for r in registration if not r.get("registered")]
    if registered:
        parts.append(f"Registered{onto}: " + ", ".join(_rated(r) for r in registered) + ".")
    if kept:
        parts.append("Already aligned: " + ", ".join(_rated(r) for r in kept) + ".")
    if skull_stripping:
        parts.append(f"Skull stripping: {skull_stripping}.")
    if thick_slices:
        parts.append("Thick slices: " + ", ".join(SHORT_NAMES.get(m, m) for m in thick_slices) + ".")
    if network_space:
        parts.append(f"Network grid: {network_space}.")
    if model:
        parts.append(f"Model: {model}.")
    return " ".join(parts)


def _rated(rating: dict) -> str:
    return f"{SHORT_NAMES.get(rating['modality'], rating['modality'])} ({rating['rating']}, {rating['score']:.2f})"
