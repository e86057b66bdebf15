"""`prepare`: run the engine's preprocessing on labelled cases and cache model-grid arrays."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from braintumorseg.images import read_image, resample_to_reference
from braintumorseg.labels import REGIONS, regions_from_internal, to_internal
from braintumorseg.modalities import MODALITIES
from braintumorseg.preprocessing import (NormalizationSpec, PreprocessSettings, Preprocessor,
                                         model_grid_shape, resize, stack_channels)

from .discovery import WHOLE_TUMOUR_ONLY, LabelledCase


@dataclass(frozen=True)
class PrepareSettings:
    """Where the cache goes and the model grid it is prepared for."""

    cache: Path
    spacing: float = 2.0
    bias_correction: bool = True
    workers: int = 2


def prepare_case(item: LabelledCase, settings: PrepareSettings) -> dict:
    """Preprocess one case exactly as inference does and save image + region targets."""
    case = item.case
    images = {m: read_image(p, m) for m, p in case.inputs.items()}
    preprocessor = Preprocessor(PreprocessSettings(bias_correction=settings.bias_correction), NormalizationSpec())
    prepared = preprocessor.run(images)
    label = sitk.ReadImage(str(case.label))
    label = resample_to_reference(label, prepared.reference, interpolator=sitk.sitkNearestNeighbor)
    label_array = sitk.GetArrayFromImage(label)[prepared.box]
    if item.convention == WHOLE_TUMOUR_ONLY:
        regions = np.stack([label_array > 0] + [np.zeros_like(label_array, bool)] * 2).astype(np.float32)
        present = [True, False, False]
    else:
        regions = regions_from_internal(to_internal(label_array, item.convention)).astype(np.float32)
        present = [True, True, True]
    channels = stack_channels(prepared.channels, MODALITIES)
    target = (settings.spacing,) * 3
    grid = model_grid_shape(channels.shape[1:], prepared.spacing_zyx, target)
    image = resize(torch.from_numpy(channels), grid).numpy().astype(np.float16)
    regions = (resize(torch.from_numpy(regions), grid).numpy() > 0.5).astype(np.uint8)
    out = settings.cache / f"{case.name}.npz"
    np.savez_compressed(out, image=image, regions=regions,
                        channels=np.array([m in case.inputs for m in MODALITIES]),
                        regions_present=np.array(present))
    return {"name": case.name, "file": out.name, "channels": [m for m in MODALITIES if m in case.inputs],
            "regions": [r for r, p in zip(REGIONS, present) if p], "convention": item.convention,
            "source": str(case.label.parent), "warnings": prepared.warnings}


def prepare(cases: list[LabelledCase], settings: PrepareSettings) -> list[dict]:
    """Prepare every case with parallel workers; write and return the manifest (cases already done are kept)."""
    settings.cache.mkdir(parents=True, exist_ok=True)
    manifest_path = settings.cache / "manifest.json"
    done = {e["name"]: e for e in json.loads(manifest_path.read_text())["cases"]} if manifest_path.exists() else {}
    todo = [c for c in cases if c.case.name not in done or not (settings.cache / done[c.case.name]["file"]).exists()]
    with ProcessPoolExecutor(max_workers=settings.workers) as pool:
        for entry in pool.map(prepare_case, todo, [settings] * len(todo)):
            done[entry["name"]] = entry
            print(f"prepared {entry['name']}: channels {entry['channels']}, regions {entry['regions']}", flush=True)
    names = [c.case.name for c in cases]
    entries = [done[n] for n in names]
    manifest = {"spacing": settings.spacing, "channels": list(MODALITIES), "regions": list(REGIONS),
                "settings": {k: str(v) for k, v in asdict(settings).items()}, "cases": entries}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return entries
