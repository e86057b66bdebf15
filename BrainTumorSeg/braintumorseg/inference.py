"""Running the network: device choice, precision, one pass or sliding window, TTA, out-of-memory fallback."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import DivisiblePad

from .errors import InputError
from .labels import REGIONS
from .modelcard import ModelCard, load_model
from .settings import DEVICES

MIN_ROI = 32
MIRRORS = [()] + [axes for n in (1, 2, 3) for axes in itertools.combinations((1, 2, 3), n)]
# The whole tumour is read from FLAIR hyperintensity: for a model card with `subset_tta` (a model trained
# with modality dropout), TTA also averages it over the subsets of the given sequences that keep FLAIR.
WT_KEY = "flair"
# When a 3D T1Gd comes with thick-slice sequences (`core_subsets`), TTA reads the tumour core over the subsets
# that keep T1Gd and FLAIR as well: the same passes, weighted anew. Enhancing tumour stays with the given
# sequences: without the pre-contrast T1, those subsets call enhancement in low-grade cores
# (docs/clinical-benchmark.md).
CORE_KEYS = ("t1c", "flair")


def core_subsets(thick_slices: tuple[str, ...] | list[str], given: tuple[str, ...] | list[str]) -> bool:
    """Whether the core is read over the T1Gd-and-FLAIR subsets: a thin-slice T1Gd beside thick-slice series.
    With a thick T1Gd too (a fully 2D exam) it is not: the raw exam's TC Dice fell 0.82 -> 0.78 with it."""
    return bool(thick_slices) and "t1c" in given and "t1c" not in thick_slices


@dataclass(frozen=True)
class InferenceSettings:
    """Where and how the network runs."""

    device: str = "auto"
    tta: bool = True  # mirrored passes, and passes with subsets of the given sequences (see `tta_plan`)
    overlap: float = 0.5
    amp: bool = True  # reduced precision where the hardware runs it natively (see `reduced_precision`)
    # A volume up to this many times the window along every axis runs in one pass: a brain a few voxels wider
    # than the window would otherwise cost two or four windows per pass (the raw exam with deepbet: 3x the time).
    one_pass_up_to: float = 1.25


def select_device(name: str, allowed: tuple[str, ...] = DEVICES) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU (among the `allowed`); an explicit device must exist."""
    if name not in allowed:
        raise InputError(f"unknown device '{name}'; use one of {', '.join(allowed)}.")
    cuda = torch.cuda.is_available()
    mps = ("mps" in allowed and getattr(torch.backends, "mps", None) is not None
           and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise InputError("--device cuda: PyTorch sees no CUDA GPU here; use --device auto or cpu.")
    if name == "mps" and not mps:
        raise InputError("--device mps: PyTorch sees no Apple GPU here; use --device auto or cpu.")
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


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on the CPU, where oneDNN runs this 3D network 1.7x faster in bfloat16 with it (1.25x in
    float32; same labels); the default layout elsewhere: on CUDA (H100) channels-last made the 15 TTA passes
    slower (0.53 -> 0.59 s), and MPS was not measured."""
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def pad_to_multiple(volume: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Zero-pad (C, z, y, x) at the far end of each axis up to a multiple; return the original shape."""
    return DivisiblePad(multiple, method="end")(volume).as_tensor(), tuple(volume.shape[1:])


def only_channels(volume: torch.Tensor, channels: tuple[int, ...]) -> torch.Tensor:
    """A (channels, z, y, x) volume with every other channel zeroed: those sequences count as not given."""
    keep = torch.zeros(volume.shape[0], 1, 1, 1)
    keep[list(channels)] = 1
    return volume * keep


@dataclass(frozen=True)
class Pass:
    """One forward pass: the channels kept (the others zeroed, as if not given) and the axes mirrored."""

    channels: tuple[int, ...]
    flip: tuple[int, ...]


def keeping(present: tuple[int, ...], keys: tuple[int | None, ...]) -> list[tuple[int, ...]]:
    """The given channels, then their other subsets that keep every key channel (none unless all are given)."""
    if not all(key in present for key in keys):
        return [present]
    return [present] + [s for n in range(len(present) - 1, 0, -1) for s in itertools.combinations(present, n)
                        if all(key in s for key in keys)]


def tta_plan(present: tuple[int, ...], channels: list[str], with_subsets: bool = True,
             core_over_subsets: bool = False) -> tuple[list[Pass], np.ndarray]:
    """Passes and their (passes, regions) weights. The given channels run in the 8 mirrors; `with_subsets`,
    each other subset that keeps FLAIR runs once more (15 passes with all four). WT is the mean over those
    subsets, each the mean of its passes. ET is the mean of the given channels' passes, and so is TC, or with
    `core_over_subsets` the mean over the subsets that keep T1Gd and FLAIR, weighted the same way."""
    index = {name: channels.index(name) if with_subsets and name in channels else None
             for name in (WT_KEY,) + CORE_KEYS}
    subsets = keeping(present, (index[WT_KEY],))
    core = keeping(present, tuple(index[k] for k in CORE_KEYS)) if core_over_subsets else [present]
    given = len(MIRRORS)
    order = [present] * given + subsets[1:]
    passes = [Pass(s, MIRRORS[i % len(MIRRORS)]) for i, s in enumerate(order)]
    weights = np.zeros((len(passes), len(REGIONS)), np.float32)
    for row, one in zip(weights, passes):
        share = 1 / given if one.channels == present else 1.0
        for region, sources in (("WT", subsets), ("TC", core), ("ET", [present])):
            if one.channels in sources:
                row[REGIONS.index(region)] = share / len(sources)
    return passes, weights


@dataclass
class Segmenter:
    """A loaded model that turns normalized model-grid channels into region probabilities."""

    card: ModelCard
    settings: InferenceSettings = InferenceSettings()
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = select_device(self.settings.device)
        self.network = load_model(self.card).to(self.device, memory_format=memory_format(self.device))
        self.roi = list(self.card.roi_size)
        self.one_pass_up_to = self.settings.one_pass_up_to  # 1 once memory ran out: windows of `roi`, then smaller

    @property
    def precision(self) -> str:
        """The number format the network computes in on its current device."""
        return str(compute_dtype(self.device, self.settings.amp)).removeprefix("torch.")

    def predict(self, volume: np.ndarray, check: Callable[[], None] = lambda: None,
                core_over_subsets: bool = False, tta: bool | None = None) -> np.ndarray:
        """Region probabilities (regions, z, y, x) for a (channels, z, y, x) model-grid volume whose
        missing channels are zero; `core_over_subsets`: see `tta_plan` and `core_subsets`; `tta` overrides the
        settings' (one pass when False)."""
        tensor, shape = pad_to_multiple(torch.from_numpy(np.ascontiguousarray(volume, np.float32)),
                                        self.card.divisible_by)
        present = tuple(i for i in range(tensor.shape[0]) if tensor[i].any())
        if self.settings.tta if tta is None else tta:
            passes, weights = tta_plan(present, list(self.card.channels), self.card.subset_tta,
                                       core_over_subsets)
        else:
            passes, weights = [Pass(present, ())], np.ones((1, len(REGIONS)), np.float32)
        total = torch.zeros((len(REGIONS),) + tuple(tensor.shape[1:]))
        for one, weight in zip(passes, weights):
            check()
            x = only_channels(tensor, one.channels)
            x = x.flip(one.flip) if one.flip else x
            probabilities = torch.sigmoid(self._forward_with_fallback(x[None])[0].float())
            probabilities = probabilities.flip(one.flip) if one.flip else probabilities
            total += torch.from_numpy(weight)[:, None, None, None] * probabilities
        return total[:, :shape[0], :shape[1], :shape[2]].numpy()

    def _forward_with_fallback(self, batch: torch.Tensor) -> torch.Tensor:
        while True:
            try:
                return self._forward(batch).cpu()
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                if not _is_out_of_memory(error) or self.device.type == "cpu":
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.one_pass_up_to > 1.0 and any(n > r for n, r in zip(batch.shape[2:], self.roi)):
                    self.one_pass_up_to = 1.0  # the one pass beyond the window failed: the card's windows next
                elif min(self.roi) > MIN_ROI:
                    self.one_pass_up_to = 1.0
                    self.roi = [max(MIN_ROI, r // 2) for r in self.roi]
                else:
                    self.warnings.append(f"{self.device.type} ran out of memory; running on the CPU.")
                    self.device = torch.device("cpu")
                    self.network = self.network.to(self.device, memory_format=memory_format(self.device))
                    self.roi = list(self.card.roi_size)
                    self.one_pass_up_to = self.settings.one_pass_up_to
                    continue
                self.warnings.append(f"{self.device.type} ran out of memory; retrying with {self.roi} windows.")

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device).contiguous(memory_format=memory_format(self.device))
        with autocast(self.device, self.settings.amp):
            if all(n <= r * self.one_pass_up_to for n, r in zip(batch.shape[2:], self.roi)):
                return self.network(batch)
            return sliding_window_inference(batch, self.roi, 1, self.network,
                                            overlap=self.settings.overlap, mode="gaussian")
