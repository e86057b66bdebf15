"""The sequence check measured: swapped sequences flagged, correctly named cases left alone.

    python -m training.sequence_check_benchmark [--calibrate] [--cache DIR] [--json OUT.json]

Every complete four-sequence case below ../shared/data/brats2018 and ~/brats-more (or --roots) is
prepared as the engine prepares it (aligned, masked, N4, z-scored), and its channels kept on the check's
2 mm sampling grid in --cache. --calibrate fits the contrast model on the training cases only (not the
default model card's validation cases, nor the bundled sample) and writes it into the engine's resources;
its margin is the largest log-probability a correctly named training case gains by another assignment in a
leave-one-case-out fit, plus 1. Then, on the validation cases, every pairwise swap of two sequences (6 per
case) and the correct assignment are checked: the table gives the share flagged per swap and the false
alarms; the raw exam (registered, skull stripped), the bundled sample and the unlabelled four-sequence
cases are checked for false alarms too. The names check runs on each validation case's files with every
pairwise swap of the flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from braintumorseg.cases import find_cases
from braintumorseg.images import read_image
from braintumorseg.modalities import MODALITIES, SHORT_NAMES
from braintumorseg.modelcard import ModelCard
from braintumorseg.preprocessing import PreprocessSettings, Preprocessor
from braintumorseg.resources import default_model_card, sample_case
from braintumorseg.sequence_check import (CONTRAST_MODEL, FEATURES, ContrastModel, SequenceChecker,
                                          contrast_features, most_likely_assignment, name_problems, sampled)

from .native_exam import RAW_EXAM, SHARED_DATA, raw_exam_files

ROOTS = (SHARED_DATA / "brats2018", Path.home() / "brats-more")  # get_more_cases.sh extracts to ~/brats-more
EXTRA = (SHARED_DATA / "unlabeled_4modal", SHARED_DATA / "pseudo_4modal")
SWAPS = tuple(combinations(MODALITIES, 2))


def complete_cases(roots) -> dict[str, dict[str, Path]]:
    """Case name -> modality -> file, for the cases that have all four sequences."""
    found = {}
    for root in roots:
        if Path(root).is_dir():
            for case in find_cases(root):
                if set(case.inputs) == set(MODALITIES):
                    found[case.name] = dict(case.inputs)
    return found


FAST = PreprocessSettings(bias_correction=False)  # for calibration: N4 changes these statistics little


def prepared_sample(name: str, files: dict[str, str | Path], cache: Path, settings=PreprocessSettings()) -> dict:
    """The case's channels and mask on the check's sampling grid (cached), and the seconds the check takes."""
    path = cache / f"{name}{'' if settings.bias_correction else '-noN4'}.npz"
    if not path.is_file():
        images = {m: read_image(p, m) for m, p in files.items()}
        prepared = Preprocessor(settings).run(images)
        start = time.perf_counter()
        channels, mask, spacing = sampled(prepared.channels, prepared.mask, prepared.spacing_zyx)
        contrast_features(channels, mask, spacing)
        seconds = time.perf_counter() - start
        np.savez_compressed(path, mask=mask, spacing=np.array(spacing), seconds=seconds,
                            **{m: a.astype(np.float16) for m, a in channels.items()})
    data = np.load(path)
    channels = {m: data[m].astype(np.float32) for m in MODALITIES if m in data}
    return {"channels": channels, "mask": data["mask"], "spacing": tuple(data["spacing"]),
            "seconds": float(data["seconds"])}


def features_of(case: dict) -> dict[str, np.ndarray]:
    return contrast_features(case["channels"], case["mask"], case["spacing"])


def fit(features: dict[str, dict[str, np.ndarray]], margin: float = 0.0) -> ContrastModel:
    samples = [(f[m], m) for f in features.values() for m in MODALITIES]
    return ContrastModel.fit(np.stack([s for s, _ in samples]), [m for _, m in samples], margin)


def gains(model: ContrastModel, features: dict[str, np.ndarray], swap: tuple[str, str] | None) -> tuple[list, float]:
    """What the check concludes when the images of `swap` are given to each other's flags."""
    given = dict(features)
    if swap:
        a, b = swap
        given[a], given[b] = features[b], features[a]
    flags = list(MODALITIES)
    log_p = model.log_probabilities(np.stack([given[m] for m in flags]))
    return most_likely_assignment(log_p, flags, model.classes)


def calibrate(train: dict[str, dict[str, np.ndarray]]) -> ContrastModel:
    """The model fitted on all training cases, its margin from a leave-one-case-out fit."""
    worst = 0.0
    for name in train:
        held_out = fit({k: v for k, v in train.items() if k != name})
        worst = max(worst, gains(held_out, train[name], None)[1])
    model = fit(train, margin=round(worst + 1.0, 2))
    print(f"calibrated on {len(train)} training cases; leave-one-out worst gain of a correct case {worst:.2f}, "
          f"margin {model.margin}")
    return model


def name_check_rate(cases: dict[str, dict[str, Path]]) -> tuple[int, int, int]:
    """(swaps caught by the names check, swaps tried, false alarms on the correct files)."""
    caught = tried = false = 0
    for files in cases.values():
        false += bool(name_problems(files))
        for a, b in SWAPS:
            given = dict(files)
            given[a], given[b] = files[b], files[a]
            tried += 1
            caught += bool(name_problems(given))
    return caught, tried, false


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.sequence_check_benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--roots", nargs="+", default=[str(r) for r in ROOTS], help="folders of labelled cases")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "braintumorseg" / "sequence-check"),
                        help="cache of prepared cases (outside the repository)")
    parser.add_argument("--calibrate", action="store_true", help=f"fit the model and write {CONTRAST_MODEL.name}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="OUT.json", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    validation = set(ModelCard.load(default_model_card()).training["validation_cases"])
    cases = complete_cases(args.roots)
    prepared = {name: prepared_sample(name, files, cache, FAST) for name, files in cases.items()}
    train = {name: features_of(case) for name, case in prepared.items() if name not in validation}
    # the validation cases as the pipeline prepares them (N4 on)
    prepared.update({name: prepared_sample(name, files, cache) for name, files in cases.items() if name in validation})
    features = {name: features_of(case) for name, case in prepared.items()}
    if args.calibrate:
        model = calibrate(train)
        CONTRAST_MODEL.parent.mkdir(parents=True, exist_ok=True)
        CONTRAST_MODEL.write_text(model.to_json() + "\n")
    model = ContrastModel.load()
    checker = SequenceChecker()
    checker._model = model

    rows = {f"{SHORT_NAMES[a]}<->{SHORT_NAMES[b]}": [] for a, b in SWAPS}
    false_alarms, correct_gains = [], {}
    for name in sorted(validation & set(features)):
        _, gain = gains(model, features[name], None)
        correct_gains[name] = round(gain, 2)
        if gain > model.margin:
            false_alarms.append(name)
        for (a, b), key in zip(SWAPS, rows):
            rows[key].append(gains(model, features[name], (a, b))[1])
    others = {f"sample {sample_case()['t1'].parent.name}": {m: p for m, p in sample_case().items() if m != "label"}}
    others.update({f"unlabelled {k}": v for k, v in complete_cases(EXTRA).items()})
    other_gains = {name: round(gains(model, features_of(prepared_sample(name.replace(" ", "_"), files, cache)),
                                     None)[1], 2) for name, files in others.items()}
    if RAW_EXAM.is_dir():
        raw = prepared_sample("raw_exam_TCGA-FG-6692", raw_exam_files(), cache, PreprocessSettings(register=True))
        other_gains["raw exam TCGA-FG-6692 (registered, skull stripped)"] = round(gains(model, features_of(raw),
                                                                                        None)[1], 2)
    seconds = []
    for case in prepared.values():  # timed in this run (the cache's own times are from when it was made)
        start = time.perf_counter()
        features_of(case)
        seconds.append(time.perf_counter() - start)

    total = sum(len(v) for v in rows.values())
    flagged = int(sum(g > model.margin for v in rows.values() for g in v))
    print(f"sequence check on {len(correct_gains)} validation cases (margin {model.margin} log-probability, "
          f"model fitted on {len(train)} training cases, {len(FEATURES)} statistics per channel)")
    print(f"  {'given swapped':<16} {'flagged':>8} {'smallest gain':>14}")
    for key, values in rows.items():
        print(f"  {key:<16} {sum(g > model.margin for g in values):>4}/{len(values):<3} {min(values):>14.2f}")
    print(f"  {'all swaps':<16} {flagged:>4}/{total:<3} ({flagged / max(1, total):.0%})")
    print(f"  correctly named validation cases flagged: {len(false_alarms)}/{len(correct_gains)} "
          f"(largest gain {max(correct_gains.values()):.2f})")
    for name, gain in other_gains.items():
        print(f"  {name}: {'FLAGGED' if gain > model.margin else 'not flagged'} (gain {gain:.2f})")
    caught, tried, false = name_check_rate({k: v for k, v in cases.items() if k in validation})
    print(f"names check (file names and headers): {caught}/{tried} swaps stopped, {false} false alarms on "
          f"{len(correct_gains)} correctly named validation cases")
    print(f"contrast statistics per case ({len(seconds)} cases, sampled grid): median {np.median(seconds):.3f} s, "
          f"max {max(seconds):.3f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps({"margin": model.margin,
                                               "swap_gains": {k: [float(g) for g in v] for k, v in rows.items()},
                                               "correct_gains": {k: float(v) for k, v in correct_gains.items()},
                                               "other_gains": {k: float(v) for k, v in other_gains.items()},
                                               "flagged": flagged, "swaps": total,
                                               "names_check": [caught, tried, false]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
