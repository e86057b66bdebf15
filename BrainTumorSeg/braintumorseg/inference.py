"""Running the network: device choice, precision, one pass or sliding window, mirror TTA, out-of-memory fallback."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from .errors import InputError
from .modelcard import ModelCard, load_model

DEVICES = ("auto", "cpu", "cuda", "mps")
MIN_ROI = 32


@dataclass(frozen=True)
class InferenceSettings:
    """Where and how the network runs."""

    device: str = "auto"
    tta: bool = True
    overlap: float = 0.5
    amp: bool = True  # reduced precision where the hardware runs it natively (see `reduced_precision`)


def select_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device must exist."""
    if name not in DEVICES:
        raise InputError(f"unknown device '{name}'; use one of {', '.join(DEVICES)}.")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise InputError(f"device '{name}' is not available on this machine; use --device auto or cpu.")
    return torch.device(name)


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); emulated bfloat16 is slower."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes)


def reduced_precision(device: torch.device) -> torch.dtype | None:
    """float16 on CUDA, bfloat16 on a CPU that runs it natively, else None (float32)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def compute_dtype(device: torch.device, reduced: bool = True) -> torch.dtype:
    """The device's `reduced_precision` when asked for and there is one, else float32."""
    return (reduced_precision(device) if reduced else None) or torch.float32


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """Autocast to `compute_dtype`; a no-op when that is float32."""
    dtype = compute_dtype(device, enabled)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def pad_to_multiple(volume: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Zero-pad (C, z, y, x) at the far end of each axis up to a multiple; return the original shape."""
    shape = tuple(volume.shape[1:])
    pads = [(-n) % multiple for n in shape]
    padded = F.pad(volume, [p for pad in reversed(pads) for p in (0, pad)])
    return padded, shape


@dataclass
class Segmenter:
    """A loaded model that turns normalized model-grid channels into region probabilities."""

    card: ModelCard
    settings: InferenceSettings = InferenceSettings()
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = select_device(self.settings.device)
        self.network = load_model(self.card).to(self.device)
        self.roi = list(self.card.roi_size)

    @property
    def precision(self) -> str:
        """The number format the network computes in on its current device."""
        return str(compute_dtype(self.device, self.settings.amp)).removeprefix("torch.")

    def predict(self, volume: np.ndarray, check: Callable[[], None] = lambda: None) -> np.ndarray:
        """Region probabilities (regions, z, y, x) for a (channels, z, y, x) model-grid volume."""
        tensor, shape = pad_to_multiple(torch.from_numpy(np.ascontiguousarray(volume, np.float32)),
                                        self.card.divisible_by)
        flips = [()] + ([axes for n in (1, 2, 3) for axes in itertools.combinations((1, 2, 3), n)]
                        if self.settings.tta else [])
        total = None
        for axes in flips:
            check()
            x = tensor.flip(axes) if axes else tensor
            probabilities = torch.sigmoid(self._forward_with_fallback(x[None])[0].float())
            probabilities = probabilities.flip(axes) if axes else probabilities
            total = probabilities if total is None else total + probabilities
        mean = total / len(flips)
        return mean[:, :shape[0], :shape[1], :shape[2]].numpy()

    def _forward_with_fallback(self, batch: torch.Tensor) -> torch.Tensor:
        while True:
            try:
                return self._forward(batch).cpu()
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                if not _is_out_of_memory(error) or self.device.type == "cpu":
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if min(self.roi) > MIN_ROI:
                    self.roi = [max(MIN_ROI, r // 2) for r in self.roi]
                    self.warnings.append(f"{self.device.type} ran out of memory; retrying with "
                                         f"{self.roi} windows.")
                else:
                    self.warnings.append(f"{self.device.type} ran out of memory; running on the CPU.")
                    self.device = torch.device("cpu")
                    self.network = self.network.to(self.device)
                    self.roi = list(self.card.roi_size)

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        with autocast(self.device, self.settings.amp):
            if all(n <= r for n, r in zip(batch.shape[2:], self.roi)):
                return self.network(batch)
            return sliding_window_inference(batch, self.roi, 1, self.network,
                                            overlap=self.settings.overlap, mode="gaussian")
