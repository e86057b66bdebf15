"""Where the extension's shipped files live: model cards, the brain template and the bundled sample case."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

RESOURCES = Path(os.environ.get("BRAINTUMORSEG_RESOURCES", Path(__file__).resolve().parents[1] / "Resources"))
MODELS = RESOURCES / "Models"
SAMPLE_CASE = RESOURCES / "SampleData" / "TCGA-FG-6692"
BRAIN_TEMPLATE = RESOURCES / "Templates" / "mni_icbm152_2009a_t1_brain_2mm.nii.gz"
DEFAULT_MODEL = "brats-segresnet"
NATIVE_EXAM_MODEL = "brats-segresnet-native"  # the default's finetune for exams as the scanner wrote them


def model_cards() -> dict[str, Path]:
    """Installed model cards by model folder name."""
    return {p.parent.name: p for p in sorted(MODELS.glob("*/model.json"))}


def default_model_card() -> Path:
    """The card of the model shipped with the extension."""
    card = MODELS / DEFAULT_MODEL / "model.json"
    if not card.is_file():
        raise InputError(f"the default model is not installed ({card} is missing); reinstall "
                         "BrainTumorSeg or give a model card with --model.")
    return card


def native_exam_model_card() -> Path | None:
    """The card of the shipped model for scanner-native exams, or None when it is not installed."""
    card = MODELS / NATIVE_EXAM_MODEL / "model.json"
    return card if card.is_file() else None


def sample_case() -> dict[str, Path]:
    """The bundled sample case: modality → file, plus 'label' for the consensus segmentation."""
    files = {"t1": "OtherEXampleFromTCIA_t1_bet.nii.gz", "t1c": "OtherEXampleFromTCIA_t1c_bet.nii.gz",
             "t2": "OtherEXampleFromTCIA_t2_bet.nii.gz", "flair": "OtherEXampleFromTCIA_fla_bet.nii.gz",
             "label": "mav.nii.gz"}
    paths = {k: SAMPLE_CASE / v for k, v in files.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"the bundled sample case is incomplete (missing {', '.join(missing)}); "
                         "reinstall BrainTumorSeg.")
    return paths
