"""`benchmark`: training throughput (patches/s, s/step) with and without mixed precision, on synthetic data."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from braintumorseg.inference import autocast
from braintumorseg.network import build_network

from .data import CachedCase, PatchSampler, SamplerSettings
from .losses import RegionLoss
from .train import TrainConfig, check_config, describe_device, training_device


@dataclass(frozen=True)
class BenchmarkSettings:
    """The training step to time: the default run's network, batch and patch unless changed."""

    batch_size: int = 2
    patch: int = 64
    init_filters: int = 16
    steps: int = 6
    warmup: int = 2
    threads: int = 0
    device: str = "auto"

    def config(self) -> TrainConfig:
        """The training settings these benchmark settings stand for."""
        return TrainConfig(cache="", out="", init_filters=self.init_filters, patch=self.patch,
                           batch_size=self.batch_size, steps=self.steps, threads=self.threads)


def synthetic_cases(count: int = 2, shape: tuple[int, int, int] = (80, 96, 80), seed: int = 0) -> list[CachedCase]:
    """Model-grid cases in memory: noise 'brain' with a bright ellipsoid lesion and its regions."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = z ** 2 + y ** 2 + x ** 2 < 0.8
    cases = []
    for index in range(count):
        lesion = (z - 0.2) ** 2 + (y + 0.1 * index) ** 2 + x ** 2 < 0.08
        core = (z - 0.2) ** 2 + (y + 0.1 * index) ** 2 + x ** 2 < 0.03
        image = np.where(brain, rng.normal(0, 1, (4, *shape)), 0) + 2 * lesion
        regions = np.stack([lesion, core, core & (rng.random(shape) < 0.5)]).astype(np.uint8)
        cases.append(CachedCase(f"synthetic{index}", image.astype(np.float16), regions, np.ones(4, bool),
                                np.ones(3, bool), np.argwhere(lesion)))
    return cases


class TimedTraining:
    """One training set-up (network, optimizer, sampler) whose steps can be timed one at a time."""

    def __init__(self, settings: BenchmarkSettings, amp: bool, device: torch.device):
        config = settings.config()
        torch.manual_seed(0)
        self.settings, self.amp, self.device = settings, amp, device
        self.model = build_network(config.architecture()).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr)
        self.sampler = PatchSampler(synthetic_cases(), SamplerSettings(settings.patch), seed=0)
        self.loss = RegionLoss(config.loss)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp)

    def step(self, step: int) -> tuple[float, float]:
        """Seconds for sampling + augmentation, and for the whole step (forward, backward, update)."""
        start = time.perf_counter()
        image, target, present = (t.to(self.device) for t in self.sampler.batch(step, self.settings.batch_size))
        sampled = time.perf_counter()
        with autocast(self.device, self.amp):
            logits = self.model(image)
        loss = self.loss(logits, target, present)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return sampled - start, time.perf_counter() - start


def run_benchmark(settings: BenchmarkSettings, log=print) -> dict[str, dict[str, float]]:
    """Time fp32 and mixed precision (bf16 on CPU, fp16 on CUDA) with alternating steps, print medians."""
    check_config(settings.config())
    device = training_device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda  # as train() does
    name = describe_device(device, 1) + ("" if cuda else f" ({os.cpu_count()} cores)")
    log(f"training step: SegResNet init_filters {settings.init_filters}, batch {settings.batch_size}, "
        f"patch {settings.patch}^3, median of {settings.steps} steps after {settings.warmup} warm-up, on {name}")
    log("note: steps alternate between the two precisions so that other load on the machine (e.g. a "
        "training run) affects both alike; it still slows both down.")
    runs = {"fp32": TimedTraining(settings, False, device),
            ("fp16" if cuda else "bf16") + " autocast": TimedTraining(settings, True, device)}
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
    for step in range(settings.warmup + settings.steps):
        for label, run in runs.items():
            measured = run.step(step)
            if step >= settings.warmup:
                times[label].append(measured)
    results = {}
    for label, measured in times.items():
        per_step = float(np.median([total for _, total in measured]))
        results[label] = {"s_per_step": per_step, "patches_per_s": settings.batch_size / per_step,
                          "sampling_s_per_step": float(np.median([s for s, _ in measured])),
                          "network_s_per_step": float(np.median([total - s for s, total in measured]))}
        r = results[label]
        log(f"{label:>14}: {r['s_per_step']:.3f} s/step, {r['patches_per_s']:.2f} patches/s "
            f"(sampling and augmentation {r['sampling_s_per_step']:.3f} s, network {r['network_s_per_step']:.3f} s)")
    fp32, mixed = results.values()
    log(f"mixed precision speed-up over fp32: {fp32['s_per_step'] / mixed['s_per_step']:.2f}x per step, "
        f"{fp32['network_s_per_step'] / mixed['network_s_per_step']:.2f}x for the network alone "
        f"(train --loader-workers N moves sampling off the step)")
    return results
