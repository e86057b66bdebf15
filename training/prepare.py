"""`prepare`: run the engine's preprocessing on labelled cases and cache model-grid arrays."""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from braintumorseg.errors import InputError
from braintumorseg.images import read_image, resample_to_reference
from braintumorseg.labels import REGIONS, regions_from_internal, to_internal
from braintumorseg.modalities import MODALITIES
from braintumorseg.normalization import NyulStandardizer
from braintumorseg.output_paths import check_output_folder
from braintumorseg.preprocessing import (
    NormalizationSpec,
    Preprocessor,
    PreprocessSettings,
    model_grid_shape,
    resize,
    stack_channels,
)

from .data import MANIFEST, read_manifest
from .discovery import WHOLE_TUMOUR_ONLY, LabelledCase


@dataclass(frozen=True)
class PrepareSettings:
    """Where the cache goes and the model grid it is prepared for."""

    cache: Path
    spacing: float = 2.0
    bias_correction: bool = True
    workers: int = 2
    nyul: bool = False
    nyul_exclude: tuple[str, ...] = ()
    n4_without_tumour: bool = False  # N4 fitted without the reference tumour (`Preprocessor.refit_bias`)


def manifest_flag(manifest: dict, name: str, default: bool) -> bool:
    """A yes/no PrepareSettings field as a cache manifest keeps it (settings are stored as text)."""
    return manifest.get("settings", {}).get(name, str(default)) == "True"


# Model grids a cache may be prepared on (mm): finer is beyond the 1 mm data, coarser loses the tumour.
MIN_SPACING, MAX_SPACING = 0.5, 8.0

# Brain intensities of a case are summarized by this many evenly spaced quantiles for learning Nyúl landmarks.
SKETCH_QUANTILES = 2001


class _Unnormalized(Preprocessor):
    """The engine's preprocessing up to (not including) intensity normalization."""

    def normalize(self, modality: str, image: np.ndarray, mask: np.ndarray,
                  statistics: np.ndarray | None = None) -> np.ndarray:
        return image


def intensity_sketch(item: LabelledCase, settings: PrepareSettings) -> dict[str, np.ndarray]:
    """Evenly spaced quantiles of each channel's brain voxels after alignment, cropping and N4."""
    images = {m: read_image(p, m) for m, p in item.case.inputs.items()}
    prepared = _Unnormalized(PreprocessSettings(bias_correction=settings.bias_correction)).run(images)
    grid = np.linspace(0.0, 1.0, SKETCH_QUANTILES)
    return {m: np.quantile(a[prepared.mask], grid).astype(np.float32) for m, a in prepared.channels.items()}


def learn_nyul_landmarks(cases: list[LabelledCase], settings: PrepareSettings) -> dict[str, list[float]]:
    """Nyúl standard landmarks per modality, learned from the brain voxels of the given cases."""
    sketches: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    with ProcessPoolExecutor(max_workers=settings.workers) as pool:
        for sketch in pool.map(intensity_sketch, cases, [settings] * len(cases)):
            for modality, values in sketch.items():
                sketches[modality].append(values)
    missing = [m for m, values in sketches.items() if not values]
    if missing:
        raise InputError(f"no training case has {', '.join(missing)}, so Nyúl landmarks cannot be learned "
                         "for it; prepare without --nyul.")
    return {m: NyulStandardizer.fit(values, [np.ones(v.shape, bool) for v in values]).landmarks
            for m, values in sketches.items()}


def normalization_for(cases: list[LabelledCase], settings: PrepareSettings) -> NormalizationSpec:
    """z-score, or Nyúl with landmarks learned once and kept in the cache (nyul.json)."""
    if not settings.nyul:
        return NormalizationSpec()
    stored = settings.cache / "nyul.json"
    if stored.exists():
        return NormalizationSpec("nyul", json.loads(stored.read_text()))
    learning = [c for c in cases if c.case.name not in settings.nyul_exclude]
    landmarks = learn_nyul_landmarks(learning, settings)
    stored.write_text(json.dumps(landmarks, indent=1) + "\n")
    print(f"learned Nyúl landmarks from {len(learning)} cases", flush=True)
    return NormalizationSpec("nyul", landmarks)


def prepare_case(item: LabelledCase, settings: PrepareSettings,
                 normalization: NormalizationSpec = NormalizationSpec()) -> dict:
    """Preprocess one case exactly as inference does and save image + region targets."""
    case = item.case
    images = {m: read_image(p, m) for m, p in case.inputs.items()}
    preprocessor = Preprocessor(PreprocessSettings(bias_correction=settings.bias_correction), normalization)
    prepared = preprocessor.run(images, refits_bias=lambda scanner_native: settings.n4_without_tumour)
    label = sitk.ReadImage(str(case.label))
    label = resample_to_reference(label, prepared.reference, interpolator=sitk.sitkNearestNeighbor)
    label_array = sitk.GetArrayFromImage(label)[prepared.box]
    if settings.n4_without_tumour and settings.bias_correction:
        prepared.channels = preprocessor.refit_bias(prepared, label_array > 0)
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


def check_settings(settings: PrepareSettings) -> None:
    """Refuse a grid, worker count or cache folder that cannot give a usable cache."""
    if not (math.isfinite(settings.spacing) and MIN_SPACING <= settings.spacing <= MAX_SPACING):
        raise InputError(f"--spacing is the model grid's voxel size in mm, between {MIN_SPACING} and {MAX_SPACING} "
                         f"(1.5 for the shipped model), not {settings.spacing}.")
    if settings.workers < 1:
        raise InputError(f"--workers is a number of processes (1 or more), not {settings.workers}.")
    check_output_folder(settings.cache, "--cache")


def kept_in_cache(previous: dict, settings: PrepareSettings) -> None:
    """A cache that already holds cases continues only with the grid and normalization it was made with."""
    method = previous.get("normalization", {}).get("method", "zscore")
    if method != ("nyul" if settings.nyul else "zscore"):
        raise InputError(f"the cache {settings.cache} was prepared with {method} normalization; use another "
                         "--cache folder for a different normalization.")
    if float(previous["spacing"]) != settings.spacing:
        raise InputError(f"the cache {settings.cache} was prepared on a {previous['spacing']} mm grid; use another "
                         f"--cache folder for --spacing {settings.spacing}.")
    without = manifest_flag(previous, "n4_without_tumour", False)
    if without != settings.n4_without_tumour:
        raise InputError(f"the cache {settings.cache} was prepared {'with' if without else 'without'} "
                         "--n4-without-tumour; use another --cache folder to change that.")
    corrected = manifest_flag(previous, "bias_correction", True)
    if corrected != settings.bias_correction:
        raise InputError(f"the cache {settings.cache} was prepared {'with' if corrected else 'without'} N4 bias "
                         "correction; use another --cache folder to change that.")


def prepare(cases: list[LabelledCase], settings: PrepareSettings) -> list[dict]:
    """Prepare every case with parallel workers; write and return the manifest (cases already done are kept)."""
    check_settings(settings)
    manifest_path = settings.cache / MANIFEST
    previous = read_manifest(settings.cache) if manifest_path.exists() else {"cases": []}
    if previous["cases"]:
        kept_in_cache(previous, settings)
    settings.cache.mkdir(parents=True, exist_ok=True)
    normalization = normalization_for(cases, settings)
    done = {e["name"]: e for e in previous["cases"]}
    todo = [c for c in cases if c.case.name not in done or not (settings.cache / done[c.case.name]["file"]).exists()]
    with ProcessPoolExecutor(max_workers=settings.workers) as pool:
        for entry in pool.map(prepare_case, todo, [settings] * len(todo), [normalization] * len(todo)):
            done[entry["name"]] = entry
            print(f"prepared {entry['name']}: channels {entry['channels']}, regions {entry['regions']}", flush=True)
    names = [c.case.name for c in cases]
    entries = [done[n] for n in names]
    manifest = {"spacing": settings.spacing, "channels": list(MODALITIES), "regions": list(REGIONS),
                "normalization": asdict(normalization),
                "settings": {k: str(v) for k, v in asdict(settings).items()}, "cases": entries}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return entries
