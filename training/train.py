"""`train` and `finetune`: region-based training with validation, checkpoints, exact resume and DDP."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from braintumorseg.errors import InputError
from braintumorseg.inference import autocast, only_channels, pad_to_multiple, select_device
from braintumorseg.labels import REGIONS
from braintumorseg.network import ArchitectureSpec, build_network
from braintumorseg.output_paths import write_text_atomic
from braintumorseg.settings import TRAINING_DEVICES
from safetensors import SafetensorError
from torch.nn.parallel import DistributedDataParallel

from .augment import ClinicalAugmentSettings
from .averaging import save_snapshot
from .checkpoint import load_checkpoint, model_weights, save_checkpoint, weights_origin
from .data import CachedCase, PatchSampler, SamplerSettings, load_cases, read_manifest, step_batches
from .losses import RegionLoss

# Modality subsets validated besides all four (indices in t1, t1c, t2, flair order).
VALIDATION_SUBSETS = {"all": (0, 1, 2, 3), "flair+t1c": (1, 3), "flair+t1": (0, 3), "flair": (3,)}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with every checkpoint)."""

    cache: str
    out: str
    validation: list[str] = field(default_factory=list)
    steps: int = 3000
    batch_size: int = 2
    patch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup: int = 100
    init_filters: int = 16
    loss: str = "dice_bce"
    foreground_fraction: float = 0.67
    modality_dropout: float = 0.5
    augmentation: str = "standard"
    clinical_share: float = ClinicalAugmentSettings.probability  # `clinical`: share of patches made clinical-like
    thick_share: float = ClinicalAugmentSettings.thick_prob  # `clinical`: their T1, T2, FLAIR given thick slices
    val_every: int = 250
    checkpoint_every: int = 50
    snapshot_every: int = 0
    seed: int = 0
    amp: bool = True
    threads: int = 0
    loader_workers: int = 0
    init_weights: str = ""
    device: str = "auto"  # auto: this process's CUDA GPU when PyTorch sees one, else the CPU

    def architecture(self) -> ArchitectureSpec:
        return ArchitectureSpec("SegResNet", dict(
            spatial_dims=3, in_channels=4, out_channels=len(REGIONS), init_filters=self.init_filters,
            blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1]))


def check_config(config: TrainConfig, until: int = 0) -> None:
    """Refuse settings a run cannot train with, naming the command-line flag to change."""
    counts = {"--steps": (config.steps, 1), "--batch-size": (config.batch_size, 1),
              "--val-every": (config.val_every, 1), "--checkpoint-every": (config.checkpoint_every, 1),
              "--snapshot-every": (config.snapshot_every, 0), "--threads": (config.threads, 0),
              "--loader-workers": (config.loader_workers, 0), "--until": (until, 0)}
    for flag, (value, least) in counts.items():
        if value < least:
            raise InputError(f"{flag} is a whole number of {least} or more, not {value}.")
    if config.patch < 16 or config.patch % 8:
        raise InputError(f"--patch must be a multiple of 8 of at least 16 voxels (the network halves it three "
                         f"times), not {config.patch}.")
    if config.init_filters < 8 or config.init_filters % 8:
        raise InputError(f"--init-filters must be a multiple of 8 (SegResNet's group norm uses 8 groups), "
                         f"not {config.init_filters}.")
    if not (math.isfinite(config.lr) and config.lr >= 0):
        raise InputError(f"--lr is a learning rate of 0 or more (e.g. 2e-3), not {config.lr}.")
    for flag, share in (("--modality-dropout", config.modality_dropout), ("--clinical-share", config.clinical_share),
                        ("--thick-share", config.thick_share)):
        if not 0.0 <= share <= 1.0:
            raise InputError(f"{flag} is a share between 0 and 1, not {share}.")


def start_weights(config: TrainConfig, model: torch.nn.Module) -> None:
    """Load the weights a finetune starts from, or say why they cannot start this run's network."""
    path = Path(config.init_weights)
    if not path.is_file():
        raise InputError(f"--weights {path} not found; give a model card (.json), its .safetensors weights or "
                         "a run's checkpoint.safetensors.")
    try:
        weights = model_weights(path)
    except (OSError, SafetensorError) as error:
        raise InputError(f"--weights {path} is not a safetensors file ({error}); give a model card (.json), "
                         "its .safetensors weights or a run's checkpoint.safetensors.") from error
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise InputError(f"the --weights {path} do not fit this run's network (SegResNet, {config.init_filters} "
                         "filters): their tensors have other names or shapes. Give the --init-filters of the "
                         "model they belong to.") from error


# Settings a resumed run may change: where things are (the start weights too, read only at step 0) and how
# many processes prepare the batches.
RESUMABLE_CHANGES = {"cache", "out", "init_weights", "threads", "loader_workers", "device"}


def _shown(value: object) -> str:
    return f"{len(value)} cases" if isinstance(value, list) else str(value)


def check_resume(config: TrainConfig, saved: dict) -> None:
    """Refuse to resume a run with settings that would make it another run."""
    current = asdict(config)
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and k in saved and saved[k] != current[k])
    if changed:
        listed = "; ".join(f"{k}: {_shown(saved[k])} there, {_shown(current[k])} now" for k in changed)
        raise InputError(f"{config.out} holds a run started with other settings ({listed}); rerun with its "
                         "settings (its config.json) to resume it, or give another --out for a new run.")


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def validate(model: torch.nn.Module, cases: list[CachedCase], device: torch.device, amp: bool) -> dict[str, float]:
    """Dice per region on the model grid for each modality subset (whole volumes, one pass)."""
    model.eval()
    scores: dict[str, list[float]] = {}
    for case in cases:
        volume = torch.from_numpy(case.image.astype(np.float32))
        for subset, channels in VALIDATION_SUBSETS.items():
            padded, shape = pad_to_multiple(only_channels(volume, channels), 8)
            with autocast(device, amp):
                logits = model(padded[None].to(device))[0].float().cpu()
            prediction = logits[:, :shape[0], :shape[1], :shape[2]] > 0
            for index, region in enumerate(REGIONS):
                if subset != "all" and region != "WT":
                    continue
                truth = torch.from_numpy(case.regions[index] > 0)
                total = prediction[index].sum() + truth.sum()
                dice = 1.0 if total == 0 else float(2 * (prediction[index] & truth).sum() / total)
                scores.setdefault(f"{subset}/{region}", []).append(dice)
    model.train()
    return {k: float(np.mean(v)) for k, v in scores.items()}


def selection_score(metrics: dict[str, float]) -> float:
    """Best-model criterion: mean of all-modality WT/TC/ET and WT of the FLAIR subsets."""
    keys = ["all/WT", "all/TC", "all/ET", "flair+t1c/WT", "flair+t1/WT", "flair/WT"]
    return float(np.mean([metrics[k] for k in keys]))


def drop_rows_after(log_path: Path, step: int) -> None:
    """Forget the log rows a killed run wrote after its last checkpoint, so a resume logs each step once."""
    with log_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    if len(kept) != len(rows):
        buffer = io.StringIO()
        csv.writer(buffer).writerows(kept)
        write_text_atomic(buffer.getvalue(), log_path)


def plot_curves(log_path: Path, out: Path) -> None:
    """Loss and validation Dice against step, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [int(r["step"]) for r in rows]
    left.plot(steps, [float(r["loss"]) for r in rows], lw=0.6)
    left.set(xlabel="step", ylabel="training loss", title="loss")
    validated = [r for r in rows if r.get("all/WT")]
    for key in ("all/WT", "all/TC", "all/ET", "flair/WT"):
        right.plot([int(r["step"]) for r in validated], [float(r[key]) for r in validated], marker="o", label=key)
    right.set(xlabel="step", ylabel="Dice", title="validation", ylim=(0, 1))
    right.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def mixed_precision(config: TrainConfig, device: torch.device) -> bool:
    """AMP as configured, except bf16 on CPU when the deepest level is 2 voxels wide.

    PyTorch's CPU bf16 Conv3d weight gradient returns NaN at random for 2×2×2 inputs with 64+
    channels (seen with torch 2.13), which a 16-voxel patch reaches after three downsamplings.
    """
    levels = len(config.architecture().kwargs["blocks_down"])
    return config.amp and not (device.type == "cpu" and config.patch >> (levels - 1) <= 2)


def describe_device(device: torch.device, world: int) -> str:
    """What a run trains on, for the model card: the GPU's name or the CPU threads, and the process count."""
    threads = torch.get_num_threads()
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {threads} thread{'s' if threads > 1 else ''}")
    return name if world == 1 else f"{world} processes on {name}"


def training_device(name: str) -> torch.device:
    """The engine's device choice without MPS; a CUDA device is this process's GPU (LOCAL_RANK under torchrun)."""
    device = select_device(name, TRAINING_DEVICES)
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if device.type == "cuda" else device


def _distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's collectives (the final barrier too) use this process's GPU
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def replicas_identical(model: torch.nn.Module, world: int) -> bool:
    """True when every DDP process holds exactly the same weights (compared with all_gather)."""
    flat = torch.cat([p.detach().flatten().double() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def train(config: TrainConfig, until: int = 0) -> dict:
    """Train (or resume) until `config.steps`, or stop early at step `until` (resume later)."""
    device = training_device(config.device)
    rank, world = _distributed(device)
    torch.manual_seed(config.seed)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # the patch size is fixed: tune convolutions once
    out = Path(config.out)
    check_config(config, until)
    names = [e["name"] for e in read_manifest(Path(config.cache))["cases"]]
    unknown = set(config.validation) - set(names)
    if unknown:
        raise InputError(f"validation cases not in the cache {config.cache}: {', '.join(sorted(unknown))}; "
                         "give a --splits file whose 'validation' list names cases of this cache.")
    if not set(names) - set(config.validation):
        raise InputError(f"every case of the cache {config.cache} is a validation case; leave some for training.")
    model = build_network(config.architecture()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    checkpoint = out / "checkpoint"
    meta = {"step": 0, "best_score": -1.0, "best_step": 0, "seconds": 0.0}
    if checkpoint.with_suffix(".json").exists():
        check_resume(config, json.loads(checkpoint.with_suffix(".json").read_text()).get("config", {}))
        meta = load_checkpoint(checkpoint, model, optimizer)
        if rank == 0:
            print(f"resumed from step {meta['step']}", flush=True)
    elif config.init_weights:
        start_weights(config, model)
        meta["started_from"] = weights_origin(config.init_weights)
    train_cases = load_cases(Path(config.cache), [n for n in names if n not in config.validation])
    val_cases = load_cases(Path(config.cache), config.validation) if rank == 0 else []
    if config.threads:
        torch.set_num_threads(config.threads)
    out.mkdir(parents=True, exist_ok=True)
    hardware = describe_device(device, world)
    if hardware not in meta.setdefault("devices", []):
        meta["devices"].append(hardware)
    if world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    core = model.module if world > 1 else model
    clinical = ClinicalAugmentSettings(probability=config.clinical_share, thick_prob=config.thick_share)
    sampler = PatchSampler(train_cases, SamplerSettings(config.patch, config.foreground_fraction,
                                                        config.modality_dropout, config.augmentation, clinical),
                           config.seed, rank)
    loss_fn = RegionLoss(config.loss)
    amp = mixed_precision(config, device)
    if config.amp and not amp and rank == 0:
        print("note: bf16 autocast is off for this small patch on the CPU (PyTorch bug); training in fp32.")
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp)
    if meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    log_path = out / "log.csv"
    fields = ["step", "loss", "lr", "seconds"] + [f"{s}/{r}" for s in VALIDATION_SUBSETS for r in REGIONS
                                                  if s == "all" or r == "WT"]
    if rank == 0:
        if log_path.exists():
            drop_rows_after(log_path, meta["step"])
        else:
            with log_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(fields)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    model.train()
    step = meta["step"]
    started = time.perf_counter() - meta["seconds"]
    last = min(config.steps, until) if until > 0 else config.steps
    batches = step_batches(sampler, step, last, config.batch_size, config.loader_workers, device.type == "cuda")
    while step < last:
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        image, target, present = (t.to(device, non_blocking=True) for t in next(batches))
        with autocast(device, amp):
            logits = model(image)
        loss = loss_fn(logits, target, present)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        if rank != 0:
            continue
        row = {"step": step, "loss": f"{loss.item():.5f}", "lr": f"{lr:.6g}",
               "seconds": f"{time.perf_counter() - started:.1f}"}
        if step % config.val_every == 0 or step == config.steps:
            metrics = validate(core, val_cases, device, amp) if val_cases else {}
            row.update({k: f"{v:.4f}" for k, v in metrics.items()})
            meta["last_metrics"] = metrics
            if metrics and selection_score(metrics) > meta["best_score"]:
                meta.update(best_score=selection_score(metrics), best_step=step, best_metrics=metrics)
                save_checkpoint(out / "best", core, optimizer, dict(meta, step=step))
            print(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
        with log_path.open("a", newline="") as handle:
            csv.DictWriter(handle, fields).writerow(row)
        if step % config.checkpoint_every == 0 or step == last or "all/WT" in row:
            meta.update(step=step, seconds=time.perf_counter() - started, config=asdict(config),
                        scaler=scaler.state_dict())
            save_checkpoint(checkpoint, core, optimizer, meta)
        if config.snapshot_every and step % config.snapshot_every == 0:
            save_snapshot(out, core, step)
        if "all/WT" in row:
            plot_curves(log_path, out / "curves.png")
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {time.perf_counter() - started:.0f}s", flush=True)
    if world > 1:
        identical = replicas_identical(core, world)
        if rank == 0:
            meta["replicas_identical"] = identical
            save_checkpoint(checkpoint, core, optimizer, meta)
        dist.barrier()
        dist.destroy_process_group()
        if not identical:
            raise RuntimeError("the DDP replicas ended with different weights; do not use this run.")
    return meta
