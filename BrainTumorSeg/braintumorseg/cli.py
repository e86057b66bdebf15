"""The `braintumorseg` command line: segment, batch, evaluate and demo.

Exit status (`protocol`): 0 success; 2 bad input or usage (one sentence on stderr says what is wrong and what to
do; no output file is left behind); 1 internal error (a bug; `--debug` shows the traceback); 130 cancelled with
Ctrl-C or SIGTERM (nothing half-written is left; `batch` keeps finished cases). `batch` exits 1 when any case hit
an internal error, else 2 when any case had bad input. `segment --json-progress` prints the progress lines that
`protocol` specifies (the Slicer module runs this command in a separate process and reads them).
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
from .errors import Cancelled, InputError
from .images import check_file
from .labels import CONVENTIONS, REGION_NAMES, REGIONS, VOLUMES
from .modalities import DISPLAY_NAMES, MODALITIES
from .output_paths import check_output_folder, check_output_path, check_outputs_distinct
from .pipeline import CancelToken, Pipeline, SegmentationReport
from .progress import JsonProgress, ProgressBar
from .protocol import EXIT_CANCELLED, EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, PROG, error_line
from .run_summary import processing_summary
from .settings import RunSettings, add_arguments

OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def build_parser() -> argparse.ArgumentParser:
    """The parser with its four sub-commands."""
    parser = argparse.ArgumentParser(prog=PROG, description="Brain tumour segmentation from multimodal MRI "
                                     "(T1, T1Gd, T2, FLAIR, any subset): necrotic core, edema, enhancing tumour.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of internal errors")

    run = argparse.ArgumentParser(add_help=False)
    add_arguments(run)

    segment = commands.add_parser("segment", parents=[run, common], help="segment one case",
                                  description="Segment one case; inputs are resampled onto the T1Gd grid "
                                  "(else FLAIR, else the first given) and the labels are written on it.")
    for modality in MODALITIES:
        segment.add_argument(f"--{modality}", metavar="FILE", help=f"{DISPLAY_NAMES[modality]} image (NIfTI, NRRD, "
                             "MHA)")
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
        print(error_line(str(error)), file=sys.stderr)
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

def pipeline_from_args(args: argparse.Namespace, progress=None, cancel: CancelToken | None = None) -> Pipeline:
    return Pipeline.from_settings(RunSettings.from_namespace(args), progress, cancel)


def print_warnings(report: SegmentationReport) -> None:
    summary = processing_summary(report.registration, report.skull_stripping, report.network_space, report.reference)
    if summary:
        print(f"{PROG}: {summary}", file=sys.stderr)
    for warning in report.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)


def volumes_table(report: SegmentationReport) -> str:
    return "\n".join(f"  {volume.name:<17} {report.volumes_ml[volume.key]:9.2f} mL" for volume in VOLUMES)


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
    inputs = {m: getattr(args, m) for m in MODALITIES if getattr(args, m)}
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
    from .metrics import evaluate_files
    from .output_paths import write_text_atomic
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
