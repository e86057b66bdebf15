"""Model cards: the JSON that says what a set of safetensors weights expects and produces."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from .errors import InputError
from .labels import REGIONS
from .modalities import MODALITIES
from .network import ARCHITECTURES, ArchitectureSpec, build_network
from .normalization import NYUL_PERCENTILES
from .preprocessing import NormalizationSpec

CARD_FORMAT = 1
MISSING_POLICIES = ("zero",)
NORMALIZATIONS = ("zscore", "nyul")
SPACING_MM = (0.2, 10.0)
MAX_DIVISOR = 64
MAX_ROI = 512
FIX = "fix the card or re-export it with `python -m training export`"


def is_number(value: Any) -> bool:
    """A finite JSON number (true and false are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def is_triple(value: Any, item: Callable[[Any], bool]) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(item(v) for v in value)


def is_channel_list(value: Any) -> bool:
    """A non-empty list of distinct modality names."""
    return (isinstance(value, list) and value != [] and all(isinstance(v, str) for v in value)
            and set(value) <= set(MODALITIES) and len(set(value)) == len(value))


def is_landmarks(value: Any) -> bool:
    """One number per Nyúl percentile, never falling, the last above the first."""
    return (isinstance(value, list) and len(value) == len(NYUL_PERCENTILES) and all(map(is_number, value))
            and all(a <= b for a, b in zip(value, value[1:])) and value[0] < value[-1])


# Each field the card holds as a plain JSON value: the test it must pass, and what it must be.
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (is_text, "a non-empty string"),
    "version": (is_text, "a non-empty string"),
    "weights_file": (lambda v: isinstance(v, str) and Path(v).suffix == ".safetensors",
                     "a .safetensors file name"),
    "sha256": (lambda v: isinstance(v, str) and re.fullmatch("([0-9a-f]{64})?", v) is not None,
               "the weights' SHA-256 checksum (64 lowercase hexadecimal digits)"),
    "channels": (is_channel_list, f"a list of distinct names among {', '.join(MODALITIES)}"),
    "missing_channels": (lambda v: v in MISSING_POLICIES,
                         f"{' or '.join(map(json.dumps, MISSING_POLICIES))}, the missing-channel policy this "
                         "engine knows"),
    "spacing": (lambda v: is_triple(v, lambda s: is_number(s) and SPACING_MM[0] <= s <= SPACING_MM[1]),
                f"three numbers from {SPACING_MM[0]} to {SPACING_MM[1]}, the model grid's spacing in mm"),
    "regions": (lambda v: v == list(REGIONS), json.dumps(list(REGIONS))),
    "threshold": (lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1"),
    "subset_tta": (lambda v: isinstance(v, bool), "true or false"),
    "n4_without_tumour": (lambda v: isinstance(v, bool), "true or false"),
    "divisible_by": (lambda v: is_whole(v, 1, MAX_DIVISOR), f"a whole number from 1 to {MAX_DIVISOR}"),
    "roi_size": (lambda v: is_triple(v, lambda r: is_whole(r, 1, MAX_ROI)),
                 f"three whole numbers from 1 to {MAX_ROI}, the sliding window in voxels"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "license": (lambda v: isinstance(v, str), "a string"),
    "training": (lambda v: isinstance(v, dict), "a JSON object"),
    "metrics": (lambda v: isinstance(v, dict), "a JSON object"),
}


def card_error(name: str, expected: str, value: Any) -> InputError:
    """The one-sentence refusal of a card field: what it must be, what it is, and what to do."""
    shown = json.dumps(value, default=str)
    if len(shown) > 60:
        shown = shown[:59] + "…"
    return InputError(f"model card field '{name}' must be {expected}, not {shown}; {FIX}.")


def nested(kind: type, value: Any, name: str) -> Any:
    """Build a nested spec of the card from its JSON object, refusing anything else."""
    keys = [f.name for f in fields(kind)]
    if not isinstance(value, dict) or not set(value) <= set(keys):
        raise card_error(name, f"an object whose keys are among {', '.join(keys)}", value)
    return kind(**value)


@dataclass
class ModelCard:
    """Everything the engine needs to run a set of weights, and what is known about them."""

    name: str
    version: str
    architecture: ArchitectureSpec
    weights_file: str = "model.safetensors"
    sha256: str = ""
    channels: list[str] = field(default_factory=lambda: list(MODALITIES))
    missing_channels: str = "zero"
    spacing: list[float] = field(default_factory=lambda: [2.0, 2.0, 2.0])
    normalization: NormalizationSpec = field(default_factory=NormalizationSpec)
    regions: list[str] = field(default_factory=lambda: list(REGIONS))
    threshold: float = 0.5
    subset_tta: bool = False  # trained with modality dropout: TTA may also average subsets of the sequences
    n4_without_tumour: bool = False  # trained on N4 fitted without the tumour: so is the engine's (two passes)
    divisible_by: int = 8
    roi_size: list[int] = field(default_factory=lambda: [128, 128, 128])
    description: str = ""
    license: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    card_format: int = CARD_FORMAT
    path: Path | None = field(default=None, repr=False, compare=False)

    @property
    def weights_path(self) -> Path:
        base = self.path.parent if self.path else Path(".")
        return base / self.weights_file

    def check_weights_present(self) -> None:
        """Refuse a card whose weights file is not beside it."""
        if not self.weights_path.is_file():
            raise InputError(f"weights file {self.weights_path} named by the model card is missing; reinstall "
                             "the model.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data

    def save(self, path: str | Path) -> None:
        """Write the card as JSON next to its weights."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        self.path = path

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> "ModelCard":
        fmt = data.get("card_format")
        if fmt != CARD_FORMAT:
            raise InputError(f"model card {path} has format {fmt!r}; this BrainTumorSeg reads format "
                             f"{CARD_FORMAT}. Use weights exported for this version.")
        data = dict(data)
        data["architecture"] = nested(ArchitectureSpec, data["architecture"], "architecture")
        data["normalization"] = nested(NormalizationSpec, data.get("normalization", {}), "normalization")
        try:
            card = cls(**data, path=path)
        except TypeError as error:
            raise InputError(f"model card {path} is not valid ({error}); {FIX}.") from None
        card.validate()
        if not card.sha256:
            raise card_error("sha256", FIELDS["sha256"][1], card.sha256)
        card.check_weights_present()
        return card

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"model card not found: {path}. Give the model's .json card with --model.")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"model card {path} is not valid JSON ({error}).") from None
        if not isinstance(data, dict) or "architecture" not in data:
            raise InputError(f"{path} is not a BrainTumorSeg model card (no 'architecture').")
        return cls.from_dict(data, path)

    def validate(self) -> None:
        """Refuse cards that this engine cannot run correctly, naming the field and what it must be."""
        for name, (valid, expected) in FIELDS.items():
            if not valid(getattr(self, name)):
                raise card_error(name, expected, getattr(self, name))
        if any(r % self.divisible_by for r in self.roi_size):
            raise card_error("roi_size", f"multiples of divisible_by ({self.divisible_by})", self.roi_size)
        self._check_architecture()
        self._check_normalization()

    def _check_architecture(self) -> None:
        """A known network whose arguments it takes, with as many inputs and outputs as the card says."""
        spec = self.architecture
        network = ARCHITECTURES.get(spec.name) if isinstance(spec.name, str) else None
        if network is None:
            raise card_error("architecture.name", f"one of {', '.join(ARCHITECTURES)}", spec.name)
        expected = f"an object of arguments that {spec.name} takes"
        if not isinstance(spec.kwargs, dict):
            raise card_error("architecture.kwargs", expected, spec.kwargs)
        try:
            bound = inspect.signature(network).bind(**spec.kwargs)
        except TypeError as error:
            raise card_error("architecture.kwargs", f"{expected} ({error})", spec.kwargs) from None
        bound.apply_defaults()
        sizes = {"spatial_dims": (3, "image dimensions"), "in_channels": (len(self.channels), "channels"),
                 "out_channels": (len(REGIONS), "regions")}
        for key, (size, what) in sizes.items():
            if not is_whole(bound.arguments.get(key), size, size):
                raise card_error(f"architecture.kwargs.{key}", f"{size}, the number of {what}",
                                 bound.arguments.get(key))

    def _check_normalization(self) -> None:
        """A known method; for Nyúl, usable landmarks for every channel."""
        norm = self.normalization
        if norm.method not in NORMALIZATIONS:
            raise card_error("normalization.method", " or ".join(map(json.dumps, NORMALIZATIONS)), norm.method)
        if not isinstance(norm.landmarks, dict):
            raise card_error("normalization.landmarks", "an object with a list of numbers per channel",
                             norm.landmarks)
        if norm.method != "nyul":
            return
        for channel in self.channels:
            if not is_landmarks(norm.landmarks.get(channel)):
                raise card_error(f"normalization.landmarks.{channel}",
                                 f"{len(NYUL_PERCENTILES)} rising numbers, the Nyúl landmarks of {channel}",
                                 norm.landmarks.get(channel))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(card: ModelCard) -> torch.nn.Module:
    """Build the network and load its weights after checking the checksum; no pickle involved."""
    weights = card.weights_path
    card.check_weights_present()
    actual = sha256_of(weights)
    if actual != card.sha256:
        raise InputError(f"weights file {weights} does not match the checksum in its model card "
                         f"(expected {card.sha256[:12]}…, found {actual[:12]}…): the file is damaged or "
                         "belongs to another model. Reinstall the model.")
    network = build_network(card.architecture)
    try:
        network.load_state_dict(load_file(str(weights)))
    except (RuntimeError, ValueError) as error:
        raise InputError(f"weights {weights} do not fit the architecture in the model card: "
                         f"{str(error).splitlines()[0]}") from None
    return network.eval()


def serialized_weights(network: torch.nn.Module) -> bytes:
    """The network's weights as the safetensors bytes that `export_model` writes and checksums."""
    return save({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()})


def export_model(network: torch.nn.Module, card: ModelCard, directory: str | Path,
                 card_name: str = "model.json") -> ModelCard:
    """Write safetensors weights and the card (with their checksum) into a folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = serialized_weights(network)
    card.sha256 = hashlib.sha256(data).hexdigest()
    (directory / card.weights_file).write_bytes(data)
    card.save(directory / card_name)
    return card
