"""The `braintumorseg` command line: segment, batch, evaluate and demo.

Exit status: 0 success; 2 bad input or usage (one sentence on stderr says what is wrong and what to
do; no output file is left behind); 1 internal error (a bug; `--debug` shows the traceback);
130 cancelled with Ctrl-C or SIGTERM (nothing half-written is left; `batch` keeps finished cases).
`batch` exits 1 when any case hit an internal error, else 2 when any case had bad input.

Machine-readable progress, `segment --json-progress` (used by the Slicer module, which runs this
command in a separate process): stdout carries only JSON lines, one object per progress event,

    {"stage": "bias correction", "fraction": 0.17, "seconds": 3.412}

`stage` is the pipeline stage starting or just finished (load inputs, load model, align to
reference, brain mask, bias correction, normalization, inference, post-processing, write output),
`fraction` the share of the whole run done (0 to 1, never decreasing), `seconds` the time since
the command started. A successful run ends with {"stage": "done", "fraction": 1.0, ...} and exit
status 0. Warnings and errors go to stderr as plain text; the report (--report) has the details.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Sequence

from . import __version__
from .brain_extraction import SKULL_STRIP_MODES
from .errors import Cancelled, InputError
from .images import check_file
from .inference import DEVICES, InferenceSettings
from .labels import CONVENTIONS, OUTPUT_CONVENTIONS, REGION_NAMES, REGIONS
from .modalities import DISPLAY_NAMES
from .modelcard import ModelCard
from .output_paths import check_output_folder, check_output_path, check_outputs_distinct
from .pipeline import CancelToken, Pipeline, SegmentationReport, SegmentationSettings
from .postprocessing import PostprocessSettings
from .preprocessing import PreprocessSettings
from .progress import JsonProgress, ProgressBar

PROG = "braintumorseg"
OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser with its four sub-commands."""
    parser = argparse.ArgumentParser(prog=PROG, description="Brain tumour segmentation from multimodal MRI "
                                     "(T1, T1Gd, T2, FLAIR, any subset): necrotic core, edema, enhancing tumour.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of internal errors")

    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--model", metavar="CARD.json", help="model card (default: the shipped model)")
    run.add_argument("--device", choices=DEVICES, default="auto",
                     help="where the network runs; auto = CUDA, then MPS, then CPU (default: auto)")
    run.add_argument("--no-bias-correction", action="store_true", help="skip N4 bias-field correction")
    run.add_argument("--register", action="store_true",
                     help="rigidly register each input to the reference (mutual information)")
    run.add_argument("--skull-strip", choices=SKULL_STRIP_MODES, default="auto",
                     help="strip the skull by registering a brain template (MNI ICBM152) onto the case; auto = "
                          "only when the inputs show the head (default: auto)")
    run.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                     help="average mirrored passes of the network, and for the whole tumour passes with "
                          "the subsets of the sequences that keep FLAIR (default: on; --no-tta is faster)")
    run.add_argument("--fp32", action="store_true",
                     help="run the network in float32 (default: float16 on CUDA, bfloat16 on a CPU that computes "
                          "it natively, about twice as fast; labels differ in a few boundary voxels)")
    run.add_argument("--min-cluster-ml", type=_non_negative_float, default=PostprocessSettings.min_cluster_ml,
                     metavar="ML", help="remove tumour clusters smaller than this; a smaller core cluster becomes "
                                        "edema, an enhancing one necrotic core (mL; default %(default)s)")
    run.add_argument("--label-convention", choices=OUTPUT_CONVENTIONS, default="brats2021",
                     help="output labels: brats2021 = 1 necrotic core, 2 edema, 4 enhancing; "
                          "brats2023 = 1/2/3 (default %(default)s)")
    run.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads (default: all)")

    segment = commands.add_parser("segment", parents=[run, common], help="segment one case",
                                  description="Segment one case; inputs are resampled onto the T1Gd grid "
                                  "(else FLAIR, else the first given) and the labels are written on it.")
    for modality, text in (("t1", "T1"), ("t1c", "T1Gd (T1ce)"), ("t2", "T2"), ("flair", "FLAIR")):
        segment.add_argument(f"--{modality}", metavar="FILE", help=f"{text} image (NIfTI, NRRD, MHA)")
    segment.add_argument("-o", "--output", required=True, metavar="OUT.nii.gz", help="label map to write")
    segment.add_argument("--report", metavar="R.json", help="also write the run report as JSON")
    segment.add_argument("--probability-map", metavar="P.nii.gz",
                         help="also write the whole-tumour probability in percent (0-100, before post-processing) "
                              "on the output's grid; below the card's threshold (50 %% for the shipped model), "
                              "20 %% and up is where the model hesitated: check there first")
    segment.add_argument("--json-progress", action="store_true",
                         help="print progress as JSON lines on stdout (for other programs)")
    segment.set_defaults(handler=command_segment)

    batch = commands.add_parser("batch", parents=[run, common], help="segment every case below a folder",
                                description="Segment every case found below DIR (BraTS 2013-2023 file names "
                                "or an nnU-Net dataset); writes OUTDIR/<case>.nii.gz, <case>.json and "
                                "summary.json/summary.csv; broken cases are reported and skipped.")
    batch.add_argument("folder", metavar="DIR", help="folder with the cases")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    batch.set_defaults(handler=command_batch)

    evaluate = commands.add_parser("evaluate", parents=[common], help="Dice and HD95 of a label map",
                                   description="Dice and 95% Hausdorff distance (mm) of whole tumour, tumour "
                                   "core and enhancing tumour, with the BraTS rules for empty regions.")
    evaluate.add_argument("--prediction", required=True, metavar="P", help="predicted label map")
    evaluate.add_argument("--reference", required=True, metavar="R", help="reference label map")
    evaluate.add_argument("--prediction-convention", choices=list(CONVENTIONS), default="brats2021",
                          help="labels of the prediction (default %(default)s)")
    evaluate.add_argument("--reference-convention", choices=list(CONVENTIONS), default="brats2021",
                          help="labels of the reference: brats2015 (1,3 core, 2 edema, 4 enhancing), "
                               "brats2021 (1/2/4), brats2023 (1/2/3), nnunet (1 edema, 2 core, 3 enhancing)")
    evaluate.add_argument("-o", "--output", metavar="SCORES.json", help="also write the scores as JSON")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of the table")
    evaluate.set_defaults(handler=command_evaluate)

    demo = commands.add_parser("demo", parents=[run, common], help="segment the bundled sample case",
                               description="Segment the bundled sample case (TCGA-FG-6692) and write the "
                               "label map, the report, the scores against its consensus label and a PNG.")
    demo.add_argument("-o", "--output", default="braintumorseg-demo", metavar="DIR",
                      help="folder for the results (default: %(default)s)")
    demo.set_defaults(handler=command_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        return args.handler(args)
    except InputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except (KeyboardInterrupt, Cancelled):
        print(f"{PROG}: cancelled; nothing half-written was left behind.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:  # noqa: BLE001 - the last resort: one line, not a traceback
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: internal error ({type(error).__name__}: {error}). This is a bug: please report it "
              "with the command you ran" + ("." if args.debug else "; add --debug to see the traceback."),
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


# ---- shared helpers ----------------------------------------------------------------------------

def settings_from_args(args: argparse.Namespace) -> SegmentationSettings:
    """The run settings the options describe."""
    return SegmentationSettings(
        preprocess=PreprocessSettings(bias_correction=not args.no_bias_correction, register=args.register,
                                      skull_strip=args.skull_strip),
        inference=InferenceSettings(device=args.device, tta=args.tta, amp=not args.fp32),
        postprocess=PostprocessSettings(min_cluster_ml=args.min_cluster_ml),
        label_convention=args.label_convention)


def pipeline_from_args(args: argparse.Namespace, progress=None, cancel: CancelToken | None = None) -> Pipeline:
    """Load the model card (given or shipped), set the thread count, build the pipeline."""
    from .resources import default_model_card
    if args.threads:
        import SimpleITK as sitk
        import torch
        torch.set_num_threads(args.threads)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    card = ModelCard.load(args.model if args.model else default_model_card())
    return Pipeline(card, settings_from_args(args), progress, cancel)


def print_warnings(report: SegmentationReport) -> None:
    for warning in report.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)


def volumes_table(report: SegmentationReport) -> str:
    names = {"necrotic_core": "necrotic core", "edema": "edema", "enhancing": "enhancing tumour",
             "tumour_core": "tumour core", "whole_tumour": "whole tumour"}
    return "\n".join(f"  {names[k]:<17} {v:9.2f} mL" for k, v in report.volumes_ml.items())


def scores_table(scores: dict[str, dict[str, float]]) -> str:
    lines = [f"  {'region':<22} {'Dice':>7} {'HD95 (mm)':>10}"]
    for region in REGIONS:
        lines.append(f"  {region + ' ' + REGION_NAMES[region]:<22} {scores[region]['dice']:7.4f} "
                     f"{scores[region]['hd95']:10.2f}")
    return "\n".join(lines)


def _progress(json_lines: bool = False, label: str = ""):
    if json_lines:
        return JsonProgress(sys.stdout)
    return ProgressBar(sys.stderr, label) if sys.stderr.isatty() else None


# ---- commands ----------------------------------------------------------------------------------

def command_segment(args: argparse.Namespace) -> int:
    inputs = {m: getattr(args, m) for m in ("t1", "t1c", "t2", "flair") if getattr(args, m)}
    if not inputs:
        raise InputError("no input volume given: give at least one of --t1, --t1c, --t2, --flair.")
    for modality, path in inputs.items():
        check_file(path, DISPLAY_NAMES[modality])
    by_file: dict[Path, list[str]] = {}
    for modality, path in inputs.items():
        by_file.setdefault(Path(path).resolve(), []).append(f"--{modality}")
    for path, flags in by_file.items():
        if len(flags) > 1:
            raise InputError(f"the same file {path} is given for {' and '.join(flags)}; give each sequence its own "
                             "image.")
    output = check_output_path(args.output, "output", OUTPUT_SUFFIXES)
    report_path = check_output_path(args.report, "report") if args.report else None
    probability_path = (check_output_path(args.probability_map, "probability map", OUTPUT_SUFFIXES)
                        if args.probability_map else None)
    check_outputs_distinct({"output": output, "--report": report_path, "--probability-map": probability_path},
                           {f"--{modality} input": path for modality, path in inputs.items()})
    progress = _progress(args.json_progress)
    try:
        pipeline = pipeline_from_args(args, progress)
        report = pipeline.segment_files(inputs, output, report_path, probability_path)
    finally:
        if progress:
            progress.close()
    print_warnings(report)
    if not args.json_progress:
        print(f"wrote {output} ({report.label_convention} labels, {report.total_seconds:.1f} s on {report.device}, "
              f"{report.precision})" + (f" and {probability_path}" if probability_path else ""))
        print(volumes_table(report))
    return EXIT_OK


def command_batch(args: argparse.Namespace) -> int:
    from .batch import find_batch_cases, run_batch
    cases = find_batch_cases(args.folder)
    output = check_output_folder(args.output, "output folder")
    pipeline = pipeline_from_args(args)
    bar: list[ProgressBar | None] = [None]

    def on_case(index: int, total: int, case) -> None:
        bar[0] = _progress(label=f"[{index + 1}/{total}] {case.name}")
        pipeline.progress = bar[0] or (lambda stage, fraction: None)

    def on_result(result) -> None:
        if bar[0]:
            bar[0].close()
        if result.status == "ok":
            notes = f"; {len(result.warnings)} warning(s) in {result.report}" if result.warnings else ""
            print(f"{result.case}: ok ({result.seconds:.1f} s, whole tumour "
                  f"{result.volumes_ml.get('whole_tumour', 0):.1f} mL{notes})")
        else:
            print(f"{result.case}: {result.status}: {result.message.split(' | ')[0]}", file=sys.stderr)

    summary = run_batch(cases, output, pipeline, on_case, on_result, input_folder=str(args.folder))
    if bar[0]:
        bar[0].close()
    done = len(summary.results) - len(summary.failed)
    print(f"{done} of {len(cases)} cases segmented, {len(summary.failed)} failed"
          f"{', cancelled' if summary.cancelled else ''}; summary in {output / 'summary.json'} and "
          f"{output / 'summary.csv'}")
    if summary.cancelled:
        return EXIT_CANCELLED
    return summary.exit_code()


def command_evaluate(args: argparse.Namespace) -> int:
    from .images import write_text_atomic
    from .metrics import evaluate_files
    output = check_output_path(args.output, "scores file") if args.output else None
    check_outputs_distinct({"scores file": output},
                           {"--prediction": args.prediction, "--reference": args.reference})
    scores = evaluate_files(args.prediction, args.reference, args.prediction_convention,
                            args.reference_convention)
    document = {"prediction": args.prediction, "reference": args.reference,
                "prediction_convention": args.prediction_convention,
                "reference_convention": args.reference_convention, "scores": scores}
    if output:
        write_text_atomic(json.dumps(document, indent=2) + "\n", output)
    print(json.dumps(document, indent=2) if args.json else scores_table(scores))
    return EXIT_OK


def command_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    folder = check_output_folder(args.output, "output folder")
    progress = _progress()
    try:
        result = run_demo(folder, pipeline_from_args(args, progress))
    finally:
        if progress:
            progress.close()
    print_warnings(result.report)
    print(f"segmented the bundled sample case with {result.report.model} in "
          f"{result.report.total_seconds:.1f} s on {result.report.device}, {result.report.precision}")
    print(volumes_table(result.report))
    print("agreement with the bundled consensus label (5 BraTS-2020 algorithms):")
    print(scores_table(result.scores))
    for path in (result.segmentation, result.report_path, result.evaluation, result.figure):
        print(f"wrote {path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
