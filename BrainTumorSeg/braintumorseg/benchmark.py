"""Benchmark on the bundled sample case: stage times, total, peak memory, network precision, N4 shrink.

    braintumorseg-benchmark [--model CARD.json] [--threads 2] [--no-full-fit] [--json OUT.json]

Prints the per-stage times of one end-to-end run with N4 on, the total, the peak resident memory
of the process, N4 seconds per volume, and for one modality N4 fitted on the image shrunk by 4
versus fitted at full resolution: the time ratio and the largest relative difference of the two
corrected images inside the brain (raw, and after matching their global scale, which N4 leaves
free and z-score normalization removes). The full-resolution fit takes minutes: --no-full-fit skips it.
Skull stripping (the brain template registered onto the T1, as --brain-extraction template does; the default
deepbet is measured by `python -m training.brain_extraction_benchmark`): its time against the end-to-end
run's, and the Dice of its brain against the sample's own skull stripping (BraTS-Toolkit).
It also runs the network on the same prepared input in float32 and in the reduced precision the engine
uses by default (bfloat16 on a CPU that computes it natively, float16 on CUDA): time ratio, largest
probability difference and the Dice between the two label maps per region.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .bias import BiasCorrector
from .brain_extraction import AtlasBrainExtractor
from .errors import InputError
from .images import read_image
from .inference import Segmenter, tta_plan
from .metrics import dice, region_scores
from .modalities import MODALITIES
from .modelcard import ModelCard
from .output_paths import write_text_atomic
from .pipeline import Pipeline, SegmentationSettings, model_input_for_case
from .postprocessing import classes_from_probabilities
from .preprocessing import Preprocessor, brain_box, foreground_mask
from .resources import default_model_card, sample_case


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class StageCpuClock:
    """A progress callback that adds up the process CPU time (all threads) spent in each stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: tuple[str, float] | None = None

    def __call__(self, stage: str, _fraction: float) -> None:
        now = time.process_time()
        if self._open and self._open[0] == stage:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._open[1], 3)
            self._open = None
        else:
            self._open = (stage, now)


def end_to_end(card: ModelCard, settings: SegmentationSettings) -> dict:
    """One run of the whole pipeline on the sample case (N4 on), with its stage times."""
    files = sample_case()
    clock = StageCpuClock()
    with tempfile.TemporaryDirectory() as folder:
        start, cpu = time.perf_counter(), time.process_time()
        report = Pipeline(card, settings, clock).segment_files({m: files[m] for m in MODALITIES},
                                                               Path(folder) / "seg.nii.gz")
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"stage_seconds": report.stage_seconds, "stage_cpu_seconds": clock.seconds,
            "total_seconds": round(wall, 3), "total_cpu_seconds": round(cpu, 3), "device": report.device,
            "n4_seconds_per_volume": round(report.stage_seconds.get("bias correction", 0.0) / len(MODALITIES), 3),
            "peak_rss_mb": round(peak_rss_mb(), 1), "volumes_ml": report.volumes_ml}


def precision_comparison(card: ModelCard, settings: SegmentationSettings) -> dict:
    """The network on the sample case's prepared input in float32 and in the default reduced precision (on a
    GPU each after one untimed run, which pays for the kernels' set-up)."""
    images = {m: read_image(path, m) for m, path in sample_case().items() if m in MODALITIES}
    prepared = Preprocessor(settings.preprocess, card.normalization).run(images)
    volume, _ = model_input_for_case(prepared, card)
    runs = {}
    for amp in (False, True):
        segmenter = Segmenter(card, replace(settings.inference, amp=amp))
        if segmenter.device.type != "cpu":
            segmenter.predict(volume)
        start = time.perf_counter()
        probabilities = segmenter.predict(volume)
        runs[segmenter.precision] = (time.perf_counter() - start, probabilities)
    if len(runs) == 1:
        return {"precision": "float32"}
    (_, (base_seconds, base)), (reduced, (seconds, probabilities)) = runs.items()
    spacing = tuple(reversed(card.spacing))
    scores = region_scores(classes_from_probabilities(probabilities, spacing, settings.postprocess, card.threshold),
                           classes_from_probabilities(base, spacing, settings.postprocess, card.threshold), spacing)
    return {"precision": reduced, "float32_seconds": round(base_seconds, 3), "seconds": round(seconds, 3),
            "speedup": round(base_seconds / seconds, 2),
            "max_probability_difference": round(float(np.abs(probabilities - base).max()), 4),
            "dice_against_float32": {r: round(v["dice"], 4) for r, v in scores.items()}}


def n4_comparison(modality: str, corrector: BiasCorrector, full_fit: bool) -> dict:
    """N4 as the pipeline runs it (shrink 4) and, optionally, fitted at full resolution."""
    image = read_image(sample_case()[modality], modality)
    array = sitk.GetArrayFromImage(image)
    mask = foreground_mask({modality: array})
    box = brain_box(mask, image.GetSpacing()[::-1], 8.0)
    array, mask = array[box], mask[box]
    spacing = image.GetSpacing()
    start, cpu = time.perf_counter(), time.process_time()
    shrunk = corrector.correct(array, mask, spacing)
    result = {"modality": modality, "shape_zyx": list(array.shape), "shrink": corrector.settings.shrink,
              "iterations": list(corrector.settings.iterations),
              "shrunk_seconds": round(time.perf_counter() - start, 3),
              "shrunk_cpu_seconds": round(time.process_time() - cpu, 3)}
    if not full_fit:
        return result
    start, cpu = time.perf_counter(), time.process_time()
    full = BiasCorrector(replace(corrector.settings, shrink=1)).correct(array, mask, spacing)
    result["full_seconds"] = round(time.perf_counter() - start, 3)
    result["full_cpu_seconds"] = round(time.process_time() - cpu, 3)
    result["time_ratio_full_over_shrunk"] = round(result["full_seconds"] / result["shrunk_seconds"], 1)
    result["cpu_ratio_full_over_shrunk"] = round(result["full_cpu_seconds"] / result["shrunk_cpu_seconds"], 1)
    inside = mask & (array > 0)
    relative = np.abs(shrunk[inside] - full[inside]) / np.abs(full[inside])
    scale = float(np.median(full[inside] / shrunk[inside]))
    rescaled = np.abs(shrunk[inside] * scale - full[inside]) / np.abs(full[inside])
    result.update(max_relative_difference=round(float(relative.max()), 5),
                  p99_relative_difference=round(float(np.percentile(relative, 99)), 5),
                  global_scale_full_over_shrunk=round(scale, 5),
                  max_relative_difference_scale_matched=round(float(rescaled.max()), 5),
                  p99_relative_difference_scale_matched=round(float(np.percentile(rescaled, 99)), 5))
    return result


def skull_stripping(modality: str = "t1") -> dict:
    """The brain template registered onto one sample sequence: time, and agreement with the sample's own mask."""
    image = read_image(sample_case()[modality], modality)
    stripped = foreground_mask({modality: sitk.GetArrayFromImage(image)})
    start, cpu = time.perf_counter(), time.process_time()
    brain = AtlasBrainExtractor().mask(image)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    return {"modality": modality, "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3),
            "brain_ml": round(float(brain.sum()) * voxel_ml, 1),
            "sample_brain_ml": round(float(stripped.sum()) * voxel_ml, 1),
            "dice_against_sample_mask": round(dice(brain, stripped), 4)}


def environment() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "simpleitk": sitk.Version_VersionString(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "itk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def print_results(results: dict) -> None:
    e2e = results["end_to_end"]
    env = results["environment"]
    print(f"BrainTumorSeg benchmark: sample case TCGA-FG-6692, model {results['model']}, device {e2e['device']}, "
          f"TTA {'on' if results['tta'] else 'off'}, network passes {results['passes']}")
    print(f"  {env['cpu_count']} CPUs, torch threads {env['torch_threads']}, ITK threads {env['itk_threads']}, "
          f"load average {env['load_average_1min']} (other processes slow every number down)")
    print(f"  {'stage':<20} {'wall s':>8} {'CPU s':>8}   (CPU: all threads of this process)")
    for stage, seconds in e2e["stage_seconds"].items():
        print(f"  {stage:<20} {seconds:8.2f} {e2e['stage_cpu_seconds'].get(stage, float('nan')):8.2f}")
    print(f"  {'total':<20} {e2e['total_seconds']:8.2f} {e2e['total_cpu_seconds']:8.2f}")
    print(f"N4 per volume: {e2e['n4_seconds_per_volume']:.2f} s wall (stage time / 4 volumes, corrected two at a time)")
    print(f"peak RSS: {e2e['peak_rss_mb']:.0f} MiB")
    net = results["network_precision"]
    if net["precision"] != "float32":
        agreement = ", ".join(f"{r} {d:.4f}" for r, d in net["dice_against_float32"].items())
        print(f"network on the model grid: float32 {net['float32_seconds']:.2f} s, {net['precision']} "
              f"{net['seconds']:.2f} s ({net['speedup']}x); largest probability difference "
              f"{net['max_probability_difference']:.4f}; label Dice against float32: {agreement}")
    else:
        print("network precision: float32 only (no reduced precision that this device runs natively)")
    strip = results["skull_stripping"]
    print(f"skull stripping ({strip['modality']}, --brain-extraction template): {strip['seconds']:.2f} s wall / "
          f"{strip['cpu_seconds']:.2f} s CPU = {strip['seconds'] / e2e['total_seconds']:.2f}x the end-to-end run; "
          f"brain {strip['brain_ml']:.0f} mL, Dice {strip['dice_against_sample_mask']:.3f} against the sample's own "
          f"skull stripping ({strip['sample_brain_ml']:.0f} mL)")
    n4 = results["n4"]
    print(f"N4 on {n4['modality']} {n4['shape_zyx']}, iterations {n4['iterations']}: shrink {n4['shrink']} "
          f"{n4['shrunk_seconds']:.2f} s wall / {n4['shrunk_cpu_seconds']:.2f} s CPU", end="")
    if "full_seconds" in n4:
        print(f"; full resolution {n4['full_seconds']:.1f} s wall / {n4['full_cpu_seconds']:.1f} s CPU "
              f"(ratio {n4['time_ratio_full_over_shrunk']}x wall, {n4['cpu_ratio_full_over_shrunk']}x CPU)")
        print(f"  largest relative difference inside the brain: {n4['max_relative_difference']:.2%} "
              f"(99th percentile {n4['p99_relative_difference']:.2%}); after matching the global scale "
              f"({n4['global_scale_full_over_shrunk']:.4f}): {n4['max_relative_difference_scale_matched']:.2%} "
              f"(99th percentile {n4['p99_relative_difference_scale_matched']:.2%})")
    else:
        print(" (full-resolution fit skipped)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="braintumorseg-benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", metavar="CARD.json", help="model card (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ITK (default 2)")
    parser.add_argument("--device", default="cpu", help="inference device (default cpu)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                        help="mirror test-time augmentation, as segment does by default")
    parser.add_argument("--modality", choices=MODALITIES, default="t1", help="volume for the N4 comparison")
    parser.add_argument("--no-full-fit", action="store_true", help="skip the slow full-resolution N4 fit")
    parser.add_argument("--json", metavar="OUT.json", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    try:
        card = ModelCard.load(args.model or default_model_card())
        settings = SegmentationSettings()
        settings = replace(settings, inference=replace(settings.inference, device=args.device, tta=args.tta))
        passes = len(tta_plan(tuple(range(len(card.channels))), list(card.channels), card.subset_tta)[0]) \
            if args.tta else 1
        results = {"model": f"{card.name} {card.version}", "tta": args.tta, "passes": passes,
                   "environment": environment(),
                   "end_to_end": end_to_end(card, settings)}
        results["network_precision"] = precision_comparison(card, settings)
        results["skull_stripping"] = skull_stripping()
        results["n4"] = n4_comparison(args.modality, BiasCorrector(settings.preprocess.bias), not args.no_full_fit)
    except InputError as error:
        print(f"braintumorseg-benchmark: error: {error}", file=sys.stderr)
        return 2
    print_results(results)
    if args.json:
        write_text_atomic(json.dumps(results, indent=2) + "\n", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
