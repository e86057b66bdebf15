"""One sentence on what preprocessing did to a case, from its report: for the command line and the panel (torch-free)."""

from __future__ import annotations

from typing import Any, Mapping

from .modalities import SHORT_NAMES


def processing_summary(report: Mapping[str, Any]) -> str:
    """Which sequences were registered and how the check rated them, how the skull was stripped, whether N4 was
    fitted without the tumour, the grid the network saw and the model that ran; "" when the report (a
    SegmentationReport's fields: its JSON, or `asdict` of it) says none of it."""
    parts = []
    reference = report.get("reference", "")
    onto = f" onto the {SHORT_NAMES.get(reference, reference)}" if reference else ""
    registration = report.get("registration", [])
    registered = [r for r in registration if r.get("registered")]
    kept = [r for r in registration if not r.get("registered")]
    if registered:
        parts.append(f"Registered{onto}: " + ", ".join(_rated(r) for r in registered) + ".")
    if kept:
        parts.append("Already aligned: " + ", ".join(_rated(r) for r in kept) + ".")
    if report.get("skull_stripping"):
        parts.append(f"Skull stripping: {report['skull_stripping']}.")
    if report.get("thick_slices"):
        parts.append("Thick slices: " + ", ".join(SHORT_NAMES.get(m, m) for m in report["thick_slices"]) + ".")
    if report.get("n4_without_tumour_ml") is not None:
        parts.append(f"Bias correction fitted without the {report['n4_without_tumour_ml']:.1f} mL tumour of a "
                     "first pass.")
    if report.get("network_space"):
        parts.append(f"Network grid: {report['network_space']}.")
    if report.get("model"):
        parts.append(f"Model: {report['model']}.")
    return " ".join(parts)


def _rated(rating: dict) -> str:
    return f"{SHORT_NAMES.get(rating['modality'], rating['modality'])} ({rating['rating']}, {rating['score']:.2f})"
