"""Benchmark of the RANO measurements and of a comparison of two exams, on the bundled sample case.

    braintumorseg-rano-benchmark [--threads 2] [--labels SEG.nii.gz] [--repeats 5] [--json OUT.json]

Prints: the time to measure the sample's consensus label (median of the repeats; what the segment command adds
after post-processing), and that of any --labels given on the same T1Gd grid (e.g. the demo's segmentation);
then a comparison of the sample with itself moved by a known rigid transform (4° about z, 65 mm; geometry only,
no resampling): the registration time, the transform found, the total, the changes (0 %) and the categories;
and the registration of the same pair at full resolution with the engine's default registration settings, for
the time and the transform against the comparison's (on images subsampled by 2).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .compare import CompareSettings, Exam, compare_exams, load_exam, register_follow_up
from .metrics import read_label_map
from .output_paths import write_text_atomic
from .rano import measure_lesions
from .registration import RegistrationSettings
from .resources import sample_case

KNOWN_ROTATION_DEGREES = 4.0
KNOWN_TRANSLATION_MM = (50.0, -40.0, 10.0)


def time_measurements(classes: np.ndarray, image: sitk.Image, repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = measure_lesions(classes, image)
        seconds.append(time.perf_counter() - start)
    return {"median_seconds": round(statistics.median(seconds), 3), "max_seconds": round(max(seconds), 3),
            "lesions": len(result.lesions), "sum_of_products_mm2": result.sum_of_products_mm2}


def moved(exam: Exam) -> Exam:
    """The exam's voxels moved by the known rigid transform (a new geometry, no resampling): rotated about the
    grid's origin, then translated."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.0, 0.0, math.radians(KNOWN_ROTATION_DEGREES))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3) @ np.array(exam.labels.GetDirection()).reshape(3, 3)
    images = []
    for image in (sitk.Image(exam.labels), sitk.Image(exam.image)):
        image.SetOrigin((np.array(image.GetOrigin()) + KNOWN_TRANSLATION_MM).tolist())
        image.SetDirection(direction.ravel().tolist())
        images.append(image)
    return Exam(exam.classes, images[0], images[1], "sample moved")


def comparison_benchmark() -> dict:
    files = sample_case()
    baseline = load_exam(files["label"], files["t1c"], "brats2021", "baseline")
    follow_up = moved(baseline)
    comparison = compare_exams(baseline, follow_up)
    default = replace(CompareSettings(), registration=RegistrationSettings(), registration_subsample=1)
    start = time.perf_counter()
    _, engine_default = register_follow_up(baseline, follow_up, default)
    engine_default["seconds"] = round(time.perf_counter() - start, 2)
    return {"total_seconds": comparison.seconds, "registration": comparison.registration,
            "engine_default_registration": engine_default,
            "known_rotation_degrees": KNOWN_ROTATION_DEGREES, "sum_change_percent": comparison.sum_change_percent,
            "enhancing_change_percent": comparison.enhancing_change_percent,
            "matches": [m.kind for m in comparison.matches],
            "bidimensional": comparison.bidimensional.category, "volumetric": comparison.volumetric.category}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="braintumorseg-rano-benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="ITK threads (default 2)")
    parser.add_argument("--labels", nargs="*", default=[], metavar="SEG", help="more label maps (BraTS 2021 labels)")
    parser.add_argument("--repeats", type=int, default=5, help="measurement repeats (default 5)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    results: dict = {"measurements": {}}
    for path in [str(sample_case()["label"])] + list(args.labels):
        classes, image = read_label_map(path, "brats2021", "labels")
        results["measurements"][path] = numbers = time_measurements(classes, image, args.repeats)
        print(f"measure {path}: {numbers['median_seconds']:.3f} s median (max {numbers['max_seconds']:.3f}), "
              f"{numbers['lesions']} lesion(s), sum of products {numbers['sum_of_products_mm2']:.0f} mm²")
    results["comparison"] = compared = comparison_benchmark()
    registration, default = compared["registration"], compared["engine_default_registration"]
    print(f"compare (sample vs itself moved {KNOWN_ROTATION_DEGREES:g}° about z and {KNOWN_TRANSLATION_MM} mm): "
          f"{compared['total_seconds']:.2f} s in all, registration {registration['seconds']:.2f} s (rotation found "
          f"{registration['rotation_degrees']}°, translation {registration['translation_mm']} mm); sum of products "
          f"{compared['sum_change_percent']:+.2f} %, enhancing {compared['enhancing_change_percent']:+.2f} %; lesions "
          f"{compared['matches']}; bidimensional {compared['bidimensional']}, volumetric {compared['volumetric']}")
    print(f"the engine's default registration at full resolution on the same pair: {default['seconds']:.2f} s, rotation "
          f"{default['rotation_degrees']}°, translation {default['translation_mm']} mm")
    if args.json:
        write_text_atomic(json.dumps(results, indent=2) + "\n", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
