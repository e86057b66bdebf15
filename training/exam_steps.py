"""The clinical-like generator's switches (`clinical-like --without/--with`, `evaluate --clinical-like-with`):
which `ExamSettings` fields each name changes. Kept apart from the generator so the command line loads fast."""

from __future__ import annotations

# Generator steps that can be switched off (`clinical-like --without`), to see which one hurts a case.
STEPS_OFF = {"bias": {"bias_coefficient": 0.0}, "noise": {"noise_fraction": 0.0},
             "pose": {"head_rotation_deg": 0.0, "head_translation_mm": 0.0, "oblique_deg": 0.0},
             "motion": {"motion_rotation_deg": (0.0, 0.0), "motion_translation_mm": (0.0, 0.0)},
             "thick": {"slice_thickness_mm": (1.0, 1.0), "slice_gap_mm": (0.0, 0.0), "in_plane_mm": (1.0, 1.0)}}
# Options that make the exams harder (`clinical-like --with`, `evaluate --clinical-like-with`).
STEPS_ON = {"skull": {"skull": True}, "thick-t1c": {"thick_t1c": True}}


def exams_folder_name(seed: int, extras: tuple[str, ...] = ()) -> str:
    """clinical-like-<seed>, with the extras that made the exams: exams of other settings never mix."""
    return "-".join(["clinical-like", str(seed), *sorted(set(extras))])
