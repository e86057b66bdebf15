"""Command line of the training package."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from braintumorseg.errors import InputError
from braintumorseg.settings import DEVICES, REGISTER_MODES, TRAINING_DEVICES

from .discovery import labelled_cases
from .exam_steps import STEPS_OFF, STEPS_ON


def validation_names(splits: Path) -> tuple[str, ...]:
    """The case names of a --splits file's 'validation' list, or a clear error."""
    if not splits.is_file():
        raise InputError(f"--splits {splits} not found; give a JSON file such as training/splits.json.")
    try:
        names = json.loads(splits.read_text()).get("validation")
    except (ValueError, AttributeError):
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"--splits {splits} is not a splits file: it needs a 'validation' list of case names, "
                         'like {"validation": ["Brats18_CBICA_AOP_1"]}.')
    return tuple(names)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="preprocess labelled cases into a training cache")
    prepare.add_argument("roots", nargs="+", type=Path, help="folders holding cases (any BraTS or nnU-Net layout)")
    prepare.add_argument("--cache", type=Path, required=True, help="where the prepared arrays and manifest go")
    prepare.add_argument("--spacing", type=float, default=2.0, help="model grid spacing in mm (default 2)")
    prepare.add_argument("--exclude", nargs="*", default=[], help="case names to leave out (e.g. the sample case)")
    prepare.add_argument("--no-bias-correction", action="store_true")
    prepare.add_argument("--n4-without-tumour", action="store_true",
                         help="fit N4 on the brain without the reference tumour (grown 5 mm); a model trained so is "
                              "run by the engine in two passes (docs/native-exams.md)")
    prepare.add_argument("--workers", type=int, default=2)
    prepare.add_argument("--nyul", action="store_true",
                         help="Nyúl histogram standardization with landmarks learned from the training cases")
    prepare.add_argument("--splits", type=Path,
                         help="JSON with a 'validation' list: those cases are not used to learn Nyúl landmarks")

    pack = commands.add_parser("pack", help="pack a cache into 8-bit xz parts to send to another machine")
    pack.add_argument("--cache", type=Path, required=True, help="the --cache folder of prepare")
    pack.add_argument("--out", type=Path, required=True, help="folder for part-K-of-N.tar.xz")
    pack.add_argument("--parts", type=int, default=1, help="how many files (to fit a transfer limit)")
    unpack = commands.add_parser("unpack", help="unpack parts written by pack into a cache")
    unpack.add_argument("parts", nargs="+", type=Path,
                        help="part-K-of-N.tar.xz files (all, or some now, the rest later)")
    unpack.add_argument("--cache", type=Path, required=True, help="the cache folder to fill")

    for name, text in (("train", "train or resume a model"), ("finetune", "train starting from existing weights")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--cache", required=True)
        sub.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, curves.png")
        sub.add_argument("--splits", type=Path, help="JSON with a 'validation' list of case names")
        sub.add_argument("--steps", type=int, default=3000)
        sub.add_argument("--batch-size", type=int, default=2)
        sub.add_argument("--patch", type=int, default=64)
        sub.add_argument("--lr", type=float, default=2e-3)
        sub.add_argument("--init-filters", type=int, default=16)
        sub.add_argument("--loss", default="dice_bce", choices=("dice_bce", "wce", "gdice"))
        sub.add_argument("--augmentation", default="standard", choices=("standard", "strong", "clinical"),
                         help="intensity augmentation: standard, strong (wider contrast changes, blur), or "
                              "clinical (strong, plus thick slices, misregistration, bias and contrast per "
                              "sequence and head rotations to 20 degrees: training/augment.py)")
        sub.add_argument("--clinical-share", type=float, metavar="P",
                         help="clinical augmentation: share of patches made clinical-like (default: "
                              "ClinicalAugmentSettings in training/augment.py)")
        sub.add_argument("--thick-share", type=float, metavar="P",
                         help="clinical augmentation: share of those patches' T1, T2 and FLAIR given thick slices "
                              "(default: as above; in a scanner-native exam every 2D series is thick)")
        sub.add_argument("--modality-dropout", type=float, default=0.5, metavar="P",
                         help="share of complete-case patches trained with a subset of the modalities (default 0.5)")
        sub.add_argument("--val-every", type=int, default=250)
        sub.add_argument("--checkpoint-every", type=int, default=50)
        sub.add_argument("--snapshot-every", type=int, default=0,
                         help="keep the weights every N steps in snapshots/ (for export --average-from)")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
        sub.add_argument("--loader-workers", type=int, default=0, metavar="N",
                         help="prepare batches ahead in N processes (same batches; keeps a GPU busy)")
        sub.add_argument("--no-amp", action="store_true")
        sub.add_argument("--device", default="auto", choices=TRAINING_DEVICES,
                         help="auto: the CUDA GPU when PyTorch sees one, else the CPU")
        sub.add_argument("--until", type=int, default=0,
                         help="stop at this step (checkpointed) and resume later with the same command")
        if name == "finetune":
            sub.add_argument("--weights", required=True, help="model card or weights to start from")
    export = commands.add_parser("export", help="write a run's weights and model card for the engine")
    export.add_argument("--run", type=Path, required=True, help="the --out folder of train/finetune")
    export.add_argument("--out", type=Path, required=True, help="folder for model.json and model.safetensors")
    export.add_argument("--checkpoint", default="best", choices=("best", "checkpoint"),
                        help="best validated step (default) or the latest checkpoint")
    export.add_argument("--average-from", type=int, metavar="STEP",
                        help="export the mean of the run's snapshots from this step on (SWA) instead of "
                             "--checkpoint; the card gets that average's validation Dice")
    export.add_argument("--blend", type=float, metavar="SHARE",
                        help="blend the exported weights with those the finetune started from: SHARE × finetune + "
                             "(1 − SHARE) × start (WiSE-FT); the card gets the blend's validation Dice")
    export.add_argument("--name", default="brats-segresnet")
    export.add_argument("--version", default="1.0.0")
    export.add_argument("--roi", type=int, default=128, help="sliding-window size on the model grid")
    export.add_argument("--data-note", help="what the training data were and their terms (default: BraTS)")
    export.add_argument("--description", help="what the model is for, in the card (default: the network's outputs)")
    export.add_argument("--evaluation", type=Path,
                        help="--out folder of `evaluate` on the validation cases: its means go into the card")

    evaluate = commands.add_parser("evaluate", help="run the engine on labelled cases: Dice and HD95 tables")
    evaluate.add_argument("roots", nargs="+", type=Path, help="folders holding labelled cases")
    evaluate.add_argument("--model", type=Path, required=True, help="model card (.json)")
    evaluate.add_argument("--native-model", type=Path, metavar="CARD",
                          help="model card for the scanner-native exams (inputs that need aligning or skull "
                               "stripping), as the engine pairs its two shipped models")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for cases.csv, means.json, means.md")
    evaluate.add_argument("--cases", nargs="*", default=[], help="only these case names")
    evaluate.add_argument("--subsets", default="all,flair+t1c,flair+t1,flair",
                          help="comma-separated modality subsets (default: all,flair+t1c,flair+t1,flair)")
    evaluate.add_argument("--no-bias-correction", action="store_true")
    evaluate.add_argument("--device", default="auto", choices=DEVICES)
    evaluate.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                          help="test-time augmentation (mirrors and, where the card allows, subsets), as the engine "
                               "does by default")
    evaluate.add_argument("--register", nargs="?", const="on", choices=REGISTER_MODES,
                          help="co-registration of the sequences (bare --register: on; default: the engine's)")
    evaluate.add_argument("--clinical-like", type=int, metavar="SEED",
                          help="also make clinical-like exams of the cases with this seed (in --out) and score "
                               "them beside the originals: docs/clinical-benchmark.md")
    evaluate.add_argument("--clinical-like-with", nargs="*", default=[], choices=tuple(STEPS_ON), metavar="OPTION",
                          help="make those exams harder: skull = a synthetic head to strip, thick-t1c = the T1Gd "
                               "as a 2D thick-slice series too")
    evaluate.add_argument("--fp32", action="store_true",
                          help="run the network in float32 (default: the engine's reduced precision where native)")

    clinical = commands.add_parser("clinical-like", help="make clinical-like exams of labelled cases (seeded)")
    clinical.add_argument("roots", nargs="+", type=Path, help="folders holding labelled, co-registered cases")
    clinical.add_argument("--out", type=Path, required=True, help="folder for <case>/<case>_{t1,t1ce,t2,flair,seg}")
    clinical.add_argument("--seed", type=int, default=0)
    clinical.add_argument("--cases", nargs="*", default=[], help="only these case names")
    clinical.add_argument("--without", nargs="*", default=[], choices=tuple(STEPS_OFF),
                          help="switch these steps off (same seed, same other draws): which one hurts a case")
    clinical.add_argument("--with", dest="extras", nargs="*", default=[], choices=tuple(STEPS_ON), metavar="OPTION",
                          help="make the exams harder: skull = a synthetic head (CSF, bone, scalp) the engine must "
                               "strip, thick-t1c = the T1Gd as a 2D thick-slice series too")

    benchmark = commands.add_parser("benchmark", help="training throughput, fp32 against mixed precision")
    benchmark.add_argument("--batch-size", type=int, default=2)
    benchmark.add_argument("--patch", type=int, default=64)
    benchmark.add_argument("--init-filters", type=int, default=16)
    benchmark.add_argument("--steps", type=int, default=6)
    benchmark.add_argument("--threads", type=int, default=0)
    benchmark.add_argument("--device", default="auto", choices=TRAINING_DEVICES)
    return parser


def _export(args: argparse.Namespace) -> int:
    from .export import ExportSettings, export_run
    settings = ExportSettings(args.run, args.out, args.checkpoint, args.name, args.version, roi_size=args.roi,
                              evaluation=args.evaluation, average_from=args.average_from, blend=args.blend)
    if args.data_note:
        settings = replace(settings, data_note=args.data_note)
    if args.description:
        settings = replace(settings, description=args.description)
    card = export_run(settings)
    print(f"exported {card.name} {card.version} to {card.path} (sha256 {card.sha256[:12]}…)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from braintumorseg.inference import InferenceSettings
    from braintumorseg.pipeline import SegmentationSettings
    from braintumorseg.preprocessing import PreprocessSettings

    from .evaluate import EvaluateSettings, evaluate
    preprocess = PreprocessSettings(bias_correction=not args.no_bias_correction)
    if args.register is not None:
        preprocess = replace(preprocess, register=args.register)
    segmentation = SegmentationSettings(preprocess,
                                        InferenceSettings(device=args.device, tta=args.tta, amp=not args.fp32))
    subsets = tuple(s.strip() for s in args.subsets.split(",") if s.strip())
    harder = tuple(sorted(set(args.clinical_like_with)))
    result = evaluate(EvaluateSettings(args.model, args.roots, args.out, tuple(args.cases), subsets, segmentation,
                                       args.clinical_like, args.native_model, harder))
    print(result["markdown"], end="")
    print(f"tables written to {args.out}")
    return 0


def _clinical_like(args: argparse.Namespace) -> int:
    from .clinical_like import generate, settings_without
    folders = generate(args.roots, args.out, args.seed, tuple(args.cases),
                       settings_without(tuple(args.without), extras=tuple(args.extras)))
    print(f"{len(folders)} clinical-like exams (seed {args.seed}) written to {args.out}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from .transfer import PackSettings, pack_cache
    paths, largest = pack_cache(PackSettings(args.cache, args.out, args.parts))
    for path in paths:
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print(f"largest quantization error {largest:.3f} (image units: z-score for a z-scored cache)")
    return 0


def _unpack(args: argparse.Namespace) -> int:
    from .transfer import unpack_parts
    present, total = unpack_parts(args.parts, args.cache)
    if present < total:
        print(f"{present} of {total} cases in {args.cache}; unpack the other parts into it to finish the cache.")
    else:
        print(f"{total} cases unpacked: {args.cache} is ready to train on.")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import BenchmarkSettings, run_benchmark
    run_benchmark(BenchmarkSettings(args.batch_size, args.patch, args.init_filters, args.steps,
                                    threads=args.threads, device=args.device))
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train
    validation = list(validation_names(args.splits)) if args.splits else []
    init = ""
    if args.command == "finetune":
        init = str(args.weights)
        if init.endswith(".json") and Path(init).is_file():
            from braintumorseg.modelcard import ModelCard
            init = str(ModelCard.load(init).weights_path)
    config = TrainConfig(cache=args.cache, out=args.out, validation=validation, steps=args.steps,
                         batch_size=args.batch_size, patch=args.patch, lr=args.lr,
                         init_filters=args.init_filters, loss=args.loss, augmentation=args.augmentation,
                         modality_dropout=args.modality_dropout,
                         val_every=args.val_every, checkpoint_every=args.checkpoint_every,
                         snapshot_every=args.snapshot_every, seed=args.seed, amp=not args.no_amp,
                         threads=args.threads, loader_workers=args.loader_workers, init_weights=init,
                         device=args.device)
    config = replace(config, **{k: v for k in ("clinical_share", "thick_share")
                                if (v := getattr(args, k)) is not None})
    meta = train(config, args.until)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"finished at step {meta['step']}; best step {meta.get('best_step')} "
              f"score {meta.get('best_score', 0):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "prepare":
            from .prepare import PrepareSettings, prepare
            cases = labelled_cases(args.roots, set(args.exclude))
            if not cases:
                raise InputError(f"no labelled case found under {', '.join(map(str, args.roots))}.")
            held_out = validation_names(args.splits) if args.splits else ()
            settings = PrepareSettings(args.cache, args.spacing, not args.no_bias_correction, args.workers,
                                       args.nyul, held_out, args.n4_without_tumour)
            entries = prepare(cases, settings)
            print(f"{len(entries)} cases prepared in {args.cache}")
            return 0
        if args.command in ("train", "finetune"):
            return _train(args)
        return {"export": _export, "evaluate": _evaluate, "benchmark": _benchmark, "pack": _pack,
                "unpack": _unpack, "clinical-like": _clinical_like}[args.command](args)
    except InputError as error:
        print(f"python -m training: error: {error}", file=sys.stderr)
        return 2
    return 1
