"""The bundled sample case as a Sample Data source: local files, each with its SHA-256, so nothing is downloaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

from braintumorseg.modalities import MODALITIES, SHORT_NAMES
from braintumorseg.resources import sample_case

CATEGORY = "Brain tumor"
SAMPLE_NAME = "BrainTumorSeg glioma (TCGA-FG-6692)"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_data_source(thumbnail: Path) -> dict:
    """Keyword arguments of `SampleData.SampleDataLogic.registerCustomSampleDataSource` for the sample case.

    Sample Data "downloads" a `file://` URI by copying it into Slicer's cache under its file name and then reuses
    that copy; the checksums make it replace a stale or foreign copy of the same name instead of loading it.
    """
    files = sample_case()
    return dict(
        category=CATEGORY,
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(thumbnail),
        uris=[files[m].as_uri() for m in MODALITIES],
        fileNames=[files[m].name for m in MODALITIES],
        nodeNames=[f"TCGA-FG-6692 {SHORT_NAMES[m]}" for m in MODALITIES],
        checksums=[f"SHA256:{sha256(files[m])}" for m in MODALITIES],
        loadFileTypes=["VolumeFile"] * len(MODALITIES),
    )
