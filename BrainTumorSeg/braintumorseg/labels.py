"""Label conventions, tumour regions, and the segments a user sees (names, colours, codes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

# Internal classes: 0 background, 1 necrotic/non-enhancing core, 2 edema, 3 enhancing tumour.
NCR, ED, ET = 1, 2, 3

# Each convention maps its file values to internal classes.
CONVENTIONS: dict[str, dict[int, int]] = {
    "brats2015": {1: NCR, 2: ED, 3: NCR, 4: ET},
    "brats2021": {1: NCR, 2: ED, 4: ET},
    "brats2023": {1: NCR, 2: ED, 3: ET},
    "nnunet": {1: ED, 2: NCR, 3: ET},
}
OUTPUT_CONVENTIONS = ("brats2021", "brats2023")
# The convention whose file values are the internal classes (and the segments' labels): what the Slicer panel
# asks the engine for, so that its label map becomes segments without a conversion.
SEGMENT_CONVENTION = "brats2023"

REGIONS = ("WT", "TC", "ET")
REGION_NAMES = {"WT": "whole tumour", "TC": "tumour core", "ET": "enhancing tumour"}
REGION_CLASSES = {"WT": (NCR, ED, ET), "TC": (NCR, ET), "ET": (ET,)}


@dataclass(frozen=True)
class Segment:
    """One output segment with its display name, colour and SNOMED CT terminology."""

    label: int
    name: str
    color: tuple[float, float, float]
    category: tuple[str, str, str]
    type: tuple[str, str, str]


SEGMENTS = (
    Segment(NCR, "Necrotic tumor core", (0.882, 0.333, 0.243),
            ("SCT", "49755003", "Morphologically Altered Structure"), ("SCT", "6574001", "Necrosis")),
    Segment(ED, "Peritumoral edema", (0.416, 0.780, 0.439),
            ("SCT", "49755003", "Morphologically Altered Structure"), ("SCT", "79654002", "Edema")),
    Segment(ET, "Enhancing tumor", (0.992, 0.882, 0.337),
            ("SCT", "49755003", "Morphologically Altered Structure"),
            ("SCT", "108369006", "Neoplasm")),
)


@dataclass(frozen=True)
class Volume:
    """One tumour volume the report gives: its key, its name on the command line and in the panel, its classes."""

    key: str
    name: str
    title: str
    classes: tuple[int, ...]


VOLUMES = (
    Volume("necrotic_core", "necrotic core", "Necrotic tumor core", (NCR,)),
    Volume("edema", "edema", "Peritumoral edema", (ED,)),
    Volume("enhancing", "enhancing tumour", "Enhancing tumor", (ET,)),
    Volume("tumour_core", "tumour core", "Tumor core (necrotic + enhancing)", (NCR, ET)),
    Volume("whole_tumour", "whole tumour", "Whole tumor (all three)", (NCR, ED, ET)),
)
VOLUME_KEYS = tuple(volume.key for volume in VOLUMES)


# More unknown label values than this, and the file is an image rather than a label map.
SHOWN_VALUES = 6


def to_internal(labels: np.ndarray, convention: str) -> np.ndarray:
    """Convert a label map in `convention` to internal classes; refuse values it does not define."""
    if convention not in CONVENTIONS:
        raise InputError(f"unknown label convention '{convention}'; use one of {', '.join(CONVENTIONS)}.")
    mapping = CONVENTIONS[convention]
    values = set(np.unique(labels).astype(int).tolist()) - {0}
    extra = sorted(values - set(mapping))
    if len(extra) > SHOWN_VALUES:
        raise InputError(f"{len(extra)} label values ({', '.join(map(str, extra[:SHOWN_VALUES]))}, …) are not "
                         f"part of the {convention} convention (which uses {sorted(mapping)}): this looks like "
                         "an image, not a label map; give the segmentation file.")
    if extra:
        raise InputError(f"label values {extra} are not part of the {convention} convention "
                         f"(which uses {sorted(mapping)}); pick the right convention.")
    out = np.zeros(labels.shape, dtype=np.uint8)
    for value, internal in mapping.items():
        out[labels == value] = internal
    return out


def from_internal(classes: np.ndarray, convention: str = "brats2021") -> np.ndarray:
    """Write internal classes in an output convention (brats2021: 1/2/4, brats2023: 1/2/3)."""
    if convention not in OUTPUT_CONVENTIONS:
        raise InputError(f"output label convention must be one of {', '.join(OUTPUT_CONVENTIONS)}.")
    out = np.zeros(classes.shape, dtype=np.uint8)
    for value, internal in CONVENTIONS[convention].items():
        out[classes == internal] = value
    return out


def regions_from_internal(classes: np.ndarray) -> np.ndarray:
    """Overlapping binary regions (WT, TC, ET) stacked on a new first axis."""
    return np.stack([np.isin(classes, REGION_CLASSES[r]) for r in REGIONS]).astype(np.uint8)


def internal_from_regions(regions: np.ndarray) -> np.ndarray:
    """Turn region masks back into classes with a fixed order: ET inside TC inside WT."""
    wt, tc, et = (regions[i].astype(bool) for i in range(3))
    tc &= wt
    et &= tc
    out = np.zeros(wt.shape, dtype=np.uint8)
    out[wt] = ED
    out[tc] = NCR
    out[et] = ET
    return out
