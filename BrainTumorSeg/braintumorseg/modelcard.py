"""Model cards: the JSON that says what a set of safetensors weights expects and produces."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from .errors import InputError
from .labels import REGIONS
from .modalities import MODALITIES
from .network import ArchitectureSpec, build_network
from .preprocessing import NormalizationSpec

CARD_FORMAT = 1
MISSING_POLICIES = ("zero",)


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
        data["architecture"] = ArchitectureSpec(**data["architecture"])
        data["normalization"] = NormalizationSpec(**data.get("normalization", {}))
        try:
            card = cls(**data, path=path)
        except TypeError as error:
            raise InputError(f"model card {path} is not valid: {error}") from None
        card.validate()
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
        """Refuse cards that this engine cannot run correctly."""
        if not self.channels or set(self.channels) - set(MODALITIES):
            raise InputError(f"model card channels {self.channels} must be among {list(MODALITIES)}.")
        if self.missing_channels not in MISSING_POLICIES:
            raise InputError(f"model card missing-channel policy '{self.missing_channels}' is unknown.")
        if list(self.regions) != list(REGIONS):
            raise InputError(f"model card regions {self.regions} must be {list(REGIONS)}.")
        if self.normalization.method == "nyul" and set(self.normalization.landmarks) < set(self.channels):
            raise InputError("model card uses Nyúl normalization but lacks landmarks for some channels.")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(card: ModelCard) -> torch.nn.Module:
    """Build the network and load its weights after checking the checksum; no pickle involved."""
    weights = card.weights_path
    if not weights.is_file():
        raise InputError(f"weights file {weights} named by the model card is missing; reinstall the model.")
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
