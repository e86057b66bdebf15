"""Cohort throughput: cases per hour of `batch` one case after another and with worker processes, same session.

    python -m braintumorseg.cohort_benchmark CASES_DIR [--count 4] [--workers 0 1 2] [--rounds 1]
                                             [--model CARD.json] [--threads N] [--json OUT.json]

Runs the first `count` cases found below CASES_DIR once per worker count (0 = this process alone, one case
after another; N = N processes preparing cases while this one runs the network), each into a fresh folder,
and prints wall time, cases per hour, the speed-up over the first count and the load average after each
run (above the CPU count, other programs shared the CPU and the numbers are not comparable). The labels of every run must
equal the first run's, voxel for voxel; a difference is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .batch import find_batch_cases
from .cohort import Threads, run_cohort
from .settings import CohortSettings
from .output_paths import write_text_atomic
from .modelcard import ModelCard
from .pipeline import Pipeline, SegmentationSettings, models_for, models_in_words


def labels_of(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


def cohort_throughput(cases_dir: Path, count: int, workers: Sequence[int], card: ModelCard,
                      settings: SegmentationSettings = SegmentationSettings(), rounds: int = 1,
                      native_card: ModelCard | None = None) -> list[dict]:
    """`rounds` runs of the first `count` cases per worker count, the order reversed every other round (so that
    a load from other programs falls on each count alike); wall seconds and cases per hour of each run."""
    cases = find_batch_cases(cases_dir)[:count]
    rows, reference = [], None
    order = [n for r in range(rounds) for n in (workers if r % 2 == 0 else list(reversed(workers)))]
    with tempfile.TemporaryDirectory() as scratch:
        for run, n in enumerate(order):
            out = Path(scratch) / f"run-{run}-workers-{n}"
            start = time.perf_counter()
            summary = run_cohort(cases, out, Pipeline(card, settings, native_card=native_card),
                                 CohortSettings(workers=n))
            wall = time.perf_counter() - start
            if summary.failed:
                raise RuntimeError(f"{len(summary.failed)} case(s) failed: {summary.failed[0].message}")
            labels = labels_of(out)
            reference = reference or labels
            same = labels.keys() == reference.keys() and all(np.array_equal(labels[k], reference[k])
                                                             for k in reference)
            if not same:
                raise RuntimeError(f"the labels with {n} workers differ from those with {workers[0]}.")
            rows.append({"workers": n, "cases": len(cases), "seconds": round(wall, 1),
                         "cases_per_hour": round(len(cases) * 3600 / wall, 1),
                         "load_average_1min_after": round(os.getloadavg()[0], 2)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m braintumorseg.cohort_benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("cases", type=Path, help="folder of cases (BraTS names or an nnU-Net dataset)")
    parser.add_argument("--count", type=int, default=4, help="cases to run (default %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default 0 1 2)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per worker count, in alternating order; the "
                        "best of each count is the one least disturbed by other programs (default %(default)s)")
    parser.add_argument("--model", help="model card (default: the shipped model)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all)")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        Threads(args.threads, args.threads).apply()
    card, native_card = models_for(args.model)
    threads = Threads.of_this_process()
    print(f"{models_in_words(card, native_card)} on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {threads.torch} threads, ITK {threads.itk} threads")
    rows = cohort_throughput(args.cases, args.count, args.workers, card, rounds=args.rounds, native_card=native_card)
    for row in rows:
        print(f"workers {row['workers']}: {row['cases']} cases in {row['seconds']:.1f} s = "
              f"{row['cases_per_hour']:.1f} cases/hour (load average {row['load_average_1min_after']:.1f} after; "
              f"above {os.cpu_count()}, other programs shared the CPU)")
    best = {n: max(r["cases_per_hour"] for r in rows if r["workers"] == n) for n in args.workers}
    print("best of each: " + ", ".join(f"workers {n} {v:.1f} cases/hour (x{v / best[args.workers[0]]:.2f})"
                                       for n, v in best.items()))
    print("labels identical across worker counts")
    if args.json:
        write_text_atomic(json.dumps(rows, indent=2) + "\n", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
