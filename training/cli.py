"""Command line of the training package."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from braintumorseg.errors import InputError

from .discovery import labelled_cases


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="preprocess labelled cases into a training cache")
    prepare.add_argument("roots", nargs="+", type=Path, help="folders holding cases (any BraTS or nnU-Net layout)")
    prepare.add_argument("--cache", type=Path, required=True, help="where the prepared arrays and manifest go")
    prepare.add_argument("--spacing", type=float, default=2.0, help="model grid spacing in mm (default 2)")
    prepare.add_argument("--exclude", nargs="*", default=[], help="case names to leave out (e.g. the sample case)")
    prepare.add_argument("--no-bias-correction", action="store_true")
    prepare.add_argument("--workers", type=int, default=2)

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
        sub.add_argument("--val-every", type=int, default=250)
        sub.add_argument("--checkpoint-every", type=int, default=50)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
        sub.add_argument("--no-amp", action="store_true")
        if name == "finetune":
            sub.add_argument("--weights", required=True, help="model card or weights to start from")
    return parser


def _train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train
    validation = json.loads(args.splits.read_text())["validation"] if args.splits else []
    init = ""
    if args.command == "finetune":
        init = str(args.weights)
        if init.endswith(".json"):
            from braintumorseg.modelcard import ModelCard
            init = str(ModelCard.load(init).weights_path)
    config = TrainConfig(cache=args.cache, out=args.out, validation=validation, steps=args.steps,
                         batch_size=args.batch_size, patch=args.patch, lr=args.lr,
                         init_filters=args.init_filters, loss=args.loss, val_every=args.val_every,
                         checkpoint_every=args.checkpoint_every, seed=args.seed, amp=not args.no_amp,
                         threads=args.threads, init_weights=init)
    meta = train(config)
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
            settings = PrepareSettings(args.cache, args.spacing, not args.no_bias_correction, args.workers)
            entries = prepare(cases, settings)
            print(f"{len(entries)} cases prepared in {args.cache}")
            return 0
        if args.command in ("train", "finetune"):
            return _train(args)
    except InputError as error:
        print(f"error: {error}")
        return 2
    return 1
